"""FakeGitHub: a real HTTP server speaking enough of GitHub's REST API for PyGithub.

Tests drive the real client library against it instead of mocking. State lives in memory
and is set up and inspected through helper methods (add_repo, add_pull, comments, ...).
Paths in `requests` and `inject_failures` are relative to `api_url` ("/repos/o/r/pulls/1").
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes import github_payloads as payloads
from tests.fakes.github_routes import build_app

API_PREFIX = "/api/v3"
CI_APP_ID = 15368  # the App of check runs added with add_check_run (GitHub Actions' id on github.com)
FileSpec = Union[str, dict]


@dataclass
class FakePull:
    number: int
    head_sha: str
    head_ref: str
    base_ref: str
    base_sha: str
    author: str
    files: list[dict]
    draft: bool = False
    fork_full_name: Optional[str] = None
    head_repo_missing: bool = False
    title: str = ""
    body: Optional[str] = ""
    closed: bool = False
    merged: bool = False
    merged_at: Optional[str] = None
    merge_commit_sha: Optional[str] = None
    merge_method: Optional[str] = None  # how the API merged it: merge, squash or rebase
    mergeable: Optional[bool] = True
    mergeable_state: str = "clean"
    pending_polls: int = 0  # the next N reads answer mergeable=null ("still computing")
    reviews: list[dict] = field(default_factory=list)
    updated_at: str = field(default_factory=payloads.now_iso)  # a push, a comment, a review, closing
    closed_at: Optional[str] = None


@dataclass
class FakeRepo:
    full_name: str
    clone_url: str
    default_branch: str
    pulls: dict[int, FakePull] = field(default_factory=dict)
    issues: dict[int, dict] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)
    branches: set[str] = field(default_factory=set)
    statuses: dict[str, list[dict]] = field(default_factory=dict)
    check_runs: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def web(self) -> str:
        match = re.match(r"(https?://[^/]+)/", self.clone_url)
        return match.group(1) if match else "https://github.com"


@dataclass
class _Failure:
    pattern: re.Pattern
    statuses: list[int]
    retry_after: Optional[int]


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 (werkzeug's name)
        pass


class FakeGitHub:
    """In-memory GitHub on 127.0.0.1:<ephemeral port>; use as a context manager.

    `token` is the personal token accepted; with `app_id` and `app_public_key` (PEM), the
    fake also accepts App JWTs (RS256, iss = app id) and issues installation tokens that
    expire after `installation_token_ttl` seconds.
    """

    def __init__(
        self,
        token: Optional[str] = "test-token",
        login: str = "plankeeper-bot",
        app_id: Optional[int] = None,
        app_public_key: Optional[str] = None,
        app_slug: str = "plankeeper",
        installation_id: int = 1,
        installation_token_ttl: int = 3600,
    ):
        self.token, self.login = token, login
        self.app_id, self.app_public_key, self.app_slug = app_id, app_public_key, app_slug
        self.installation_id, self.installation_token_ttl = installation_id, installation_token_ttl
        self.installation_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self.repos: dict[str, FakeRepo] = {}
        self.teams: dict[tuple[str, str], set[str]] = {}
        self.all_comments: dict[int, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.graphql_calls: list[dict] = []  # {query, variables, viewer} of each POST to the GraphQL endpoint
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified after every request that writes
        self._failures: list[_Failure] = []
        self._ids = iter(range(1000, 10**9))
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self.api_url = ""

    # -- lifecycle --------

    def start(self) -> "FakeGitHub":
        self._server = make_server(
            "127.0.0.1",
            0,
            build_app(self, API_PREFIX),
            threaded=True,
            request_handler=_QuietHandler,
        )
        self.api_url = f"http://127.0.0.1:{self._server.server_port}{API_PREFIX}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)  # type: ignore[union-attr]
            self._server = None

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def web_url(self) -> str:
        return self.api_url[: -len(API_PREFIX)]

    # -- setting up state --------

    def next_id(self) -> int:
        return next(self._ids)

    def add_repo(self, full_name: str, clone_url: str, default_branch: str = "main") -> FakeRepo:
        with self.lock:
            repo = FakeRepo(full_name, clone_url, default_branch, branches={default_branch})
            self.repos[full_name] = repo
            return repo

    def add_pull(
        self,
        full_name: str,
        number: int,
        head_sha: str,
        head_ref: str,
        base_ref: str,
        author: str,
        files: Optional[Sequence[FileSpec]] = None,
        base_sha: str = "0" * 40,
        draft: bool = False,
        fork_full_name: Optional[str] = None,
        title: str = "",
        head_repo_missing: bool = False,
    ) -> FakePull:
        """A pull request; files are paths or dicts {filename, status, previous_filename}."""
        with self.lock:
            repo = self.repos[full_name]
            pull = FakePull(
                number,
                head_sha,
                head_ref,
                base_ref,
                base_sha,
                author,
                _files(files or []),
                draft=draft,
                fork_full_name=fork_full_name,
                head_repo_missing=head_repo_missing,
                title=title or f"Pull request {number}",
                mergeable_state="draft" if draft else "clean",
            )
            repo.pulls[number] = pull
            repo.branches.add(base_ref)
            if not fork_full_name:
                repo.branches.add(head_ref)
            return pull

    def set_files(self, full_name: str, number: int, files: Sequence[FileSpec]) -> None:
        with self.lock:
            self.repos[full_name].pulls[number].files = _files(files)

    def push(
        self, full_name: str, number: int, new_sha: str, files: Optional[Sequence[FileSpec]] = None
    ) -> None:
        """New commits on the head branch: head sha moves; files replaced when given."""
        with self.lock:
            pull = self.repos[full_name].pulls[number]
            pull.head_sha, pull.updated_at = new_sha, payloads.now_iso()
            if files is not None:
                pull.files = _files(files)

    def add_review(
        self,
        full_name: str,
        number: int,
        user: str,
        state: str = "APPROVED",
        commit_id: Optional[str] = None,
    ) -> None:
        with self.lock:
            pull = self.repos[full_name].pulls[number]
            pull.reviews.append(
                {
                    "id": self.next_id(),
                    "user": user,
                    "state": state,
                    "body": "",
                    "commit_id": commit_id or pull.head_sha,
                    "submitted_at": payloads.now_iso(),
                }
            )

    def set_permission(self, full_name: str, user: str, permission: str) -> None:
        """permission: admin | maintain | write | triage | read | none."""
        with self.lock:
            self.repos[full_name].permissions[user] = permission

    def set_mergeable(
        self,
        full_name: str,
        number: int,
        mergeable: Optional[bool],
        state: str,
        pending_polls: int = 0,
    ) -> None:
        """Set mergeable/mergeable_state; the next `pending_polls` reads answer null."""
        with self.lock:
            pull = self.repos[full_name].pulls[number]
            pull.mergeable, pull.mergeable_state, pull.pending_polls = (
                mergeable,
                state,
                pending_polls,
            )

    def set_state(
        self, full_name: str, number: int, closed: bool = True, merged: bool = False
    ) -> None:
        with self.lock:
            pull = self.repos[full_name].pulls[number]
            pull.closed, pull.merged = closed, merged
            pull.updated_at = payloads.now_iso()
            pull.closed_at = pull.updated_at if closed else None
            if merged:
                pull.merged_at, pull.merge_commit_sha = payloads.now_iso(), secrets.token_hex(20)

    def add_team_member(self, org: str, slug: str, user: str) -> None:
        with self.lock:
            self.teams.setdefault((org, slug), set()).add(user)

    def add_status(
        self, full_name: str, sha: str, context: str, state: str, creator: str = "ci-bot"
    ) -> None:
        """A commit status posted by someone else (CI)."""
        with self.lock:
            self.record_status(full_name, sha, creator, {"context": context, "state": state})

    def add_check_run(
        self,
        full_name: str,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: Optional[str] = "success",
    ) -> None:
        """A check run written by another App (CI)."""
        with self.lock:
            run = self.record_check_run(full_name, sha, name, CI_APP_ID, "ci")
            run.update(status=status, conclusion=conclusion)

    def add_comment(self, full_name: str, number: int, body: str, user: str) -> int:
        """A comment by someone else; returns its id."""
        with self.lock:
            return self.record_comment(full_name, number, body, user)["id"]

    def inject_failures(
        self,
        path_regex: str,
        statuses: Optional[list[int]] = None,
        retry_after: Optional[int] = None,
    ) -> None:
        """The next len(statuses) requests whose path matches answer those codes, in order."""
        with self.lock:
            self._failures.append(
                _Failure(re.compile(path_regex), list(statuses or [500, 502]), retry_after)
            )

    # -- inspecting state --------

    def wait_until(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """predicate()'s value once it is true, checked after each write the bot makes (no polling
        interval to add to a measured time); falsy when `timeout` passes first."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def comments(self, full_name: str, number: int) -> list[dict]:
        with self.lock:
            return [
                {
                    "id": c["id"],
                    "body": c["body"],
                    "user": c["user"],
                    "reactions": [r["content"] for r in c["reactions"]],
                }
                for c in self.all_comments.values()
                if c["repo"] == full_name and c["issue_number"] == number
            ]

    def check_runs(self, full_name: str, sha: str) -> list[dict]:
        """Every check run on sha, oldest first: id, name, status, conclusion, output {title,
        summary, text}, actions, details_url, external_id, app_id, and history: (status,
        conclusion) after each create or update through the API."""
        with self.lock:
            return [dict(r) for r in self.repos[full_name].check_runs.get(sha, [])]

    def minimized(self, full_name: str, number: int) -> dict[int, str]:
        """Comment id -> the classifier it was minimized with (GraphQL minimizeComment)."""
        with self.lock:
            return {c["id"]: c["minimized"] for c in self.all_comments.values()
                    if c["repo"] == full_name and c["issue_number"] == number and c.get("minimized")}

    def statuses(self, full_name: str, sha: str) -> list[dict]:
        with self.lock:
            return [dict(s) for s in self.repos[full_name].statuses.get(sha, [])]

    def issues(self, full_name: str) -> list[dict]:
        with self.lock:
            return [dict(i) for i in self.repos[full_name].issues.values()]

    def pull(self, full_name: str, number: int) -> FakePull:
        return self.repos[full_name].pulls[number]

    # -- used by the routes --------

    def take_failure(self, path: str) -> Optional[tuple[int, Optional[int]]]:
        with self.lock:
            for failure in self._failures:
                if failure.statuses and failure.pattern.search(path):
                    return failure.statuses.pop(0), failure.retry_after
            return None

    def record_comment(self, full_name: str, number: int, body: str, user: str) -> dict:
        now = payloads.now_iso()
        comment: dict[str, Any] = {
            "id": self.next_id(),
            "repo": full_name,
            "issue_number": number,
            "body": body,
            "user": user,
            "reactions": [],
            "created_at": now,
            "updated_at": now,
        }
        self.all_comments[comment["id"]] = comment
        pull = self.repos[full_name].pulls.get(number) if full_name in self.repos else None
        if pull is not None:
            pull.updated_at = now  # commenting updates the pull request, as on GitHub
        return comment

    def record_check_run(self, full_name: str, sha: str, name: str, app_id: Optional[int], app_slug: str) -> dict:
        now = payloads.now_iso()
        run = {"id": self.next_id(), "name": name, "head_sha": sha, "status": "queued", "conclusion": None,
               "output": {"title": None, "summary": None, "text": None}, "actions": [], "details_url": None,
               "external_id": "", "app_id": app_id, "app_slug": app_slug, "started_at": now,
               "completed_at": None, "created_at": now, "history": []}  # (status, conclusion) after each write
        self.repos[full_name].check_runs.setdefault(sha, []).append(run)
        return run

    def find_check_run(self, full_name: str, run_id: int) -> Optional[dict]:
        runs = self.repos[full_name].check_runs.values()
        return next((r for on_sha in runs for r in on_sha if r["id"] == run_id), None)

    def check_run_pulls(self, repo: FakeRepo, sha: str) -> list[FakePull]:
        """The open pull requests of the repository itself with that head, as a check run lists them."""
        return [p for p in repo.pulls.values()
                if p.head_sha == sha and not p.fork_full_name and not (p.closed or p.merged)]

    def comment_by_node_id(self, node_id: str) -> Optional[dict]:
        match = re.fullmatch(r"IC_(\d+)", node_id)
        return self.all_comments.get(int(match.group(1))) if match else None

    def record_status(self, full_name: str, sha: str, creator: str, data: dict) -> dict:
        status = {
            "id": self.next_id(),
            "state": data["state"],
            "context": data.get("context") or "default",
            "description": data.get("description"),
            "target_url": data.get("target_url"),
            "creator": creator,
            "created_at": payloads.now_iso(),
        }
        self.repos[full_name].statuses.setdefault(sha, []).append(status)
        return status

    def issue_installation_token(self) -> tuple[str, float]:
        token = "ghs_" + secrets.token_hex(18)
        expires = time.time() + self.installation_token_ttl
        self.installation_tokens[token] = expires
        return token, expires


def _files(specs: Sequence[FileSpec]) -> list[dict]:
    return [{"filename": s} if isinstance(s, str) else dict(s) for s in specs]
