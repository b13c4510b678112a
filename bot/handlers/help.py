"""/help [topic]: the usage text."""
from __future__ import annotations

from bot import commands
from bot.context import JobContext
from bot.handlers.base import Handler, Request, Started


class HelpHandler(Handler):
    name = "help"
    needs_permission = False

    def start(self, ctx: JobContext, request: Request) -> Started:
        topic = request.command.extra_args[0] if request.command.extra_args else None
        ctx.forge.create_comment(request.pull, commands.usage(topic))
        return "replied: help"
