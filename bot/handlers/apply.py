"""/apply and apply on approval: check what may refuse it, then apply each stored plan under
the project's lock and its apply lease; automerge when everything applied."""
from __future__ import annotations

import fnmatch
import time
from typing import Optional

from bot import notify, policies, requirements, selection
from bot.context import JobContext
from bot.errors import ApplyRefused
from bot.execution import apply_in, effective_for, use_plan_repo_config
from bot.handlers.base import Handler, Request, Started, Trigger
from bot.models import ApplyResult, Command, OutcomeStatus, ProjectOutcome, PullRequest, RunKind, pull_ref
from bot.runs.model import NewRun, Run
from bot.runs.report import silenced_projects
from bot.state import artifacts, audit, deployments, keys, leases, locks, reverts
from runners.models import Project
from runners.repo_config_merge import automerge_settings
from runners.repo_config_schema import EffectiveProject, RepoConfig

LOCK_WAIT_POLL_SECONDS = 2


class ApplyHandler(Handler):
    name = "apply"

    def start(self, ctx: JobContext, request: Request) -> Started:
        pull, command, actor = request.pull, request.command, request.actor
        by_approval = request.trigger is Trigger.APPROVAL
        plans = selected_plans(artifacts.pull_plans(ctx.redis, pull.repo.id, pull.number), command)
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
            if by_approval:
                return "not applied: policy checks failed"
            raise ApplyRefused(refusal, title="Apply refused")
        repo_dir = ctx.checkout(pull)
        ctx.prestart_terraform(pull, repo_dir)
        use_plan_repo_config(ctx, pull, repo_dir)  # a hook's generated config, as the plan read it
        config, _ = selection.load_effective(ctx.workspace, repo_dir, ctx.settings.repo_settings(pull.repo.id))
        effective = [effective_for(ctx, pull, repo_dir, project_of(p)) for p in plans]
        if by_approval:
            effective = [ep for ep in effective if ep.apply_on_approval]
            if not effective:
                return "ignored: apply_on_approval is off for every planned project"
        problems = requirements.unmet(ctx, pull, sorted({r for ep in effective for r in ep.apply_requirements}),
                                      repo_dir)
        if problems:
            audit.record(ctx.redis, "apply_refused", user=actor, repo=pull.repo.id, pull=pull.number,
                         commit=pull.head_sha, result="; ".join(problems), job_id=ctx.job_id)
            if by_approval:
                return "not applied: " + "; ".join(problems)
            raise ApplyRefused("Apply requirements do not hold:\n" + "\n".join(f"- {p}" for p in problems),
                               title="Apply refused")
        run = Run(id=f"{ctx.job_id}-apply", kind=RunKind.APPLY, pull=pull, command=command, actor=actor,
                  projects=[ep.project for ep in effective], coordinator_job=ctx.job_id,
                  abort_on_fail=bool(config and config.abort_on_execution_order_fail),
                  via=via_for(ctx, pull, deployments.Via.APPROVAL if by_approval else deployments.Via.COMMENT),
                  silenced=silenced_projects(effective, "apply"),
                  automerge=automerge_plan(ctx, pull, command, config, effective))
        return NewRun(run, effective, parallel=bool(config and config.parallel_apply))

    def project(self, ctx: JobContext, run: Run, outcome: ProjectOutcome) -> None:
        """Apply the stored plan under the project's lock and its apply lease."""
        pull, r = run.pull, ctx.redis
        plan = artifacts.get_plan(r, pull.repo.id, pull.number, outcome.project.key)
        if plan is None:
            outcome.status = OutcomeStatus.SKIPPED
            outcome.message = "This plan was already applied (or discarded) by another job."
            return
        held = hold_lock(ctx, pull, plan.project_key, run.command.queue)
        if held is not None:
            outcome.status, outcome.message = OutcomeStatus.LOCKED, (
                f"🔒 Locked by [{pull_ref(pull.repo.forge, held.pull_number)}]({held.pull_url}) (@{held.user}): "
                "comment `/apply --queue` to wait for it.")
            return
        lease = apply_lease(ctx, pull.repo.id, plan.project_key)
        if not lease.acquire():
            outcome.status, outcome.message = OutcomeStatus.SKIPPED, "Another apply of this project is running right now."
            return
        with lease.kept():
            current = artifacts.get_plan(r, pull.repo.id, pull.number, plan.project_key)
            if current is None or current.sha256 != plan.sha256:
                outcome.status = OutcomeStatus.SKIPPED
                outcome.message = "This plan was already applied (or replaced) by another job."
                return
            repo_dir = ctx.checkout(pull)
            use_plan_repo_config(ctx, pull, repo_dir)
            result = apply_in(ctx, pull, repo_dir, current, outcome.project, run.actor)
            outcome.apply = result
            outcome.status = OutcomeStatus.APPLIED if result.ok else (
                OutcomeStatus.CANCELLED if result.cancelled else OutcomeStatus.FAILED)
            audit.record(r, "apply", user=run.actor, repo=pull.repo.id, pull=pull.number, commit=pull.head_sha,
                         project=plan.project_key, plan_sha256=plan.sha256,
                         result="success" if result.ok else f"failed: {result.failed_step or ''}", job_id=ctx.job_id)
            record_deployment(ctx, run, plan.project_key, current.sha256, result)
            if result.ok:
                artifacts.delete_plan(r, pull.repo.id, pull.number, plan.project_key)

    def finish(self, ctx: JobContext, run: Run, outcomes: list[ProjectOutcome]) -> None:
        """Notify, then automerge when everything applied."""
        notify.apply_finished(ctx.settings, run.pull, outcomes, ctx.url_of(run.coordinator_job), run.actor)
        if all(o.status is OutcomeStatus.APPLIED for o in outcomes):
            maybe_automerge(ctx, run)


def via_for(ctx: JobContext, pull: PullRequest, usual: deployments.Via) -> deployments.Via:
    """How a deployment came about: a revert pull request the bot opened is a rollback, whoever applies it."""
    return deployments.Via.REVERT if reverts.of_revert_pull(ctx.redis, pull.repo.id, pull.number) else usual


def apply_lease(ctx: JobContext, repo_id: str, project_key: str) -> leases.Lease:
    """One apply of a project at a time across every worker (pull requests, merges, drift)."""
    return leases.Lease(ctx.redis, keys.APPLY_MUTEX.format(repo=repo_id, project=project_key), ctx.job_id)


def record_deployment(ctx: JobContext, run: Run, project_key: str, plan_sha256: str, result: ApplyResult) -> None:
    """The apply as a Deployment (a failed one too); a successful one moves the project's live commit."""
    pull = run.pull
    deployments.record(ctx.redis, deployments.Deployment(
        repo=pull.repo.id, project=project_key, commit=pull.head_sha, pull=pull.number, user=run.actor,
        result=deployment_result(result), plan_sha256=plan_sha256, via=run.via or deployments.Via.COMMENT,
        job_id=ctx.job_id, pull_url=pull.url))


def deployment_result(result: ApplyResult) -> str:
    return "success" if result.ok else f"failed: {result.failed_step or 'apply'}"


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


def hold_lock(ctx: JobContext, pull: PullRequest, project_key: str, queue: bool) -> Optional[locks.Lock]:
    """None when this pull request holds the project's lock (taking it if free), else the holder.
    With `--queue`, waits for the holder up to terraform.timeout."""
    deadline = time.time() + ctx.settings.terraform.timeout
    while True:
        held = locks.try_lock(ctx.redis, locks.new_lock(pull.repo.id, project_key, pull.number, pull.url,
                                                        pull.author))
        if held.pull_number == pull.number:
            return None
        if not queue or time.time() > deadline or ctx.should_stop(pull)():
            return held
        ctx.log(f"waiting for the lock of {project_key} held by {pull_ref(pull.repo.forge, held.pull_number)}")
        time.sleep(LOCK_WAIT_POLL_SECONDS)


def automerge_plan(ctx: JobContext, pull: PullRequest, command: Command, config: Optional[RepoConfig],
                   effective: list[EffectiveProject]) -> dict:
    """How the pull request is merged once every planned project applied: automerge (the repo
    config's, else the server's), the method (`--auto-merge-method`, else automerge_method) and
    whether the source branch goes (delete_source_branch_on_merge of any project applied)."""
    enabled, method = automerge_settings(config, ctx.settings.repo_settings(pull.repo.id))
    return {"enabled": enabled and not command.auto_merge_disabled, "method": command.auto_merge_method or method,
            "delete_source_branch": any(ep.delete_source_branch_on_merge for ep in effective)}


def maybe_automerge(ctx: JobContext, run: Run) -> None:
    pull, plan = run.pull, run.automerge
    if not plan.get("enabled"):
        return
    if artifacts.pull_plans(ctx.redis, pull.repo.id, pull.number):
        return  # some planned project is still unapplied
    method, delete = plan.get("method", "merge"), bool(plan.get("delete_source_branch"))
    try:
        ctx.forge.merge(pull, delete_source_branch=delete, method=method)
        deleted = f" and deleted `{pull.head_ref}`" if delete and not pull.is_fork else ""
        ctx.forge.create_comment(pull, f"**Plankeeper** merged this pull request ({method}){deleted}: every planned "
                                 "project applied.")
    except Exception as exc:  # the merge is a courtesy: say why it did not happen, keep the apply's result
        ctx.forge.create_comment(pull, f"**Plankeeper** could not automerge ({method}): {ctx.redact(str(exc))}")
