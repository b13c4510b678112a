"""Pages and JSON API: locks, jobs with live logs, audit log."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, abort, current_app, jsonify, render_template_string, request

from bot import audit, joblog, locks

blueprint = Blueprint("ui", __name__)


def _redis():
    return current_app.config["RUNTIME"].redis


@blueprint.get("/api/locks")
def api_locks():
    return jsonify([asdict(lock) for lock in locks.all_locks(_redis())])


@blueprint.get("/api/jobs")
def api_jobs():
    limit = min(int(request.args.get("limit", 50)), 500)
    offset = int(request.args.get("offset", 0))
    return jsonify(joblog.recent_jobs(_redis(), limit, offset))


@blueprint.get("/api/jobs/<job_id>")
def api_job(job_id: str):
    job = joblog.get_job(_redis(), job_id)
    if job is None:
        abort(404)
    return jsonify(job)


@blueprint.get("/api/jobs/<job_id>/log")
def api_job_log(job_id: str):
    start = int(request.args.get("start", 0))
    lines = joblog.read_log(_redis(), job_id, start)
    return jsonify({"job_id": job_id, "start": start, "lines": lines, "next": start + len(lines)})


@blueprint.get("/api/audit")
def api_audit():
    filters = {k: request.args.get(k) for k in ("repo", "user", "project", "action")}
    items = audit.entries(_redis(), limit=min(int(request.args.get("limit", 100)), 1000),
                          before=request.args.get("before"), filters=filters)
    if request.args.get("format") == "jsonl":
        return Response(audit.as_json_lines(items), mimetype="application/x-ndjson")
    return jsonify(items)


_JOB_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Job {{ job.id }} · Plankeeper</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}pre{background:#111;color:#ddd;padding:1rem;
overflow:auto;white-space:pre-wrap}</style></head><body>
<h1>Job <code>{{ job.id }}</code></h1>
<p>{{ job.get('repo','') }} #{{ job.get('pull','') }} · <b>{{ job.get('state','') }}</b> · {{ job.get('summary','') }}</p>
<pre id="log">{% for line in lines %}{{ line }}
{% endfor %}</pre></body></html>"""


@blueprint.get("/jobs/<job_id>")
def job_page(job_id: str):
    job = joblog.get_job(_redis(), job_id)
    if job is None:
        abort(404)
    return render_template_string(_JOB_PAGE, job=job, lines=joblog.read_log(_redis(), job_id))


@blueprint.get("/")
def index():
    jobs = joblog.recent_jobs(_redis(), 50)
    return render_template_string(
        "<!doctype html><title>Plankeeper</title><h1>Plankeeper</h1><h2>Locks</h2><ul>{% for l in locks %}"
        "<li>{{ l.repo_id }} {{ l.project_key }} by #{{ l.pull_number }}</li>{% endfor %}</ul><h2>Jobs</h2><ul>"
        "{% for j in jobs %}<li><a href='/jobs/{{ j.id }}'>{{ j.id }}</a> {{ j.get('state') }} {{ j.get('summary','') }}"
        "</li>{% endfor %}</ul>",
        locks=locks.all_locks(_redis()), jobs=jobs,
    )
