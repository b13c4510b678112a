"""The apply side: requirements, /apply, apply on approval, unlock, close (merge-to-deploy
is bot.deploy). Applies run as a bot.runs run: one job per project, one comment."""
from __future__ import annotations

import fnmatch
import logging
import time
from typing import Optional

from bot import artifacts, audit, drift, locks, notify, policies, runs, selection
from bot.engines import runner_for, step_env_for
from bot.errors import ApplyRefused
from bot.models import Command, ProjectOutcome, PullRequest, PullRequestEvent
from bot.orchestrator import JobContext
from bot.redact import Redactor
from bot.reporting import CommandReport
from runners.models import ApplyResult, Project
from runners.repo_config import EffectiveProject

log = logging.getLogger(__name__)
APPLYING_KEY = "pk:applying:{repo}:{project}"


def effective_settings(ctx: JobContext, pull: PullRequest):
    return ctx.settings.repo_settings(pull.repo.id)


def check_requirements(ctx: JobContext, pull: PullRequest, requirements) -> list[str]:
    """Each requirement that does not hold now, in words, asked of the forge live."""
    problems = []
    if "approved" in requirements:
        approvers, missing = ctx.forge.approvals(pull)
        approvers = [a for a in approvers if a.lower() != pull.author.lower()]
        if missing > 0 or not approvers:
            needed = max(missing, 1)
            problems.append(f"needs {needed} approval{'s' if needed > 1 else ''}, has {len(approvers)}")
    if "mergeable" in requirements or "undiverged" in requirements:
        state = ctx.forge.mergeability(pull)
        if "mergeable" in requirements and not state.mergeable:
            problems.append(f"not mergeable: {state.reason}")
        if "undiverged" in requirements and "behind" in state.reason:
            problems.append("diverged: the base branch has commits the pull request lacks; merge or rebase it")
    return problems


def selected_plans(plans: list[artifacts.PlanArtifact], command: Command) -> list[artifacts.PlanArtifact]:
    chosen = plans
    if command.projects:
        chosen = [p for p in chosen if p.project_name in command.projects]
    if command.dirs:
        chosen = [p for p in chosen if any(fnmatch.fnmatchcase(p.project_key.split("::")[0], d.strip("/") or ".")
                                           for d in command.dirs)]
    if command.workspace:
        chosen = [p for p in chosen if p.project_key.split("::")[1] == command.workspace]
    return chosen


def project_of(plan: artifacts.PlanArtifact) -> Project:
    directory, workspace = plan.project_key.split("::", 1)
    return Project(dir=directory, workspace=workspace, name=plan.project_name, engine=plan.engine)


def run_apply(ctx: JobContext, pull: PullRequest, command: Command, actor: str, trigger: str = "comment") -> str:
    """Check everything that can refuse the apply, then start the run applying the stored plans."""
    from bot.planning import effective_for

    plans = selected_plans(artifacts.pull_plans(ctx.rt.redis, pull.repo.id, pull.number), command)
    if not plans:
        raise ApplyRefused("There is no plan to apply for this selection: comment `/plan` first.",
                           title="Nothing to apply")
    stale = [p for p in plans if p.head_sha != pull.head_sha]
    if stale:
        raise ApplyRefused(
            f"The plan is for {stale[0].head_sha[:7]}, head is {pull.head_sha[:7]}: comment `/plan`.",
            title="Apply refused")
    refusal = policies.apply_refusal(ctx, pull, plans, actor)
    if refusal:
        if trigger == "approval":
            return "not applied: policy checks failed"
        raise ApplyRefused(refusal, title="Apply refused")
    repo_dir = ctx.checkout(pull)
    config, _ = selection.load_effective(ctx.workspace, repo_dir, effective_settings(ctx, pull))
    effective = [effective_for(ctx, pull, repo_dir, project_of(p)) for p in plans]
    if trigger == "approval":
        effective = [ep for ep in effective if ep.apply_on_approval]
        if not effective:
            return "ignored: apply_on_approval is off for every planned project"
    requirements = sorted({r for ep in effective for r in ep.apply_requirements})
    problems = check_requirements(ctx, pull, requirements)
    if problems:
        audit.record(ctx.rt.redis, "apply_refused", user=actor, repo=pull.repo.id, pull=pull.number,
                     commit=pull.head_sha, result="; ".join(problems), job_id=ctx.job_id)
        if trigger == "approval":
            return "not applied: " + "; ".join(problems)
        raise ApplyRefused("Apply requirements do not hold:\n" + "\n".join(f"- {p}" for p in problems),
                           title="Apply refused")
    from bot.planning import start_run

    run = runs.Run(id=f"{ctx.job_id}-apply", kind="apply", pull=pull, command=command, actor=actor,
                   projects=[ep.project for ep in effective], coordinator_job=ctx.job_id,
                   abort_on_fail=bool(config and config.abort_on_execution_order_fail))
    start_run(ctx, run, CommandReport(ctx, pull, "apply"), bool(config and config.parallel_apply), effective)
    return f"applying {len(effective)} project(s) in run {run.id}"


def apply_project(ctx: JobContext, run: runs.Run, outcome: ProjectOutcome) -> None:
    """One project job of an apply run: apply the stored plan under the lock and apply mutex."""
    pull, r = run.pull, ctx.rt.redis
    plan = artifacts.get_plan(r, pull.repo.id, pull.number, outcome.project.key)
    if plan is None:
        outcome.status, outcome.message = "skipped", "This plan was already applied (or discarded) by another job."
        return
    held = _hold_lock(ctx, pull, plan, run.command.queue)
    if held is not None:
        outcome.status, outcome.message = "locked", (
            f"🔒 Locked by [#{held.pull_number}]({held.pull_url}) (@{held.user}): "
            "comment `/apply --queue` to wait for it.")
        return
    mutex = APPLYING_KEY.format(repo=pull.repo.id, project=plan.project_key)
    if not r.set(mutex, ctx.job_id, nx=True, ex=ctx.settings.terraform.timeout * 3):
        outcome.status, outcome.message = "skipped", "Another apply of this project is running right now."
        return
    try:
        current = artifacts.get_plan(r, pull.repo.id, pull.number, plan.project_key)
        if current is None or current.sha256 != plan.sha256:
            outcome.status, outcome.message = "skipped", "This plan was already applied (or replaced) by another job."
            return
        repo_dir = ctx.checkout(pull)
        result = apply_in(ctx, pull, repo_dir, current, outcome.project, run.actor)
        outcome.apply = result
        outcome.status = "applied" if result.ok else ("cancelled" if result.cancelled else "failed")
        audit.record(r, "apply", user=run.actor, repo=pull.repo.id, pull=pull.number, commit=pull.head_sha,
                     project=plan.project_key, plan_sha256=plan.sha256,
                     result="success" if result.ok else f"failed: {result.failed_step or ''}", job_id=ctx.job_id)
        if result.ok:
            artifacts.delete_plan(r, pull.repo.id, pull.number, plan.project_key)
            drift.record_last_applied(r, pull.repo.id, plan.project_key, pull.head_sha)
    finally:
        release_mutex(r, mutex, ctx.job_id)


def _hold_lock(ctx: JobContext, pull: PullRequest, plan, queue: bool) -> Optional[locks.Lock]:
    """None when this pull request holds the project's lock (taking it if free), else the holder."""
    deadline = time.time() + ctx.settings.terraform.timeout
    while True:
        held = locks.try_lock(ctx.rt.redis, locks.new_lock(pull.repo.id, plan.project_key, pull.number, pull.url,
                                                           pull.author))
        if held.pull_number == pull.number:
            return None
        if not queue or time.time() > deadline or ctx.should_stop(pull)():
            return held
        ctx.log(f"waiting for the lock of {plan.project_key} held by #{held.pull_number}")
        time.sleep(2)


def release_mutex(r, key: str, owner: str) -> None:
    if r.get(key) == owner.encode():
        r.delete(key)


def apply_in(ctx: JobContext, pull: PullRequest, repo_dir: str, plan: artifacts.PlanArtifact, project: Project,
             actor: str = "") -> ApplyResult:
    """Apply exactly the stored plan (SHA-256 checked) in a checkout of the pull request."""
    from bot.planning import effective_for

    sink = ctx.log.with_prefix(f"[{project.label}] ")
    try:
        effective: EffectiveProject = effective_for(ctx, pull, repo_dir, project)
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        plan_file = artifacts.write_plan_file(ctx.rt.redis, plan, ctx.workspace.resolve(f"plans/{plan.sha256[:16]}"))
        runner = runner_for(project, ctx.settings, ctx.workspace, effective,
                            step_env_for(pull, project, project.dir, (), actor))
    except artifacts.ArtifactCorrupt as exc:
        return ApplyResult(ok=False, failed_step="verify", error=f"{exc}: comment `/plan` to plan again.")
    except Exception as exc:
        return ApplyResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
    if isinstance(ctx.redact, Redactor):
        ctx.redact.add_secrets(artifacts.plan_secrets(ctx.rt.redis, plan))
    sink(f"applying plan {plan.sha256[:12]} of {plan.head_sha[:7]}")
    return runner.apply(project_dir, project.workspace, plan_file, on_line=sink, should_stop=ctx.should_stop(pull))


def finish_apply(ctx: JobContext, run: runs.Run, outcomes: list[ProjectOutcome]) -> None:
    """After every project of an apply run: notify, then automerge when everything applied."""
    notify.apply_finished(ctx.settings, run.pull, outcomes, ctx.rt.job_url(run.coordinator_job), run.actor)
    if all(o.status == "applied" for o in outcomes):
        _maybe_automerge(ctx, run.pull, run.command)


def _maybe_automerge(ctx: JobContext, pull: PullRequest, command: Command) -> None:
    if not effective_settings(ctx, pull).automerge or command.auto_merge_disabled:
        return
    if artifacts.pull_plans(ctx.rt.redis, pull.repo.id, pull.number):
        return  # some planned project is still unapplied
    try:
        ctx.forge.merge(pull)
        ctx.forge.create_comment(pull, "**Plankeeper** merged this pull request: every planned project applied.")
    except Exception as exc:
        ctx.forge.create_comment(pull, f"**Plankeeper** could not automerge: {ctx.redact(str(exc))}")


def unlock(ctx: JobContext, pull: PullRequest, actor: str) -> str:
    released = locks.release_pull(ctx.rt.redis, pull.repo.id, pull.number)
    dropped = artifacts.discard_pull_plans(ctx.rt.redis, pull.repo.id, pull.number)
    audit.record(ctx.rt.redis, "unlock", user=actor, repo=pull.repo.id, pull=pull.number, commit=pull.head_sha,
                 project=",".join(released), result="ok", job_id=ctx.job_id)
    listing = "".join(f"\n- `{k.replace('::', '` workspace `')}`" for k in released) or " none were held."
    ctx.forge.create_comment(pull, f"**Plankeeper unlock**: released {len(released)} lock(s) and discarded "
                                   f"{dropped} plan(s):{listing}")
    return f"unlocked {len(released)}"


def on_closed(ctx: JobContext, event: PullRequestEvent) -> str:
    """Merged with merge-to-deploy: start the deploy run (it releases the locks when done).
    Otherwise release the locks and drop the plans now."""
    pull = event.pull
    if event.action == "merged" and artifacts.pull_plans(ctx.rt.redis, pull.repo.id, pull.number):
        from bot.deploy import start_deploy

        started = start_deploy(ctx, pull)
        if started:
            return started
    return release_pull_request(ctx, pull, event.action, event.sender)


def release_pull_request(ctx: JobContext, pull: PullRequest, action: str, actor: str) -> str:
    released = locks.release_pull(ctx.rt.redis, pull.repo.id, pull.number)
    artifacts.discard_pull_plans(ctx.rt.redis, pull.repo.id, pull.number)
    audit.record(ctx.rt.redis, action, user=actor, repo=pull.repo.id, pull=pull.number,
                 commit=pull.merge_sha or pull.head_sha, project=",".join(released), result="locks released",
                 job_id=ctx.job_id)
    return f"released {len(released)} lock(s)"
