"""What is live: the commit last applied per project (written by every successful apply,
read by drift remediation to know whether merged-but-unapplied code would ride along)."""
from __future__ import annotations

from typing import Optional

import redis

from bot.state import keys


def record_last_applied(r: redis.Redis, repo_id: str, project_key: str, sha: str) -> None:
    """Called after every successful apply: the commit whose code is now live."""
    r.set(keys.LAST_APPLIED.format(repo=repo_id, project=project_key), sha)


def last_applied(r: redis.Redis, repo_id: str, project_key: str) -> Optional[str]:
    raw = r.get(keys.LAST_APPLIED.format(repo=repo_id, project=project_key))
    return raw.decode() if raw else None
