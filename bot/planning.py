"""The plan command: select projects, lock them, plan each, store the plans, report."""
from __future__ import annotations

import logging
import re

from bot import artifacts, drift, locks, selection
from bot.engines import runner_for
from bot.errors import UserFacingError
from bot.models import Command, ProjectOutcome, PullRequest
from bot.orchestrator import JobContext
from bot.reporting import CommandReport
from runners.models import PlanResult, Project

log = logging.getLogger(__name__)


def run_plan(ctx: JobContext, pull: PullRequest, command: Command, autoplan: bool) -> str:
    """Plan the pull request's projects; returns the overview line."""
    report = CommandReport(ctx, pull, "plan")
    try:
        repo_dir = ctx.checkout(pull)
        changed = ctx.forge.changed_files(pull)
        projects = selection.select_projects(ctx.workspace, repo_dir, command, changed)
    except UserFacingError as exc:
        report.fail(exc.title, exc.message)
        return f"failed: {exc.title}"
    if not projects:
        if autoplan:
            report.status("success", "No Terraform or Kubernetes project changed")
            return "no projects changed"
        report.fail("Nothing to plan", "No project matches: the pull request changes no Terraform files. "
                    "Use `/plan -d DIR` to plan a directory.")
        return "nothing to plan"
    outcomes = [ProjectOutcome(p, "queued", log_url=ctx.job_url) for p in projects]
    report.start(outcomes)
    for outcome in outcomes:
        outcome.status = "running"
        report.progress(outcomes)
        plan_project(ctx, pull, repo_dir, command, outcome)
        report.progress(outcomes)
    report.finish(outcomes)
    return render_overview(outcomes)


def render_overview(outcomes) -> str:
    from bot.render import overview

    return overview("plan", outcomes, running=False)


def plan_project(ctx: JobContext, pull: PullRequest, repo_dir: str, command: Command, outcome: ProjectOutcome) -> None:
    """Lock, plan and store one project; fills in the outcome. Never raises for engine errors."""
    project = outcome.project
    held = locks.try_lock(ctx.rt.redis, locks.new_lock(pull.repo.id, project.key, pull.number, pull.url, pull.author))
    if held.pull_number != pull.number:
        outcome.status = "locked"
        outcome.message = (
            f"🔒 This project is locked by [#{held.pull_number}]({held.pull_url}) (@{held.user}). "
            f"It will be planned here once that pull request is merged or closed, or after someone "
            f"comments `/unlock` there."
        )
        return
    result = _plan(ctx, pull, repo_dir, project, command.extra_args)
    outcome.plan = result
    if result.cancelled:
        outcome.status = "cancelled"
        outcome.message = "The plan was cancelled by `/cancel`."
    elif not result.ok:
        outcome.status = "failed"
    else:
        _store(ctx, pull, project, result)
        outcome.status = "planned" if result.has_changes else "no_changes"
        outcome.drift, outcome.message = drift.base_drift(ctx.rt.redis, pull.repo.id, project.key, result)


def _plan(ctx: JobContext, pull: PullRequest, repo_dir: str, project: Project, extra_args) -> PlanResult:
    sink = ctx.log.with_prefix(f"[{project.label}] ")
    sink(f"planning {project.dir} (workspace {project.workspace})")
    try:
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        runner = runner_for(project, ctx.settings, ctx.workspace)
    except Exception as exc:  # PathEscape, MissingBinary: the user can fix these
        return PlanResult(ok=False, failed_step="setup", error=str(exc))
    out_dir = ctx.workspace.resolve(f"out/{_safe(project.key)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return runner.plan(project_dir, project.workspace, out_dir, tuple(extra_args), on_line=sink,
                       should_stop=ctx.should_stop(pull))


def _store(ctx: JobContext, pull: PullRequest, project: Project, result: PlanResult) -> None:
    if not result.plan_file:
        return
    from pathlib import Path

    artifact = artifacts.PlanArtifact(
        repo_id=pull.repo.id, pull_number=pull.number, project_key=project.key, project_name=project.name,
        engine=project.engine, head_sha=pull.head_sha, sha256="", summary=result.summary,
        changes=list(result.changes), job_id=ctx.job_id,
    )
    saved = artifacts.save_plan(ctx.rt.redis, artifact, Path(result.plan_file))
    ctx.log(f"[{project.label}] saved plan {saved.sha256[:12]} for {pull.head_sha[:7]}")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
