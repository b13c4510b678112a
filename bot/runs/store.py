"""A run's state in Redis: the Run, each project's outcome, and the pull request's active run."""
from __future__ import annotations

import json
from typing import Optional

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.models import OutcomeStatus, ProjectOutcome, outcome_from_dict, outcome_to_dict
from bot.runs.model import Run
from bot.state import keys

RUN_TTL = 30 * 24 * 3600


class RunExpired(Exception):
    """The run's record is gone (expired after RUN_TTL, or Redis lost it)."""


def save(r: redis.Redis, run: Run) -> None:
    key = keys.RUN.format(run.id)
    pipe = r.pipeline()
    pipe.hset(key, "meta", run.to_json())
    pipe.expire(key, RUN_TTL)
    pipe.execute()


def load(r: redis.Redis, run_id: str) -> Run:
    raw = r.hget(keys.RUN.format(run_id), "meta")
    if raw is None:
        raise RunExpired(f"run {run_id} not found (expired?)")
    return Run.from_json(raw.decode())


def save_outcome(r: redis.Redis, run_id: str, index: int, outcome: ProjectOutcome) -> None:
    r.hset(keys.RUN.format(run_id), f"outcome:{index}", json.dumps(outcome_to_dict(outcome)))


def outcomes(r: redis.Redis, run: Run) -> list[ProjectOutcome]:
    raw = r.hmget(keys.RUN.format(run.id), [f"outcome:{i}" for i in range(len(run.projects))])
    return [outcome_from_dict(json.loads(item)) if item else ProjectOutcome(p, OutcomeStatus.QUEUED)
            for p, item in zip(run.projects, raw)]


def mark_active(r: redis.Redis, run: Run) -> None:
    r.set(keys.ACTIVE_RUN.format(repo=run.pull.repo.id, number=run.pull.number), run.finalize_job_id, ex=RUN_TTL)


def clear_active(r: redis.Redis, run: Run) -> None:
    key = keys.ACTIVE_RUN.format(repo=run.pull.repo.id, number=run.pull.number)
    if r.get(key) == run.finalize_job_id.encode():
        r.delete(key)


def active_finalize_job(r: redis.Redis, repo_id: str, number: int) -> Optional[str]:
    """The finalizing job of the pull request's unfinished run, if any. Redis errors propagate."""
    job_id = r.get(keys.ACTIVE_RUN.format(repo=repo_id, number=number))
    if not job_id:
        return None
    try:
        job = Job.fetch(job_id.decode(), connection=r, serializer=JSONSerializer)
    except NoSuchJobError:
        return None
    return None if job.is_finished or job.is_failed or job.is_canceled else job.id


# -- who runs what: a project is run by one lane (its own job, or the coordinator in place), and
# the run is finished once, by whichever lane records the last outcome, else by the finalizing job.

def claim_project(r: redis.Redis, run_id: str, index: int, owner: str) -> bool:
    """Take a project of the run for `owner` (a job id); False when another lane has it."""
    return bool(r.hsetnx(keys.RUN.format(run_id), f"owner:{index}", owner))


def project_owner(r: redis.Redis, run_id: str, index: int) -> str | None:
    owner = r.hget(keys.RUN.format(run_id), f"owner:{index}")
    return owner.decode() if owner else None


def save_lane(r: redis.Redis, run_id: str, indexes: list[int]) -> None:
    """The projects the coordinator may run in place, in the order it runs them."""
    r.hset(keys.RUN.format(run_id), "lane", json.dumps(indexes))


def lane(r: redis.Redis, run_id: str) -> list[int]:
    raw = r.hget(keys.RUN.format(run_id), "lane")
    return json.loads(raw) if raw else []


def claim_finish(r: redis.Redis, run_id: str, owner: str) -> bool:
    """Take the run's finishing (final comment, statuses, the handler's finish) for `owner`."""
    return bool(r.hsetnx(keys.RUN.format(run_id), "finisher", owner))


def mark_finished(r: redis.Redis, run_id: str) -> None:
    r.hset(keys.RUN.format(run_id), "finished", "1")


def finished(r: redis.Redis, run_id: str) -> bool:
    return bool(r.hexists(keys.RUN.format(run_id), "finished"))
