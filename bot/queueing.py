"""The only module that enqueues: JSON arguments, job ids from delivery ids, timeouts."""
from __future__ import annotations

import re
import time
from typing import Optional

import redis
from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.state import joblog
from bot.models import Event, JobState, event_to_dict
from bot.state import keys

QUEUE_NAME = "plankeeper"
# RQ imports a job's function by its dotted name: every entry point is in bot.jobs.
HANDLE_EVENT = "bot.jobs.handle_event"
RUN_PROJECT = "bot.jobs.run_project"
FINISH_RUN = "bot.jobs.finish_run"
DRIFT_CHECK = "bot.jobs.run_drift_check"
ON_FAILURE = "bot.jobs.on_job_failure"
ON_DRIFT_FAILURE = "bot.jobs.on_drift_check_failure"
DELIVERY_TTL = 7 * 24 * 3600
# Steps per job (checkout, init, plan, show, apply...) each bounded by terraform.timeout.
JOB_TIMEOUT_STEPS = 6


def queue(r: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=r, serializer=JSONSerializer)


def job_id_for(delivery_id: str) -> str:
    return "d-" + re.sub(r"[^A-Za-z0-9_-]", "_", delivery_id)[:120]


def claim_delivery(r: redis.Redis, delivery_id: str) -> bool:
    """True the first time a delivery id is seen; False for a redelivery."""
    return bool(r.set(keys.DELIVERY.format(delivery_id), "1", nx=True, ex=DELIVERY_TTL))


def release_delivery(r: redis.Redis, delivery_id: str) -> None:
    """Forget a delivery whose enqueue failed, so the forge's redelivery is accepted."""
    r.delete(keys.DELIVERY.format(delivery_id))


def describe(event: Event) -> dict:
    """Fields of the job record that say what the job is about."""
    title = {"pull_request": f"pull request {getattr(event, 'action', '')}", "review": "review"}.get(event.kind, "comment")
    return {"repo": event.repo.id, "pull": event.number, "title": title, "event": event.kind}


def enqueue_event(r: redis.Redis, event: Event, timeout_seconds: int, job_id: Optional[str] = None,
                  depends_on: object = None) -> str:
    """Queue the job that handles an event; returns the job id (derived from the delivery id)."""
    job_id = job_id or job_id_for(event.delivery_id)
    info = describe(event)
    enqueue_internal(queue(r), HANDLE_EVENT, event_to_dict(event), job_id, timeout_seconds,
                     depends_on=depends_on, record={"delivery": event.delivery_id, **info})
    return job_id


def enqueue_internal(q: Queue, func: str, payload: dict, job_id: Optional[str], timeout_seconds: int,
                     depends_on: object = None, record: Optional[dict] = None) -> str:
    """Queue any plankeeper job with a JSON payload and a job record for the UI."""
    if job_id:
        joblog.record_job(q.connection, job_id, state="queued", created_at=time.time(), **(record or {}))
    job = q.enqueue_call(
        func,
        args=(payload,),
        job_id=job_id,
        timeout=timeout_seconds * JOB_TIMEOUT_STEPS,
        result_ttl=24 * 3600,
        failure_ttl=30 * 24 * 3600,
        depends_on=depends_on,
        on_failure=Callback(ON_FAILURE),
        description=f"{func.rsplit('.', 1)[-1]} {(record or {}).get('repo', '')}#{(record or {}).get('pull', '')}",
    )
    if not job_id:
        joblog.record_job(q.connection, job.id, state="queued", created_at=time.time(), **(record or {}))
    return job.id


def enqueue_drift_check(r: redis.Redis, payload: dict, timeout_seconds: int, job_id: str, **record: object) -> str:
    """Queue a drift check (it has its own failure callback: there is no pull request)."""
    joblog.record_job(r, job_id, state="queued", created_at=time.time(), **record)
    queue(r).enqueue_call(
        DRIFT_CHECK, args=(payload,), job_id=job_id, timeout=timeout_seconds * JOB_TIMEOUT_STEPS,
        result_ttl=24 * 3600, failure_ttl=30 * 24 * 3600, on_failure=Callback(ON_DRIFT_FAILURE),
        description=f"drift check {record.get('repo', '')}",
    )
    return job_id


def cancel_queued(r: redis.Redis, repo_id: str, pull_number: int, except_job: str = "") -> int:
    """Cancel the pull request's jobs still waiting in the queue; returns how many."""
    q = queue(r)
    cancelled = 0
    for job_id in q.get_job_ids():
        record = joblog.get_job(r, job_id)
        if job_id == except_job or not record or record.get("repo") != repo_id or record.get("pull") != str(pull_number):
            continue
        if record.get("event") in ("project", "finalize"):
            continue  # a run's jobs see the cancel themselves, so its comment is finished properly
        Job.fetch(job_id, connection=r, serializer=JSONSerializer).cancel()
        joblog.record_job(r, job_id, state=JobState.CANCELLED, summary="cancelled by /cancel", ended_at=time.time())
        cancelled += 1
    return cancelled
