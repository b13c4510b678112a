"""/unlock, and what closing or merging a pull request releases."""
from __future__ import annotations

from bot.context import JobContext
from bot.handlers.base import Handler, Request, Started
from bot.models import PullRequest
from bot.state import artifacts, audit, locks


class UnlockHandler(Handler):
    name = "unlock"

    def start(self, ctx: JobContext, request: Request) -> Started:
        pull = request.pull
        released = locks.release_pull(ctx.redis, pull.repo.id, pull.number)
        dropped = artifacts.discard_pull_plans(ctx.redis, pull.repo.id, pull.number)
        audit.record(ctx.redis, "unlock", user=request.actor, repo=pull.repo.id, pull=pull.number,
                     commit=pull.head_sha, project=",".join(released), result="ok", job_id=ctx.job_id)
        listing = "".join(f"\n- `{k.replace('::', '` workspace `')}`" for k in released) or " none were held."
        ctx.forge.create_comment(pull, f"**Plankeeper unlock**: released {len(released)} lock(s) and discarded "
                                       f"{dropped} plan(s):{listing}")
        return f"unlocked {len(released)}"


def release_pull_request(ctx: JobContext, pull: PullRequest, action: str, actor: str) -> str:
    """The pull request is closed or merged (and deployed): release its locks, drop its plans."""
    released = locks.release_pull(ctx.redis, pull.repo.id, pull.number)
    artifacts.discard_pull_plans(ctx.redis, pull.repo.id, pull.number)
    ctx.forget_pull_tree(pull)
    audit.record(ctx.redis, action, user=actor, repo=pull.repo.id, pull=pull.number,
                 commit=pull.merge_sha or pull.head_sha, project=",".join(released), result="locks released",
                 job_id=ctx.job_id)
    return f"released {len(released)} lock(s)"
