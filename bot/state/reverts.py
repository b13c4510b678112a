"""Revert pull requests the bot opened (/revert, the UI's "Roll back"): which pull request each one
rolls back, so its plan comment can say so. Only the bot writes these records, so a pull request
cannot claim to be a rollback by its description."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import redis

from bot.state import keys

TTL = 365 * 24 * 3600


@dataclass(frozen=True)
class Revert:
    repo: str  # Repo.id
    original: int  # the merged pull request rolled back
    revert: int  # the pull request that rolls it back
    merged_commit: str  # what was reverted: the merge (or squash) commit of the original
    kind: str  # merge | squash | rebase | fast-forward (runners.git.RevertPlan.kind)
    commits: tuple[str, ...]  # the commits reverted, newest first
    branch: str
    url: str  # of the revert pull request
    actor: str
    time: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, raw: bytes) -> "Revert":
        data = json.loads(raw)
        data["commits"] = tuple(data.get("commits") or ())
        return cls(**data)


def record(r: redis.Redis, revert: Revert) -> None:
    pipe = r.pipeline()
    pipe.set(keys.REVERT.format(repo=revert.repo, number=revert.revert), json.dumps(asdict(revert)), ex=TTL)
    pipe.set(keys.REVERTED_BY.format(repo=revert.repo, number=revert.original), revert.revert, ex=TTL)
    pipe.execute()


def of_revert_pull(r: redis.Redis, repo_id: str, number: int) -> Optional[Revert]:
    """The record of revert pull request `number`, or None when the bot did not open it as one."""
    raw = r.get(keys.REVERT.format(repo=repo_id, number=number))
    return Revert.from_json(raw) if raw else None


def reverted_by(r: redis.Redis, repo_id: str, number: int) -> Optional[int]:
    """The last revert pull request opened for pull request `number`, if any."""
    raw = r.get(keys.REVERTED_BY.format(repo=repo_id, number=number))
    return int(raw) if raw else None
