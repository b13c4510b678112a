"""Job records and live job logs in Redis, for comments' log links, the UI and the API.

A record is a Redis hash `pk:job:<id>`; ids are indexed newest first in `pk:jobs`.
A log is a Redis list `pk:log:<id>` of already-redacted lines.
"""
from __future__ import annotations

import json
import time
from typing import Callable, Optional

import redis
from bot.state import keys

RETENTION_SECONDS = 30 * 24 * 3600
MAX_LOG_LINES = 200_000



def record_job(r: redis.Redis, job_id: str, **fields: object) -> None:
    """Create or update a job record; values are stored as strings (dicts as JSON)."""
    mapping = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in fields.items() if v is not None}
    pipe = r.pipeline()
    if mapping:
        pipe.hset(keys.JOB.format(job_id), mapping=mapping)
    if "created_at" in fields:
        pipe.zadd(keys.JOBS, {job_id: float(fields["created_at"])})  # type: ignore[arg-type]
    pipe.expire(keys.JOB.format(job_id), RETENTION_SECONDS)
    pipe.execute()


def get_job(r: redis.Redis, job_id: str) -> Optional[dict]:
    raw = r.hgetall(keys.JOB.format(job_id))
    if not raw:
        return None
    job = {k.decode(): v.decode() for k, v in raw.items()}
    job["id"] = job_id
    return job


def recent_jobs(r: redis.Redis, limit: int = 50, offset: int = 0) -> list[dict]:
    ids = r.zrevrange(keys.JOBS, offset, offset + limit - 1)
    jobs = [get_job(r, i.decode()) for i in ids]
    return [j for j in jobs if j]


def read_log(r: redis.Redis, job_id: str, start: int = 0) -> list[str]:
    return [line.decode("utf-8", "replace") for line in r.lrange(keys.JOB_LOG.format(job_id), start, -1)]


class JobLog:
    """Appends redacted lines to a job's log; usable as a runners LineSink."""

    def __init__(self, r: redis.Redis, job_id: str, redact: Callable[[str], str], prefix: str = ""):
        self._redis, self._key, self._redact, self.prefix = r, keys.JOB_LOG.format(job_id), redact, prefix

    def with_prefix(self, prefix: str) -> "JobLog":
        log = JobLog(self._redis, "", self._redact, prefix)
        log._key = self._key
        return log

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        text = f"{stamp} {self.prefix}{line}" if self.prefix else f"{stamp} {line}"
        pipe = self._redis.pipeline()
        pipe.rpush(self._key, self._redact(text))
        pipe.ltrim(self._key, -MAX_LOG_LINES, -1)
        pipe.expire(self._key, RETENTION_SECONDS)
        pipe.execute()
