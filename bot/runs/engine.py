"""The run engine: start a handler's run, execute each project, finalize, report dead jobs.

A coordinator (the event's job) gets a NewRun from a handler's start; the engine posts the
comment (every project queued) and records the run. Projects run in lanes: the coordinator
itself, in place, takes the projects no other project waits for (all of them when one worker
is registered, which would run them one by one anyway), sharing its checkout and sparing a
forked job each; every other project is an RQ job of its own. A project job, once its own project
is done, takes what is left of the coordinator's lane the same way, so two workers split the lane
with one checkout and one Terraform session each, while its timeout leaves a project's worth of
time (bot.jobs.PROJECT_STEPS). A lane claims a project before running it (the run's hash), so each
runs once. Ordering (`parallel_plan`/`parallel_apply`
off, `execution_order_group`, `depends_on`) becomes RQ job dependencies. Lanes call the
handler's `project`, record the outcome in Redis and refresh the comment; the lane that records
the last outcome finishes the run: the final comment and statuses, then the handler's `finish`.
A finalizing job that depends on every project job and on the coordinator finishes it instead
when no lane could: a project's job or the coordinator killed mid-project is recorded as failed
(`project_died`, `lane_died`), so the comment never stays "running" nor a status pending.
While a run is active, the pull request's next event waits for its finalizing job.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from rq import Worker, get_current_job
from rq.job import Dependency

from bot import queueing, render
from bot.context import JobContext
from bot.errors import UserFacingError
from bot.handlers import handler_for
from bot.models import JobState, OutcomeStatus, ProjectOutcome
from bot.runs import store
from bot.runs.model import NewRun, Run
from bot.runs.report import CommandReport
from bot.state import joblog, keys, leases
from bot.state.joblog import JobLog

log = logging.getLogger(__name__)
REFRESH_SECONDS = 3.0
COMMENT_LEASE_WAIT = 30  # seconds a job waits for another one editing the run's comment


def start(ctx: JobContext, new: NewRun) -> str:
    """Post the comment (every project queued, or running when the coordinator starts it right
    away) and queue the project jobs and the final one."""
    run = new.run
    deps = new.dependencies()
    lane, claimed = _lane(ctx, run, deps)
    outcomes = [ProjectOutcome(p, OutcomeStatus.QUEUED, log_url=ctx.url_of(run.project_job_id(i)))
                for i, p in enumerate(run.projects)]
    if lane:
        outcomes[lane[0]].status = OutcomeStatus.RUNNING
    report = CommandReport(ctx, run.pull, run.report_command, run.silenced)
    report.start(outcomes)
    if lane:  # the comment shows the project running already: no edit to say so
        ctx.redis.set(keys.RUN_REFRESH.format(run.id), "1", px=int(REFRESH_SECONDS * 1000))
    run.comment_id, run.comment_url = report.comment_id or "", report.comment_url
    store.save(ctx.redis, run)
    for i, outcome in enumerate(outcomes):
        store.save_outcome(ctx.redis, run.id, i, outcome)
    store.mark_active(ctx.redis, run)
    if lane:
        _claim(ctx, run, lane, claimed)
    else:  # the coordinator runs nothing itself: the first project job takes the kept work tree
        ctx.release_trees()
    enqueue(ctx, run, deps, claimed, after_coordinator=bool(lane))
    doing = {"plan": "planning", "apply": "applying", "deploy": "merge-to-deploy of", "import": "importing into",
             "state": "removing from the state of"}[run.kind]
    return f"{doing} {len(run.projects)} project(s) in run {run.id}"


def _lane(ctx: JobContext, run: Run, deps: list[list[int]]) -> tuple[list[int], set[int]]:
    """The projects the coordinator may run in place, in order, and those it claims at once (the
    others it claims when it gets to them, if no project job took them first). None unless this
    is the coordinator's own RQ job (which runs them: bot.jobs.work_in_place)."""
    job = get_current_job()
    if job is None or job.id != run.coordinator_job or job.id != ctx.job_id:
        return [], set()
    if Worker.count(connection=ctx.redis) <= 1:
        lane = run_order(deps)  # one worker would run the project jobs one by one after this one anyway
        return lane, set(lane)
    # with dependents or dependencies a project stays a job: RQ keeps the order between jobs
    lane = [i for i in range(len(deps)) if not deps[i] and not any(i in d for d in deps)]
    return lane, set(lane[:1])


def _claim(ctx: JobContext, run: Run, lane: list[int], claimed: set[int]) -> None:
    for i in claimed:
        store.claim_project(ctx.redis, run.id, i, ctx.job_id)
    store.save_lane(ctx.redis, run.id, lane)
    joblog.record_job(ctx.redis, ctx.job_id, run=run.id)


def run_order(deps: list[list[int]]) -> list[int]:
    """Every project after those it waits for, else in index order (a cycle keeps index order)."""
    order: list[int] = []
    while len(order) < len(deps):
        ready = [i for i in range(len(deps)) if i not in order and set(deps[i]) <= set(order)]
        order.append(ready[0] if ready else next(i for i in range(len(deps)) if i not in order))
    return order


def enqueue(ctx: JobContext, run: Run, deps: list[list[int]], claimed: set[int] = frozenset(),
            after_coordinator: bool = False) -> None:
    """A job per project (but those the coordinator claimed) and the finalizing job after them all
    (and after the coordinator, when it runs projects in place)."""
    q, timeout = queueing.queue(ctx.redis), ctx.settings.terraform.timeout
    record = {"repo": run.pull.repo.id, "pull": run.pull.number}
    for i, project in enumerate(run.projects):
        about = {**record, "title": f"{run.kind} {project.label}", "event": "project"}
        if i in claimed:  # no RQ job: its record, for the comment's log link and the UI
            joblog.record_job(ctx.redis, run.project_job_id(i), state=JobState.QUEUED, created_at=time.time(), **about)
            continue
        depends = Dependency([run.project_job_id(j) for j in deps[i]], allow_failure=True) if deps[i] else None
        queueing.enqueue_internal(q, queueing.RUN_PROJECT, {"run": run.id, "index": i}, run.project_job_id(i),
                                  timeout, depends_on=depends, record=about)
    waits = [run.project_job_id(i) for i in range(len(run.projects)) if i not in claimed]
    queueing.enqueue_internal(
        q, queueing.FINISH_RUN, {"run": run.id}, run.finalize_job_id, timeout,
        depends_on=Dependency(waits + ([run.coordinator_job] if after_coordinator else []), allow_failure=True),
        record={**record, "title": f"{run.kind} summary", "event": "finalize"},
    )


def lane_context(ctx: JobContext, run: Run, index: int) -> JobContext:
    """The coordinator's context for one project it runs in place: the project's job id (its log,
    its record, its apply lease), the coordinator's work dir and checkout (not checked out again)."""
    job_id = run.project_job_id(index)
    lane = dataclasses.replace(ctx, job_id=job_id, log=JobLog(ctx.redis, job_id, ctx.redact),
                               started_at=run.created_at)  # a /cancel after the run started stops it
    lane.__dict__["workspace"] = ctx.workspace  # functools.cached_property's slot; cleaned up by the coordinator
    return lane


def execute_project(ctx: JobContext, run: Run, index: int) -> ProjectOutcome:
    """Run one project of the run in ctx; records the outcome and refreshes the comment.

    A user's error fails the project with its message; any other exception is a bug: logged
    with its traceback and reported as an internal error naming the job."""
    outcome = store.outcomes(ctx.redis, run)[index]
    outcome.log_url = ctx.job_url
    try:
        if blocked_by_earlier_failure(ctx, run, index):
            outcome.status, outcome.message = OutcomeStatus.SKIPPED, "Skipped: a project it waits for failed."
        elif ctx.should_stop(run.pull)():
            outcome.status, outcome.message = OutcomeStatus.CANCELLED, "Cancelled by `/cancel` before it started."
        else:
            outcome.status = OutcomeStatus.RUNNING
            store.save_outcome(ctx.redis, run.id, index, outcome)
            refresh_comment(ctx, run)
            _handler(run).project(ctx, run, outcome)
    except UserFacingError as exc:
        outcome.status, outcome.message = OutcomeStatus.FAILED, exc.message
    except Exception:
        log.exception("job %s: %s of %s failed", ctx.job_id, run.kind, outcome.project.key)
        outcome.status, outcome.message = OutcomeStatus.FAILED, f"Internal error (job `{ctx.job_id}`): see the server log."
    _mask(ctx, outcome)
    store.save_outcome(ctx.redis, run.id, index, outcome)
    refresh_comment(ctx, run)
    return outcome


def blocked_by_earlier_failure(ctx: JobContext, run: Run, index: int) -> bool:
    if not run.abort_on_fail:
        return False
    return any(o.status.blocks_later_groups for o in store.outcomes(ctx.redis, run)[:index])


def refresh_comment(ctx: JobContext, run: Run, force: bool = False) -> None:
    """Re-render the run's comment from every project's recorded outcome (one editor at a time).

    Progress edits are throttled (one per REFRESH_SECONDS per run) and skipped once every
    project is final, since the finalizing job renders the comment then: API writes stay
    within 4 + one per project however many projects run (forges rate-limit writes).
    """
    throttle = keys.RUN_REFRESH.format(run.id)
    if not force and not ctx.redis.set(throttle, "1", nx=True, px=int(REFRESH_SECONDS * 1000)):
        return
    if store.finished(ctx.redis, run.id):  # final already: a late report of a dead lane must not undo it
        return
    with _comment_lease(ctx, run):
        outcomes = store.outcomes(ctx.redis, run)
        if force or not all(o.status.is_final for o in outcomes):
            _report(ctx, run).progress(outcomes)


def finish_if_last(ctx: JobContext, run: Run) -> str | None:
    """Finish the run here when every project's outcome is recorded and no other lane took the
    finishing first; returns the overview, or None when there is nothing to do here."""
    if not all(o.status.is_final for o in store.outcomes(ctx.redis, run)):
        return None
    if not store.claim_finish(ctx.redis, run.id, ctx.job_id):
        return None
    return finish(ctx, run)


def finish(ctx: JobContext, run: Run) -> str:
    """The final comment and statuses, then the handler's finish; returns the overview."""
    outcomes = store.outcomes(ctx.redis, run)
    for i, outcome in enumerate(outcomes):
        if not outcome.status.is_final:  # its job died before recording anything
            outcome.status = OutcomeStatus.FAILED
            outcome.message = f"Its job (`{run.project_job_id(i)}`) stopped before finishing: comment the command again."
    try:
        with _comment_lease(ctx, run):
            _report(ctx, run).finish(outcomes)
        _handler(run).finish(ctx, run, outcomes)
        store.mark_finished(ctx.redis, run.id)
    finally:
        store.clear_active(ctx.redis, run)
    return render.overview(run.report_command, outcomes, running=False)


def project_died(ctx: JobContext, run: Run, index: int, dead_job_id: str, reason: str) -> None:
    """A project job's worker died: record its outcome as failed so the comment says so, and
    free its apply lease at once (its Terraform got SIGINT with it: a retry may apply)."""
    outcome = store.outcomes(ctx.redis, run)[index]
    outcome.status = OutcomeStatus.FAILED
    outcome.message = (f"Internal error (job `{dead_job_id}`): the job stopped because {reason}. Locks and saved "
                       "plans are kept; comment the command again to retry.")
    store.save_outcome(ctx.redis, run.id, index, outcome)
    leases.release_if_owner(ctx.redis, keys.APPLY_MUTEX.format(repo=run.pull.repo.id, project=outcome.project.key),
                            dead_job_id)
    refresh_comment(ctx, run, force=True)


def lane_died(ctx: JobContext, run: Run, dead_job_id: str, reason: str) -> None:
    """A lane died while it ran projects in place (the coordinator, or a project job that took
    more of the coordinator's lane): each one it took and did not finish is recorded as failed,
    as a dead project job's (the finalizing job then finishes the run)."""
    outcomes = store.outcomes(ctx.redis, run)
    for index in store.lane(ctx.redis, run.id):
        if store.project_owner(ctx.redis, run.id, index) == dead_job_id and not outcomes[index].status.is_final:
            project_died(ctx, run, index, run.project_job_id(index), reason)
            joblog.record_job(ctx.redis, run.project_job_id(index), state=JobState.FAILED,
                              summary=f"failed: {reason}", ended_at=time.time())


def finish_died(ctx: JobContext, run: Run, dead_job_id: str, reason: str) -> None:
    """The finalizing job died: make the comment and statuses final from the recorded outcomes
    (what the handler's finish does last — notifications, automerge, releasing a merged pull
    request's locks — is not retried: the note says so). Nothing when a lane finished the run."""
    if store.finished(ctx.redis, run.id):
        return
    outcomes = store.outcomes(ctx.redis, run)
    for outcome in outcomes:
        if not outcome.status.is_final:
            outcome.status = OutcomeStatus.FAILED
            outcome.message = "Its run's finalizing job stopped before it was recorded: comment the command again."
    footer = (f"⚠️ The run's finalizing job (`{dead_job_id}`) stopped because {reason}: what follows a run "
              "(notifications, automerge, releasing a merged pull request's locks) did not happen.")
    try:
        with _comment_lease(ctx, run):
            _report(ctx, run).finish(outcomes, footer=footer)
    finally:
        store.clear_active(ctx.redis, run)


def _handler(run: Run):
    handler = handler_for(run.kind)
    if handler is None:
        raise LookupError(f"no handler for runs of kind {run.kind}")
    return handler


def _comment_lease(ctx: JobContext, run: Run):
    return leases.hold(ctx.redis, keys.RUN_COMMENT_MUTEX.format(run.id), ctx.job_id, wait=COMMENT_LEASE_WAIT)


def _report(ctx: JobContext, run: Run) -> CommandReport:
    report = CommandReport(ctx, run.pull, run.report_command, run.silenced)
    report.comment_id, report.comment_url = run.comment_id or None, run.comment_url
    # the coordinator set the pending status and links the comment: finishing is on its behalf
    report.job_id, report.job_url = run.coordinator_job, ctx.url_of(run.coordinator_job)
    return report


def _mask(ctx: JobContext, outcome: ProjectOutcome) -> None:
    """Mask with this job's redactor (it knows the plan's sensitive values) before storing:
    the comment is rendered later by other jobs that do not."""
    outcome.message = ctx.redact(outcome.message)
    for result in (outcome.plan, outcome.apply):
        if result is not None:
            result.output, result.error, result.summary = (ctx.redact(result.output), ctx.redact(result.error),
                                                           ctx.redact(result.summary))
