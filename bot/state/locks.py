"""Project locks in Redis: (repo, dir, workspace) held by one pull request.

Taken with SET NX and released with compare-and-delete, so a lock is only ever released
by its owner (or by an operator's explicit unlock). Locks have no expiry: they last until
the pull request is merged or closed, or /unlock. Redis errors propagate: callers that
apply fail closed.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Optional

import redis
from bot.state import keys


_RELEASE_IF_OWNER = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local owner = cjson.decode(current)
if owner['pull_number'] == tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Lock:
    repo_id: str
    project_key: str  # runners.models.Project.key: "dir::workspace"
    pull_number: int
    pull_url: str
    user: str
    since: float

    @property
    def dir(self) -> str:
        return self.project_key.split("::", 1)[0]

    @property
    def workspace(self) -> str:
        return self.project_key.split("::", 1)[1]


def _key(repo_id: str, project_key: str) -> str:
    return keys.LOCK.format(repo=repo_id, project=project_key)


def try_lock(r: redis.Redis, lock: Lock) -> Lock:
    """Take the lock for lock.pull_number, or return the lock someone else holds.

    Re-locking by the same pull request succeeds and keeps the original holder record.
    """
    key = _key(lock.repo_id, lock.project_key)
    if r.set(key, json.dumps(asdict(lock)), nx=True):
        r.sadd(keys.PULL_LOCKS.format(repo=lock.repo_id, number=lock.pull_number), lock.project_key)
        return lock
    current = get_lock(r, lock.repo_id, lock.project_key)
    if current is None:  # released between SET and GET: try once more
        return try_lock(r, lock)
    return current


def get_lock(r: redis.Redis, repo_id: str, project_key: str) -> Optional[Lock]:
    raw = r.get(_key(repo_id, project_key))
    return Lock(**json.loads(raw)) if raw else None


def release(r: redis.Redis, repo_id: str, project_key: str, pull_number: int) -> bool:
    """Release the lock if pull_number holds it; True when it did."""
    released = bool(r.eval(_RELEASE_IF_OWNER, 1, _key(repo_id, project_key), pull_number))
    r.srem(keys.PULL_LOCKS.format(repo=repo_id, number=pull_number), project_key)
    return released


def release_pull(r: redis.Redis, repo_id: str, pull_number: int) -> list[str]:
    """Release every lock the pull request holds; returns the project keys released."""
    members = r.smembers(keys.PULL_LOCKS.format(repo=repo_id, number=pull_number))
    released = [m.decode() for m in members if release(r, repo_id, m.decode(), pull_number)]
    return sorted(released)


def pull_holds_locks(r: redis.Redis, repo_id: str, pull_number: int) -> bool:
    """Whether the pull request holds (or was last recorded holding) any project lock."""
    return bool(r.scard(keys.PULL_LOCKS.format(repo=repo_id, number=pull_number)))


def force_unlock(r: redis.Redis, repo_id: str, project_key: str) -> Optional[Lock]:
    """Operator unlock from the UI/API: delete whoever holds it; returns the removed lock."""
    lock = get_lock(r, repo_id, project_key)
    if lock:
        release(r, repo_id, project_key, lock.pull_number)
    return lock


def all_locks(r: redis.Redis) -> list[Lock]:
    locks = []
    for key in r.scan_iter(match=keys.LOCK_PATTERN, count=500):
        raw = r.get(key)
        if raw:
            locks.append(Lock(**json.loads(raw)))
    return sorted(locks, key=lambda lock: lock.since)


def new_lock(repo_id: str, project_key: str, pull_number: int, pull_url: str, user: str) -> Lock:
    return Lock(repo_id, project_key, pull_number, pull_url, user, time.time())
