"""RQ entry points: plain-dict arguments in, orchestration out.

The worker process calls `init_worker(settings)` once; each job then builds its forge and
context, runs, and records its state. A job that raises unexpectedly, or whose worker
died (RQ calls `on_job_failure` for abandoned jobs too), is reported on the pull request
as failed, never left pending.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

from rq import get_current_job

from bot import joblog, metrics, render
from bot.errors import UserFacingError
from bot.forges import make_forge
from bot.forges.base import FAILURE
from bot.models import Event, event_from_dict
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
    redact = redactor(rt.settings)
    ctx = JobContext(rt, make_forge(_repo_of(event), rt.settings), job_id, joblog.JobLog(rt.redis, job_id, redact), redact)
    joblog.record_job(rt.redis, job_id, state="running", started_at=time.time())
    metrics.count_job(rt.redis, event.kind, "started")
    try:
        summary = handle(ctx, event)
    except UserFacingError as exc:
        summary = f"failed: {exc.title}"
        _finish(rt, job_id, event, "failed", summary, ctx.started_at)
        _report_failure(ctx, event, exc.title, exc.message)
        return summary
    except Exception:
        _finish(rt, job_id, event, "failed", "internal error", ctx.started_at)
        raise  # on_job_failure reports it on the pull request
    finally:
        ctx.cleanup()
    state = "cancelled" if "cancel" in summary and summary.startswith("cancelled:") else "succeeded"
    _finish(rt, job_id, event, state, summary, ctx.started_at)
    ctx.log(f"done: {summary}")
    return summary


def _finish(rt: Runtime, job_id: str, event: Event, state: str, summary: str, started: float) -> None:
    duration = time.time() - started
    joblog.record_job(rt.redis, job_id, state=state, summary=summary, ended_at=time.time(), duration=f"{duration:.2f}")
    metrics.count_job(rt.redis, event.kind, state, duration)


def _repo_of(event: Event):
    return event.repo if hasattr(event, "repo") else event.pull.repo  # type: ignore[union-attr]


def _report_failure(ctx: JobContext, event: Event, title: str, message: str) -> None:
    """Tell the pull request what went wrong and fail whatever status the job set pending."""
    repo = _repo_of(event)
    number = getattr(event, "pull_number", None) or event.pull.number  # type: ignore[union-attr]
    try:
        pull = ctx.forge.pull_request(repo, number)
        ctx.forge.create_comment(pull, render.error_comment(title, message, ctx.redact, ctx.job_url))
        for context in _pending_contexts(ctx.rt, ctx.job_id):
            ctx.forge.set_status(repo, pull.head_sha, context, FAILURE, title[:100], ctx.job_url)
    except Exception:
        log.exception("job %s: could not report failure on %s#%s", ctx.job_id, repo.id, number)


def _pending_contexts(rt: Runtime, job_id: str) -> list[str]:
    return ["plankeeper/plan", "plankeeper/apply"]


def on_job_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: an exception escaped the job, it timed out, or its worker died."""
    rt = runtime()
    payload = job.args[0] if job.args else None
    reason = "its worker died" if exc_type is not None and exc_type.__name__ == "AbandonedJobError" else (
        "it timed out" if exc_type is not None and "Timeout" in exc_type.__name__ else "of an internal error")
    log.error("job %s failed because %s: %s", job.id, reason, exc_value)
    joblog.record_job(rt.redis, job.id, state="failed", summary=f"failed: {reason}", ended_at=time.time())
    if not payload:
        return
    event = event_from_dict(payload)
    redact = redactor(rt.settings)
    ctx = JobContext(rt, make_forge(_repo_of(event), rt.settings), job.id, joblog.JobLog(rt.redis, job.id, redact), redact)
    ctx.log(f"job failed because {reason}")
    _report_failure(
        ctx, event, f"Plankeeper job failed: {reason}",
        f"Internal error (job `{job.id}`): the job stopped because {reason}. Nothing more was run. "
        "Locks and saved plans are kept. Comment the command again to retry; if it keeps failing, "
        "the server log has the details under this job id.",
    )
