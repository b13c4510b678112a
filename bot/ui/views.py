"""Web pages: overview (locks, jobs, drift), jobs, one job's log with a live tail, audit log,
deployments, the unlock confirmation and sign-in. Server-rendered; the job page's tail is the
only script."""
from __future__ import annotations

from typing import Optional

import redis
from flask import Blueprint, current_app, redirect, render_template, request

from bot.state import joblog, locks
from bot.ui import auth, data

blueprint = Blueprint("ui", __name__)
PAGE_SIZE = 25
NOTICES = {"unlocked": "Lock released, and the pull request's plan for it discarded.",
           "cancelled": "Cancel requested: a running job stops at its next check, a queued one never starts.",
           "revert_queued": "Roll back queued: a job opens the revert pull request, which is then planned and "
                            "deployed like any other."}


def _redis() -> redis.Redis:
    return current_app.config["RUNTIME"].redis


@blueprint.app_context_processor
def _helpers() -> dict:
    return {"csrf_token": auth.csrf_token, "writing_enabled": auth.writing_enabled,
            "basic_enabled": auth.basic_enabled, "signed_in_as": auth.basic_user,
            "notice": NOTICES.get(request.args.get("notice", ""), "")}


@blueprint.after_app_request
def _session_cookie(response):
    return auth.set_session_cookie(response)


def _offset() -> int:
    value = request.args.get("offset", "0")
    return int(value) if value.isdigit() else 0


def _jobs(limit: int, offset: int = 0) -> tuple[list[dict], list[locks.Lock]]:
    held = locks.all_locks(_redis())
    jobs = joblog.recent_jobs(_redis(), limit, offset)
    return data.job_rows(jobs, data.pull_urls(jobs, held)), held


@blueprint.get("/")
def index():
    jobs, held = _jobs(PAGE_SIZE)
    running = [j for j in jobs if j.get("state") in ("queued", "running")]
    return render_template("index.html", locks=data.lock_rows(held), jobs=jobs, running=running,
                           drift=data.drift_statuses(_redis()), more_jobs=len(jobs) == PAGE_SIZE)


@blueprint.get("/jobs")
def jobs_page():
    offset = _offset()
    jobs, _ = _jobs(PAGE_SIZE, offset)
    return render_template("jobs.html", jobs=jobs, offset=offset, page_size=PAGE_SIZE,
                           has_next=len(jobs) == PAGE_SIZE)


@blueprint.get("/jobs/<job_id>")
def job_page(job_id: str):
    job = joblog.get_job(_redis(), job_id)
    if job is None:
        return render_template("message.html", title="No such job",
                               message=f"There is no job {job_id} (job records are kept 30 days).", status=404), 404
    held = locks.all_locks(_redis())
    children = data.child_jobs(_redis(), job)
    row = data.job_rows([job], data.pull_urls([job, *children], held))[0]
    return render_template("job.html", job=row, lines=joblog.read_log(_redis(), job_id),
                           children=data.job_rows(children, {}), parent=data.parent_job(_redis(), job_id))


@blueprint.get("/audit")
def audit_page():
    filters = {k: request.args.get(k, "").strip() for k in data.AUDIT_FILTERS}
    dates = {k: request.args.get(k, "").strip() for k in ("since", "until")}
    error: Optional[str] = None
    try:
        since, until = data.parse_day(dates["since"]), data.parse_day(dates["until"], end_of_day=True)
    except ValueError as exc:
        error, since, until = str(exc), None, None
    before = request.args.get("before") or None
    entries, next_before = data.audit_page(_redis(), filters, since, until, before, PAGE_SIZE)
    query = {k: v for k, v in {**filters, **dates}.items() if v}
    return render_template("audit.html", entries=data.audit_rows(entries), filters=filters, dates=dates,
                           error=error, next_before=next_before, query=query, paged=bool(before))


@blueprint.get("/deployments")
def deployments_page():
    """Per repository (all, or ?repo=), per project: the live commit and its deployments."""
    repo = request.args.get("repo", "").strip()
    return render_template("deployments.html", repos=data.deployment_repos(_redis(), repo), repo=repo,
                           all_repos=data.deployment_repo_ids(_redis()))


@blueprint.get("/locks/unlock")
def unlock_confirm():
    """The confirmation step before an unlock; asks the browser to sign in first."""
    lock = locks.get_lock(_redis(), request.args.get("repo", ""), request.args.get("project", ""))
    if lock is None:
        return render_template("message.html", title="Not locked",
                               message="That project is not locked (any more).", status=404), 404
    if not auth.writing_enabled() or not auth.basic_enabled():
        return render_template("unlock.html", lock=data.lock_rows([lock])[0], allowed=False,
                               reason=auth.READ_ONLY if not auth.writing_enabled() else
                               "Unlocking from the pages needs ui.username and ui.password in the server "
                               "config (the API token works only for the JSON API)."), 403
    if auth.basic_user() is None:
        return auth.denied(auth.AccessDenied(401, "Sign in with the UI username and password to unlock."))
    return render_template("unlock.html", lock=data.lock_rows([lock])[0], allowed=True, reason="")


@blueprint.get("/login")
def login():
    """Ask the browser for the basic credentials, then go back where the user was."""
    if not auth.basic_enabled():
        return render_template("message.html", title="Read-only", message=auth.READ_ONLY, status=403), 403
    if auth.basic_user() is None:
        return auth.denied(auth.AccessDenied(401, "Sign in with the UI username and password."))
    target = request.args.get("next", "/")
    return redirect(target if target.startswith("/") and not target.startswith("//") else "/", code=303)
