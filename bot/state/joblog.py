"""Job records and live job logs in Redis, for comments' log links, the UI and the API.

A record is a Redis hash `pk:job:<id>`; ids are indexed newest first in `pk:jobs`.
A log is a Redis list `pk:log:<id>` of already-redacted lines. It is bounded, since its lines
come from a pull request (a plan can print anything): a line longer than MAX_LINE_BYTES is cut,
and a log stops, with one note saying so, at MAX_LOG_LINES lines or MAX_LOG_BYTES bytes. The
beginning is kept, so line numbers (the live tail's resume points) never shift.
"""
from __future__ import annotations

import json
import time
from typing import Callable, Optional

import redis
from bot.state import keys

RETENTION_SECONDS = 30 * 24 * 3600
MAX_LOG_LINES = 200_000
MAX_LOG_BYTES = 32 * 1024 * 1024
MAX_LINE_BYTES = 16 * 1024
# KEYS: log list, byte counter. ARGV: line, note, max lines, max bytes, retention.
# Appends the line, or the note once when the line would pass a limit; then nothing more.
_APPEND = """
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used < 0 then return 0 end
local size = string.len(ARGV[1])
if redis.call('LLEN', KEYS[1]) + 1 >= tonumber(ARGV[3]) or used + size > tonumber(ARGV[4]) then
  redis.call('RPUSH', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], -1, 'EX', ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 2
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], used + size, 'EX', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def record_job(r: redis.Redis, job_id: str, **fields: object) -> None:
    """Create or update a job record; values are stored as strings (dicts as JSON)."""
    pipe = r.pipeline()
    add_record(pipe, job_id, **fields)
    pipe.execute()


def add_record(pipe: redis.client.Pipeline, job_id: str, **fields: object) -> None:
    """Queue record_job's writes on `pipe` (the caller executes it, with other writes)."""
    mapping = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in fields.items() if v is not None}
    if mapping:
        pipe.hset(keys.JOB.format(job_id), mapping=mapping)
    if "created_at" in fields:
        pipe.zadd(keys.JOBS, {job_id: float(fields["created_at"])})  # type: ignore[arg-type]
    pipe.expire(keys.JOB.format(job_id), RETENTION_SECONDS)


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


def cut_line(text: str, limit: int = MAX_LINE_BYTES) -> str:
    """text, or its first `limit` bytes (whole characters) and a note saying where it was cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore") + f" … (line cut at {limit} bytes of {len(data)})"


class JobLog:
    """Appends redacted lines to a job's log; usable as a runners LineSink."""

    def __init__(self, r: redis.Redis, job_id: str, redact: Callable[[str], str], prefix: str = ""):
        self._redis, self._redact, self.prefix = r, redact, prefix
        self._key, self._bytes_key = keys.JOB_LOG.format(job_id), keys.JOB_LOG_BYTES.format(job_id)
        self._append = r.register_script(_APPEND)

    def with_prefix(self, prefix: str) -> "JobLog":
        log = JobLog(self._redis, "", self._redact, prefix)
        log._key, log._bytes_key = self._key, self._bytes_key
        return log

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        text = f"{stamp} {self.prefix}{line}" if self.prefix else f"{stamp} {line}"
        # Redacted whole, then cut: cutting first could split a secret and leave its start unmasked.
        text = cut_line(self._redact(text))
        note = (f"{stamp} … (log cut here: a job's log keeps at most {MAX_LOG_LINES:,} lines and "
                f"{MAX_LOG_BYTES // (1024 * 1024)} MiB; the job goes on, its result is reported as usual)")
        self._append(keys=[self._key, self._bytes_key],
                     args=[text, note, MAX_LOG_LINES, MAX_LOG_BYTES, RETENTION_SECONDS])
