"""bot/state/turns.py: a pull request's event jobs go in arrival order, and a dead one stops
holding the line. Real Redis, real RQ job records."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue
from rq.job import JobStatus
from rq.utils import utcformat

from bot.state import keys, turns

REPO, NUMBER = "github.com/acme/infra", 7
LEASE = keys.PULL_MUTEX.format(repo=REPO, number=NUMBER)


@pytest.fixture
def line(redis_db):
    q = Queue("turns-test", connection=redis_db)

    def queue_job(job_id: str) -> str:
        q.enqueue_call("builtins.print", job_id=job_id)
        turns.append(redis_db, REPO, NUMBER, job_id)
        return job_id

    return queue_job


def _started(r, job_id: str, seconds_ago: float = 0.0) -> None:
    r.hset(f"rq:job:{job_id}", mapping={"status": JobStatus.STARTED.value,
                                       "started_at": utcformat(datetime.now(timezone.utc) - timedelta(seconds=seconds_ago))})


def _finished(r, job_id: str) -> None:
    r.hset(f"rq:job:{job_id}", "status", JobStatus.FINISHED.value)


class Waited(Exception):
    """The job would have waited."""


def _refuse_to_wait(seconds: float) -> None:
    raise Waited


def _wait(r, job_id: str, sleep=lambda s: None, within: float = 5.0) -> None:
    turns.wait_for_earlier(r, REPO, NUMBER, job_id, LEASE, time.time() + within, sleep=sleep)


def test_a_later_job_started_first_waits_for_the_earlier_one_to_finish(redis_db, line) -> None:
    first, second = line("first"), line("second")
    _started(redis_db, first)  # taken by another worker, not yet at its turn
    _started(redis_db, second)
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            _finished(redis_db, first)

    _wait(redis_db, second, sleep)
    assert len(slept) == 3
    assert redis_db.exists(keys.TURN_WAITING.format(job=second))  # it said it was waiting


def test_an_earlier_job_still_queued_or_holding_the_lease_or_waiting_keeps_its_place(redis_db, line) -> None:
    first, second = line("first"), line("second")
    assert turns.still_to_run(redis_db, first, LEASE)  # queued
    _started(redis_db, first, seconds_ago=60)
    redis_db.set(LEASE, first)
    assert turns.still_to_run(redis_db, first, LEASE)  # holds the lease
    redis_db.delete(LEASE)
    redis_db.set(keys.TURN_WAITING.format(job=first), "1")
    assert turns.still_to_run(redis_db, first, LEASE)  # waits for its own turn
    with pytest.raises(Waited):
        _wait(redis_db, second, sleep=_refuse_to_wait)


def test_a_job_that_died_after_starting_stops_holding_the_line(redis_db, line) -> None:
    dead, alive = line("dead"), line("alive")
    _started(redis_db, dead, seconds_ago=turns.START_GRACE + 5)  # no lease, no waiting mark: its worker is gone
    _wait(redis_db, alive, sleep=lambda s: pytest.fail("waited for a dead job"))
    assert [j.decode() for j in redis_db.lrange(turns.order_key(REPO, NUMBER), 0, -1)] == [alive]


def test_the_first_in_line_and_a_job_outside_it_go_at_once(redis_db, line) -> None:
    first = line("first")
    line("second")
    _wait(redis_db, first, sleep=lambda s: pytest.fail("the first waited"))
    _wait(redis_db, "queued-before-the-upgrade", sleep=lambda s: pytest.fail("waited"))


def test_leaving_takes_the_job_out_of_the_line(redis_db, line) -> None:
    first, second = line("first"), line("second")
    turns.leave(redis_db, REPO, NUMBER, first)
    assert [j.decode() for j in redis_db.lrange(turns.order_key(REPO, NUMBER), 0, -1)] == [second]
