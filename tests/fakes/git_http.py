"""Git's smart HTTP protocol for the fake forges: `git http-backend` (the CGI program git ships)
behind a threaded HTTP server, serving bare repositories under one root, with the forge's HTTP
basic auth checked first (as a forge does: a wrong or missing password gets 401 and git asks its
credential helpers). Every request is recorded so a test can see what authenticated."""
from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

Authorize = Callable[[str, str], bool]  # (username, password) -> may read


@dataclass(frozen=True)
class GitRequest:
    path: str
    username: str  # "" when the request carried no credentials
    status: int


class GitHttpServer:
    """Serves `<root>/<owner>/<name>.git` at `<url>/<owner>/<name>.git`.

    `authorize(username, password)` decides; None serves everyone (a public repository)."""

    def __init__(self, root: Path, authorize: Authorize | None = None):
        self.root, self.authorize = root, authorize
        self.requests: list[GitRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True  # stop() must not wait for a git client's open connection
        # a short poll: stop() waits for the loop to notice, once per test that starts a fake forge
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def clone_url(self, full_name: str) -> str:
        return f"{self.url}/{full_name}.git"

    @classmethod
    def with_token(cls, root: Path, token: str) -> GitHttpServer:
        """A private repository's server: any user name, `token` as the password."""
        return cls(root, lambda _user, password: hmac.compare_digest(password.encode(), token.encode()))

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fetched(self, repo_path: str) -> list[GitRequest]:
        """The authorised requests that read repo_path (e.g. "acme/modules.git")."""
        return [r for r in self.requests if r.status == 200 and r.path.startswith(f"/{repo_path}/")]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._serve(self)

            def do_POST(self) -> None:
                outer._serve(self)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        username, password = _basic_auth(handler.headers.get("Authorization", ""))
        path = urlsplit(handler.path).path
        if self.authorize is not None and not self.authorize(username, password):
            self.requests.append(GitRequest(path, username, 401))
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="fake forge"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        self.requests.append(GitRequest(path, username, 200))
        _run_http_backend(handler, self.root, path)


def _basic_auth(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return "", ""
    try:
        username, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return username, password


def _run_http_backend(handler: BaseHTTPRequestHandler, root: Path, path: str) -> None:
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length else b""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": handler.command, "PATH_INFO": path,
        "QUERY_STRING": urlsplit(handler.path).query,
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
        "HTTP_GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
        "REMOTE_USER": "git", "REMOTE_ADDR": "127.0.0.1",
    }
    if handler.headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = handler.headers["Content-Encoding"]
    done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
    head, _, payload = done.stdout.partition(b"\r\n\r\n")
    status = 200
    headers = []
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers.append((name, value.strip()))
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
