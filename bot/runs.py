"""Runs: one command's projects fanned out over the workers as RQ jobs, one comment.

A coordinator (the event's job) selects the projects, posts the comment and enqueues one
job per project plus a finalizing job that depends on all of them. Project jobs record
their outcome in Redis and refresh the comment; ordering (`parallel_plan`/`parallel_apply`
off, `execution_order_group`, `depends_on`) is expressed as RQ job dependencies. While a
run is active, the pull request's next event waits for its finalizing job the same way.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import redis
from rq.job import Dependency, Job
from rq.serializers import JSONSerializer

from bot import queueing
from bot.models import (Command, ProjectOutcome, PullRequest, outcome_from_dict, outcome_to_dict)
from runners.models import Project

RUN_KEY = "pk:run:{}"
ACTIVE_KEY = "pk:active-run:{repo}#{number}"
RUN_TTL = 30 * 24 * 3600
KIND_COMMAND = {"plan": "plan", "apply": "apply", "deploy": "apply"}


@dataclass
class Run:
    id: str
    kind: str  # plan | apply | deploy
    pull: PullRequest
    command: Command
    actor: str
    projects: list[Project]
    created_at: float = field(default_factory=time.time)
    comment_id: str = ""
    comment_url: str = ""
    coordinator_job: str = ""
    abort_on_fail: bool = False
    autoplan: bool = False

    @property
    def report_command(self) -> str:
        return KIND_COMMAND[self.kind]

    def project_job_id(self, index: int) -> str:
        return f"{self.id}-p{index}"

    @property
    def finalize_job_id(self) -> str:
        return f"{self.id}-final"

    def to_json(self) -> str:
        data = asdict(self)
        data["projects"] = [asdict(p) for p in self.projects]
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> "Run":
        data = json.loads(raw)
        data["pull"] = PullRequest.from_dict(data["pull"])
        data["command"] = Command.from_dict(data["command"])
        data["projects"] = [Project(**p) for p in data["projects"]]
        return cls(**data)


def save(r: redis.Redis, run: Run) -> None:
    key = RUN_KEY.format(run.id)
    r.hset(key, "meta", run.to_json())
    r.expire(key, RUN_TTL)


def load(r: redis.Redis, run_id: str) -> Run:
    raw = r.hget(RUN_KEY.format(run_id), "meta")
    if raw is None:
        raise KeyError(f"run {run_id} not found (expired?)")
    return Run.from_json(raw.decode())


def save_outcome(r: redis.Redis, run_id: str, index: int, outcome: ProjectOutcome) -> None:
    r.hset(RUN_KEY.format(run_id), f"outcome:{index}", json.dumps(outcome_to_dict(outcome)))


def outcomes(r: redis.Redis, run: Run) -> list[ProjectOutcome]:
    raw = r.hmget(RUN_KEY.format(run.id), [f"outcome:{i}" for i in range(len(run.projects))])
    return [outcome_from_dict(json.loads(item)) if item else ProjectOutcome(p, "queued")
            for p, item in zip(run.projects, raw)]


def dependencies(run: Run, parallel: bool, groups: Sequence[int], depends_on: Sequence[Sequence[str]]
                 ) -> list[list[int]]:
    """For each project, the indexes of the projects it must wait for."""
    names = {p.name: i for i, p in enumerate(run.projects) if p.name}
    result: list[list[int]] = []
    for i in range(len(run.projects)):
        deps = set()
        if not parallel and i > 0:
            deps.add(i - 1)
        lower = [g for g in set(groups) if g < groups[i]]
        if lower:
            deps |= {j for j, g in enumerate(groups) if g == max(lower)}
        deps |= {names[n] for n in depends_on[i] if n in names and names[n] != i}
        result.append(sorted(deps))
    return result


def enqueue(r: redis.Redis, run: Run, deps: list[list[int]], timeout: int) -> None:
    """Queue the project jobs (with their ordering) and the finalizing job."""
    q = queueing.queue(r)
    for i, project in enumerate(run.projects):
        depends = Dependency([run.project_job_id(j) for j in deps[i]], allow_failure=True) if deps[i] else None
        queueing.enqueue_internal(
            q, "bot.run_jobs.run_project", {"run": run.id, "index": i}, run.project_job_id(i), timeout,
            depends_on=depends, record={"repo": run.pull.repo.id, "pull": run.pull.number,
                                        "title": f"{run.kind} {project.label}", "event": "project"},
        )
    queueing.enqueue_internal(
        q, "bot.run_jobs.finish_run", {"run": run.id}, run.finalize_job_id, timeout,
        depends_on=Dependency([run.project_job_id(i) for i in range(len(run.projects))], allow_failure=True),
        record={"repo": run.pull.repo.id, "pull": run.pull.number, "title": f"{run.kind} summary",
                "event": "finalize"},
    )


def mark_active(r: redis.Redis, run: Run) -> None:
    r.set(ACTIVE_KEY.format(repo=run.pull.repo.id, number=run.pull.number), run.finalize_job_id, ex=RUN_TTL)


def clear_active(r: redis.Redis, run: Run) -> None:
    key = ACTIVE_KEY.format(repo=run.pull.repo.id, number=run.pull.number)
    if r.get(key) == run.finalize_job_id.encode():
        r.delete(key)


def active_finalize_job(r: redis.Redis, repo_id: str, number: int) -> Optional[str]:
    """The finalizing job of the pull request's unfinished run, if any."""
    job_id = r.get(ACTIVE_KEY.format(repo=repo_id, number=number))
    if not job_id:
        return None
    try:
        job = Job.fetch(job_id.decode(), connection=r, serializer=JSONSerializer)
    except Exception:
        return None
    return None if job.is_finished or job.is_failed or job.is_canceled else job.id
