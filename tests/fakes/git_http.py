"""A forge's git over HTTP, as real git serves it: `git http-backend` (smart HTTP) behind a
small HTTP server that, like GitHub and GitLab for a private repository, asks for Basic
credentials and accepts only the bot's token as the password.

Every request is recorded (path, the user name given, whether it was authorised), never the
password itself, so tests can assert who fetched what.
"""
from __future__ import annotations

import base64
import hmac
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from typing_extensions import Self

BACKEND = "/usr/lib/git-core/git-http-backend"
MAX_BODY = 50 * 1024 * 1024


@dataclass(frozen=True)
class GitRequest:
    method: str
    path: str
    user: str  # "" when no credentials came
    authorised: bool


class GitHTTPServer:
    """Serves every bare repository under `root` (`root/acme/modules.git` is
    `http://127.0.0.1:PORT/acme/modules.git`) to clients presenting `token` as password."""

    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token = Path(root), token
        self.requests: list[GitRequest] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> GitHTTPServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, request: GitRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def fetched(self, repo_path: str) -> list[GitRequest]:
        """The authorised requests that read repo_path (e.g. "acme/modules.git")."""
        with self.lock:
            return [r for r in self.requests if r.authorised and r.path.startswith(f"/{repo_path}/")]

    def check(self, header: str) -> tuple[str, bool]:
        """(user, authorised) of an Authorization header."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return "", False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return "", False
        return user, hmac.compare_digest(password.encode(), self.token.encode())


def _handler_for(server: GitHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            user, authorised = server.check(self.headers.get("Authorization", ""))
            server.record(GitRequest(self.command, parts.path, user, authorised))
            if not authorised:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fake forge"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY)) if length else b""
            self._backend(parts.path, parts.query, body)

        def _backend(self, path: str, query: str, body: bytes) -> None:
            env = {"GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH": "/usr/bin:/bin",
                   "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                   "REMOTE_USER": "bot", "REMOTE_ADDR": "127.0.0.1",
                   "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            out = subprocess.run([BACKEND], input=body, env=env, capture_output=True, check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
