"""What the fake Bitbucket Cloud and Data Center servers share: a Flask app on an ephemeral port,
HTTP basic or bearer auth, a log of the requests, injected failures, a git server for clones
(tests/fakes/git_http.py, checking the same credentials), and the fixtures they build objects from.
"""
from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Self

from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes.git_http import GitHttpServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitbucket"


def fixture(name: str) -> dict:
    """A fresh copy of tests/fixtures/bitbucket/<name>.json."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


class Abort(Exception):
    """Answer with this status and the flavour's error body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    body: Any
    headers: dict


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(json.dumps(data), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response


def now_iso() -> str:
    """A time as Bitbucket Cloud writes it: 2024-05-07T12:21:45.858898+00:00."""
    return datetime.now(timezone.utc).isoformat()


class FakeBitbucketServer:
    """Lifecycle, authentication, request log and failure injection; subclasses add the routes.

    `git_root` (optional): bare repositories served at `<git url>/<owner>/<name>.git` to whoever
    presents the same credentials as the API."""

    prefix = ""  # the API's path prefix, e.g. /2.0

    def __init__(self, username: str, token: str, git_root: Path | None = None):
        self.username, self.token = username, token
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._failures: list[tuple[re.Pattern, list[int], int | None]] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.git = GitHttpServer(git_root, self._may_read_git) if git_root else None
        self._routes = [(m, re.compile(p), h) for m, p, h in self.route_table()]

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeBitbucketServer:
        app = Flask(type(self).__name__)
        app.add_url_rule("/<path:_rest>", "api", self._dispatch, methods=["GET", "POST", "PUT", "DELETE"])
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        if self.git:
            self.git.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
        if self.git:
            self.git.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- for tests -------------------------------------------------------------------
    def inject_failures(self, path_regex: str, statuses: tuple = (500,), retry_after: int | None = None) -> None:
        """The next len(statuses) requests whose path matches fail with these codes."""
        with self._lock:
            self._failures.append((re.compile(path_regex), list(statuses), retry_after))

    def requests_to(self, pattern: str, method: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if re.search(pattern, r.path) and (not method or r.method == method)]

    # ---- for subclasses --------------------------------------------------------------
    def route_table(self) -> list[tuple[str, str, Callable[..., Response]]]:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Response:
        raise NotImplementedError

    def authenticated_headers(self) -> dict:
        return {}

    # ---- internals -------------------------------------------------------------------
    def _may_read_git(self, username: str, password: str) -> bool:
        return password == self.token and username in (self.username, "x-token-auth")

    def _authenticated(self) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return value == self.token
        if scheme.lower() != "basic":
            return False
        try:
            username, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (username, password) == (self.username, self.token)

    def _dispatch(self, _rest: str) -> Response:
        path = request.path
        body = request.get_json(silent=True)
        with self._lock:
            self.requests.append(RecordedRequest(request.method, path, dict(request.args.lists()), body,
                                                 dict(request.headers)))
            injected = self._injected_failure(path)
        if injected is not None:
            return injected
        if not self._authenticated():
            return self.error(401, "Authentication failed")
        relative = path.removeprefix(self.prefix)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(relative)
            if match and method == request.method:
                try:
                    with self._lock:
                        response = handler(body=body if body is not None else {}, **match.groupdict())
                except Abort as err:
                    response = self.error(err.status, err.message)
                except KeyError:
                    response = self.error(404, f"{path} not found")
                response.headers.update(self.authenticated_headers())
                return response
        return self.error(404, f"no such resource: {request.method} {path}")

    def _injected_failure(self, path: str) -> Response | None:
        for pattern, statuses, retry_after in self._failures:
            if statuses and pattern.search(path):
                response = self.error(statuses.pop(0), "injected failure")
                if retry_after is not None:
                    response.headers["Retry-After"] = str(retry_after)
                return response
        return None
