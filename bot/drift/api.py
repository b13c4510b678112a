"""Drift JSON API: `GET /api/drift` (every project's last check) and
`POST /api/drift/<repo id>[/<dir>]` (queue a check now; `?workspace=` picks the workspace).

Writing is checked as every other writing action of the UI and the API (bot.ui.auth):
`Authorization: Bearer <ui.api_token>`, or the UI basic auth *with* the page's CSRF token
(a form on another site could otherwise post with the browser's remembered credentials).
"""
from __future__ import annotations

from typing import Optional

from flask import Blueprint, current_app, jsonify, request

from bot.drift import schedule
from bot.drift.status import all_statuses
from bot.models import Repo
from bot.ui import auth

blueprint = Blueprint("drift_api", __name__)


def _runtime():
    return current_app.config["RUNTIME"]


@blueprint.get("/api/drift")
def api_drift():
    statuses = all_statuses(_runtime().redis)
    repo = request.args.get("repo")
    return jsonify([s for s in statuses if not repo or s.get("repo") == repo])


@blueprint.post("/api/drift/<path:project>")
@auth.writer_required
def api_drift_check(project: str):
    rt, writer = _runtime(), auth.current_writer()
    found = resolve_target(project, schedule.candidate_repos(rt.settings, rt.redis))
    if found is None:
        return jsonify({"error": f"unknown repository in {project!r}: give host/owner/repo[/dir] of a repository "
                                 "the server has seen a webhook from or lists under repos:"}), 404
    repo, directory = found
    projects = (f"{directory}::{request.args.get('workspace') or 'default'}",) if directory else ()
    actor = writer.user if writer.via == "basic" else "api"
    job_id = schedule.enqueue_check(rt, repo, projects, trigger="manual", actor=actor)
    return jsonify({"job_id": job_id, "repo": repo.id, "projects": list(projects) or "all",
                    "job_url": rt.job_url(job_id)}), 202


def resolve_target(path: str, repos: dict[str, Repo]) -> Optional[tuple[Repo, str]]:
    """(repo, project dir or "" for every project) for "host/owner/repo[/dir]"; the longest
    repo id that prefixes the path wins (GitLab groups nest). None when none matches."""
    path = path.strip("/")
    for repo_id in sorted(repos, key=len, reverse=True):
        if path == repo_id:
            return repos[repo_id], ""
        if path.startswith(repo_id + "/"):
            return repos[repo_id], path[len(repo_id) + 1:].strip("/") or ""
    return None
