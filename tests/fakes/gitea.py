"""A fake Gitea (REST API v1) on 127.0.0.1, driven through bot.forges.gitea's real client.

It speaks the API's JSON shapes (tests/fakes/gitea_json.py, built from the published payloads),
paginates with `page`/`limit`, X-Total-Count and Link (tests/fakes/gitea_routes.py), and checks
`Authorization: token ...`. Its repositories are real bare git repos served over smart HTTP
(tests/fakes/git_http.py) at their `clone_url`, readable only with the token as the password, as
a private repository on Gitea. Tests arrange state with the helpers (add_repo, add_pull, push,
review, set_permission, ...) and read back what the bot did (comments, statuses, issues,
requests).
"""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes import gitea_json as shapes
from tests.fakes.git_http import GitHttpServer
from tests.fakes.gitea_routes import Abort, GiteaRoutes, error_response

DEFAULT_PERMISSION = "read"  # a public repository: anyone signed in reads it


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class RecordedRequest:
    method: str
    path: str  # below /api/v1, still URL-encoded
    query: dict
    body: dict
    headers: dict


@dataclass
class _Repo:
    data: dict  # the API's Repository object
    git_dir: str  # the bare repository behind clone_url
    pulls: dict = field(default_factory=dict)  # index -> pull state
    issues: dict = field(default_factory=dict)  # index -> issue state (a pull request has one too)
    statuses: dict = field(default_factory=dict)  # sha -> [status] in posting order
    permissions: dict = field(default_factory=dict)  # login -> none | read | write | admin | owner
    protections: list = field(default_factory=list)  # BranchProtection objects
    deleted_branches: list = field(default_factory=list)
    merge_styles: tuple = ("merge", "rebase", "rebase-merge", "squash", "fast-forward-only")

    def permission(self, login: str) -> str:
        return self.permissions.get(login, DEFAULT_PERMISSION)

    def branch_head(self, branch: str) -> str:
        done = subprocess.run(["git", "rev-parse", "--verify", "-q", f"refs/heads/{branch}"], cwd=self.git_dir,
                              capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def next_index(self) -> int:
        return max([0, *self.issues]) + 1


class FakeGitea(GiteaRoutes):
    """A Gitea server on an ephemeral port; use as a context manager or start()/stop()."""

    def __init__(self, token: str = "gitea-test-token", bot_login: str = "plankeeper-bot"):
        self.token, self.bot = token, bot_login
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._users: dict[str, dict] = {}
        self._repos: dict[str, _Repo] = {}
        self._orgs: dict[str, list[dict]] = {}
        self._failures: list[tuple[re.Pattern, list[int], int | None]] = []
        self._git_root = Path(tempfile.mkdtemp(prefix="fake-gitea-git-"))
        self.git = GitHttpServer(self._git_root, lambda user, password: password == self.token)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self._routes = self._route_table()

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeGitea:
        app = Flask("fake_gitea")
        app.add_url_rule("/api/v1/<path:_rest>", "api", self._dispatch,
                         methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.git.start()
        self.user(self.bot)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self.git.stop()
            self._server = None
        shutil.rmtree(self._git_root, ignore_errors=True)

    def __enter__(self) -> FakeGitea:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def web_host(self) -> str:
        """host:port of the web URLs (html_url), as the bot names repositories."""
        return self.url.split("://", 1)[1]

    # ---- arranging state -------------------------------------------------------------
    def user(self, login: str) -> dict:
        with self._lock:
            if login not in self._users:
                self._users[login] = shapes.user_json(next(self._ids), login, self.url)
            return self._users[login]

    def add_repo(self, full_name: str, git_dir: str | Path, default_branch: str = "main") -> dict:
        """Host the bare repository git_dir as full_name (owner/name); its clone_url is served over HTTP."""
        owner, _, _name = full_name.partition("/")
        link = self._git_root / f"{full_name}.git"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(git_dir).resolve())
        data = shapes.repo_json(next(self._ids), full_name, self.user(owner), self.url,
                                self.git.clone_url(full_name), default_branch)
        with self._lock:
            self._repos[full_name] = _Repo(data, str(Path(git_dir).resolve()), permissions={self.bot: "admin"})
        return data

    def add_pull(self, full_name: str, number: int | None, head_sha: str, head_ref: str, base_ref: str,
                 author: str, files: list, base_sha: str, title: str = "", body: str = "",
                 head_repo: str | None = None) -> dict:
        """Open pull request `number` (None: the next index); `head_repo` names a fork's full name."""
        repo = self.repo(full_name)
        with self._lock:
            index = number or repo.next_index()
            issue = self._new_issue(repo, index, title or f"PR {index}", body, author)
            pull = {"id": next(self._ids), "number": index, "title": issue["title"], "body": body,
                    "author": self.user(author)["login"], "head_sha": head_sha, "head_ref": head_ref,
                    "base_ref": base_ref, "merge_base": base_sha, "closed": False, "merged": False,
                    "mergeable": True, "merged_at": None, "merged_by": None, "merge_commit_sha": None,
                    "closed_at": None, "created_at": issue["created_at"], "updated_at": issue["updated_at"],
                    "files": list(files), "reviews": [], "comments": 0, "fork_deleted": False,
                    "head_repo": self.repo(head_repo).data if head_repo else None}
            repo.pulls[index] = pull
        return pull

    def push(self, full_name: str, number: int, head_sha: str, files: list) -> None:
        with self._lock:
            self.pull(full_name, number).update(head_sha=head_sha, files=list(files),
                                                updated_at=shapes.now_iso())

    def set_title(self, full_name: str, number: int, title: str) -> None:
        with self._lock:
            self.pull(full_name, number)["title"] = title
            self.repo(full_name).issues[number]["title"] = title

    def set_pull(self, full_name: str, number: int, **fields: Any) -> None:
        """Set pull state directly: mergeable, merge_base, fork_deleted, closed, updated_at, ..."""
        with self._lock:
            self.pull(full_name, number).update(fields)

    def mark_merged(self, full_name: str, number: int, merge_sha: str, by: str = "alice") -> None:
        """Merged outside the API (in the UI) into a real commit."""
        now = shapes.now_iso()
        with self._lock:
            self.pull(full_name, number).update(merged=True, closed=True, merge_commit_sha=merge_sha,
                                                merged_by=self.user(by)["login"], merged_at=now, closed_at=now,
                                                updated_at=now)
            self.repo(full_name).issues[number].update(state="closed", closed_at=now)

    def review(self, full_name: str, number: int, reviewer: str, state: str = "APPROVED",
               commit_id: str | None = None, dismissed: bool = False) -> dict:
        """A submitted review (APPROVED, REQUEST_CHANGES, COMMENT) of commit_id (default: the head)."""
        with self._lock:
            pull = self.pull(full_name, number)
            review = {"id": next(self._ids), "author": self.user(reviewer)["login"], "state": state, "body": "",
                      "commit_id": commit_id or pull["head_sha"], "dismissed": dismissed,
                      "submitted_at": shapes.now_iso()}
            pull["reviews"].append(review)
            return review

    def set_permission(self, full_name: str, login: str, permission: str) -> None:
        with self._lock:
            self.user(login)
            self.repo(full_name).permissions[login] = permission

    def add_team(self, org: str, name: str, members: list[str], permission: str = "write") -> int:
        with self._lock:
            team = {"id": next(self._ids), "name": name, "permission": permission,
                    "members": {self.user(m)["login"] for m in members}}
            self._orgs.setdefault(org, []).append(team)
            return team["id"]

    def add_protection(self, full_name: str, rule_name: str, **fields: Any) -> None:
        """A BranchProtection (enable_status_check, status_check_contexts, block_on_outdated_branch, ...)."""
        rule = {"branch_name": rule_name, "rule_name": rule_name, "enable_push": False,
                "enable_status_check": False, "status_check_contexts": [], "required_approvals": 0,
                "block_on_rejected_reviews": False, "block_on_outdated_branch": False,
                "dismiss_stale_approvals": False, "created_at": shapes.now_iso(), "updated_at": shapes.now_iso()}
        rule.update(fields)
        with self._lock:
            self.repo(full_name).protections.append(rule)

    def add_comment(self, full_name: str, number: int, body: str, author: str) -> int:
        """A comment by `author` on issue or pull request `number`; returns its id."""
        with self._lock:
            issue = self.repo(full_name).issues.get(number)
            if issue is None:
                raise Abort(404, "The target couldn't be found.")
            now = shapes.now_iso()
            comment = {"id": next(self._ids), "issue": number, "author": self.user(author)["login"], "body": body,
                       "created_at": now, "updated_at": now, "reactions": []}
            issue["comments"].append(comment)
            issue["updated_at"] = now
            if number in self.repo(full_name).pulls:
                self.pull(full_name, number).update(updated_at=now, comments=len(issue["comments"]))
            return comment["id"]

    def add_status(self, full_name: str, sha: str, context: str, state: str, description: str = "",
                   target_url: str = "", author: str = "ci") -> dict:
        with self._lock:
            status = {"id": next(self._ids), "sha": sha, "context": context, "state": state,
                      "description": description, "target_url": target_url, "author": self.user(author)["login"],
                      "created_at": shapes.now_iso()}
            self.repo(full_name).statuses.setdefault(sha, []).append(status)
            return status

    def add_issue(self, full_name: str, title: str, body: str, author: str) -> dict:
        with self._lock:
            repo = self.repo(full_name)
            return self._new_issue(repo, repo.next_index(), title, body, author)

    def inject_failures(self, path_regex: str, statuses: tuple = (500,), retry_after: int | None = None) -> None:
        """The next len(statuses) requests whose path (below /api/v1) matches fail with these codes."""
        with self._lock:
            self._failures.append((re.compile(path_regex), list(statuses), retry_after))

    # ---- reading state ---------------------------------------------------------------
    def repo(self, full_name: str | None) -> _Repo:
        found = self._repos.get(str(full_name))
        if found is None:
            raise Abort(404, "The target couldn't be found.")
        return found

    def pull(self, full_name: str, number: int) -> dict:
        return self.repo(full_name).pulls[number]

    def comments(self, full_name: str, number: int) -> list[dict]:
        return [{"id": c["id"], "author": c["author"], "body": c["body"],
                 "reactions": [r for _, r in c["reactions"]]}
                for c in self.repo(full_name).issues[number]["comments"]]

    def statuses(self, full_name: str, sha: str) -> list[dict]:
        return list(self.repo(full_name).statuses.get(sha, []))

    def issues(self, full_name: str) -> list[dict]:
        repo = self.repo(full_name)
        return [dict(i) for n, i in repo.issues.items() if n not in repo.pulls]

    def requests_to(self, pattern: str, method: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if re.search(pattern, r.path) and (not method or r.method == method)]

    # ---- internals -------------------------------------------------------------------
    def _repo(self, owner: str, name: str) -> _Repo:
        return self.repo(f"{owner}/{name}")

    def _new_issue(self, repo: _Repo, index: int, title: str, body: str, author: str) -> dict:
        if index in repo.issues:
            raise ValueError(f"index {index} of {repo.data['full_name']} is taken")
        now = shapes.now_iso()
        issue = {"id": next(self._ids), "number": index, "title": title, "body": body,
                 "author": self.user(author)["login"], "state": "open", "comments": [], "created_at": now,
                 "updated_at": now, "closed_at": None}
        repo.issues[index] = issue
        return issue

    def _dispatch(self, _rest: str) -> Response:
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
        raw = raw.split("?", 1)[0]
        path = raw.removeprefix("/api/v1")
        body = request.get_json(silent=True) or {}
        with self._lock:
            self.requests.append(RecordedRequest(request.method, path, dict(request.args), body,
                                                 dict(request.headers)))
            injected = self._injected_failure(path)
        if injected is not None:
            return injected
        scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or supplied != self.token:
            return error_response(401, "token is required", self.url)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and method == request.method:
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                try:
                    with self._lock:
                        return handler(body=body if isinstance(body, dict) else {}, **args)
                except Abort as err:
                    return error_response(err.status, err.message, self.url)
        return error_response(404, "The target couldn't be found.", self.url)

    def _injected_failure(self, path: str) -> Response | None:
        for pattern, statuses, retry_after in self._failures:
            if statuses and pattern.search(path):
                response = error_response(statuses.pop(0), "injected failure", self.url)
                if retry_after is not None:
                    response.headers["Retry-After"] = str(retry_after)
                return response
        return None
