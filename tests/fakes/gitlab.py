"""A fake GitLab REST v4 server: real HTTP on 127.0.0.1, driven through python-gitlab.

It speaks the JSON shapes of the real API (objects are built from the published webhook
fixtures in tests/fixtures/gitlab, deep-copied with fields replaced), paginates with the
same headers GitLab sends (X-Page, X-Next-Page, X-Total-Pages, X-Per-Page, Link), and
checks the PRIVATE-TOKEN / Authorization: Bearer header. Tests arrange state with the
helpers (add_project, add_mr, push, approve, ...) and read back what the bot did
(notes, statuses, requests).
"""
from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import unquote

from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes.gitlab_routes import Abort, GitLabRoutes, diff_entry, json_response, now_iso, public

_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab"
_WEBHOOK_ONLY = ("source", "target", "last_commit", "url", "action", "author_id", "assignee_id",
                 "assignee_ids", "reviewer_ids", "state_id", "last_edited_by_id", "milestone_id",
                 "time_change", "human_time_change", "total_time_spent", "labels")
ProjectRef = Union[int, str]


def _fixture(name: str) -> dict:
    return json.loads((_FIXTURES / name).read_text())


_MR_HOOK = _fixture("merge_request.open.json")
_NOTE_HOOK = _fixture("note.merge_request.json")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class RecordedRequest:
    method: str
    path: str  # raw (still URL-encoded) path, e.g. /api/v4/projects/acme%2Finfra
    query: dict
    body: dict
    headers: dict


@dataclass
class _Project:
    data: dict
    mrs: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)  # sha -> [status dicts] in posting order
    members: dict = field(default_factory=dict)  # user id -> access level
    issues: dict = field(default_factory=dict)
    deleted_branches: list = field(default_factory=list)


class FakeGitLab(GitLabRoutes):
    """A GitLab server on an ephemeral port; use as a context manager or start()/stop()."""

    def __init__(self, token: str = "glpat-test-token", bot_username: str = "plankeeper-bot"):
        self.token = token
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._users: dict[str, dict] = {}
        self._projects: dict[int, _Project] = {}
        self._groups: dict[str, dict] = {}
        self._failures: list[tuple[re.Pattern, list[int], Optional[int]]] = []
        self.bot = self._user(bot_username)
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self.url = ""
        self._routes = self._route_table()

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "FakeGitLab":
        app = Flask("fake_gitlab")
        app.add_url_rule("/api/v4/<path:_rest>", "api", self._dispatch,
                         methods=["GET", "POST", "PUT", "DELETE"])
        self._server = make_server("127.0.0.1", 0, app, threaded=True,
                                   request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeGitLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- arranging state -------------------------------------------------------------
    def add_project(self, path: str, clone_url: str, default_branch: str = "main") -> int:
        """Create a project (path like group/sub/name); returns its id."""
        pid = next(self._ids)
        data = copy.deepcopy(_MR_HOOK["project"])
        namespace, _, name = path.rpartition("/")
        web_url = f"https://gitlab.example.com/{path}"
        data.update(id=pid, name=name, path=name, path_with_namespace=path, web_url=web_url,
                    homepage=web_url, default_branch=default_branch, http_url_to_repo=clone_url,
                    ssh_url_to_repo=f"git@gitlab.example.com:{path}.git", namespace={
                        "id": pid, "name": namespace, "path": namespace.rpartition("/")[2],
                        "kind": "group", "full_path": namespace})
        for key in ("git_http_url", "git_ssh_url", "url", "ssh_url", "http_url", "visibility_level"):
            data.pop(key, None)
        with self._lock:
            self._projects[pid] = _Project(data)
        return pid

    def add_mr(self, project: ProjectRef, iid: int, sha: str, source_branch: str,
               target_branch: str, author: str, files: list, base_sha: str, draft: bool = False,
               source_project_id: Optional[int] = None, title: str = "") -> dict:
        """Open a merge request. files: paths, (old_path, new_path) renames, or diff dicts."""
        proj = self._project(project)
        pid = proj.data["id"]
        mr = copy.deepcopy(_MR_HOOK["object_attributes"])
        for key in _WEBHOOK_ONLY:
            mr.pop(key, None)
        mr.update(
            id=next(self._ids), iid=iid, project_id=pid, title=title or f"MR {iid}",
            state="opened", source_branch=source_branch, target_branch=target_branch,
            source_project_id=source_project_id or pid, target_project_id=pid,
            author=self._user(author), draft=draft, work_in_progress=draft, merge_commit_sha=None,
            detailed_merge_status="draft_status" if draft else "mergeable",
            merge_status="can_be_merged", has_conflicts=False, labels=[],
            web_url=f"{proj.data['web_url']}/-/merge_requests/{iid}",
            created_at=now_iso(), updated_at=now_iso(), merged_at=None, closed_at=None,
            should_remove_source_branch=None, force_remove_source_branch=False,
            _files=[], _approved_by=[], _approvals_required=0, _notes=[],
        )
        with self._lock:
            proj.mrs[iid] = mr
        self.push(project, iid, sha, files, base_sha=base_sha)
        return mr

    def push(self, project: ProjectRef, iid: int, new_sha: str, files: list,
             base_sha: Optional[str] = None) -> None:
        """New commits on the source branch: the head and the changed files change."""
        mr = self.mr(project, iid)
        with self._lock:
            base = base_sha or (mr.get("diff_refs") or {}).get("base_sha")
            mr["sha"], mr["updated_at"] = new_sha, now_iso()
            mr["diff_refs"] = {"base_sha": base, "head_sha": new_sha, "start_sha": base}
            mr["_files"] = [diff_entry(f) for f in files]

    def approve(self, project: ProjectRef, iid: int, user: str) -> None:
        with self._lock:
            self.mr(project, iid)["_approved_by"].append(self._user(user))

    def set_approvals_required(self, project: ProjectRef, iid: int, count: int) -> None:
        with self._lock:
            self.mr(project, iid)["_approvals_required"] = count

    def set_access(self, project: ProjectRef, user: str, level: int) -> None:
        """Make user a direct project member with access level (10 guest ... 50 owner)."""
        with self._lock:
            self._project(project).members[self._user(user)["id"]] = level

    def set_merge_status(self, project: ProjectRef, iid: int, detailed_merge_status: str) -> None:
        with self._lock:
            self.mr(project, iid)["detailed_merge_status"] = detailed_merge_status

    def set_state(self, project: ProjectRef, iid: int, state: str) -> None:
        with self._lock:
            self.mr(project, iid).update(state=state, updated_at=now_iso(),
                                         closed_at=now_iso() if state == "closed" else None)

    def mark_merged(self, project: ProjectRef, iid: int, merge_commit_sha: str) -> None:
        """The merge request was merged outside the API (e.g. in the UI) into a real commit."""
        with self._lock:
            self.mr(project, iid).update(state="merged", merge_commit_sha=merge_commit_sha,
                                         detailed_merge_status="not_open", merged_at=now_iso(),
                                         updated_at=now_iso())

    def add_group_member(self, group_path: str, user: str, level: int = 30) -> None:
        """Add user to a group; members of a project's ancestor groups inherit into it."""
        with self._lock:
            group = self._groups.setdefault(group_path, {"id": next(self._ids), "members": {}})
            group["members"][self._user(user)["id"]] = level

    def add_note(self, project: ProjectRef, iid: int, body: str, author: str) -> int:
        """A user's comment on the merge request; returns the note id."""
        with self._lock:
            return self._new_note(self.mr(project, iid), body, self._user(author))["id"]

    def set_status(self, project: ProjectRef, sha: str, name: str, status: str) -> None:
        """A commit status posted by someone else (e.g. a CI job)."""
        with self._lock:
            self._add_status(self._project(project), sha, {"name": name, "state": status})

    def inject_failures(self, path_regex: str, statuses: tuple = (500,),
                        retry_after: Optional[int] = None) -> None:
        """The next len(statuses) requests whose raw path matches fail with these codes."""
        with self._lock:
            self._failures.append((re.compile(path_regex), list(statuses), retry_after))

    # ---- reading state ---------------------------------------------------------------
    def mr(self, project: ProjectRef, iid: int) -> dict:
        return self._project(project).mrs[iid]

    def project(self, project: ProjectRef) -> dict:
        """The project as GET /projects/:id answers it (id, path_with_namespace, web_url...)."""
        return self._project(project).data

    def notes(self, project: ProjectRef, iid: int) -> list[dict]:
        return [{"id": n["id"], "body": n["body"], "author": n["author"]["username"],
                 "award_emoji": [a["name"] for a in n["_awards"]]}
                for n in self.mr(project, iid)["_notes"]]

    def statuses(self, project: ProjectRef, sha: str) -> list[dict]:
        return [{"name": s["name"], "status": s["status"], "description": s["description"],
                 "target_url": s["target_url"]} for s in self._project(project).statuses.get(sha, [])]

    def issues(self, project: ProjectRef) -> list[dict]:
        return [public(i) for i in self._project(project).issues.values()]

    def deleted_branches(self, project: ProjectRef) -> list[str]:
        return list(self._project(project).deleted_branches)

    def requests_to(self, pattern: str, method: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests
                if re.search(pattern, r.path) and (not method or r.method == method)]

    # ---- internals -------------------------------------------------------------------
    def _user(self, username: str) -> dict:
        with self._lock:
            if username not in self._users:
                user = copy.deepcopy(_MR_HOOK["user"])
                user.pop("email", None)
                user.update(id=next(self._ids), username=username, name=username.title(),
                            state="active", web_url=f"https://gitlab.example.com/{username}")
                self._users[username] = user
            return self._users[username]

    def _project(self, ref: ProjectRef) -> _Project:
        if isinstance(ref, int) or str(ref).isdigit():
            if int(ref) in self._projects:
                return self._projects[int(ref)]
        for proj in self._projects.values():
            if proj.data["path_with_namespace"] == ref:
                return proj
        raise Abort(404, "404 Project Not Found")

    def _group(self, ref: str) -> dict:
        for path, group in self._groups.items():
            if ref in (path, str(group["id"])):
                return {"path": path, **group}
        raise Abort(404, "404 Group Not Found")

    def _new_note(self, mr: dict, body: str, author: dict) -> dict:
        note = copy.deepcopy(_NOTE_HOOK["object_attributes"])
        for key in ("note", "author_id", "st_diff", "action", "url", "line_code", "commit_id"):
            note.pop(key, None)
        note.update(id=next(self._ids), body=body, author=author, noteable_id=mr["id"],
                    noteable_iid=mr["iid"], project_id=mr["project_id"], type=None,
                    resolvable=False, _awards=[], system=False, created_at=now_iso(), updated_at=now_iso())
        mr["_notes"].append(note)
        mr["updated_at"] = note["updated_at"]  # a note touches its merge request, as on GitLab
        return note

    def _add_status(self, proj: _Project, sha: str, body: dict) -> dict:
        state, name = body.get("state"), body.get("name") or body.get("context") or "default"
        if state not in ("pending", "running", "success", "failed", "canceled", "skipped"):
            raise Abort(400, "state does not have a valid value")
        history = proj.statuses.setdefault(sha, [])
        latest = next((s for s in reversed(history) if s["name"] == name), None)
        if latest and latest["status"] == state and state in ("pending", "running"):
            # GitLab's state machine refuses a no-op transition of an unfinished status.
            verb = "enqueue" if state == "pending" else "run"
            raise Abort(400, f"Cannot transition status via :{verb} from :{state}")
        status = {"id": next(self._ids), "sha": sha, "ref": None, "status": state, "name": name,
                  "description": body.get("description"), "target_url": body.get("target_url"),
                  "allow_failure": False, "coverage": None, "author": self.bot,
                  "created_at": "2024-01-01T00:00:00.000Z"}
        history.append(status)
        return status

    def _dispatch(self, _rest: str) -> Response:
        raw = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
               or request.path).split("?", 1)[0]
        body = dict(request.args)
        body.update(request.get_json(silent=True) or dict(request.form))
        with self._lock:
            self.requests.append(RecordedRequest(request.method, raw, dict(request.args), body,
                                                 dict(request.headers)))
            injected = self._injected_failure(raw)
        if injected is not None:
            return injected
        supplied = request.headers.get("PRIVATE-TOKEN") or \
            request.headers.get("Authorization", "").removeprefix("Bearer ")
        if supplied != self.token:
            return json_response({"message": "401 Unauthorized"}, 401)
        path = raw.removeprefix("/api/v4")
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and method == request.method:
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                try:
                    with self._lock:
                        return handler(body=body, raw=raw, **args)
                except Abort as err:
                    return json_response({"message": err.message}, err.status)
                except KeyError:
                    return json_response({"message": "404 Not found"}, 404)
        return json_response({"error": "404 Not Found"}, 404)

    def _injected_failure(self, raw: str) -> Optional[Response]:
        for pattern, statuses, retry_after in self._failures:
            if statuses and pattern.search(raw):
                response = json_response({"message": f"{statuses[0]} injected failure"}, statuses.pop(0))
                if retry_after is not None:
                    response.headers["Retry-After"] = str(retry_after)
                return response
        return None
