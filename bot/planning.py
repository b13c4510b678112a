"""The plan command: select projects and start a run; each project job locks, plans,
stores the plan and reports (bot.runs fans the projects out over the workers)."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

from bot import artifacts, drift, hooks, locks, policies, redact, runs, selection
from bot.engines import render_base_dir, runner_for, step_env_for
from bot.errors import UserFacingError
from bot.models import Command, ProjectOutcome, PullRequest
from bot.orchestrator import JobContext
from bot.reporting import CommandReport
from runners.models import PlanResult, Project
from runners.repo_config import EffectiveProject, project_defaults

log = logging.getLogger(__name__)


def run_plan(ctx: JobContext, pull: PullRequest, command: Command, autoplan: bool, actor: str = "") -> str:
    """Select the pull request's projects and start planning them; returns a summary."""
    report = CommandReport(ctx, pull, "plan")
    resolved = _resolved(ctx, pull)
    try:
        repo_dir = ctx.checkout(pull)
        config, effective = selection.load_effective(ctx.workspace, repo_dir, resolved)
        hooks.run_pre_workflow_hooks(ctx, pull, repo_dir)
        chosen = selection.select_effective(
            ctx.workspace, repo_dir, command, ctx.forge.changed_files(pull), config, effective,
            resolved, autoplan=autoplan, base_branch=pull.base_ref)
    except UserFacingError as exc:
        report.fail(exc.title, exc.message)
        return f"failed: {exc.title}"
    if not chosen:
        if autoplan:
            report.status("success", "No Terraform or Kubernetes project changed")
            return "no projects changed"
        report.fail("Nothing to plan", "No project matches: the pull request changes no Terraform files. "
                    "Use `/plan -d DIR` to plan a directory.")
        return "nothing to plan"
    run = runs.Run(id=f"{ctx.job_id}-plan", kind="plan", pull=pull, command=command, actor=actor or pull.author,
                   projects=[ep.project for ep in chosen], coordinator_job=ctx.job_id, autoplan=autoplan,
                   abort_on_fail=bool(config and config.abort_on_execution_order_fail))
    parallel = config.parallel_plan if config else True
    start_run(ctx, run, report, parallel, chosen)
    return f"planning {len(chosen)} project(s) in run {run.id}"


def start_run(ctx: JobContext, run: runs.Run, report: CommandReport, parallel: bool,
              chosen: list[EffectiveProject]) -> None:
    """Post the comment (every project queued) and queue the project jobs and the final one."""
    outcomes = [ProjectOutcome(p, "queued", log_url=ctx.rt.job_url(run.project_job_id(i)))
                for i, p in enumerate(run.projects)]
    report.start(outcomes)
    run.comment_id, run.comment_url = report.comment_id or "", report.comment_url
    runs.save(ctx.rt.redis, run)
    for i, outcome in enumerate(outcomes):
        runs.save_outcome(ctx.rt.redis, run.id, i, outcome)
    deps = runs.dependencies(run, parallel, [ep.execution_order_group for ep in chosen],
                             [ep.depends_on for ep in chosen])
    runs.mark_active(ctx.rt.redis, run)
    runs.enqueue(ctx.rt.redis, run, deps, ctx.settings.terraform.timeout)


def _resolved(ctx: JobContext, pull: PullRequest):
    return ctx.settings.repo_settings(pull.repo.id)


def effective_for(ctx: JobContext, pull: PullRequest, repo_dir: str, project: Project) -> EffectiveProject:
    """The project's settings as the repo config at this checkout and the server resolve them."""
    resolved = _resolved(ctx, pull)
    _, effective = selection.load_effective(ctx.workspace, repo_dir, resolved)
    for ep in effective:
        if ep.project.key == project.key and (ep.project.name == project.name or not project.name):
            return ep
    return project_defaults(project, resolved)


def plan_project(ctx: JobContext, run: runs.Run, outcome: ProjectOutcome) -> None:
    """One project job of a plan run: check out, lock, plan, store; fills in the outcome."""
    pull, project = run.pull, outcome.project
    repo_dir = ctx.checkout(pull)
    effective = effective_for(ctx, pull, repo_dir, project)
    if effective.repo_locks_mode == "on_plan":
        held = locks.try_lock(ctx.rt.redis, locks.new_lock(pull.repo.id, project.key, pull.number, pull.url,
                                                           pull.author))
        if held.pull_number != pull.number:
            outcome.status, outcome.message = "locked", locked_message(held)
            return
    result = plan_in(ctx, pull, repo_dir, effective, run.command.extra_args, run.actor)
    redact.learn_plan_secrets(ctx, result)
    outcome.plan = result
    if result.cancelled:
        outcome.status, outcome.message = "cancelled", "The plan was cancelled by `/cancel`."
    elif not result.ok:
        outcome.status = "failed"
    else:
        saved = store_plan(ctx, pull, project, result)
        outcome.status = "planned" if result.has_changes else "no_changes"
        outcome.drift, outcome.message = drift.base_drift(ctx.rt.redis, pull.repo.id, project.key, result)
        if saved is not None:
            outcome.policies = policies.check_plan(ctx, pull, project.key, result.plan_json, saved.sha256, run.actor)


def locked_message(held: locks.Lock) -> str:
    return (f"🔒 This project is locked by [#{held.pull_number}]({held.pull_url}) (@{held.user}). "
            "It can be planned here once that pull request is merged or closed, or after someone comments "
            "`/unlock` there.")


def plan_in(ctx: JobContext, pull: PullRequest, repo_dir: str, effective: EffectiveProject, extra_args=(),
            actor: str = "") -> PlanResult:
    """Plan one project of a checkout with its engine/workflow; never raises for the user's errors."""
    project = effective.project
    sink = ctx.log.with_prefix(f"[{project.label}] ")
    sink(f"planning {project.dir} (workspace {project.workspace})")
    try:
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        runner = runner_for(project, ctx.settings, ctx.workspace, effective,
                            step_env_for(pull, project, project.dir, extra_args, actor))
    except Exception as exc:  # PathEscape, a missing binary: the user can fix these
        return PlanResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
    out_dir = ctx.workspace.resolve(f"out/{_safe(project.key)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    base_dir = render_base_dir(ctx, pull, repo_dir, project)  # render-only kubectl: diff base and head
    extra = {"base_dir": base_dir} if base_dir is not None else {}
    return runner.plan(project_dir, project.workspace, out_dir, tuple(extra_args), on_line=sink,
                       should_stop=ctx.should_stop(pull), **extra)


def store_plan(ctx: JobContext, pull: PullRequest, project: Project, result: PlanResult,
               head_sha: Optional[str] = None) -> Optional[artifacts.PlanArtifact]:
    if not result.plan_file:
        return None
    artifact = artifacts.PlanArtifact(
        repo_id=pull.repo.id, pull_number=pull.number, project_key=project.key, project_name=project.name,
        engine=project.engine, head_sha=head_sha or pull.head_sha, sha256="", summary=result.summary,
        changes=list(result.changes), job_id=ctx.job_id,
    )
    secrets = redact.sensitive_values(result.plan_json) if result.plan_json else []
    saved = artifacts.save_plan(ctx.rt.redis, artifact, Path(result.plan_file), sorted(secrets))
    ctx.log(f"[{project.label}] saved plan {saved.sha256[:12]} for {saved.head_sha[:7]}")
    return saved


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
