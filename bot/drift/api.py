"""Drift JSON API: `GET /api/drift` (every project's last check) and
`POST /api/drift/<repo id>[/<dir>]` (queue a check now; `?workspace=` picks the workspace).

Writing needs `Authorization: Bearer <ui.api_token>` or the UI basic auth; anything else
gets 403, and so does every write while neither is configured.
"""
from __future__ import annotations

import hmac
from typing import Optional

from flask import Blueprint, current_app, jsonify, request

from bot.drift import schedule
from bot.drift.status import all_statuses
from bot.models import Repo

blueprint = Blueprint("drift_api", __name__)


def _runtime():
    return current_app.config["RUNTIME"]


def _same(given: Optional[str], expected: Optional[str]) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).encode(), str(expected).encode())


def may_write(authorization: Optional[str], basic: Optional[tuple[str, str]], ui) -> bool:
    """True for the configured bearer token or UI username/password (compared in constant time)."""
    if authorization and authorization.startswith("Bearer "):
        return _same(authorization[len("Bearer "):].strip(), ui.api_token)
    if basic:
        return _same(basic[0], ui.username) and _same(basic[1], ui.password)
    return False


@blueprint.get("/api/drift")
def api_drift():
    statuses = all_statuses(_runtime().redis)
    repo = request.args.get("repo")
    return jsonify([s for s in statuses if not repo or s.get("repo") == repo])


@blueprint.post("/api/drift/<path:project>")
def api_drift_check(project: str):
    rt = _runtime()
    auth = request.authorization
    basic = (auth.username or "", auth.password or "") if auth and auth.type == "basic" else None
    if not may_write(request.headers.get("Authorization"), basic, rt.settings.ui):
        return jsonify({"error": "forbidden: writing needs `Authorization: Bearer <ui.api_token>` or the UI "
                                 "credentials (ui.username/ui.password in the server config)"}), 403
    found = resolve_target(project, schedule.candidate_repos(rt.settings, rt.redis))
    if found is None:
        return jsonify({"error": f"unknown repository in {project!r}: give host/owner/repo[/dir] of a repository "
                                 "the server has seen a webhook from or lists under repos:"}), 404
    repo, directory = found
    projects = (f"{directory}::{request.args.get('workspace') or 'default'}",) if directory else ()
    actor = auth.username if basic and auth else "api"
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
