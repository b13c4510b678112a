"""Merge-to-deploy: re-plan each reviewed project on the merge commit and apply it only if
its resource changes (addresses and actions) are the ones that were reviewed."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bot import artifacts, audit, drift, notify
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.models import ProjectOutcome, PullRequest
from bot.orchestrator import JobContext
from bot.reporting import CommandReport
from runners.models import ResourceChange

CONTEXT = "plankeeper/apply"


def change_set(changes: list[ResourceChange]) -> set[tuple[str, str]]:
    return {(c.address, c.action) for c in changes}


def describe_difference(reviewed: list[ResourceChange], now: list[ResourceChange]) -> str:
    added = sorted(change_set(now) - change_set(reviewed))
    gone = sorted(change_set(reviewed) - change_set(now))
    lines = [f"- now also: {action} `{address}`" for address, action in added]
    lines += [f"- no longer: {action} `{address}`" for address, action in gone]
    return "\n".join(lines)


def merge_to_deploy(ctx: JobContext, pull: PullRequest) -> str:
    """Apply the merged pull request's reviewed plans on its merge commit; returns a summary."""
    from bot.applying import _apply, _project_of  # shared apply step
    from bot.planning import _plan

    plans = artifacts.pull_plans(ctx.rt.redis, pull.repo.id, pull.number)
    if not plans:
        return "merge-to-deploy: nothing was planned"
    merge_sha = pull.merge_sha or pull.head_sha
    merged = replace(pull, head_sha=merge_sha)
    report = CommandReport(ctx, merged, "apply")
    outcomes = [ProjectOutcome(_project_of(p), "queued", log_url=ctx.job_url) for p in plans]
    report.start(outcomes)
    ctx.forge.set_status(pull.repo, merge_sha, CONTEXT, PENDING, "merge-to-deploy running", ctx.job_url)
    repo_dir = ctx.checkout(merged, sha=merge_sha, subdir="merged")
    for outcome, reviewed in zip(outcomes, plans):
        outcome.status = "running"
        report.progress(outcomes)
        fresh = _plan(ctx, merged, repo_dir, outcome.project, ())
        outcome.plan = fresh
        if not fresh.ok:
            outcome.status = "failed"
            outcome.message = "Re-planning on the merge commit failed: nothing was applied."
            continue
        difference = describe_difference(reviewed.changes, fresh.changes)
        if difference:
            outcome.status = "failed"
            outcome.message = ("The plan on the merge commit differs from the reviewed plan, so nothing was "
                               f"applied:\n{difference}\n\nOpen a pull request to review the new changes.")
            audit.record(ctx.rt.redis, "apply_refused", user=pull.author, repo=pull.repo.id, pull=pull.number,
                         commit=merge_sha, project=reviewed.project_key, result="plan changed after merge",
                         job_id=ctx.job_id)
            continue
        saved = artifacts.save_plan(ctx.rt.redis, replace(reviewed, head_sha=merge_sha, sha256="",
                                                          job_id=ctx.job_id), Path(fresh.plan_file or ""))
        result = _apply(ctx, merged, repo_dir, saved, outcome.project)
        outcome.apply = result
        outcome.status = "applied" if result.ok else "failed"
        if result.ok:
            drift.record_last_applied(ctx.rt.redis, pull.repo.id, reviewed.project_key, merge_sha)
        audit.record(ctx.rt.redis, "apply", user=pull.author, repo=pull.repo.id, pull=pull.number, commit=merge_sha,
                     project=reviewed.project_key, plan_sha256=saved.sha256,
                     result="success (merge-to-deploy)" if result.ok else "failed", job_id=ctx.job_id)
        report.progress(outcomes)
    report.finish(outcomes)
    notify.apply_finished(ctx.settings, merged, outcomes, ctx.job_url, pull.author)
    ok = all(o.status == "applied" for o in outcomes)
    ctx.forge.set_status(pull.repo, merge_sha, CONTEXT, SUCCESS if ok else FAILURE,
                         "merge-to-deploy applied" if ok else "merge-to-deploy did not apply everything", ctx.job_url)
    return "merge-to-deploy: " + ("applied" if ok else "not everything applied")
