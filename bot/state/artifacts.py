"""Plan artifacts: the saved plan file of each (pull request, project, head commit) in Redis.

Stored with its SHA-256 so that any worker on any machine applies exactly the bytes that
were reviewed, and refuses anything else.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import redis

from runners.models import ResourceChange
from bot.state import keys

RETENTION_SECONDS = 60 * 24 * 3600


class ArtifactCorrupt(Exception):
    """The stored plan's bytes do not match its recorded SHA-256."""


@dataclass
class PlanArtifact:
    repo_id: str
    pull_number: int
    project_key: str
    project_name: Optional[str]
    engine: str
    head_sha: str
    sha256: str
    summary: str
    changes: list[ResourceChange] = field(default_factory=list)
    created_at: float = 0.0
    job_id: str = ""
    filename: str = "plan.tfplan"

    def meta_json(self) -> str:
        data = asdict(self)
        return json.dumps(data)

    @classmethod
    def from_meta(cls, raw: str) -> "PlanArtifact":
        data = json.loads(raw)
        data["changes"] = [ResourceChange(**c) for c in data.get("changes", [])]
        return cls(**data)


def save_plan(r: redis.Redis, artifact: PlanArtifact, plan_file: Path, secrets: list[str] = (),
              values: Sequence[dict] = ()) -> PlanArtifact:
    """Store the plan file's bytes and metadata; returns the artifact with its SHA-256 set.

    `secrets` are the plan's sensitive values, kept beside the plan file (which holds them
    in clear anyway) so the job that applies it can mask them in its output. `values` are the
    before and after values of each of its `changes` in canonical form (sensitive ones only
    as hashes: runners.plan_json.change_values), which merge-to-deploy compares.
    """
    data = plan_file.read_bytes()
    artifact.sha256 = hashlib.sha256(data).hexdigest()
    artifact.filename = plan_file.name
    artifact.created_at = artifact.created_at or time.time()
    key = keys.PLAN.format(repo=artifact.repo_id, number=artifact.pull_number, project=artifact.project_key)
    pipe = r.pipeline()
    pipe.hset(key, mapping={"meta": artifact.meta_json(), "file": data, "secrets": json.dumps(list(secrets)),
                            "values": json.dumps(list(values))})
    pipe.expire(key, RETENTION_SECONDS)
    pipe.sadd(keys.PULL_PLANS.format(repo=artifact.repo_id, number=artifact.pull_number), artifact.project_key)
    pipe.execute()
    return artifact


def get_plan(r: redis.Redis, repo_id: str, pull_number: int, project_key: str) -> Optional[PlanArtifact]:
    raw = r.hget(keys.PLAN.format(repo=repo_id, number=pull_number, project=project_key), "meta")
    return PlanArtifact.from_meta(raw.decode()) if raw else None


def pull_plans(r: redis.Redis, repo_id: str, pull_number: int) -> list[PlanArtifact]:
    project_keys = sorted(m.decode() for m in r.smembers(keys.PULL_PLANS.format(repo=repo_id, number=pull_number)))
    plans = [get_plan(r, repo_id, pull_number, k) for k in project_keys]
    return [p for p in plans if p]


def write_plan_file(r: redis.Redis, artifact: PlanArtifact, dest_dir: Path) -> Path:
    """Write the stored plan bytes to dest_dir, verifying the SHA-256; raises ArtifactCorrupt."""
    key = keys.PLAN.format(repo=artifact.repo_id, number=artifact.pull_number, project=artifact.project_key)
    data = r.hget(key, "file")
    if data is None or hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise ArtifactCorrupt(f"stored plan for {artifact.project_key} does not match its SHA-256")
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / artifact.filename
    path.write_bytes(data)
    return path


def plan_bytes(r: redis.Redis, artifact: PlanArtifact) -> Optional[bytes]:
    """The stored plan file's bytes (not verified: write_plan_file is what applies check)."""
    return r.hget(keys.PLAN.format(repo=artifact.repo_id, number=artifact.pull_number, project=artifact.project_key),
                  "file")


def plan_secrets(r: redis.Redis, artifact: PlanArtifact) -> list[str]:
    """The sensitive values of a stored plan, to mask while applying it."""
    raw = r.hget(keys.PLAN.format(repo=artifact.repo_id, number=artifact.pull_number, project=artifact.project_key),
                 "secrets")
    return json.loads(raw) if raw else []


def plan_values(r: redis.Redis, artifact: PlanArtifact) -> Optional[list[dict]]:
    """The canonical values of a stored plan's changes (same order as its `changes`); None when
    it was stored without them."""
    raw = r.hget(keys.PLAN.format(repo=artifact.repo_id, number=artifact.pull_number, project=artifact.project_key),
                 "values")
    values = json.loads(raw) if raw else None
    return values if values and len(values) == len(artifact.changes) else None


def delete_plan(r: redis.Redis, repo_id: str, pull_number: int, project_key: str) -> None:
    pipe = r.pipeline()
    pipe.delete(keys.PLAN.format(repo=repo_id, number=pull_number, project=project_key))
    pipe.srem(keys.PULL_PLANS.format(repo=repo_id, number=pull_number), project_key)
    pipe.execute()


def discard_pull_plans(r: redis.Redis, repo_id: str, pull_number: int) -> int:
    """Drop every plan of the pull request (after a push, close or /unlock); returns how many."""
    plans = pull_plans(r, repo_id, pull_number)
    for plan in plans:
        delete_plan(r, repo_id, pull_number, plan.project_key)
    return len(plans)
