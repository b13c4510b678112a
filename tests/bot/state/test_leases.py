"""bot/state/leases.py: owned leases, renewed while held, released only by their owner.

The race runs in separate processes with their own Redis connections, as two workers would."""
from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from bot.state import leases
from tests.support import wait_for

KEY = "pk:applying:github.com/acme/infra:infra/app::default"


def _contender(socket: str, owner: str, start: float, hold_seconds: float, results) -> None:
    r = redis.Redis(unix_socket_path=socket)
    while time.time() < start:  # every contender asks at the same moment
        pass
    lease = leases.Lease(r, KEY, owner, ttl=1)
    if not lease.acquire():
        results.put((owner, "refused"))
        return
    with lease.kept():
        results.put((owner, "acquired"))
        time.sleep(hold_seconds)  # the apply itself, here a lease held past its TTL
        results.put((owner, "held" if r.get(KEY) == owner.encode() else "lost"))


def test_two_workers_racing_for_the_apply_lease_get_it_once(redis_db) -> None:
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start = time.time() + 0.5
    workers = [ctx.Process(target=_contender, args=(redis_db.socket_file, f"job-{i}", start, 2.5, results))
               for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    events = [results.get(timeout=5) for _ in range(5)]
    acquired = [owner for owner, what in events if what == "acquired"]
    assert len(acquired) == 1, events
    assert sorted(what for _, what in events) == ["acquired", "held", "refused", "refused", "refused"]
    assert redis_db.get(KEY) is None  # released by its owner at the end


def test_a_lease_outlives_its_ttl_while_its_holder_runs(redis_db) -> None:
    lease = leases.Lease(redis_db, KEY, "job-a", ttl=1)
    assert lease.acquire()
    with lease.kept():
        deadline = time.time() + 2.5
        wait_for(lambda: time.time() > deadline, timeout=5, what="2.5 s, more than twice the TTL")
        assert redis_db.get(KEY) == b"job-a" and redis_db.pttl(KEY) > 0
    assert redis_db.get(KEY) is None


def test_a_dead_holder_lapses_and_only_its_owner_releases_it(redis_db) -> None:
    dead = leases.Lease(redis_db, KEY, "job-dead", ttl=1)
    assert dead.acquire()  # never renewed: its worker "died"
    assert not leases.Lease(redis_db, KEY, "job-b", ttl=1).acquire()
    assert leases.release_if_owner(redis_db, KEY, "job-b") is False
    assert redis_db.get(KEY) == b"job-dead"
    wait_for(lambda: redis_db.get(KEY) is None, timeout=5, what="the dead holder's lease to lapse")
    assert leases.Lease(redis_db, KEY, "job-b", ttl=1).acquire()


def test_release_if_owner_frees_a_dead_jobs_lease_at_once(redis_db) -> None:
    assert leases.Lease(redis_db, KEY, "job-dead", ttl=60).acquire()
    assert leases.release_if_owner(redis_db, KEY, "job-dead") is True
    assert redis_db.get(KEY) is None


def test_hold_waits_for_the_holder_then_raises_lease_busy(redis_db) -> None:
    assert leases.Lease(redis_db, KEY, "job-a", ttl=60).acquire()
    started = time.time()
    with pytest.raises(leases.LeaseBusy) as busy:
        with leases.hold(redis_db, KEY, "job-b", wait=0.3):
            pass
    assert busy.value.holder == "job-a" and time.time() - started >= 0.2  # it retried before giving up
