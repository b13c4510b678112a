"""The JSON API (`/api/...`): locks, jobs, job logs (also live, over server-sent events), the
audit log, deployments, and the writing actions unlock and cancel (see bot.ui.auth for who may)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from typing import Iterator

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from flask import (Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request,
                   stream_with_context, url_for)

from bot import queueing
from bot.state import artifacts, audit, cancel, deployments, joblog, locks
from bot.state.repos import known_repos
from bot.ui import auth, data

blueprint = Blueprint("api", __name__)
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 10
STREAM_MAX_SECONDS = 15 * 60  # then the browser reconnects with Last-Event-ID, freeing the thread for a while
# A live tail holds a server thread for as long as it is open; at most this many at once per process,
# well below serve's 16 threads, so pages and (on a shared port) webhooks always find one free.
MAX_STREAMS = 4
_stream_slots = threading.BoundedSemaphore(MAX_STREAMS)
STREAMS_BUSY = (f"Too many live logs are open on this server (at most {MAX_STREAMS} at once). Close one, or "
                "read the log with GET /api/jobs/<id>/log (or reload the job page).")
FINAL_GRACE_POLLS = 2  # the worker logs its closing line just after marking the job final


def _redis() -> redis.Redis:
    return current_app.config["RUNTIME"].redis


def _int_arg(name: str, default: int, low: int = 0, high: int = 10**9) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        abort(400, description=f"{name} must be a whole number")
    return min(max(value, low), high)


@blueprint.get("/api/locks")
def api_locks():
    return jsonify([asdict(lock) for lock in locks.all_locks(_redis())])


@blueprint.get("/api/jobs")
def api_jobs():
    limit, offset = _int_arg("limit", 50, 1, 500), _int_arg("offset", 0)
    jobs = joblog.recent_jobs(_redis(), limit, offset)
    response = jsonify(jobs)
    if len(jobs) == limit:
        response.headers["X-Next-Offset"] = str(offset + limit)
    return response


@blueprint.get("/api/jobs/<job_id>")
def api_job(job_id: str):
    job = joblog.get_job(_redis(), job_id)
    if job is None:
        return jsonify({"error": f"no job {job_id}"}), 404
    return jsonify(job)


@blueprint.get("/api/jobs/<job_id>/log")
def api_job_log(job_id: str):
    start = _int_arg("start", 0)
    lines = joblog.read_log(_redis(), job_id, start)
    job = joblog.get_job(_redis(), job_id) or {}
    return jsonify({"job_id": job_id, "start": start, "lines": lines, "next": start + len(lines),
                    "state": job.get("state")})


@blueprint.get("/api/jobs/<job_id>/events")
def api_job_events(job_id: str):
    """Server-sent events: `line` per new log line (id = lines so far), then `end` with the final state."""
    if joblog.get_job(_redis(), job_id) is None:
        return jsonify({"error": f"no job {job_id}"}), 404
    resume = request.headers.get("Last-Event-ID") or request.args.get("start") or "0"
    start = int(resume) if resume.isdigit() else 0
    if not _stream_slots.acquire(blocking=False):
        response = jsonify({"error": STREAMS_BUSY})
        response.status_code, response.headers["Retry-After"] = 503, "10"
        return response
    stream = stream_with_context(_Slot(_tail(_redis(), job_id, start)))
    return Response(stream, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _Slot:
    """Iterates a stream and gives its slot back once, when it ends or is closed (the client
    went away, or the server stops), even if it was never started."""

    def __init__(self, stream: Iterator[str]):
        self._stream, self._held = stream, True

    def __iter__(self) -> _Slot:
        return self

    def __next__(self) -> str:
        try:
            return next(self._stream)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._held:
            self._held = False
            _stream_slots.release()
        getattr(self._stream, "close", lambda: None)()


def _tail(r: redis.Redis, job_id: str, index: int) -> Iterator[str]:
    yield "retry: 2000\n\n"
    deadline, beat, final_polls = time.time() + STREAM_MAX_SECONDS, time.time(), 0
    while time.time() < deadline:
        state = (joblog.get_job(r, job_id) or {}).get("state", "")
        lines = joblog.read_log(r, job_id, index)
        for line in lines:
            index += 1
            yield f"id: {index}\nevent: line\ndata: {json.dumps(line)}\n\n"
        if lines or time.time() - beat > KEEPALIVE_SECONDS:
            beat = time.time()
            if not lines:
                yield ": keepalive\n\n"
        if state in data.FINAL_STATES:
            final_polls += 1
            if final_polls > FINAL_GRACE_POLLS:
                yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
                return
        time.sleep(POLL_SECONDS)


@blueprint.get("/api/audit")
def api_audit():
    filters = {k: request.args.get(k) for k in data.AUDIT_FILTERS}
    try:
        since = data.parse_day(request.args.get("since"))
        until = data.parse_day(request.args.get("until"), end_of_day=True)
    except ValueError as exc:
        return jsonify({"error": str(exc)}), 400
    limit = _int_arg("limit", 100, 1, 1000 if request.args.get("format") != "jsonl" else 100_000)
    items, next_before = data.audit_page(_redis(), filters, since, until, request.args.get("before"), limit)
    if request.args.get("format") == "jsonl":
        response = Response(audit.as_json_lines(items), mimetype="application/x-ndjson")
        response.headers["Content-Disposition"] = "attachment; filename=plankeeper-audit.jsonl"
    else:
        response = jsonify(items)
    if next_before:
        response.headers["X-Next-Before"] = next_before
    return response


@blueprint.get("/api/deployments")
def api_deployments():
    """Every apply, newest first: ?repo= (host/owner/name or owner/name), ?dir=, ?workspace=, ?limit=."""
    found = data.find_deployments(_redis(), request.args.get("repo", ""), request.args.get("dir", ""),
                                  request.args.get("workspace", ""), _int_arg("limit", 500, 1, 10_000))
    return jsonify([d.to_json() for d in found])


def _error(message: str, status: int):
    """An error as a page for a browser's form post, as JSON otherwise."""
    if auth.wants_html():
        return render_template("message.html", title="Could not do that", message=message, status=status), status
    return jsonify({"error": message}), status


def _done(payload: dict, status: int = 200, notice: str = ""):
    """JSON for API clients; back to the page with a notice after a form post."""
    if request.form.get(auth.CSRF_FIELD) and status < 400:
        target = request.form.get("next", "")
        target = target if target.startswith("/") and not target.startswith("//") else url_for("ui.index")
        return redirect(f"{target}{'&' if '?' in target else '?'}notice={notice}", code=303)
    return jsonify(payload), status


@blueprint.post("/api/locks/unlock")
@auth.writer_required
def api_unlock():
    """Release a project lock whoever holds it, and discard that pull request's plan for the project."""
    body = request.get_json(silent=True) or request.form
    repo_id = body.get("repo") or body.get("repo_id") or ""
    project_key = body.get("project") or body.get("project_key") or ""
    if not repo_id or not project_key:
        return _error("Give repo (host/owner/name) and project (dir::workspace).", 400)
    r, writer = _redis(), auth.current_writer()
    lock = locks.force_unlock(r, repo_id, project_key)
    if lock is None:
        return _error(f"{repo_id} {project_key} is not locked (any more).", 404)
    artifacts.delete_plan(r, repo_id, lock.pull_number, project_key)
    audit.record(r, "unlock", user=writer.user, repo=repo_id, pull=lock.pull_number, project=project_key,
                 result="ok", detail=f"web UI ({writer.via}); lock held by @{lock.user}")
    return _done({"unlocked": asdict(lock)}, notice="unlocked")


@blueprint.post("/api/jobs/<job_id>/cancel")
@auth.writer_required
def api_cancel(job_id: str):
    """Cancel a job: dequeue it when queued; a running one stops at its next check of the cancel key."""
    r, writer = _redis(), auth.current_writer()
    job = joblog.get_job(r, job_id)
    if job is None:
        return _error(f"There is no job {job_id}.", 404)
    if job.get("state") in data.FINAL_STATES:
        return _error(f"Job {job_id} already {job['state']}: there is nothing to cancel.", 409)
    if job.get("repo") and job.get("pull"):
        # The cancel key stops every job of the pull request started before now, as /cancel does.
        cancel.request_cancel(r, job["repo"], int(job["pull"]))
    if job.get("state") == "queued":
        _dequeue(r, job_id)
    audit.record(r, "cancel", user=writer.user, repo=job.get("repo"), pull=job.get("pull"), job_id=job_id,
                 result="ok", detail=f"web UI ({writer.via})")
    return _done({"cancelled": job_id, "state": (joblog.get_job(r, job_id) or {}).get("state")},
                 notice="cancelled")


def _dequeue(r: redis.Redis, job_id: str) -> None:
    try:
        Job.fetch(job_id, connection=r, serializer=JSONSerializer).cancel()
    except (NoSuchJobError, InvalidJobOperation):
        return  # it started or vanished meanwhile: the cancel key stops it
    joblog.record_job(r, job_id, state="cancelled", summary="cancelled from the web UI", ended_at=time.time())


@blueprint.post("/api/deployments/<deployment_id>/revert")
@auth.writer_required
def api_revert_deployment(deployment_id: str):
    """Roll back: queue a job that opens the revert pull request of the deployment's pull request,
    as `/revert` there does (it is then planned and deployed like any other); answers 202."""
    rt, writer = current_app.config["RUNTIME"], auth.current_writer()
    deployment = deployments.get(rt.redis, deployment_id)
    if deployment is None:
        return _error(f"There is no deployment {deployment_id}.", 404)
    if not deployment.pull:
        return _error(f"Deployment {deployment_id} ({deployment.via}) was not made from a pull request: there is "
                      "no merge to revert.", 409)
    if not deployment.succeeded:
        return _error(f"Deployment {deployment_id} did not succeed ({deployment.result}): only a successful "
                      "deployment is rolled back.", 409)
    repo = known_repos(rt.redis).get(deployment.repo)
    if repo is None:
        return _error(f"The server has no record of {deployment.repo} (it learns repositories from their "
                      "webhooks): comment `/revert` on the pull request instead.", 409)
    actor = writer.user if writer.via == "basic" else "api"
    job_id = queueing.enqueue_revert(rt.redis, repo, deployment.pull, actor, deployment.id,
                                     rt.settings.terraform.timeout)
    audit.record(rt.redis, "revert", user=writer.user, repo=deployment.repo, pull=deployment.pull,
                 commit=deployment.commit, project=deployment.project, result="queued", job_id=job_id,
                 detail=f"web UI ({writer.via}); deployment {deployment.id}")
    return _done({"job_id": job_id, "job_url": rt.job_url(job_id), "deployment": deployment.id,
                  "repo": deployment.repo, "pull": deployment.pull}, 202, notice="revert_queued")
