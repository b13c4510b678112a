"""Owned leases: a Redis key held by one owner (a job id) for a while, renewed as long as its
holder runs, released only by its owner, atomically.

The one mechanism behind every mutual exclusion that must not outlive a dead holder: one job
per pull request at a time, one apply of a project anywhere, one editor of a run's comment.
It is redis-py's `Lock` (SET NX PX with the owner as token; extend and release are Lua
compare-and-set/delete scripts), kept alive by a thread while the block runs. A holder that
dies stops renewing, so its lease lapses within `ttl` seconds whatever the job's own
timeout; `release_if_owner` frees a dead job's lease at once.

Project locks (bot.state.locks) are not leases: they last until the pull request closes.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)
DEFAULT_TTL = 60  # seconds; renewed every third of it


class LeaseBusy(Exception):
    """Someone else held the lease for longer than we were willing to wait."""

    def __init__(self, key: str, holder: str | None):
        super().__init__(f"{key} is held by {holder or 'nobody now'}")
        self.key, self.holder = key, holder


class Lease:
    def __init__(self, r: redis.Redis, key: str, owner: str, ttl: float = DEFAULT_TTL):
        self.key, self.owner, self.ttl = key, owner, ttl
        self._lock = r.lock(key, timeout=ttl, sleep=0.1, thread_local=False)
        self._redis = r

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lease, waiting up to `wait` seconds for its holder; False if it stayed taken."""
        return bool(self._lock.acquire(blocking=wait > 0, blocking_timeout=wait if wait > 0 else None,
                                       token=self.owner))

    def release(self) -> bool:
        """Give the lease back; False when it had lapsed (or someone else holds it now)."""
        return release_if_owner(self._redis, self.key, self.owner)

    def holder(self) -> str | None:
        raw = self._redis.get(self.key)
        return raw.decode() if raw else None

    @contextmanager
    def kept(self) -> Iterator["Lease"]:
        """Renew the (acquired) lease while the block runs; release it afterwards."""
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(stop,), daemon=True, name=f"lease {self.key}")
        renewer.start()
        try:
            yield self
        finally:
            stop.set()
            renewer.join()
            if not self.release():
                log.warning("lease %s of %s had lapsed before its release", self.key, self.owner)

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
            except LockError:
                log.error("lease %s of %s was lost: another holder may run now", self.key, self.owner)
                return
            except redis.RedisError as exc:  # try again next period; the TTL covers two misses
                log.warning("could not renew lease %s: %s", self.key, exc)


@contextmanager
def hold(r: redis.Redis, key: str, owner: str, ttl: float = DEFAULT_TTL, wait: float = 0.0) -> Iterator[Lease]:
    """Hold the lease for the block (renewed, then released). Raises LeaseBusy after `wait` s."""
    lease = Lease(r, key, owner, ttl)
    if not lease.acquire(wait):
        raise LeaseBusy(key, lease.holder())
    with lease.kept():
        yield lease


def release_if_owner(r: redis.Redis, key: str, owner: str) -> bool:
    """Delete the lease only if `owner` holds it (one Lua compare-and-delete); True if it did."""
    lock = r.lock(key, thread_local=False)
    return bool(lock.lua_release(keys=[key], args=[owner], client=r))
