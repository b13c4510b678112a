"""bot/queueing.py's JobTemplate: an event's job is written as RQ itself writes it.

The acknowledgement reuses RQ's writes for one job with the per-job fields replaced. These tests
hold it to RQ's own enqueue for the same job, field by field, so an RQ that writes a job
differently (a new field that varies per job, a renamed one) fails here, not in production.
"""
from __future__ import annotations

import zlib
from datetime import datetime, timezone

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from bot import events, queueing
from bot.metrics import delivery_counters
from bot.models import event_to_dict
from bot.settings import GitHubSettings, GitLabSettings, Settings
from tests.support import fixture

TIMES = ("created_at", "enqueued_at")


def read(forge: str, name: str, kind: str):
    source = next(s for s in events.SOURCES if s.forge == forge)
    settings = Settings(github=GitHubSettings(webhook_secret="s"), gitlab=GitLabSettings(webhook_secret="s"))
    return source.read(kind, fixture(forge, name), f"delivery-{name}", settings)


EVENTS = [("github", "pull_request.synchronize", "pull_request"), ("github", "issue_comment.created.on-pull-request", "issue_comment"),
          ("gitlab", "merge_request.open", "Merge Request Hook")]


def split(commands: list[list]) -> tuple[list, dict]:
    """The commands with the job hash's times and data taken out, and those (data decoded)."""
    taken: dict = {}
    out = []
    for command in commands:
        command = list(command)
        for i in range(3, len(command), 2):
            if command[0] == "HSET" and command[i - 1] in (*TIMES, "data"):
                value = command[i]
                taken[command[i - 1]] = JSONSerializer.loads(zlib.decompress(value)) if command[i - 1] == "data" else value
                command[i] = "<taken>"
        out.append([str(arg) for arg in command])
    return out, taken


@pytest.mark.parametrize("forge,name,kind", EVENTS)
def test_the_template_writes_what_rq_writes_for_the_same_job(redis_db, forge, name, kind) -> None:
    event = read(forge, name, kind)
    template = queueing.JobTemplate.made_by_rq(redis_db, 300)
    call = queueing._call(queueing.HANDLE_EVENT, event_to_dict(event), "d-abc", 300, None, queueing.event_record(event))
    ours, ours_taken = split(template.writes("d-abc", call["args"], call["description"]))
    rqs, rqs_taken = split(queueing.rq_job_writes(redis_db, call))
    assert ours == rqs
    assert ours_taken["data"] == rqs_taken["data"]  # the same call, as RQ's JSON serializer reads it back
    for field in TIMES:
        ours_time = datetime.strptime(ours_taken[field], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert abs((ours_time - datetime.now(timezone.utc)).total_seconds()) < 60


def test_two_jobs_from_one_template_share_nothing_per_job(redis_db) -> None:
    template = queueing.JobTemplate.made_by_rq(redis_db, 300)
    first = template.writes("d-one", ({"n": 1},), "handle_event a#1")
    second = template.writes("d-two", ({"n": 2},), "handle_event b#2")
    assert not any("d-one" in str(arg) for command in second for arg in command)
    assert not any(queueing.JobTemplate.MARK in str(arg) for command in first + second for arg in command)


def test_an_int_over_64_bits_in_the_call_is_written_as_rq_would(redis_db) -> None:
    [data] = [c[i + 1] for c in queueing.JobTemplate.made_by_rq(redis_db, 300).writes("d-big", ({"n": 2**70},), "x")
              for i in range(2, len(c) - 1) if c[0] == "HSET" and c[i] == "data"]
    assert JSONSerializer.loads(zlib.decompress(data)) == [queueing.HANDLE_EVENT, None, [{"n": 2**70}], {}]


def test_a_job_written_from_the_template_is_read_back_by_rq(redis_db) -> None:
    event = read("github", "pull_request.synchronize", "pull_request")
    job_id = queueing.accept_event(redis_db, event, 300, delivery_counters("pull_request"))
    job = Job.fetch(job_id, connection=redis_db, serializer=JSONSerializer)
    assert (job.func_name, job.args, job.get_status(), job.timeout) == (
        queueing.HANDLE_EVENT, [event_to_dict(event)], "queued", 300 * queueing.JOB_TIMEOUT_STEPS)  # JSON: a list
    assert job.description == f"handle_event {event.repo.id}#{event.number}"
    assert job.created_at and job.enqueued_at and job.failure_callback is not None
    assert queueing.queue(redis_db).get_job_ids() == [job_id]


def test_an_rq_whose_writes_lack_a_per_job_field_is_refused() -> None:
    with pytest.raises(RuntimeError, match="RQ's job writes changed"):
        queueing.JobTemplate([["HSET", f"rq:job:{queueing.JobTemplate.MARK}", "created_at", "t", "data", b"x"]])
