"""Drift checks: plan a repository's default branch head, store each project's status,
keep one forge issue per drifted project, and revert the drift when `remediate` is on.

A check runs as an RQ job (bot.jobs.run_drift_check), queued by bot.drift.schedule on a cron
tick or by `POST /api/drift/<project>`. Per project it stores a JSON status (bot.drift.status,
read by the UI and `GET /api/drift`), sets the `plankeeper_drift_detected` gauge and appends
to the audit log. Remediation is bot.drift.remediate.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from bot import metrics, selection
from bot.context import JobContext, Runtime, branch_key
from bot.drift import remediate
from bot.drift.issue import close_issue, open_issue
from bot.drift.status import ACTOR, get_status, remember_schedules, save_status
from bot.engines import runner_for
from bot.errors import UserFacingError
from bot.execution import SETUP_ERRORS, output_dir
from bot.forges import make_forge
from bot.models import DriftState, JobState, Repo
from bot.state import audit, joblog
from runners.git import GitError
from runners.models import PlanResult, Project
from runners.plan_json import drift_changes
from runners.projects import module_users
from runners.repo_config import RepoConfigError, load_repo_config
from runners.repo_config_merge import merge_with_server
from runners.workspace import PathEscape


def check(rt: Runtime, payload: dict, job_id: str) -> str:
    """Check the payload's repository ({repo, projects: [key] or [] for all, actor});
    returns a one-line summary. Raises only on internal errors."""
    repo = Repo.from_dict(payload["repo"])
    ctx = JobContext.for_job(rt, make_forge(repo, rt.settings), job_id)
    joblog.record_job(rt.redis, job_id, state=JobState.RUNNING, started_at=time.time(), repo=repo.id, pull="",
                      event="drift")
    metrics.count_job(rt.redis, "drift", "started")
    try:
        summary, state = check_repo(ctx, repo, payload.get("projects") or [], payload.get("actor") or ACTOR)
    finally:
        ctx.cleanup()
    ctx.record_end("drift", state, summary)
    return summary


def check_repo(ctx: JobContext, repo: Repo, wanted: list[str], actor: str) -> tuple[str, JobState]:
    cache = ctx.repo_cache()
    try:
        head = cache.branch_head(repo.clone_url, repo.default_branch, auth=ctx.forge.clone_auth(repo))
        ctx.log(f"checking out {repo.default_branch} at {head[:12]} of {repo.id}")
        repo_dir = ctx.checkout_commit(repo, head, repo.clone_url, key=branch_key(repo.default_branch))
    except (GitError, PathEscape, UserFacingError) as exc:  # UserFacingError: the disk is full
        ctx.log(f"drift check failed: {exc}")
        return f"failed: {exc}", JobState.FAILED
    root = ctx.workspace.resolve(repo_dir)
    resolved = ctx.settings.repo_settings(repo.id)
    try:
        configured = repo_config_drift(root, resolved)
    except RepoConfigError as exc:  # file, line, key and what to fix
        ctx.log(f"drift check failed: invalid repo config: {exc}")
        return f"failed: invalid repo config: {exc}"[:300], JobState.FAILED
    if configured is not None:
        remember_schedules(ctx.redis, repo.id, configured, resolved.drift.schedule)
    projects = [p for p in _projects(root, configured) if not wanted or p.key in wanted or p.name in wanted]
    if not projects:
        return "no Terraform project to check", JobState.SUCCEEDED
    results = [check_project(ctx, repo, head, repo_dir, p, actor, (configured or {}).get(p.key)) for p in projects]
    drifted = sum(s["drifted"] for s in results)
    failed = sum(s["state"] == DriftState.FAILED for s in results)
    return (f"{len(results)} project(s) checked: {drifted} drifted, {failed} failed",
            JobState.FAILED if failed else JobState.SUCCEEDED)


def _projects(root: Path, configured: Optional[dict]) -> list[Project]:
    """Projects of the repo config, else every Terraform root (a dir no other dir uses as a module)."""
    if configured is not None:
        return [entry["project"] for entry in configured.values()]
    modules = module_users(root)
    return [Project(dir=d) for d in selection.terraform_dirs(root) if d not in modules]


def repo_config_drift(root: Path, resolved: Any) -> Optional[dict[str, dict]]:
    """The repo config's projects merged with the server settings: project key ->
    {project, schedule, remediate, terraform_version}; None when the repo lists no projects
    (they are then discovered). Raises RepoConfigError for an invalid config."""
    config = load_repo_config(root, resolved.repo_config_file)
    if config is None or not config.projects:
        return None
    return {e.project.key: {"project": e.project, "schedule": e.drift.schedule, "remediate": e.drift.remediate,
                            "terraform_version": e.terraform_version}
            for e in merge_with_server(config, resolved)}


def check_project(ctx: JobContext, repo: Repo, head: str, repo_dir: str, project: Project, actor: str,
                  configured: Optional[dict] = None) -> dict:
    """Plan one project at head, store its status, report the issue, remediate if asked."""
    previous = get_status(ctx.redis, repo.id, project.key) or {}
    version = (configured or {}).get("terraform_version")
    result = _plan(ctx, repo_dir, project, version, repo)
    status: dict[str, Any] = {
        "repo": repo.id, "project": project.key, "dir": project.dir, "workspace": project.workspace,
        "checked_at": time.time(), "commit": head, "job_id": ctx.job_id, "drifted": False,
        "summary": result.summary, "changes": [], "resource_drift": [], "issue_id": previous.get("issue_id"),
        "state": DriftState.IN_SYNC, "remediation": "", "checked_by": actor,
    }
    if not result.ok:
        status.update(state=DriftState.FAILED, summary=f"check failed at `{result.failed_step}`: {result.error}"[:500])
        _finish(ctx, repo, status)
        return status
    status["changes"] = [{"address": c.address, "action": c.action} for c in result.changes]
    status["resource_drift"] = [{"address": c.address, "action": c.action}
                                for c in drift_changes(result.plan_json or {})]
    status["drifted"] = result.has_changes
    if result.has_changes:
        status["state"] = DriftState.DRIFTED
        open_issue(ctx, repo, project, result, status)
        if _remediate_enabled(ctx, repo, configured):
            remediate.remediate(ctx, repo, head, repo_dir, project, result, status, version)
    if not status["drifted"] and status["issue_id"]:
        close_issue(ctx, repo, status)
    _finish(ctx, repo, status)
    return status


def _plan(ctx: JobContext, repo_dir: str, project: Project, terraform_version: Optional[str],
          repo: Repo) -> PlanResult:
    sink = ctx.log.with_prefix(f"[{project.label}] ")
    sink(f"checking {project.dir} (workspace {project.workspace}) for drift")
    try:
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        runner = runner_for(project, ctx.settings, ctx.workspace, terraform_version=terraform_version,
                            project_dir=project_dir, repo_id=repo.id, git_credentials=ctx.git_credentials(repo),
                            init_records=ctx.init_records(repo_dir), sessions=ctx.terraform_sessions)
    except SETUP_ERRORS as exc:  # reported in the status
        return PlanResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
    return runner.plan(project_dir, project.workspace, output_dir(ctx, project), (), on_line=sink)


def _remediate_enabled(ctx: JobContext, repo: Repo, configured: Optional[dict]) -> bool:
    # a repo config entry is already merged with the server settings (allowed_overrides checked)
    if configured and configured.get("remediate") is not None:
        return bool(configured["remediate"])
    return bool(ctx.settings.repo_settings(repo.id).drift.remediate)


def _finish(ctx: JobContext, repo: Repo, status: dict) -> None:
    status["state"] = str(status["state"])
    save_status(ctx.redis, status)
    result = status["state"] + (f" ({status['remediation']})" if status["remediation"] else "")
    audit.record(ctx.redis, "drift_check", user=status["checked_by"], repo=repo.id, commit=status["commit"],
                 project=status["project"], result=f"{result}: {status['summary']}"[:300], job_id=ctx.job_id)
    ctx.log(f"[{status['project']}] {result}: {status['summary']}")
