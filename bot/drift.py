"""Drift checks: plan a repository's default branch head, store each project's status,
keep one forge issue per drifted project, and revert the drift when `remediate` is on.

A check runs as an RQ job (`run_drift_check`), queued by bot.scheduler on a cron tick or
by `POST /api/drift/<project>`. Per project it stores a JSON status under
`pk:drift:<repo_id>:<project_key>` (read by the UI and `GET /api/drift`), sets the
`plankeeper_drift_detected` gauge and appends to the audit log.

Remediation applies the default branch's fresh plan only when no pull request holds the
project's lock (the check takes the lock itself while applying) and the project's
directory on the default branch is the tree that was last applied
(`pk:last-applied:<repo>:<project_key>`, written by every successful apply).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

import git
import redis

from bot import audit, joblog, metrics, render
from bot.engines import parent_environment, runner_for
from bot.errors import ForgeError
from bot.models import Repo
from bot.orchestrator import JobContext
from bot.redact import Redactor, settings_secrets
from bot.runtime import Runtime
from runners.git import GitError, RepoCache, strip_credentials
from runners.models import PlanResult, Project, ResourceChange
from runners.terraform import drift_changes

log = logging.getLogger(__name__)
STATUS_KEY = "pk:drift:{repo}:{project}"
LAST_APPLIED_KEY = "pk:last-applied:{repo}:{project}"
REPOS_KEY = "pk:repos"  # hash: repo id -> Repo as JSON, for repos seen in events
SCHEDULES_KEY = "pk:drift-schedules:{repo}"  # hash: project key -> {schedule, remediate} from the repo config
APPLYING_KEY = "pk:applying:{repo}:{project}"  # the apply mutex shared with bot.applying
DRIFT_PULL = 0  # the lock owner number remediation uses: no pull request has it
ACTOR = "plankeeper-drift"
WAITING_UNAPPLIED = "waiting: merged-but-unapplied changes"
ISSUE_BODY_LIMIT = 60000


# ---------------------------------------------------------------------------- records


def remember_repo(r: redis.Redis, repo: Repo) -> None:
    """Record a repository seen in an event, so server-wide schedules can check it."""
    r.hset(REPOS_KEY, repo.id, json.dumps(repo.__dict__))


def known_repos(r: redis.Redis) -> dict[str, Repo]:
    """Every repository recorded by remember_repo, by id."""
    return {k.decode(): Repo.from_dict(json.loads(v)) for k, v in r.hgetall(REPOS_KEY).items()}


def record_last_applied(r: redis.Redis, repo_id: str, project_key: str, sha: str) -> None:
    """Called after every successful apply: the commit whose code is now live."""
    r.set(LAST_APPLIED_KEY.format(repo=repo_id, project=project_key), sha)


def last_applied(r: redis.Redis, repo_id: str, project_key: str) -> Optional[str]:
    raw = r.get(LAST_APPLIED_KEY.format(repo=repo_id, project=project_key))
    return raw.decode() if raw else None


def get_status(r: redis.Redis, repo_id: str, project_key: str) -> Optional[dict]:
    raw = r.get(STATUS_KEY.format(repo=repo_id, project=project_key))
    return json.loads(raw) if raw else None


def all_statuses(r: redis.Redis) -> list[dict]:
    """Every project's last drift status, sorted by repo and project."""
    found = []
    for key in r.scan_iter(match="pk:drift:*", count=500):
        raw = r.get(key)
        if raw:
            found.append(json.loads(raw))
    return sorted(found, key=lambda s: (s.get("repo", ""), s.get("project", "")))


def _save_status(r: redis.Redis, status: dict) -> None:
    r.set(STATUS_KEY.format(repo=status["repo"], project=status["project"]), json.dumps(status))
    metrics.set_drift(r, status["repo"], status["project"], bool(status["drifted"]))


def project_schedules(r: redis.Redis, repo_id: str) -> dict[str, dict]:
    """Per-project drift settings last read from the repo config: key -> {schedule, remediate}."""
    raw = r.hgetall(SCHEDULES_KEY.format(repo=repo_id))
    return {k.decode(): json.loads(v) for k, v in raw.items()}


# ---------------------------------------------------------------------------- pull request plans


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


# ---------------------------------------------------------------------------- the job


def run_drift_check(payload: dict) -> str:
    """RQ entry point: payload {repo: Repo dict, projects: [key] or [] for all, trigger, actor}."""
    from rq import get_current_job

    from bot.jobs import runtime

    job = get_current_job()
    return check(runtime(), payload, job.id if job else f"drift-inline-{time.time():.0f}")


def check(rt: Runtime, payload: dict, job_id: str) -> str:
    """Check the payload's repository; returns a one-line summary. Raises only on internal errors."""
    from bot.forges import make_forge

    repo = Repo.from_dict(payload["repo"])
    redact = Redactor(settings_secrets(rt.settings))
    ctx = JobContext(rt, make_forge(repo, rt.settings), job_id, joblog.JobLog(rt.redis, job_id, redact), redact)
    joblog.record_job(rt.redis, job_id, state="running", started_at=time.time(), repo=repo.id, pull="", event="drift")
    metrics.count_job(rt.redis, "drift", "started")
    try:
        summary, state = _check_repo(ctx, repo, payload.get("projects") or [], payload.get("actor") or ACTOR)
    finally:
        ctx.cleanup()
    duration = time.time() - ctx.started_at
    joblog.record_job(rt.redis, job_id, state=state, summary=summary, ended_at=time.time(), duration=f"{duration:.2f}")
    metrics.count_job(rt.redis, "drift", state, duration)
    ctx.log(f"done: {summary}")
    return summary


def on_check_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: the check raised, timed out or its worker died."""
    log.error("drift check %s failed: %s", job.id, exc_value)
    reason = exc_type.__name__ if exc_type else "error"
    joblog.record_job(connection, job.id, state="failed", summary=f"failed: {reason}", ended_at=time.time())
    payload = job.args[0] if job.args else {}
    if payload.get("repo"):  # a remediation cut short must not leave its lock to block pull requests
        from bot import locks

        locks.release_pull(connection, Repo.from_dict(payload["repo"]).id, DRIFT_PULL)


def _check_repo(ctx: JobContext, repo: Repo, wanted: list[str], actor: str) -> tuple[str, str]:
    try:
        head = default_head(ctx, repo)
        repo_dir = _checkout(ctx, repo, head)
    except GitError as exc:
        ctx.log(f"drift check failed: {exc}")
        return f"failed: {exc}", "failed"
    root = ctx.workspace.resolve(repo_dir)
    resolved = ctx.settings.repo_settings(repo.id)
    try:
        configured = repo_config_drift(root, resolved)
    except ValueError as exc:  # RepoConfigError: file, line, key and what to fix
        ctx.log(f"drift check failed: invalid repo config: {exc}")
        return f"failed: invalid repo config: {exc}"[:300], "failed"
    if configured is not None:
        _remember_schedules(ctx.rt.redis, repo.id, configured, resolved.drift.schedule)
    projects = [p for p in _projects(root, configured) if not wanted or p.key in wanted or p.name in wanted]
    if not projects:
        return "no Terraform project to check", "succeeded"
    results = [check_project(ctx, repo, head, repo_dir, p, actor, (configured or {}).get(p.key)) for p in projects]
    drifted = sum(s["drifted"] for s in results)
    failed = sum(s["state"] == "failed" for s in results)
    return f"{len(results)} project(s) checked: {drifted} drifted, {failed} failed", "failed" if failed else "succeeded"


def default_head(ctx: JobContext, repo: Repo) -> str:
    """The commit at the head of the repository's default branch. Raises GitError."""
    from runners import git as git_runner

    cache = _cache(ctx)
    # RepoCache has no public way to read a branch head yet; its own URL/credential handling is reused
    url, auth = git_runner._split_auth(repo.clone_url, ctx.forge.clone_auth(repo))
    try:
        out = git.Git().execute(["git", "ls-remote", "--", url, f"refs/heads/{repo.default_branch}"],
                                env=cache._env(url, auth))
    except git.GitCommandError as exc:
        raise GitError(strip_credentials(f"could not read the head of {repo.default_branch}: {exc.stderr}")) from exc
    line = str(out).strip().splitlines()
    if not line:
        raise GitError(f"branch {repo.default_branch!r} not found in {strip_credentials(url)}")
    return line[0].split()[0]


def _cache(ctx: JobContext) -> RepoCache:
    return RepoCache(Path(ctx.settings.data_dir) / "git-cache", parent_environment())


def _checkout(ctx: JobContext, repo: Repo, sha: str) -> str:
    ctx.log(f"checking out {repo.default_branch} at {sha[:12]} of {repo.id}")
    _cache(ctx).checkout(repo.clone_url, sha, ctx.workspace.resolve("repo"), auth=ctx.forge.clone_auth(repo))
    return "repo"


def _projects(root: Path, configured: Optional[dict]) -> list[Project]:
    """Projects of the repo config, else every Terraform root (a dir no other dir uses as a module)."""
    if configured is not None:
        return [entry["project"] for entry in configured.values()]
    from bot.selection import terraform_dirs
    from runners.projects import module_users

    modules = module_users(root)
    return [Project(dir=d) for d in terraform_dirs(root) if d not in modules]


def repo_config_drift(root: Path, resolved: Any) -> Optional[dict[str, dict]]:
    """The repo config's projects merged with the server settings: project key ->
    {project, schedule, remediate, terraform_version}; None when the repo lists no projects
    (they are then discovered). Raises RepoConfigError for an invalid config."""
    from runners.repo_config import load_repo_config
    from runners.repo_config_merge import merge_with_server

    config = load_repo_config(root, resolved.repo_config_file)
    if config is None or not config.projects:
        return None
    return {e.project.key: {"project": e.project, "schedule": e.drift.schedule, "remediate": e.drift.remediate,
                            "terraform_version": e.terraform_version}
            for e in merge_with_server(config, resolved)}


def _remember_schedules(r: redis.Redis, repo_id: str, configured: dict[str, dict],
                        server_schedule: Optional[str]) -> None:
    """Keep the projects whose own schedule differs from the repo's, for bot.scheduler."""
    key = SCHEDULES_KEY.format(repo=repo_id)
    pipe = r.pipeline()
    pipe.delete(key)
    for project_key, entry in configured.items():
        if entry.get("schedule") and entry["schedule"] != server_schedule:
            entry_json = {"schedule": entry["schedule"], "remediate": entry.get("remediate")}
            pipe.hset(key, project_key, json.dumps(entry_json))
    pipe.execute()


# ---------------------------------------------------------------------------- one project


def check_project(ctx: JobContext, repo: Repo, head: str, repo_dir: str, project: Project, actor: str,
                  configured: Optional[dict] = None) -> dict:
    """Plan one project at head, store its status, report the issue, remediate if asked."""
    r = ctx.rt.redis
    previous = get_status(r, repo.id, project.key) or {}
    result = _plan(ctx, repo_dir, project, (configured or {}).get("terraform_version"))
    status: dict[str, Any] = {
        "repo": repo.id, "project": project.key, "dir": project.dir, "workspace": project.workspace,
        "checked_at": time.time(), "commit": head, "job_id": ctx.job_id, "drifted": False,
        "summary": result.summary, "changes": [], "resource_drift": [], "issue_id": previous.get("issue_id"),
        "state": "in_sync", "remediation": "", "checked_by": actor,
    }
    if not result.ok:
        status.update(state="failed", summary=f"check failed at `{result.failed_step}`: {result.error}"[:500])
        _finish(ctx, repo, status)
        return status
    status["changes"] = [{"address": c.address, "action": c.action} for c in result.changes]
    status["resource_drift"] = [{"address": c.address, "action": c.action}
                                for c in drift_changes(result.plan_json or {})]
    status["drifted"] = result.has_changes
    if result.has_changes:
        status["state"] = "drifted"
        _open_issue(ctx, repo, project, result, status)
        if _remediate_enabled(ctx, repo, configured):
            from bot.drift_remediation import remediate

            remediate(ctx, repo, head, repo_dir, project, result, status, (configured or {}).get("terraform_version"))
    if not status["drifted"] and status["issue_id"]:
        _close_issue(ctx, repo, status)
    _finish(ctx, repo, status)
    return status


def _plan(ctx: JobContext, repo_dir: str, project: Project, terraform_version: Optional[str]) -> PlanResult:
    from bot import selection
    from bot.planning import _safe

    sink = ctx.log.with_prefix(f"[{project.label}] ")
    sink(f"checking {project.dir} (workspace {project.workspace}) for drift")
    try:
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        runner = runner_for(project, ctx.settings, ctx.workspace, terraform_version=terraform_version)
    except Exception as exc:  # PathEscape, MissingBinary: reported in the status
        return PlanResult(ok=False, failed_step="setup", error=str(exc))
    out_dir = ctx.workspace.resolve(f"out/{_safe(project.key)}")
    return runner.plan(project_dir, project.workspace, out_dir, (), on_line=sink)


def _remediate_enabled(ctx: JobContext, repo: Repo, configured: Optional[dict]) -> bool:
    # a repo config entry is already merged with the server settings (allowed_overrides checked)
    if configured and configured.get("remediate") is not None:
        return bool(configured["remediate"])
    return bool(ctx.settings.repo_settings(repo.id).drift.remediate)


def _finish(ctx: JobContext, repo: Repo, status: dict) -> None:
    _save_status(ctx.rt.redis, status)
    result = status["state"] + (f" ({status['remediation']})" if status["remediation"] else "")
    audit.record(ctx.rt.redis, "drift_check", user=status["checked_by"], repo=repo.id, commit=status["commit"],
                 project=status["project"], result=f"{result}: {status['summary']}"[:300], job_id=ctx.job_id)
    ctx.log(f"[{status['project']}] {result}: {status['summary']}")


# ---------------------------------------------------------------------------- the forge issue


def issue_title(repo: Repo, project_key: str) -> str:
    directory, workspace = project_key.split("::", 1)
    where = directory if workspace == "default" else f"{directory} (workspace {workspace})"
    return f"Drift detected in {where}"


def issue_body(repo: Repo, status: dict, result: PlanResult, job_url: str) -> str:
    """The drift issue: what changed, the plan, and what to do. Redaction is the caller's."""
    changes = [ResourceChange(**c) for c in status["changes"]]
    outside = ", ".join(f"`{c['address']}`" for c in status["resource_drift"]) or "none reported by Terraform"
    output = result.output if len(result.output) < ISSUE_BODY_LIMIT - 4000 else (
        result.output[: ISSUE_BODY_LIMIT - 4000] + f"\n… truncated: the full plan is in the job log ({job_url})")
    return (
        f"**Plankeeper drift check** of `{status['project'].replace('::', '` workspace `')}` on "
        f"`{repo.default_branch}` at `{status['commit'][:12]}`: the live infrastructure no longer matches "
        f"the code.\n\n{render.change_table(changes)}\n`{result.summary}`\n\n"
        f"Changed outside Terraform (refresh): {outside}\n\n"
        f"<details><summary>Plan of the default branch</summary>\n\n```diff\n{output.rstrip()}\n```\n</details>\n\n"
        "To fix it, either revert the manual change, or codify it in a pull request, or let Plankeeper "
        "apply the default branch (`drift.remediate: true`). This issue closes itself once the drift is gone.\n\n"
        f"[Job log]({job_url})\n"
    )


def _open_issue(ctx: JobContext, repo: Repo, project: Project, result: PlanResult, status: dict) -> None:
    body = ctx.redact(issue_body(repo, status, result, ctx.job_url))
    try:
        status["issue_id"] = ctx.forge.create_or_update_issue(repo, issue_title(repo, project.key), body,
                                                              status["issue_id"])
    except ForgeError as exc:
        ctx.log(f"could not open the drift issue: {exc}")
        status["issue_error"] = str(exc)[:300]


def _close_issue(ctx: JobContext, repo: Repo, status: dict) -> None:
    how = ("Plankeeper applied the default branch to revert it: " + status["summary"]
           if status["remediation"] == "applied" else "a drift check found no changes any more.")
    comment = f"Drift cleared at `{status['commit'][:12]}`: {how}\n\n[Job log]({ctx.job_url})"
    try:
        ctx.forge.close_issue(repo, str(status["issue_id"]), ctx.redact(comment))
        status["issue_id"] = None
    except ForgeError as exc:
        ctx.log(f"could not close drift issue #{status['issue_id']}: {exc}")
        status["issue_error"] = str(exc)[:300]

