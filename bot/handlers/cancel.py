"""/cancel: stop the pull request's running jobs (they poll for it) and drop its queued ones.

Its job skips the pull request's line (bot.jobs): it must reach a running job, not wait behind it.
"""
from __future__ import annotations

from bot import queueing
from bot.context import JobContext
from bot.handlers.base import Handler, Request, Started
from bot.state import audit, cancel


class CancelHandler(Handler):
    name = "cancel"

    def start(self, ctx: JobContext, request: Request) -> Started:
        pull = request.pull
        cancel.request_cancel(ctx.redis, pull.repo.id, pull.number)
        cancelled = queueing.cancel_queued(ctx.redis, pull.repo.id, pull.number, except_job=ctx.job_id)
        audit.record(ctx.redis, "cancel", user=request.actor, repo=pull.repo.id, pull=pull.number,
                     commit=pull.head_sha, result="ok", job_id=ctx.job_id)
        ctx.forge.create_comment(
            pull, f"**Plankeeper cancel**: running jobs of this pull request are being stopped; "
            f"{cancelled} queued job(s) cancelled."
        )
        return f"cancelled {cancelled} queued job(s)"
