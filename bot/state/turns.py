"""One pull request's event jobs take their turns in arrival order.

The pull request's lease (jobs.pull_request_turn) lets one of its jobs run at a time; this list
decides which goes next, so that two events taken by two workers at once still run in the order
they arrived. Each event job is appended when it is queued (in the webhook's one Redis round
trip); before taking the lease a job waits while a job queued before it is still to run, and it
leaves the list when it is done.

A job ahead is still to run while RQ has it queued, deferred or scheduled; while it holds the
lease or waits for its own turn (a mark it renews); and for START_GRACE seconds after it started
(the time from RQ's fork to its turn). A job that died stops counting once those are over, so a
killed worker holds the line no longer than it held the lease before.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import redis
from rq.job import Job
from rq.utils import utcparse

from bot.state import keys

ORDER_TTL = 7 * 24 * 3600  # an untouched list expires: its jobs are long gone
WAITING_TTL = 10
START_GRACE = 10.0
POLL_SECONDS = 0.1


def order_key(repo_id: str, number: int) -> str:
    return keys.PULL_ORDER.format(repo=repo_id, number=number)


def append(r: redis.Redis | redis.client.Pipeline, repo_id: str, number: int, job_id: str) -> None:
    """Put a newly queued event job at the end of its pull request's line."""
    key = order_key(repo_id, number)
    r.rpush(key, job_id)
    r.expire(key, ORDER_TTL)


def wait_for_earlier(r: redis.Redis, repo_id: str, number: int, job_id: str, lease_key: str, deadline: float,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once no job queued before job_id is still to run (or at the deadline); jobs ahead
    that are gone or dead leave the line on the way."""
    key, mark = order_key(repo_id, number), keys.TURN_WAITING.format(job=job_id)
    while time.time() < deadline:
        line = [raw.decode() for raw in r.lrange(key, 0, -1)]
        if job_id not in line:
            return  # queued before the line existed (or by hand): no one to wait for
        waiting = False
        for other in line[:line.index(job_id)]:
            if still_to_run(r, other, lease_key):
                waiting = True
            else:
                r.lrem(key, 0, other)
        if not waiting:
            return
        r.set(mark, "1", ex=WAITING_TTL)
        sleep(POLL_SECONDS)


def leave(r: redis.Redis, repo_id: str, number: int, job_id: str) -> None:
    r.lrem(order_key(repo_id, number), 0, job_id)
    r.delete(keys.TURN_WAITING.format(job=job_id))


def still_to_run(r: redis.Redis, job_id: str, lease_key: str) -> bool:
    status, started_at = r.hmget(Job.key_for(job_id), "status", "started_at")
    if status is None:
        return False  # gone (expired or deleted)
    if status.decode() in ("queued", "deferred", "scheduled"):
        return True
    if status.decode() != "started":
        return False  # finished, failed, stopped or canceled
    if r.get(lease_key) == job_id.encode() or r.exists(keys.TURN_WAITING.format(job=job_id)):
        return True
    return _seconds_since(started_at) < START_GRACE


def _seconds_since(started_at: bytes | None) -> float:
    if not started_at:
        return 0.0  # started, not yet stamped: as good as now
    try:
        started = utcparse(started_at.decode()).replace(tzinfo=timezone.utc)
    except ValueError:
        return float("inf")
    return (datetime.now(timezone.utc) - started).total_seconds()
