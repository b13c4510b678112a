"""RQ entry points of a run (bot.runs): one job per project, then the finalizing job."""
from __future__ import annotations

import logging
import os
import time

from rq import get_current_job

from bot import joblog, metrics, runs
from bot.errors import UserFacingError
from bot.forges import make_forge
from bot.jobs import redactor, runtime
from bot.models import ProjectOutcome
from bot.orchestrator import JobContext
from bot.reporting import CommandReport

log = logging.getLogger(__name__)
RUN_LOCK_KEY = "pk:run-lock:{}"
REFRESH_KEY = "pk:run-refresh:{}"
REFRESH_SECONDS = 3.0
FINAL = ("planned", "no_changes", "applied", "failed", "locked", "cancelled", "skipped")


def _context(run: runs.Run, job_id: str) -> JobContext:
    rt = runtime()
    redact = redactor(rt.settings)
    ctx = JobContext(rt, make_forge(run.pull.repo, rt.settings), job_id, joblog.JobLog(rt.redis, job_id, redact),
                     redact)
    ctx.started_at = run.created_at  # a /cancel after the run started stops every project of it
    return ctx


def _report(ctx: JobContext, run: runs.Run) -> CommandReport:
    report = CommandReport(ctx, run.pull, run.report_command)
    report.comment_id, report.comment_url = run.comment_id or None, run.comment_url
    report.job_url = ctx.rt.job_url(run.coordinator_job)
    return report


def refresh_comment(ctx: JobContext, run: runs.Run, force: bool = False) -> None:
    """Re-render the run's comment from every project's recorded outcome (one editor at a time).

    Progress edits are throttled (one per REFRESH_SECONDS per run) and skipped once every
    project is final, since the finalizing job renders the comment then: API writes stay
    within 4 + one per project however many projects run (forges rate-limit writes).
    """
    r = ctx.rt.redis
    if not force and not r.set(REFRESH_KEY.format(run.id), "1", nx=True, px=int(REFRESH_SECONDS * 1000)):
        return
    with r.lock(RUN_LOCK_KEY.format(run.id), timeout=60, blocking_timeout=30):
        outcomes = runs.outcomes(r, run)
        if force or not all(o.status in FINAL for o in outcomes):
            _report(ctx, run).progress(outcomes)


def _work(kind: str):
    from bot.applying import apply_project
    from bot.deploy import deploy_project
    from bot.planning import plan_project

    return {"plan": plan_project, "apply": apply_project, "deploy": deploy_project}[kind]


def _job_of(payload: dict) -> tuple[JobContext, runs.Run]:
    """The context of the current RQ job and the run its payload names."""
    job = get_current_job()
    job_id = job.id if job else f"inline-{time.time():.0f}"
    run = runs.load(runtime().redis, payload["run"])
    return _context(run, job_id), run


def run_project(payload: dict) -> str:
    """RQ entry point: plan, apply or deploy one project of a run."""
    ctx, run = _job_of(payload)
    rt, job_id, job = ctx.rt, ctx.job_id, get_current_job()
    started = time.time()
    joblog.record_job(rt.redis, job_id, state="running", started_at=started, pid=os.getpid(),
                      worker=getattr(job, "worker_name", None))  # which worker ran it, across machines
    try:
        outcome = execute_project(ctx, run, int(payload["index"]))
    finally:
        ctx.cleanup()
    state = "failed" if outcome.status == "failed" else "succeeded"
    joblog.record_job(rt.redis, job_id, state=state, summary=outcome.status, ended_at=time.time(),
                      duration=f"{time.time() - started:.2f}")
    metrics.count_job(rt.redis, f"{run.kind}_project", state, time.time() - started)
    return outcome.status


def execute_project(ctx: JobContext, run: runs.Run, index: int) -> ProjectOutcome:
    """Run one project of the run in ctx; records the outcome and refreshes the comment."""
    r = ctx.rt.redis
    outcome = runs.outcomes(r, run)[index]
    outcome.log_url = ctx.job_url
    try:
        if _blocked_by_failed_dependency(r, run, index):
            outcome.status, outcome.message = "skipped", "Skipped: a project it waits for failed."
        elif ctx.should_stop(run.pull)():
            outcome.status, outcome.message = "cancelled", "Cancelled by `/cancel` before it started."
        else:
            outcome.status = "running"
            runs.save_outcome(r, run.id, index, outcome)
            refresh_comment(ctx, run)
            _work(run.kind)(ctx, run, outcome)
    except UserFacingError as exc:
        outcome.status, outcome.message = "failed", exc.message
    except Exception:
        log.exception("job %s: %s of %s failed", ctx.job_id, run.kind, outcome.project.key)
        outcome.status, outcome.message = "failed", f"Internal error (job `{ctx.job_id}`): see the server log."
    _mask(ctx, outcome)
    runs.save_outcome(r, run.id, index, outcome)
    refresh_comment(ctx, run)
    return outcome


def _mask(ctx: JobContext, outcome: ProjectOutcome) -> None:
    """Mask with this job's redactor (it knows the plan's sensitive values) before storing:
    the comment is rendered later by other jobs that do not."""
    outcome.message = ctx.redact(outcome.message)
    for result in (outcome.plan, outcome.apply):
        if result is not None:
            result.output, result.error, result.summary = (ctx.redact(result.output), ctx.redact(result.error),
                                                           ctx.redact(result.summary))


def _blocked_by_failed_dependency(r, run: runs.Run, index: int) -> bool:
    if not run.abort_on_fail:
        return False
    earlier = runs.outcomes(r, run)[:index]
    return any(o.status in ("failed", "locked", "cancelled", "skipped") for o in earlier)


def finish_run(payload: dict) -> str:
    """RQ entry point: after every project job of a run."""
    ctx, run = _job_of(payload)
    rt, job_id = ctx.rt, ctx.job_id
    joblog.record_job(rt.redis, job_id, state="running", started_at=time.time())
    try:
        summary = finish(ctx, run)
    finally:
        ctx.cleanup()
    joblog.record_job(rt.redis, job_id, state="succeeded", summary=summary, ended_at=time.time())
    return summary


def finish(ctx: JobContext, run: runs.Run) -> str:
    """The final comment and statuses, then what the run's kind does last; returns the overview."""
    from bot.render import overview

    r = ctx.rt.redis
    outcomes = runs.outcomes(r, run)
    for i, outcome in enumerate(outcomes):
        if outcome.status not in FINAL:  # its job died before recording anything
            outcome.status = "failed"
            outcome.message = f"Its job (`{run.project_job_id(i)}`) stopped before finishing: comment the command again."
    try:
        with r.lock(RUN_LOCK_KEY.format(run.id), timeout=60, blocking_timeout=30):
            _report(ctx, run).finish(outcomes)
        _after(ctx, run, outcomes)
    finally:
        runs.clear_active(r, run)
    summary = overview(run.report_command, outcomes, running=False)
    joblog.record_job(r, run.coordinator_job, summary=summary)
    return summary


def _after(ctx: JobContext, run: runs.Run, outcomes: list[ProjectOutcome]) -> None:
    from bot import hooks
    from bot.applying import finish_apply, release_pull_request

    if run.kind == "plan":
        problem = hooks.run_post_workflow_hooks(ctx, run.pull, ctx.checkout(run.pull)) if _has_post_hooks(ctx, run) else ""
        if problem:
            ctx.forge.create_comment(run.pull, ctx.redact(f"**Post-workflow hook failed**\n\n{problem}"))
    elif run.kind == "apply":
        finish_apply(ctx, run, outcomes)
    else:
        finish_apply(ctx, run, outcomes)
        release_pull_request(ctx, run.pull, "merged", run.actor)


def _has_post_hooks(ctx: JobContext, run: runs.Run) -> bool:
    return bool(ctx.settings.repo_settings(run.pull.repo.id).post_workflow_hooks)


def project_job_died(job, payload: dict, reason: str) -> None:
    """A project job's worker died: record its outcome as failed so the comment says so."""
    rt = runtime()
    run = runs.load(rt.redis, payload["run"])
    index = int(payload["index"])
    outcome = runs.outcomes(rt.redis, run)[index]
    outcome.status = "failed"
    outcome.message = (f"Internal error (job `{job.id}`): the job stopped because {reason}. Locks and saved "
                       "plans are kept; comment the command again to retry.")
    runs.save_outcome(rt.redis, run.id, index, outcome)
    if run.kind in ("apply", "deploy"):
        # its Terraform got SIGINT when the job died (runners.process): let a retry apply
        from bot.applying import APPLYING_KEY, release_mutex

        release_mutex(rt.redis, APPLYING_KEY.format(repo=run.pull.repo.id, project=outcome.project.key), job.id)
    refresh_comment(_context(run, job.id), run, force=True)
