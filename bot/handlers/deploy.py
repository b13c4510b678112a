"""Merge-to-deploy: re-plan each reviewed project on the merge commit and apply it only if its
resource changes (addresses and actions) are the ones that were reviewed; then release the
pull request's locks."""
from __future__ import annotations

from dataclasses import replace

from bot.context import JobContext
from bot.execution import apply_in, effective_for, plan_in, store_plan
from bot.handlers.apply import ApplyHandler, apply_lease, project_of
from bot.handlers.base import Handler, Request, Started
from bot.handlers.unlock import release_pull_request
from bot.models import Command, OutcomeStatus, ProjectOutcome, PullRequest, RunKind
from bot.runs.model import NewRun, Run
from bot.state import artifacts, audit, deployments
from runners.models import ResourceChange

MERGED_DIR = "merged"


class DeployHandler(Handler):
    name = "deploy"
    needs_permission = False  # started by the merge itself, never by a comment

    def start(self, ctx: JobContext, request: Request) -> Started:
        """The deploy run of the reviewed projects whose apply_on_merge holds; "" when none."""
        merged = merged_pull(request.pull)
        plans = artifacts.pull_plans(ctx.redis, merged.repo.id, merged.number)
        if not plans:
            return ""
        repo_dir = ctx.checkout(merged, sha=merged.head_sha, subdir=MERGED_DIR)
        effective = [effective_for(ctx, merged, repo_dir, project_of(p)) for p in plans]
        effective = [ep for ep in effective if ep.apply_on_merge]
        if not effective:
            return ""
        run = Run(id=f"{ctx.job_id}-deploy", kind=RunKind.DEPLOY, pull=merged, command=Command("apply"),
                  actor=merged.author, projects=[ep.project for ep in effective], coordinator_job=ctx.job_id)
        return NewRun(run, effective, parallel=False)

    def project(self, ctx: JobContext, run: Run, outcome: ProjectOutcome) -> None:
        """Re-plan on the merge commit, compare with the reviewed plan, apply."""
        merged, r = run.pull, ctx.redis
        reviewed = artifacts.get_plan(r, merged.repo.id, merged.number, outcome.project.key)
        if reviewed is None:
            outcome.status, outcome.message = OutcomeStatus.SKIPPED, "No reviewed plan for this project any more."
            return
        repo_dir = ctx.checkout(merged, sha=merged.head_sha, subdir=MERGED_DIR)
        fresh = plan_in(ctx, merged, repo_dir, effective_for(ctx, merged, repo_dir, outcome.project), (), run.actor)
        outcome.plan = fresh
        if not fresh.ok:
            outcome.status = OutcomeStatus.FAILED
            outcome.message = "Re-planning on the merge commit failed: nothing was applied."
            return
        difference = describe_difference(reviewed.changes, fresh.changes)
        if difference:
            outcome.status = OutcomeStatus.FAILED
            outcome.message = ("The plan on the merge commit differs from the reviewed plan, so nothing was "
                               f"applied:\n{difference}\n\nOpen a pull request to review the new changes.")
            audit.record(r, "apply_refused", user=run.actor, repo=merged.repo.id, pull=merged.number,
                         commit=merged.head_sha, project=reviewed.project_key, result="plan changed after merge",
                         job_id=ctx.job_id)
            return
        lease = apply_lease(ctx, merged.repo.id, reviewed.project_key)
        if not lease.acquire():
            outcome.status, outcome.message = OutcomeStatus.SKIPPED, "Another apply of this project is running right now."
            return
        with lease.kept():
            saved = store_plan(ctx, merged, outcome.project, fresh, head_sha=merged.head_sha)
            result = apply_in(ctx, merged, repo_dir, saved, outcome.project, run.actor) if saved else None
        outcome.apply = result
        outcome.status = OutcomeStatus.APPLIED if result and result.ok else OutcomeStatus.FAILED
        audit.record(r, "apply", user=run.actor, repo=merged.repo.id, pull=merged.number, commit=merged.head_sha,
                     project=reviewed.project_key, plan_sha256=saved.sha256 if saved else "",
                     result="success (merge-to-deploy)" if outcome.status is OutcomeStatus.APPLIED else "failed",
                     job_id=ctx.job_id)
        if outcome.status is OutcomeStatus.APPLIED:
            deployments.record_last_applied(r, merged.repo.id, reviewed.project_key, merged.head_sha)

    def finish(self, ctx: JobContext, run: Run, outcomes: list[ProjectOutcome]) -> None:
        ApplyHandler().finish(ctx, run, outcomes)
        release_pull_request(ctx, run.pull, "merged", run.actor)


def change_set(changes: list[ResourceChange]) -> set[tuple[str, str]]:
    return {(c.address, c.action) for c in changes}


def describe_difference(reviewed: list[ResourceChange], now: list[ResourceChange]) -> str:
    added = sorted(change_set(now) - change_set(reviewed))
    gone = sorted(change_set(reviewed) - change_set(now))
    lines = [f"- now also: {action} `{address}`" for address, action in added]
    lines += [f"- no longer: {action} `{address}`" for address, action in gone]
    return "\n".join(lines)


def merged_pull(pull: PullRequest) -> PullRequest:
    """The pull request as deployed: its 'head' is the merge commit (statuses land there)."""
    return replace(pull, head_sha=pull.merge_sha or pull.head_sha)
