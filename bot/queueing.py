"""The only module that enqueues: JSON arguments, job ids from delivery ids, timeouts."""
from __future__ import annotations

import functools
import hashlib
import re
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Optional

import orjson
import redis
from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now as utcnow, utcformat

from bot.metrics import DeliveryCounters
from bot.models import CommentEvent, Event, JobState, PullRequestEvent, Repo, event_to_dict
from bot.state import joblog, keys, turns

QUEUE_NAME = "plankeeper"
# RQ imports a job's function by its dotted name: every entry point is in bot.jobs.
HANDLE_EVENT = "bot.jobs.handle_event"
RUN_PROJECT = "bot.jobs.run_project"
FINISH_RUN = "bot.jobs.finish_run"
DRIFT_CHECK = "bot.jobs.run_drift_check"
RECONCILE = "bot.jobs.run_reconcile"
REVERT_DEPLOYMENT = "bot.jobs.revert_deployment"
API_RUN = "bot.jobs.run_api_plan"
ON_FAILURE = "bot.jobs.on_job_failure"
ON_DRIFT_FAILURE = "bot.jobs.on_drift_check_failure"
DELIVERY_TTL = 7 * 24 * 3600
# Steps per job (checkout, init, plan, show, apply...) each bounded by terraform.timeout.
JOB_TIMEOUT_STEPS = 6


@functools.lru_cache(maxsize=32)  # per client: building a Queue costs more than the enqueue's Redis call
def queue(r: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=r, serializer=JSONSerializer)


def job_id_for(delivery_id: str) -> str:
    return "d-" + re.sub(r"[^A-Za-z0-9_-]", "_", delivery_id)[:120]


def claim_delivery(r: redis.Redis, delivery_id: str) -> bool:
    """True the first time a delivery id is seen; False for a redelivery."""
    return bool(r.set(keys.DELIVERY.format(delivery_id), "1", nx=True, ex=DELIVERY_TTL))


def delivery_seen(r: redis.Redis, delivery_id: str) -> bool:
    """Whether a delivery id was claimed (read only)."""
    return bool(r.exists(keys.DELIVERY.format(delivery_id)))


def release_delivery(r: redis.Redis, delivery_id: str) -> None:
    """Forget a delivery whose enqueue failed, so the forge's redelivery is accepted."""
    r.delete(keys.DELIVERY.format(delivery_id))


def sweep_delivery_id(event: Event) -> Optional[str]:
    """What the event is about rather than which delivery brought it: the delivery id the sweep
    for missed webhooks (bot.reconcile) gives such an event, one per (repository, pull request,
    head commit, kind) or per comment. A webhook claims it too, so the sweep never repeats what a
    delivery brought. None for events the sweep does not look for (reviews)."""
    if isinstance(event, CommentEvent):
        return f"sweep:{event.repo.id}#{event.number}:comment:{event.comment_id}"
    if not isinstance(event, PullRequestEvent):
        return None
    where = f"sweep:{event.repo.id}#{event.number}"
    if event.action in ("opened", "updated"):
        return f"{where}:plan:{event.pull.head_sha}"
    if event.action == "merged":
        return f"{where}:merged"  # once: GitLab's merge hook may lack the merge commit the API has
    if event.action == "closed":
        return f"{where}:closed:{event.pull.head_sha}"
    return None


def sweep_job_id(delivery_id: str) -> str:
    """A job id for a sweep's event: short and collision-free whatever the repository's name."""
    return "sweep-" + hashlib.sha256(delivery_id.encode()).hexdigest()[:24]


def describe(event: Event) -> dict:
    """Fields of the job record that say what the job is about."""
    title = {"pull_request": f"pull request {getattr(event, 'action', '')}", "review": "review",
             "check_run": f"check run: {getattr(event, 'command', '')}"}.get(event.kind, "comment")
    return {"repo": event.repo.id, "pull": event.number, "title": title, "event": event.kind}


def enqueue_event(r: redis.Redis, event: Event, timeout_seconds: int, job_id: Optional[str] = None,
                  depends_on: object = None) -> str:
    """Queue the job that handles an event; returns the job id (derived from the delivery id)."""
    job_id = job_id or job_id_for(event.delivery_id)
    enqueue_internal(queue(r), HANDLE_EVENT, event_to_dict(event), job_id, timeout_seconds,
                     depends_on=depends_on, record=event_record(event))
    turns.append(r, event.repo.id, event.number, job_id)
    return job_id


def event_record(event: Event) -> dict:
    return {"delivery": event.delivery_id, **describe(event)}


# A webhook's acknowledgement in one round trip (issue 18): the delivery's de-duplication, its
# job, the job's record, the sweep's claim of the same event and the webhook counter, atomically
# (Redis runs nothing else while a script runs, so checking the claim first is safe). The claims
# are written last: when a write is refused (Redis out of memory, or its disk full), the delivery
# stays unclaimed and the forge's redelivery is accepted; a job written halfway has no queue entry
# and is overwritten then. KEYS: the delivery's claim [, the sweep's]. ARGV: the claims' TTL, the
# counters' hash, its field for "queued", for "duplicate", then the job's writes, each as its
# argument count followed by its arguments.
_ACCEPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', ARGV[2], ARGV[4], 1)
  return 0
end
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
if KEYS[2] then
  redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1])
end
redis.call('HINCRBY', ARGV[2], ARGV[3], 1)
return 1
"""


def accept_event(r: redis.Redis, event: Event, timeout_seconds: int, counters: DeliveryCounters) -> str | None:
    """Claim a webhook's delivery (and the sweep's id of its event), queue the job that handles it,
    record and count it: one Redis round trip. Returns the job id, or None for a delivery claimed
    before (counted as a duplicate, nothing queued). A Redis error leaves nothing claimed."""
    job_id = job_id_for(event.delivery_id)
    sweep_id = sweep_delivery_id(event)
    claims = [keys.DELIVERY.format(event.delivery_id)] + ([keys.DELIVERY.format(sweep_id)] if sweep_id else [])
    args: list = [DELIVERY_TTL, counters.key, counters.queued, counters.duplicate]
    for command in _event_job_writes(r, event, job_id, timeout_seconds):
        args += [len(command), *command]
    accepted = _accept_script(r)(keys=claims, args=args)
    return job_id if accepted else None


@functools.lru_cache(maxsize=32)
def _accept_script(r: redis.Redis):
    return r.register_script(_ACCEPT)


def _event_job_writes(r: redis.Redis, event: Event, job_id: str, timeout_seconds: int) -> list[list]:
    """The writes enqueue_event makes (RQ's job and queue entry, the job record), not sent."""
    record = event_record(event)

    def ours(pipe: redis.client.Pipeline) -> None:
        joblog.add_record(pipe, job_id, state="queued", created_at=time.time(), **record)
        turns.append(pipe, event.repo.id, event.number, job_id)

    call = _call(HANDLE_EVENT, event_to_dict(event), job_id, timeout_seconds, None, record)
    return _event_job_template(r, timeout_seconds).writes(job_id, call["args"], call["description"]) + \
        _unsent(r, ours)


def rq_job_writes(r: redis.Redis, call: dict) -> list[list]:
    """What RQ's enqueue_call(**call) writes (the job's hash, the queue's entry), not sent."""
    return _unsent(r, lambda pipe: queue(r).enqueue_call(**call, pipeline=pipe))


def _unsent(r: redis.Redis, write: Callable[[redis.client.Pipeline], object]) -> list[list]:
    """The commands write(pipe) queues on a pipeline, as execute() would send them; none is sent."""
    pipe = r.pipeline(transaction=False)
    try:
        write(pipe)
        return [list(args) for args, _ in pipe.command_stack]
    finally:
        pipe.reset()


class JobTemplate:
    """RQ's writes for one event job, made by RQ once and reused for the next event's job with
    what differs between two such jobs replaced: the id, the call's data, the description and the
    two times. Building a Job per webhook through RQ was ~20% of the acknowledgement's CPU (every
    Job() checks its serializer against a runtime Protocol, to_dict formats both times, and the
    writes pass through a pipeline's command layer). tests/bot/test_queueing.py holds the result
    equal to RQ's own writes for the same job, so an RQ that writes jobs differently fails there,
    not in production."""

    MARK = "plankeeper-template-job"
    PER_JOB = ("created_at", "enqueued_at", "data", "description")

    def __init__(self, commands: list[list]) -> None:
        self.commands = commands
        self.slots: list[tuple[int, int, str]] = []  # (command, argument, what goes there)
        for c, command in enumerate(commands):
            for a, arg in enumerate(command):
                if isinstance(arg, str) and self.MARK in arg:
                    self.slots.append((c, a, "id"))
                elif command[0] == "HSET" and a >= 3 and a % 2 == 1 and command[a - 1] in self.PER_JOB:
                    self.slots.append((c, a, command[a - 1]))
        found = {what for _, _, what in self.slots}
        if not {"id", *self.PER_JOB} <= found:
            raise RuntimeError(f"RQ's job writes changed: no place for {sorted({'id', *self.PER_JOB} - found)}")

    @classmethod
    def made_by_rq(cls, r: redis.Redis, timeout_seconds: int) -> "JobTemplate":
        return cls(rq_job_writes(r, _call(HANDLE_EVENT, {}, cls.MARK, timeout_seconds, None, {})))

    def writes(self, job_id: str, args: tuple, description: str) -> list[list]:
        stamp = utcformat(utcnow())
        fresh = {"created_at": stamp, "enqueued_at": stamp, "description": description,
                 # Job.data as RQ packs it (JSON: the tuple as a list), compressed as Job.to_dict does
                 "data": zlib.compress(_json((HANDLE_EVENT, None, args, {})))}
        commands = [list(command) for command in self.commands]
        for c, a, what in self.slots:
            commands[c][a] = commands[c][a].replace(self.MARK, job_id) if what == "id" else fresh[what]
        return commands


def _json(value: object) -> bytes:
    try:
        return orjson.dumps(value)  # 1.5 µs for an event where json.dumps takes 13
    except TypeError:  # an int over 64 bits, which a payload may carry: RQ's own serializer takes it
        return JSONSerializer.dumps(value)


@functools.lru_cache(maxsize=8)
def _event_job_template(r: redis.Redis, timeout_seconds: int) -> JobTemplate:
    return JobTemplate.made_by_rq(r, timeout_seconds)


def enqueue_internal(q: Queue, func: str, payload: dict, job_id: Optional[str], timeout_seconds: int,
                     depends_on: object = None, record: Optional[dict] = None) -> str:
    """Queue any plankeeper job with a JSON payload and a job record for the UI."""
    if job_id:
        joblog.record_job(q.connection, job_id, state="queued", created_at=time.time(), **(record or {}))
    job = q.enqueue_call(**_call(func, payload, job_id, timeout_seconds, depends_on, record))
    if not job_id:
        joblog.record_job(q.connection, job.id, state="queued", created_at=time.time(), **(record or {}))
    return job.id


def _call(func: str, payload: dict, job_id: str | None, timeout_seconds: int, depends_on: object,
          record: dict | None) -> dict:
    """Queue.enqueue_call's arguments for a plankeeper job."""
    return {"func": func, "args": (payload,), "job_id": job_id, "timeout": timeout_seconds * JOB_TIMEOUT_STEPS,
            "result_ttl": 24 * 3600, "failure_ttl": 30 * 24 * 3600, "depends_on": depends_on,
            "on_failure": Callback(ON_FAILURE),
            "description": f"{func.rsplit('.', 1)[-1]} {(record or {}).get('repo', '')}#{(record or {}).get('pull', '')}"}


def enqueue_drift_check(r: redis.Redis, payload: dict, timeout_seconds: int, job_id: str, **record: object) -> str:
    """Queue a drift check (it has its own failure callback: there is no pull request)."""
    joblog.record_job(r, job_id, state="queued", created_at=time.time(), **record)
    queue(r).enqueue_call(
        DRIFT_CHECK, args=(payload,), job_id=job_id, timeout=timeout_seconds * JOB_TIMEOUT_STEPS,
        result_ttl=24 * 3600, failure_ttl=30 * 24 * 3600, on_failure=Callback(ON_DRIFT_FAILURE),
        description=f"drift check {record.get('repo', '')}",
    )
    return job_id


def enqueue_revert(r: redis.Redis, repo: Repo, pull: int, actor: str, deployment_id: str,
                   timeout_seconds: int) -> str:
    """Queue the revert of a deployment's pull request (POST /api/deployments/<id>/revert)."""
    payload = {"repo": dict(repo.__dict__), "pull": pull, "actor": actor, "deployment": deployment_id}
    job_id = f"revert-{re.sub(r'[^A-Za-z0-9_-]', '_', deployment_id)[:40]}-{uuid.uuid4().hex[:8]}"
    return enqueue_internal(queue(r), REVERT_DEPLOYMENT, payload, job_id, timeout_seconds,
                            record={"repo": repo.id, "pull": pull, "title": "revert (roll back)", "event": "revert"})


def enqueue_api_run(r: redis.Redis, payload: dict, timeout_seconds: int) -> str:
    """Queue a plan or apply of a ref without a pull request (POST /api/plan, /api/apply)."""
    kind = "apply" if payload.get("apply") else "plan"
    job_id = f"api-{kind}-{uuid.uuid4().hex[:16]}"
    return enqueue_internal(queue(r), API_RUN, payload, job_id, timeout_seconds,
                            record={"repo": payload["repo"]["host"] + "/" + payload["repo"]["full_name"], "pull": "",
                                    "title": f"API {kind} of {payload['ref']}", "event": "api"})


def enqueue_reconcile(r: redis.Redis, payload: dict, timeout_seconds: int, job_id: str, **record: object) -> str:
    """Queue the sweep of one repository for missed webhooks (bot.reconcile)."""
    return enqueue_internal(queue(r), RECONCILE, payload, job_id, timeout_seconds, record=record)


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
