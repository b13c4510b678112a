"""bot/handlers/cancel.py: /cancel sets the pull request's cancel time, drops its queued event
jobs (not a run's project and finalizing jobs: they see the cancel and finish the comment)."""
from __future__ import annotations

import time

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from bot import queueing
from bot.models import CommentEvent, OutcomeStatus
from bot.runs import store
from bot.state import audit, cancel, joblog
from tests.support_jobs import FULL


def queue_comment(bench, number: int, delivery: str) -> str:
    event = CommentEvent(delivery, bench.repo, number, "1", "/plan", "alice")
    return queueing.enqueue_event(bench.redis, event, bench.settings.terraform.timeout)


def rq_status(bench, job_id: str) -> JobStatus:
    return Job.fetch(job_id, connection=bench.redis, serializer=JSONSerializer).get_status()


def test_cancel_sets_the_cancel_time_and_drops_the_queued_jobs(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    mine, theirs = queue_comment(bench, 7, "d-mine"), queue_comment(bench, 8, "d-theirs")
    assert cancel.cancelled_at(bench.redis, bench.repo.id, 7) is None
    before = time.time()

    assert bench.comment("/cancel", "bob", job_id="job-c") == "refused: cancel refused"  # a reader
    assert cancel.cancelled_at(bench.redis, bench.repo.id, 7) is None
    bench.fake.set_permission(FULL, "bob", "write")
    assert bench.comment("/cancel", "bob", job_id="job-c") == "cancelled 1 queued job(s)"

    at = cancel.cancelled_at(bench.redis, bench.repo.id, 7)
    assert at is not None and before - 0.001 <= at <= time.time()
    assert cancel.cancelled_at(bench.redis, bench.repo.id, 8) is None
    assert rq_status(bench, mine) is JobStatus.CANCELED
    assert joblog.get_job(bench.redis, mine)["state"] == "cancelled"
    assert rq_status(bench, theirs) is JobStatus.QUEUED  # another pull request's job
    assert bench.last_comment() == ("**Plankeeper cancel**: running jobs of this pull request are being stopped; "
                                    "1 queued job(s) cancelled.")
    [entry] = audit.entries(bench.redis, filters={"action": "cancel"})
    assert (entry["user"], entry["pull"], entry["commit"], entry["job_id"]) == ("bob", "7", pull.head_sha, "job-c")


def test_a_run_started_before_the_cancel_stops_and_finishes_its_comment(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    assert bench.comment("/plan", "alice", job_id="job-1") == "planning 1 project(s) in run job-1-plan"
    assert bench.comment("/cancel", "alice", job_id="job-2") == "cancelled 0 queued job(s)"  # the run's jobs stay
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert (outcome.status, outcome.message) == (OutcomeStatus.CANCELLED, "Cancelled by `/cancel` before it started.")
    plan_comment = bench.bot_comments()[0]["body"]
    assert plan_comment.startswith(f"**Plankeeper plan** for `{pull.head_sha[:7]}` · 1 project: 0 with changes, "
                                   "0 without, 1 failed")
    assert bench.statuses(pull.head_sha, "plankeeper/plan")[-1][0] == "failure"
