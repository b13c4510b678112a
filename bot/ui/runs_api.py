"""`POST /api/plan` and `POST /api/apply` (Atlantis' API endpoints): plan or apply a ref
without a pull request, from CI. Only the API token is accepted (bot.ui.auth.check_api_token).

The web process never runs Terraform: it queues the job (bot.api_runs runs it) and answers 202
with the job id and its URL (SPEC §5), to be polled at `GET /api/jobs/<id>`. `?wait=<seconds>`
(at most terraform.timeout x the job's steps) answers synchronously instead, as Atlantis does:
the results when the job finished within the wait, else 504 with the job id.
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from bot import api_runs, queueing
from bot.drift.schedule import candidate_repos
from bot.state import audit
from bot.ui import auth

blueprint = Blueprint("runs_api", __name__)
POLL_SECONDS = 0.5


def _runtime():
    return current_app.config["RUNTIME"]


@blueprint.post("/api/plan")
def api_plan():
    return _run(apply=False)


@blueprint.post("/api/apply")
def api_apply():
    return _run(apply=True)


def _run(apply: bool):
    rt = _runtime()
    try:
        auth.check_api_token()
    except auth.AccessDenied as exc:
        return jsonify({"error": exc.message, "Error": exc.message}), exc.status
    try:
        wanted = api_runs.parse_body(request.get_json(silent=True))
    except api_runs.BadRequest as exc:
        return jsonify({"error": str(exc), "Error": str(exc)}), 400
    limit = rt.settings.terraform.timeout * queueing.JOB_TIMEOUT_STEPS
    try:
        wait = min(float(request.args.get("wait", 0)), limit)
    except ValueError:
        return jsonify({"error": "`wait` must be a number of seconds"}), 400
    repo = api_runs.resolve_repo(wanted["repo"], wanted["forge"], candidate_repos(rt.settings, rt.redis))
    if repo is None:
        message = (f"unknown repository {wanted['repo']!r}: give host/owner/name (or an unambiguous owner/name) of a "
                   "repository the server has seen a webhook from or lists by exact id under repos:")
        return jsonify({"error": message, "Error": message}), 404
    payload = {"repo": dict(repo.__dict__), "ref": wanted["ref"], "projects": wanted["projects"], "apply": apply,
               "actor": "api"}
    job_id = queueing.enqueue_api_run(rt.redis, payload, rt.settings.terraform.timeout)
    audit.record(rt.redis, "api_apply" if apply else "api_plan", user="api-token", repo=repo.id,
                 result=f"queued {wanted['ref']}", job_id=job_id)
    queued = {"job_id": job_id, "url": rt.job_url(job_id), "job_url": rt.job_url(job_id)}
    if wait <= 0:
        return jsonify(queued), 202
    job = _wait(rt.redis, job_id, wait)
    if job is None or job.get_status() not in ("finished", "failed"):
        return jsonify({**queued, "error": f"the job did not finish within {wait:g} s: poll GET /api/jobs/{job_id}"}), 504
    answer = job.return_value() if job.get_status() == "finished" else None
    if not isinstance(answer, dict):
        message = f"internal error (job {job_id}): see its log"
        return jsonify({**queued, "error": message, "Error": message}), 500
    failed = bool(answer.get("error")) or any(p.get("error") for p in answer.get("projects", []))
    return jsonify({**answer, **api_runs.atlantis_shape(answer), **queued}), 500 if failed else 200


def _wait(r, job_id: str, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        try:
            job = Job.fetch(job_id, connection=r, serializer=JSONSerializer)
        except NoSuchJobError:
            return None
        if job.get_status() in ("finished", "failed") or time.monotonic() >= deadline:
            return job
        time.sleep(POLL_SECONDS)
