"""What was deployed where: every apply recorded as a Deployment, and the commit live per project.

A deployment is one project applied once, by any path (`via`): a `/apply` comment, an approval,
merge-to-deploy, the API, drift remediation, a revert. Records are kept in a Redis stream per
repository (newest first when read) and an index by id; `last_applied` is the commit whose code
is live (drift remediation reads it to know whether merged-but-unapplied code would ride along).
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Callable, Optional

import redis

from bot.state import keys

MAX_PER_REPO = 10_000  # stream entries kept per repository


class Via(StrEnum):
    COMMENT = "comment"
    APPROVAL = "approval"
    MERGE = "merge"
    API = "api"
    DRIFT = "drift"
    REVERT = "revert"


@dataclass(frozen=True)
class Deployment:
    repo: str  # Repo.id
    project: str  # Project.key (dir::workspace)
    commit: str
    pull: int  # 0 when no pull request (drift, API)
    user: str
    result: str  # "success" or "failed: <step>"
    plan_sha256: str
    via: str
    job_id: str = ""
    pull_url: str = ""
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    @property
    def dir(self) -> str:
        return self.project.split("::", 1)[0]

    @property
    def workspace(self) -> str:
        return self.project.split("::", 1)[1]

    @property
    def succeeded(self) -> bool:
        return self.result == "success"

    def to_json(self) -> dict:
        """The API's shape (SPEC §5): {id, repo, dir, workspace, commit, pull, user, time, result,
        plan_sha256, via} plus job_id and pull_url."""
        data = asdict(self)
        data.update(dir=self.dir, workspace=self.workspace)
        return data


def record(r: redis.Redis, deployment: Deployment) -> Deployment:
    """Record an apply (successful or not); a successful one also becomes the project's live commit."""
    pipe = r.pipeline()
    pipe.hset(keys.DEPLOYMENT, deployment.id, json.dumps(asdict(deployment)))
    pipe.xadd(keys.DEPLOYMENTS.format(repo=deployment.repo), {"id": deployment.id}, maxlen=MAX_PER_REPO,
              approximate=True)
    pipe.sadd(keys.DEPLOYMENT_REPOS, deployment.repo)
    if deployment.succeeded:
        pipe.set(keys.LAST_APPLIED.format(repo=deployment.repo, project=deployment.project), deployment.commit)
    pipe.execute()
    return deployment


def get(r: redis.Redis, deployment_id: str) -> Optional[Deployment]:
    raw = r.hget(keys.DEPLOYMENT, deployment_id)
    return Deployment(**json.loads(raw)) if raw else None


def history(r: redis.Redis, repo_id: Optional[str] = None, project: Optional[str] = None,
            limit: int = 500, dir: Optional[str] = None, workspace: Optional[str] = None) -> list[Deployment]:
    """Deployments newest first, of one repository or all, optionally of one project key (or
    of a dir and/or a workspace); up to `limit` matching ones."""
    def wanted(d: Deployment) -> bool:
        return ((project is None or d.project == project) and (dir is None or d.dir == dir)
                and (workspace is None or d.workspace == workspace))

    repos = [repo_id] if repo_id else sorted(m.decode() for m in r.smembers(keys.DEPLOYMENT_REPOS))
    found: list[Deployment] = []
    for repo in repos:
        found += _repo_history(r, repo, wanted, limit)
    return sorted(found, key=lambda d: d.time, reverse=True)[:limit]


def _repo_history(r: redis.Redis, repo_id: str, wanted: Callable[[Deployment], bool], limit: int,
                  batch_size: int = 500) -> list[Deployment]:
    """The newest `limit` wanted deployments of one repository, reading its stream in batches."""
    found: list[Deployment] = []
    end = "+"
    while len(found) < limit:
        batch = r.xrevrange(keys.DEPLOYMENTS.format(repo=repo_id), max=end, min="-", count=batch_size)
        if not batch:
            break
        records = r.hmget(keys.DEPLOYMENT, [fields[b"id"].decode() for _, fields in batch])
        for raw in records:
            deployment = Deployment(**json.loads(raw)) if raw else None
            if deployment and wanted(deployment):
                found.append(deployment)
                if len(found) == limit:
                    break
        if len(batch) < batch_size:
            break
        end = f"({batch[-1][0].decode()}"
    return found


def record_last_applied(r: redis.Redis, repo_id: str, project_key: str, sha: str) -> None:
    """The commit whose code is now live (prefer `record`, which also keeps the history)."""
    r.set(keys.LAST_APPLIED.format(repo=repo_id, project=project_key), sha)


def last_applied(r: redis.Redis, repo_id: str, project_key: str) -> Optional[str]:
    raw = r.get(keys.LAST_APPLIED.format(repo=repo_id, project=project_key))
    return raw.decode() if raw else None
