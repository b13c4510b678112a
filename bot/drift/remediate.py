"""Drift correction: apply the default branch's fresh plan to revert drift, when it is safe.

Safe means: no pull request holds the project's lock (remediation takes that lock itself,
atomically, for the length of the apply, so a pull request cannot start planning halfway),
no other apply of the project is running (the same apply lease pull requests take), and the
project's directory on the default branch is the tree that was last applied, so no
merged-but-unapplied change rides along.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Mapping, Optional

from bot import selection
from bot.context import JobContext
from bot.drift.status import ACTOR, DRIFT_PULL, WAITING_UNAPPLIED
from bot.engines import runner_for
from bot.execution import SETUP_ERRORS
from bot.models import DriftState, Repo, pull_ref
from bot.state import audit, deployments, keys, leases, locks
from runners.git import GitError, run_git
from runners.models import ApplyResult, PlanResult, Project


def remediate(ctx: JobContext, repo: Repo, head: str, repo_dir: str, project: Project, result: PlanResult,
              status: dict, terraform_version: Optional[str] = None) -> None:
    """Apply `result` (the plan of `head`) when safe; records the outcome in status["remediation"]."""
    blocker = unapplied_changes(ctx, repo, head, repo_dir, project)
    if blocker:
        _waiting(ctx, repo, status, blocker)
        return
    held = locks.try_lock(ctx.redis, locks.new_lock(repo.id, project.key, DRIFT_PULL, "", ACTOR))
    if held.pull_number != DRIFT_PULL:
        holder = pull_ref(repo.forge, held.pull_number)
        _waiting(ctx, repo, status, f"waiting: pull request {holder} holds the project's lock")
        return
    try:
        lease = leases.Lease(ctx.redis, keys.APPLY_MUTEX.format(repo=repo.id, project=project.key), ctx.job_id)
        if not lease.acquire():
            _waiting(ctx, repo, status, "waiting: another apply of this project is running")
            return
        with lease.kept():
            _apply(ctx, repo, head, repo_dir, project, result, status, terraform_version)
    finally:
        locks.release(ctx.redis, repo.id, project.key, DRIFT_PULL)


def unapplied_changes(ctx: JobContext, repo: Repo, head: str, repo_dir: str, project: Project) -> str:
    """"" when the project's code at head is what was last applied, else why remediation waits."""
    applied = deployments.last_applied(ctx.redis, repo.id, project.key)
    if not applied:
        return "waiting: no apply of this project was recorded, so its live code is unknown"
    checkout, env = ctx.workspace.resolve(repo_dir), ctx.repo_cache().base_env
    path = "" if project.dir == "." else project.dir
    live, wanted = _tree(checkout, env, applied, path), _tree(checkout, env, head, path)
    if live is None or live != wanted:
        return WAITING_UNAPPLIED
    return ""


def _tree(checkout: Path, env: Mapping[str, str], sha: str, path: str) -> Optional[str]:
    """The id of the project's tree at sha."""
    try:
        return run_git(checkout, ["rev-parse", "--verify", "--quiet", f"{sha}:{path}"], env, f"read {sha[:12]}").strip()
    except GitError:
        return None  # the commit (or the dir in it) is unknown here: treat as different


def _waiting(ctx: JobContext, repo: Repo, status: dict, reason: str) -> None:
    status["remediation"] = reason
    audit.record(ctx.redis, "drift_remediate", user=ACTOR, repo=repo.id, commit=status["commit"],
                 project=status["project"], result=reason, job_id=ctx.job_id)


def _apply(ctx: JobContext, repo: Repo, head: str, repo_dir: str, project: Project, result: PlanResult,
           status: dict, terraform_version: Optional[str]) -> None:
    sink = ctx.log.with_prefix(f"[{project.label}] ")
    sink(f"remediating: applying {repo.default_branch} at {head[:12]} to revert the drift")
    try:
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        runner = runner_for(project, ctx.settings, ctx.workspace, terraform_version=terraform_version,
                            project_dir=project_dir, repo_id=repo.id, git_credentials=ctx.git_credentials(repo),
                            init_records=ctx.init_records(repo_dir), sessions=ctx.terraform_sessions)
    except SETUP_ERRORS as exc:  # reported like a failed apply
        applied = ApplyResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
    else:
        applied = runner.apply(project_dir, project.workspace, Path(result.plan_file or ""), on_line=sink)
    outcome = "success" if applied.ok else f"failed at {applied.failed_step}: {applied.error}"[:300]
    audit.record(ctx.redis, "drift_remediate", user=ACTOR, repo=repo.id, commit=head, project=project.key,
                 result=outcome, job_id=ctx.job_id, detail=result.summary)
    deployments.record(ctx.redis, deployments.Deployment(
        repo=repo.id, project=project.key, commit=head, pull=0, user=ACTOR,
        result="success" if applied.ok else f"failed: {applied.failed_step or 'apply'}",
        plan_sha256=_sha256(result.plan_file), via=deployments.Via.DRIFT, job_id=ctx.job_id))
    if not applied.ok:
        status["remediation"] = f"failed: {applied.error}"[:300]
        return
    status.update(drifted=False, state=DriftState.REMEDIATED, remediation="applied", remediated_at=time.time(),
                  reverted=status["changes"], changes=[], summary=applied.summary or "Apply complete!")


def _sha256(path: Optional[str]) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except OSError:
        return ""
