"""Each command comment and each approval is acted on once, forever, whatever delivery brings it.

A delivery id is not covered by the webhook signature: the same signed body re-sent with a new
delivery id would otherwise run again (an `/apply` applying a newer, unreviewed head)."""
from __future__ import annotations

import redis

from bot.state import keys


def first_time_command(r: redis.Redis, repo_id: str, number: int, comment_id: str) -> bool:
    """True the first time this comment is acted on; False ever after."""
    return bool(r.sadd(keys.COMMANDS_SEEN.format(repo=repo_id, number=number), comment_id))


def command_acted_on(r: redis.Redis, repo_id: str, number: int, comment_id: str) -> bool:
    """Whether this comment was acted on already (read only: first_time_command records it)."""
    return bool(r.sismember(keys.COMMANDS_SEEN.format(repo=repo_id, number=number), comment_id))


def first_time_approval(r: redis.Redis, repo_id: str, number: int, review_id: str) -> bool:
    """True the first time this review (approval) is acted on; False ever after."""
    return bool(r.sadd(keys.APPROVALS_SEEN.format(repo=repo_id, number=number), review_id))
