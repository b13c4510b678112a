"""/cancel requests: the time of a pull request's last cancel, polled by its running jobs."""
from __future__ import annotations

import time
from typing import Optional

import redis

from bot.state import keys

TTL = 24 * 3600


def request_cancel(r: redis.Redis, repo_id: str, number: int) -> None:
    """Every job of the pull request that started before now stops at its next check."""
    r.set(keys.CANCEL.format(repo=repo_id, number=number), f"{time.time():.3f}", ex=TTL)


def cancelled_at(r: redis.Redis, repo_id: str, number: int) -> Optional[float]:
    raw = r.get(keys.CANCEL.format(repo=repo_id, number=number))
    return float(raw) if raw else None
