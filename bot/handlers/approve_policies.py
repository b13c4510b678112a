"""/approve_policies: a policy owner approves the failed policy sets of the current plans."""
from __future__ import annotations

from bot import policies
from bot.context import JobContext
from bot.handlers.base import Handler, Request, Started


class ApprovePoliciesHandler(Handler):
    name = "approve_policies"

    def start(self, ctx: JobContext, request: Request) -> Started:
        return policies.approve(ctx, request.pull, request.actor)
