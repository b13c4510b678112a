"""Append-only audit log: a Redis stream of who did what, when, where, with what result."""
from __future__ import annotations

import json
import time
from typing import Optional

import redis
from bot.state import keys

FIELDS = ("action", "user", "repo", "pull", "commit", "project", "plan_sha256", "result", "job_id", "detail")


def record(r: redis.Redis, action: str, **fields: object) -> str:
    """Append an entry; returns its stream id. Unknown field names are refused."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown audit fields: {sorted(unknown)}")
    entry = {"action": action, "time": f"{time.time():.3f}"}
    entry.update({k: str(v) for k, v in fields.items() if v is not None and v != ""})
    return r.xadd(keys.AUDIT, entry).decode()


def entries(
    r: redis.Redis,
    limit: int = 100,
    before: Optional[str] = None,
    filters: Optional[dict] = None,
) -> list[dict]:
    """Newest first; `before` is a stream id for paging; filters match fields exactly."""
    filters = {k: v for k, v in (filters or {}).items() if v}
    result: list[dict] = []
    end = f"({before}" if before else "+"
    while len(result) < limit:
        batch = r.xrevrange(keys.AUDIT, max=end, min="-", count=500)
        if not batch:
            break
        for entry_id, raw in batch:
            entry = {k.decode(): v.decode() for k, v in raw.items()}
            entry["id"] = entry_id.decode()
            if all(entry.get(k) == v for k, v in filters.items()):
                result.append(entry)
                if len(result) >= limit:
                    break
        end = f"({batch[-1][0].decode()}"
    return result


def as_json_lines(items: list[dict]) -> str:
    return "".join(json.dumps(i, sort_keys=True) + "\n" for i in items)
