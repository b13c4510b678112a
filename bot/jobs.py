"""RQ entry points: plain-dict arguments in, the dispatcher, the run engine or a drift check out.

The worker process calls `init_worker(settings)` once; that Runtime is read here only and
passed down as a JobContext. One pull request's jobs run one at a time in arrival order (a
lease per pull request), and an event that arrives while the pull request's run is active
waits for that run's finalizing job. An event job that started a run then runs, past its turn,
the projects the engine left to it in place (bot.runs.engine). A job that raises unexpectedly,
times out or whose worker died (RQ calls `on_job_failure` for abandoned jobs too; bot.worker for a killed
work-horse) is reported on the pull request as failed, never left pending.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator, Optional

from rq import get_current_job
from rq.job import Dependency

from bot import api_runs, commands, dispatch, logs, metrics, notify, queueing, render
from bot.context import JobContext, Runtime
from bot.drift import check as drift_check
from bot.drift.status import DRIFT_PULL
from bot.errors import ForgeError, UsageError, UserFacingError
from bot.forges import make_forge
from bot.models import (
    CommentEvent,
    Event,
    JobState,
    OutcomeStatus,
    ProjectOutcome,
    PullRequestEvent,
    Repo,
    event_from_dict,
)
from bot.reconcile import sweep as reconcile
from bot.runs import engine, store
from bot.runs.model import Run
from bot.runs.report import fail_pending
from bot.settings import Settings
from bot.state import joblog, keys, leases, locks, turns
from bot.state.repos import remember_repo

log = logging.getLogger(__name__)
PULL_LEASE_TTL = 60  # seconds; renewed while the job runs, so a dead worker frees the pull request quickly
# Steps of one project (init, plan, show, a policy check) each bounded by terraform.timeout: what a
# job must have left of its RQ timeout to take one more project in place
PROJECT_STEPS = 4
_runtime: Optional[Runtime] = None  # this worker process's; read only in this module


def init_worker(settings: Settings) -> Runtime:
    """Called once per worker process before it takes jobs."""
    global _runtime
    _runtime = Runtime.connect(settings)
    return _runtime


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker not initialised: start it with `plankeeper worker` or `plankeeper serve`")
    return _runtime


def _current_job_id(prefix: str = "inline") -> str:
    job = get_current_job()
    return job.id if job else f"{prefix}-{time.time():.0f}"


def _record_start(r, job_id: str) -> None:
    job = get_current_job()
    joblog.record_job(r, job_id, state=JobState.RUNNING, started_at=time.time(), pid=os.getpid(),
                      worker=getattr(job, "worker_name", None))  # which worker ran it, across machines


# ---------------------------------------------------------------------------- events


def handle_event(payload: dict) -> str:
    """Entry point of every event job."""
    rt, job_id = runtime(), _current_job_id()
    event = event_from_dict(payload)
    logs.bind_event(job_id, event)
    joblog.record_job(rt.redis, job_id, pull_url=getattr(getattr(event, "pull", None), "url", None) or None)
    ctx = JobContext.for_job(rt, make_forge(event.repo, rt.settings), job_id)
    _record_start(rt.redis, job_id)
    metrics.count_job(rt.redis, event.kind, "started")
    remember_repo(rt.redis, event.repo)  # server-wide drift schedules check repos seen here
    try:
        with pull_request_turn(ctx, event):
            waiting_for = None if _is_cancel(ctx, event) else store.active_finalize_job(
                rt.redis, event.repo.id, event.number)
            summary = _defer(ctx, event, waiting_for) if waiting_for else dispatch.handle(ctx, event)
        summary = work_in_place(ctx) or summary  # the pull request's next job need not wait for this
    except UserFacingError as exc:
        ctx.record_end(event.kind, JobState.FAILED, f"failed: {exc.title}")
        _report_failure(ctx, event, exc.title, exc.message)
        return f"failed: {exc.title}"
    except ForgeError as exc:  # retried already; its message names the call and the answer, no secrets
        ctx.record_end(event.kind, JobState.FAILED, f"failed: {exc}")
        _report_failure(ctx, event, "The forge API failed", f"{exc}. Nothing more was run; locks and saved "
                        "plans are kept. Comment the command again once the API answers.")
        return f"failed: {exc}"
    except Exception:
        log.exception("job %s: internal error", job_id)
        ctx.record_end(event.kind, JobState.FAILED, "internal error")
        raise  # on_job_failure reports it on the pull request
    finally:
        ctx.cleanup()
    ctx.record_end(event.kind, JobState.SUCCEEDED, summary)
    return summary


@contextmanager
def pull_request_turn(ctx: JobContext, event: Event) -> Iterator[None]:
    """Run one pull request's jobs one at a time, in the order they arrived (bot.state.turns).

    /cancel skips the line: it must reach a running job, not wait behind it.
    """
    try:
        if _is_cancel(ctx, event):
            yield
            return
        key = keys.PULL_MUTEX.format(repo=event.repo.id, number=event.number)
        wait = ctx.settings.terraform.timeout * queueing.JOB_TIMEOUT_STEPS
        deadline = time.time() + wait
        turns.wait_for_earlier(ctx.redis, event.repo.id, event.number, ctx.job_id, key, deadline)
        lease = leases.Lease(ctx.redis, key, ctx.job_id, ttl=PULL_LEASE_TTL)
        if not lease.acquire(max(0.0, deadline - time.time())):
            raise UserFacingError(
                f"Another job of this pull request (`{lease.holder()}`) kept running for {wait} s, so this one "
                "gave up waiting for its turn. Comment the command again once it is done, or `/cancel` it.",
                title="Busy with another job")
        with lease.kept():
            yield
    finally:
        turns.leave(ctx.redis, event.repo.id, event.number, ctx.job_id)


def _is_cancel(ctx: JobContext, event: Event) -> bool:
    if not isinstance(event, CommentEvent):
        return False
    try:
        command = commands.parse_comment(event.body, aliases=ctx.settings.comment_aliases)
    except UsageError:
        return False
    return command is not None and command.name == "cancel"


def _defer(ctx: JobContext, event: Event, waiting_for: str) -> str:
    """Queue the event again behind the pull request's unfinished run, keeping their order."""
    later = queueing.enqueue_event(ctx.redis, event, ctx.settings.terraform.timeout,
                                   job_id=f"{ctx.job_id}-after-{waiting_for[-12:]}",
                                   depends_on=Dependency([waiting_for], allow_failure=True))
    return f"deferred: waits for {waiting_for} (continues as {later})"


def _report_failure(ctx: JobContext, event: Event, title: str, message: str) -> None:
    """Tell the pull request what went wrong and fail whatever status the job set pending."""
    notify.job_failed(ctx.settings, ctx.job_id, event.repo.id, event.number, f"{title}: {message}", ctx.job_url,
                      forge=event.repo.forge)
    try:
        pull = ctx.forge.pull_request(event.repo, event.number)
        ctx.forge.create_comment(pull, render.error_comment(title, message, ctx.redact, ctx.job_url))
        fail_pending(ctx.forge, ctx.redis, ctx.job_id, event.repo, title, ctx.job_url)
    except Exception:  # the report is best effort: the job record and the log keep the failure
        log.exception("job %s: could not report failure on %s#%s", ctx.job_id, event.repo.id, event.number)


# ---------------------------------------------------------------------------- runs


def _run_context(payload: dict) -> tuple[JobContext, Run]:
    """The context of the current RQ job and the run its payload names."""
    rt = runtime()
    run = store.load(rt.redis, payload["run"])
    ctx = JobContext.for_job(rt, make_forge(run.pull.repo, rt.settings), _current_job_id())
    ctx.started_at = run.created_at  # a /cancel after the run started stops every project of it
    return ctx, run


def run_project(payload: dict) -> str:
    """Plan, apply or deploy one project of a run: {run, index}, unless another lane took it; then
    the projects of the coordinator's lane that no lane has started yet, in place (one checkout and
    one Terraform session for them all, where a job each would fork, check out and start Terraform
    again). Finishes the run when it records the last outcome."""
    ctx, run = _run_context(payload)
    index = int(payload["index"])
    try:
        # a project another lane took: nothing recorded here, the record is that lane's
        outcome = _project(ctx, run, index) if _take(ctx, run, index) else None
        took = _run_lane(ctx, run, done=index)
        if outcome is None and not took:
            return f"run in place by {store.project_owner(ctx.redis, run.id, index)}"
        try:
            engine.finish_if_last(ctx, run)
        except Exception:  # its outcome stands; the run's finalizing job finishes the run
            log.exception("job %s: could not finish run %s", ctx.job_id, run.id)
    finally:
        ctx.cleanup()
    done = [str(outcome.status)] if outcome else []
    return ", ".join(done + ([f"{took} more in place"] if took else []))


def work_in_place(ctx: JobContext) -> str | None:
    """Run here the projects of the run this job started that the engine left to it (and no project
    job took first), sharing this job's checkout; returns the run's overview when it finished it
    here, else None (no run, or another lane records the last outcome)."""
    run_id = (joblog.get_job(ctx.redis, ctx.job_id) or {}).get("run")
    if not run_id:
        return None
    run = store.load(ctx.redis, run_id)
    _run_lane(ctx, run)
    return engine.finish_if_last(ctx, run)


def _run_lane(ctx: JobContext, run: Run, done: int | None = None) -> int:
    """Run here, one by one, the projects of the coordinator's lane this job claimed already (the
    coordinator's: no job of their own runs them) or can claim now while it has the time for one;
    `done` is one it ran already. Returns how many it ran."""
    took = 0
    for index in store.lane(ctx.redis, run.id):
        if index == done:
            continue
        mine = store.project_owner(ctx.redis, run.id, index) == ctx.job_id
        if mine or (_time_for_another_project(ctx) and store.claim_project(ctx.redis, run.id, index, ctx.job_id)):
            _project(engine.lane_context(ctx, run, index), run, index)
            took += 1
    return took


def _time_for_another_project(ctx: JobContext) -> bool:
    """Whether this job's RQ timeout leaves a whole project's steps (each bounded by
    terraform.timeout) after what it has run or waited for so far: a project taken later
    would be killed half-way, where its own job would have had the time."""
    job = get_current_job()
    if job is None or job.started_at is None or not job.timeout:
        return True
    started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=timezone.utc)
    left = float(job.timeout) - (datetime.now(timezone.utc) - started).total_seconds()
    return left >= ctx.settings.terraform.timeout * PROJECT_STEPS


def _take(ctx: JobContext, run: Run, index: int) -> bool:
    """Whether this job runs the project: it claimed it before, or claims it now."""
    return (store.project_owner(ctx.redis, run.id, index) == ctx.job_id
            or store.claim_project(ctx.redis, run.id, index, ctx.job_id))


def _project(ctx: JobContext, run: Run, index: int) -> ProjectOutcome:
    """One project, its job record (ctx.job_id is the project's) and its metrics."""
    started = time.time()
    _record_start(ctx.redis, ctx.job_id)
    outcome = engine.execute_project(ctx, run, index)
    state = JobState.FAILED if outcome.status is OutcomeStatus.FAILED else JobState.SUCCEEDED
    joblog.record_job(ctx.redis, ctx.job_id, state=state, summary=outcome.status, ended_at=time.time(),
                      duration=f"{time.time() - started:.2f}")
    metrics.count_job(ctx.redis, f"{run.kind}_project", state, time.time() - started)
    return outcome


def finish_run(payload: dict) -> str:
    """After every project job of a run and its coordinator: {run}. Finishes the run when no lane
    did (one died, or its forge writes failed)."""
    ctx, run = _run_context(payload)
    joblog.record_job(ctx.redis, ctx.job_id, state=JobState.RUNNING, started_at=time.time())
    try:
        finished = store.finished(ctx.redis, run.id)
        summary = "finished by the run's last project" if finished else engine.finish(ctx, run)
    finally:
        ctx.cleanup()
    joblog.record_job(ctx.redis, ctx.job_id, state=JobState.SUCCEEDED, summary=summary, ended_at=time.time())
    if not finished:
        joblog.record_job(ctx.redis, run.coordinator_job, summary=summary)
    return summary


# ---------------------------------------------------------------------------- rollback


def revert_deployment(payload: dict) -> str:
    """Open the revert pull request of a deployment's pull request, as `/revert` there does
    (POST /api/deployments/<id>/revert): {repo: Repo dict, pull, actor, deployment}."""
    rt, job_id = runtime(), _current_job_id("revert-inline")
    repo, number, actor = Repo.from_dict(payload["repo"]), int(payload["pull"]), str(payload.get("actor") or "api")
    ctx = JobContext.for_job(rt, make_forge(repo, rt.settings), job_id)
    _record_start(rt.redis, job_id)
    metrics.count_job(rt.redis, "revert", "started")
    ctx.log(f"rolling back {repo.id}#{number} (deployment {payload.get('deployment', '')}) for {actor}")
    state = JobState.FAILED
    try:
        pull = ctx.forge.pull_request(repo, number)
        with pull_request_turn(ctx, PullRequestEvent(job_id, "revert", pull, actor)):  # one job of a pull at a time
            summary = dispatch.revert_from_api(ctx, pull, actor)
        summary = work_in_place(ctx) or summary
        state = JobState.SUCCEEDED
    except UserFacingError as exc:  # replied on the pull request already
        summary = f"failed: {exc.title}"
    except ForgeError as exc:
        summary = f"failed: {exc}"
    finally:
        ctx.cleanup()
    ctx.record_end("revert", state, summary)
    return summary


# ---------------------------------------------------------------------------- API plan/apply


def run_api_plan(payload: dict) -> dict:
    """Plan, or plan and apply, a ref without a pull request (POST /api/plan, /api/apply):
    {repo: Repo dict, ref, projects: [{dir, workspace}], apply, actor}; returns the answer."""
    return api_runs.run(runtime(), payload, _current_job_id("api-inline"))


# ---------------------------------------------------------------------------- missed webhooks


def run_reconcile(payload: dict) -> str:
    """Sweep one repository for webhooks the forge never delivered: {repo: Repo dict}."""
    rt, job_id = runtime(), _current_job_id("reconcile-inline")
    repo = Repo.from_dict(payload["repo"])
    _record_start(rt.redis, job_id)
    queued = reconcile.sweep_repo(rt, make_forge(repo, rt.settings), repo)
    summary = f"queued {len(queued)} missed event(s): {', '.join(queued)}" if queued else "nothing missed"
    joblog.record_job(rt.redis, job_id, state=JobState.SUCCEEDED, summary=summary, ended_at=time.time())
    return summary


# ---------------------------------------------------------------------------- drift


def run_drift_check(payload: dict) -> str:
    """Check a repository for drift: {repo: Repo dict, projects: [key] or [] for all, trigger, actor}."""
    return drift_check.check(runtime(), payload, _current_job_id("drift-inline"))


def on_drift_check_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: the check raised, timed out or its worker died."""
    log.error("drift check %s failed: %s", job.id, exc_value)
    reason = exc_type.__name__ if exc_type else "error"
    joblog.record_job(connection, job.id, state=JobState.FAILED, summary=f"failed: {reason}", ended_at=time.time())
    payload = job.args[0] if job.args else {}
    if payload.get("repo"):  # a remediation cut short must not leave its lock to block pull requests
        locks.release_pull(connection, Repo.from_dict(payload["repo"]).id, DRIFT_PULL)


# ---------------------------------------------------------------------------- failures


def on_job_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: an exception escaped the job, it timed out, or its worker died."""
    name = exc_type.__name__ if exc_type is not None else ""
    reason = ("its worker died" if name == "AbandonedJobError" else
              "it timed out" if "Timeout" in name else "of an internal error")
    report_dead_job(job, reason, exc_value)


def report_dead_job(job, reason: str, detail: object = "") -> None:
    """Record the job as failed and tell its pull request, failing the statuses it left pending."""
    rt = runtime()
    payload = job.args[0] if job.args else None
    log.error("job %s failed because %s: %s", job.id, reason, detail)
    joblog.record_job(rt.redis, job.id, state=JobState.FAILED, summary=f"failed: {reason}", ended_at=time.time())
    if not payload:
        return
    if "run" in payload:
        run = store.load(rt.redis, payload["run"])
        ctx = JobContext.for_job(rt, make_forge(run.pull.repo, rt.settings), job.id)
        index = payload.get("index")
        if index is None:
            engine.finish_died(ctx, run, job.id, reason)
            return
        own = int(index)
        if (store.project_owner(rt.redis, run.id, own) in (None, job.id)  # not another lane's
                and not store.outcomes(rt.redis, run)[own].status.is_final):  # it may have died after it
            engine.project_died(ctx, run, own, job.id, reason)  # its run's finalizing job reports the rest
        engine.lane_died(ctx, run, job.id, reason)  # the lane's projects it took after its own
        return
    if "apply" in payload and "ref" in payload:  # an API plan/apply: free the lock an apply held
        locks.release_pull(rt.redis, Repo.from_dict(payload["repo"]).id, api_runs.API_PULL)
        return
    if "kind" not in payload:  # not an event (a drift check has its own failure handler)
        return
    event = event_from_dict(payload)
    logs.bind_event(job.id, event)
    ctx = JobContext.for_job(rt, make_forge(event.repo, rt.settings), job.id)
    ctx.log(f"job failed because {reason}")
    run_id = (joblog.get_job(rt.redis, job.id) or {}).get("run")
    if run_id:  # it started a run: the run's comment says what stopped, its finalizing job makes it final
        engine.lane_died(ctx, store.load(rt.redis, run_id), job.id, reason)
        return
    _report_failure(
        ctx, event, f"Plankeeper job failed: {reason}",
        f"Internal error (job `{job.id}`): the job stopped because {reason}. Nothing more was run. "
        "Locks and saved plans are kept. Comment the command again to retry; if it keeps failing, "
        "the server log has the details under this job id.",
    )
