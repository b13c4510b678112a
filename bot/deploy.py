"""Merge-to-deploy: re-plan each reviewed project on the merge commit and apply it only if
its resource changes (addresses and actions) are the ones that were reviewed."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from bot import artifacts, audit, drift, runs
from bot.models import Command, ProjectOutcome, PullRequest
from bot.orchestrator import JobContext
from bot.reporting import CommandReport
from runners.models import ResourceChange

MERGED_DIR = "merged"


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


def start_deploy(ctx: JobContext, pull: PullRequest) -> Optional[str]:
    """Start the deploy run of the reviewed projects whose apply_on_merge holds; None if none."""
    from bot.applying import project_of
    from bot.planning import effective_for, start_run

    merged = merged_pull(pull)
    plans = artifacts.pull_plans(ctx.rt.redis, pull.repo.id, pull.number)
    repo_dir = ctx.checkout(merged, sha=merged.head_sha, subdir=MERGED_DIR)
    effective = [effective_for(ctx, merged, repo_dir, project_of(p)) for p in plans]
    effective = [ep for ep in effective if ep.apply_on_merge]
    if not effective:
        return None
    run = runs.Run(id=f"{ctx.job_id}-deploy", kind="deploy", pull=merged, command=Command("apply"),
                   actor=pull.author, projects=[ep.project for ep in effective], coordinator_job=ctx.job_id)
    start_run(ctx, run, CommandReport(ctx, merged, "apply"), False, effective)
    return f"merge-to-deploy of {len(effective)} project(s) in run {run.id}"


def deploy_project(ctx: JobContext, run: runs.Run, outcome: ProjectOutcome) -> None:
    """One project job of a deploy run: re-plan on the merge commit, compare, apply."""
    from bot.applying import apply_in
    from bot.planning import effective_for, plan_in, store_plan

    merged, r = run.pull, ctx.rt.redis
    reviewed = artifacts.get_plan(r, merged.repo.id, merged.number, outcome.project.key)
    if reviewed is None:
        outcome.status, outcome.message = "skipped", "No reviewed plan for this project any more."
        return
    repo_dir = ctx.checkout(merged, sha=merged.head_sha, subdir=MERGED_DIR)
    fresh = plan_in(ctx, merged, repo_dir, effective_for(ctx, merged, repo_dir, outcome.project), (), run.actor)
    outcome.plan = fresh
    if not fresh.ok:
        outcome.status, outcome.message = "failed", "Re-planning on the merge commit failed: nothing was applied."
        return
    difference = describe_difference(reviewed.changes, fresh.changes)
    if difference:
        outcome.status = "failed"
        outcome.message = ("The plan on the merge commit differs from the reviewed plan, so nothing was "
                           f"applied:\n{difference}\n\nOpen a pull request to review the new changes.")
        audit.record(r, "apply_refused", user=run.actor, repo=merged.repo.id, pull=merged.number,
                     commit=merged.head_sha, project=reviewed.project_key, result="plan changed after merge",
                     job_id=ctx.job_id)
        return
    saved = store_plan(ctx, merged, outcome.project, fresh, head_sha=merged.head_sha)
    result = apply_in(ctx, merged, repo_dir, saved, outcome.project, run.actor)
    outcome.apply = result
    outcome.status = "applied" if result.ok else "failed"
    audit.record(r, "apply", user=run.actor, repo=merged.repo.id, pull=merged.number, commit=merged.head_sha,
                 project=reviewed.project_key, plan_sha256=saved.sha256 if saved else "",
                 result="success (merge-to-deploy)" if result.ok else "failed", job_id=ctx.job_id)
    if result.ok:
        drift.record_last_applied(r, merged.repo.id, reviewed.project_key, merged.head_sha)
