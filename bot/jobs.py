"""RQ entry points: plain-dict arguments in, orchestration out.

The worker process calls `init_worker(settings)` once; each job then builds its forge and
context, runs, and records its state. A job that raises unexpectedly, or whose worker
died (RQ calls `on_job_failure` for abandoned jobs too), is reported on the pull request
as failed, never left pending.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import redis
from redis.exceptions import LockError

from rq import get_current_job
from rq.job import Dependency

from bot import commands, drift, joblog, logs, metrics, notify, queueing, render, reporting, runs
from bot.errors import ForgeError, UsageError, UserFacingError
from bot.forges import make_forge
from bot.forges.base import FAILURE
from bot.models import CommentEvent, Event, event_from_dict
from bot.orchestrator import JobContext, handle
from bot.redact import Redactor, settings_secrets
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)
_runtime: Optional[Runtime] = None


def init_worker(settings: Settings) -> Runtime:
    """Called once per worker process before it takes jobs."""
    global _runtime
    _runtime = Runtime.connect(settings)
    return _runtime


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker not initialised: start it with `plankeeper worker` or `plankeeper serve`")
    return _runtime


def redactor(settings: Settings) -> Redactor:
    return Redactor(settings_secrets(settings))


def handle_event(payload: dict) -> str:
    """Entry point of every event job."""
    rt = runtime()
    job = get_current_job()
    job_id = job.id if job else f"inline-{time.time():.0f}"
    event = event_from_dict(payload)
    logs.bind_event(job_id, event)
    joblog.record_job(rt.redis, job_id, pull_url=getattr(getattr(event, "pull", None), "url", None) or None)
    redact = redactor(rt.settings)
    ctx = JobContext(rt, make_forge(_repo_of(event), rt.settings), job_id, joblog.JobLog(rt.redis, job_id, redact), redact)
    joblog.record_job(rt.redis, job_id, state="running", started_at=time.time(), pid=os.getpid(),
                      worker=getattr(job, "worker_name", None))
    metrics.count_job(rt.redis, event.kind, "started")
    drift.remember_repo(rt.redis, _repo_of(event))  # server-wide drift schedules check repos seen here
    try:
        with pull_request_turn(rt, event):
            waiting_for = None if _is_cancel(rt, event) else runs.active_finalize_job(
                rt.redis, _repo_of(event).id, _number_of(event))
            summary = _defer(rt, job_id, event, waiting_for) if waiting_for else handle(ctx, event)
    except UserFacingError as exc:
        summary = f"failed: {exc.title}"
        _finish(rt, job_id, event, "failed", summary, ctx.started_at)
        _report_failure(ctx, event, exc.title, exc.message)
        return summary
    except ForgeError as exc:  # retried already; its message names the call and the answer, no secrets
        _finish(rt, job_id, event, "failed", f"failed: {exc}", ctx.started_at)
        _report_failure(ctx, event, "The forge API failed", f"{exc}. Nothing more was run; locks and saved "
                        "plans are kept. Comment the command again once the API answers.")
        return f"failed: {exc}"
    except Exception:
        _finish(rt, job_id, event, "failed", "internal error", ctx.started_at)
        raise  # on_job_failure reports it on the pull request
    finally:
        ctx.cleanup()
    _finish(rt, job_id, event, "succeeded", summary, ctx.started_at)
    ctx.log(f"done: {summary}")
    return summary


PULL_MUTEX_KEY = "pk:pull-mutex:{repo}#{number}"
PULL_MUTEX_TTL = 60  # seconds; renewed while the job runs, so a dead worker frees it quickly


@contextmanager
def pull_request_turn(rt: Runtime, event: Event) -> Iterator[None]:
    """Run one pull request's jobs one at a time, in the order they start.

    /cancel skips the line: it must reach a running job, not wait behind it.
    """
    if _is_cancel(rt, event):
        yield
        return
    repo = _repo_of(event)
    number = getattr(event, "pull_number", None) or event.pull.number  # type: ignore[union-attr]
    mutex = rt.redis.lock(PULL_MUTEX_KEY.format(repo=repo.id, number=number), timeout=PULL_MUTEX_TTL,
                          sleep=0.2, thread_local=False)
    mutex.acquire(blocking=True, blocking_timeout=rt.settings.terraform.timeout * 6)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(mutex, stop), daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        try:
            mutex.release()
        except LockError:
            log.warning("pull request mutex of %s#%s expired before release", repo.id, number)


def _renew(mutex, stop: threading.Event) -> None:
    while not stop.wait(PULL_MUTEX_TTL / 3):
        try:
            mutex.reacquire()
        except (LockError, redis.RedisError):
            return


def _is_cancel(rt: Runtime, event: Event) -> bool:
    if not isinstance(event, CommentEvent):
        return False
    try:
        command = commands.parse_comment(event.body, aliases=rt.settings.comment_aliases)
    except UsageError:
        return False
    return command is not None and command.name == "cancel"


def _finish(rt: Runtime, job_id: str, event: Event, state: str, summary: str, started: float) -> None:
    duration = time.time() - started
    joblog.record_job(rt.redis, job_id, state=state, summary=summary, ended_at=time.time(), duration=f"{duration:.2f}")
    metrics.count_job(rt.redis, event.kind, state, duration)


def _defer(rt: Runtime, job_id: str, event: Event, waiting_for: str) -> str:
    """Queue the event again behind the pull request's unfinished run, keeping their order."""
    later = queueing.enqueue_event(rt.redis, event, rt.settings.terraform.timeout,
                                   job_id=f"{job_id}-after-{waiting_for[-12:]}",
                                   depends_on=Dependency([waiting_for], allow_failure=True))
    return f"deferred: waits for {waiting_for} (continues as {later})"


def _number_of(event: Event) -> int:
    return getattr(event, "pull_number", None) or event.pull.number  # type: ignore[union-attr]


def _repo_of(event: Event):
    return event.repo if hasattr(event, "repo") else event.pull.repo  # type: ignore[union-attr]


def _report_failure(ctx: JobContext, event: Event, title: str, message: str) -> None:
    """Tell the pull request what went wrong and fail whatever status the job set pending."""
    repo = _repo_of(event)
    number = getattr(event, "pull_number", None) or event.pull.number  # type: ignore[union-attr]
    notify.job_failed(ctx.settings, ctx.job_id, repo.id, number, f"{title}: {message}", ctx.job_url)
    try:
        pull = ctx.forge.pull_request(repo, number)
        ctx.forge.create_comment(pull, render.error_comment(title, message, ctx.redact, ctx.job_url))
        for context, sha in reporting.pending_statuses(ctx.rt.redis, ctx.job_id).items():
            ctx.forge.set_status(repo, sha, context, FAILURE, title[:100], ctx.job_url)
    except Exception:
        log.exception("job %s: could not report failure on %s#%s", ctx.job_id, repo.id, number)


def on_job_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: an exception escaped the job, it timed out, or its worker died."""
    reason = "its worker died" if exc_type is not None and exc_type.__name__ == "AbandonedJobError" else (
        "it timed out" if exc_type is not None and "Timeout" in exc_type.__name__ else "of an internal error")
    report_dead_job(job, reason, exc_value)


def report_dead_job(job, reason: str, detail: object = "") -> None:
    """Record the job as failed and tell its pull request, failing the statuses it left pending."""
    rt = runtime()
    payload = job.args[0] if job.args else None
    log.error("job %s failed because %s: %s", job.id, reason, detail)
    joblog.record_job(rt.redis, job.id, state="failed", summary=f"failed: {reason}", ended_at=time.time())
    if not payload:
        return
    if "run" in payload:
        from bot.run_jobs import project_job_died

        if "index" in payload:
            project_job_died(job, payload, reason)
        return
    if "kind" not in payload:  # not an event (a drift check has its own failure handler)
        return
    event = event_from_dict(payload)
    logs.bind_event(job.id, event)
    redact = redactor(rt.settings)
    ctx = JobContext(rt, make_forge(_repo_of(event), rt.settings), job.id, joblog.JobLog(rt.redis, job.id, redact), redact)
    ctx.log(f"job failed because {reason}")
    _report_failure(
        ctx, event, f"Plankeeper job failed: {reason}",
        f"Internal error (job `{job.id}`): the job stopped because {reason}. Nothing more was run. "
        "Locks and saved plans are kept. Comment the command again to retry; if it keeps failing, "
        "the server log has the details under this job id.",
    )
