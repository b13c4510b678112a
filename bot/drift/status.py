"""Each project's last drift status, the per-project schedules read from repo configs, and
the note a pull request's plan gets when its base has drifted."""
from __future__ import annotations

import json
from typing import Optional

import redis

from bot import metrics
from bot.state import keys
from runners.models import PlanResult, ResourceChange
from runners.plan_json import drift_changes

ACTOR = "plankeeper-drift"
DRIFT_PULL = 0  # the lock owner number remediation uses: no pull request has it
WAITING_UNAPPLIED = "waiting: merged-but-unapplied changes"


def get_status(r: redis.Redis, repo_id: str, project_key: str) -> Optional[dict]:
    raw = r.get(keys.DRIFT_STATUS.format(repo=repo_id, project=project_key))
    return json.loads(raw) if raw else None


def all_statuses(r: redis.Redis) -> list[dict]:
    """Every project's last drift status, sorted by repo and project."""
    found = []
    for key in r.scan_iter(match=keys.DRIFT_STATUS_PATTERN, count=500):
        raw = r.get(key)
        if raw:
            found.append(json.loads(raw))
    return sorted(found, key=lambda s: (s.get("repo", ""), s.get("project", "")))


def save_status(r: redis.Redis, status: dict) -> None:
    r.set(keys.DRIFT_STATUS.format(repo=status["repo"], project=status["project"]), json.dumps(status))
    metrics.set_drift(r, status["repo"], status["project"], bool(status["drifted"]))


def project_schedules(r: redis.Redis, repo_id: str) -> dict[str, dict]:
    """Per-project drift settings last read from the repo config: key -> {schedule, remediate}."""
    raw = r.hgetall(keys.DRIFT_SCHEDULES.format(repo=repo_id))
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def remember_schedules(r: redis.Redis, repo_id: str, configured: dict[str, dict],
                       server_schedule: Optional[str]) -> None:
    """Keep the projects whose own schedule differs from the repo's, for bot.drift.schedule."""
    key = keys.DRIFT_SCHEDULES.format(repo=repo_id)
    pipe = r.pipeline()
    pipe.delete(key)
    for project_key, entry in configured.items():
        if entry.get("schedule") and entry["schedule"] != server_schedule:
            pipe.hset(key, project_key, json.dumps({"schedule": entry["schedule"], "remediate": entry.get("remediate")}))
    pipe.execute()


def base_drift(r: redis.Redis, repo_id: str, project_key: str, result: PlanResult) -> tuple[list[ResourceChange], str]:
    """Changes of a pull request's plan that come from drift of the base, and a note saying so.

    Two sources: Terraform's own `resource_drift` (changed outside Terraform, seen on
    refresh), and resources the last drift check of the default branch found changed.
    Returns ([], "") when the base has not drifted.
    """
    drifted = drift_changes(result.plan_json or {})
    status = get_status(r, repo_id, project_key)
    if status and status.get("drifted"):
        known = {c["address"] for c in status.get("changes", [])}
        seen = {c.address for c in drifted}
        drifted += [c for c in result.changes if c.address in known and c.address not in seen]
    if not drifted:
        return [], ""
    listing = "\n".join(f"- `{c.address}` ({c.action})" for c in drifted[:20])
    more = f"\n- … and {len(drifted) - 20} more" if len(drifted) > 20 else ""
    return drifted, (
        "⚠️ **The base branch itself has drifted**: the live infrastructure differs from the default "
        "branch, so this plan includes changes this pull request did not make:\n"
        f"{listing}{more}\n\nApplying this pull request also reverts them."
    )
