"""The bot's git credentials for `terraform init`: private modules on the repository's own forge.

Only while an init runs, the job process answers git credential requests on a unix socket of
its own in the job's work dir (inside the sandbox's view); git learns of it through
GIT_CONFIG_COUNT/KEY/VALUE entries in init's environment naming a small helper program
(runners/git_credential_helper.py) for `credential.<origin>.helper`, scoped to the forge's
origin. So the token is never on disk, never in an argument list and never in Terraform's
environment (only the socket's path is); any other host gets nothing. While the socket is
served, git ignores the job's global git config: a ~/.gitconfig written by a pull request's
code (core.hooksPath, core.fsmonitor, a proxy) could otherwise run code that asks the socket.
"""
from __future__ import annotations

import os
import secrets
import select
import shlex
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HELPER = Path(__file__).resolve().with_name("git_credential_helper.py")
MAX_REQUEST = 64 * 1024
CONNECTION_TIMEOUT = 10.0
SOCKET_DIR = ".git-credentials"  # in the job's work dir: writable, so bound into the sandbox
_SUN_PATH_MAX = 107


@dataclass(frozen=True)
class GitCredentials:
    """What init needs to offer the bot's credentials for one forge origin.

    `fetch` is called when an init starts (a GitHub App token is short-lived) and returns
    (username, password), or None to offer nothing; it must not raise."""

    origin: str  # scheme://host[:port] of the repository's clone URL
    fetch: Callable[[], tuple[str, str] | None]
    work_dir: Path  # the job's work dir; the socket lives in a fresh directory inside it


def origin_of(clone_url: str) -> str | None:
    """scheme://host[:port] of an http(s) clone URL, without any user:password@; None for
    local paths, ssh and anything else."""
    parts = urlsplit(clone_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


@contextmanager
def served(credentials: GitCredentials | None, python: str = sys.executable) -> Iterator[dict[str, str]]:
    """Serve the credentials while the block runs; yields the environment entries that make
    git ask for them ({} when there is nothing to offer). The socket and its directory are
    gone when the block ends."""
    login = credentials.fetch() if credentials is not None else None
    if credentials is None or login is None:
        yield {}
        return
    directory = Path(credentials.work_dir) / SOCKET_DIR / secrets.token_hex(8)
    directory.mkdir(parents=True, mode=0o700)
    path = directory / "socket"
    server = _CredentialServer(path, credentials.origin, login)
    try:
        server.start()
        yield helper_env(credentials.origin, path, python)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def helper_env(origin: str, socket_path: Path, python: str) -> dict[str, str]:
    """GIT_CONFIG_* entries: the helper list for the origin reset (no other helper hears the
    answer, even on `store`), then ours; no terminal prompt; no global git config."""
    command = "!" + " ".join(shlex.quote(str(a)) for a in (python, "-I", "-S", HELPER, socket_path))
    entries = [(f"credential.{origin}.helper", ""), (f"credential.{origin}.helper", command)]
    env = {"GIT_CONFIG_COUNT": str(len(entries)), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_GLOBAL": "/dev/null"}
    for i, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def merge_git_config(env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """env with extra's GIT_CONFIG_* entries appended after any env already has (so they win)."""
    merged = {**env, **{k: v for k, v in extra.items() if not k.startswith("GIT_CONFIG_")}}
    if "GIT_CONFIG_COUNT" not in extra:
        return merged
    try:
        start = max(int(env.get("GIT_CONFIG_COUNT", "0")), 0)
    except ValueError:
        start = 0
    count = int(extra["GIT_CONFIG_COUNT"])
    for i in range(count):
        merged[f"GIT_CONFIG_KEY_{start + i}"] = extra[f"GIT_CONFIG_KEY_{i}"]
        merged[f"GIT_CONFIG_VALUE_{start + i}"] = extra[f"GIT_CONFIG_VALUE_{i}"]
    merged["GIT_CONFIG_COUNT"] = str(start + count)
    if "GIT_CONFIG_GLOBAL" in extra:
        merged["GIT_CONFIG_GLOBAL"] = extra["GIT_CONFIG_GLOBAL"]
    return merged


def answer(request: bytes, origin: str, login: tuple[str, str]) -> bytes:
    """The helper protocol's answer: username and password when the request is for exactly
    the origin (scheme, host and port), else nothing."""
    fields: dict[str, str] = {}
    for line in request.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in fields:
            fields[key] = value
    asked = f"{fields.get('protocol', '').lower()}://{fields.get('host', '').lower()}"
    if asked != origin or any(ch in login[0] + login[1] for ch in "\n\0"):
        return b""
    return f"username={login[0]}\npassword={login[1]}\n".encode()


class _CredentialServer:
    """Answers one request per connection on a unix socket, from a thread of the job process."""

    def __init__(self, path: Path, origin: str, login: tuple[str, str]) -> None:
        self.path, self.origin, self.login = path, origin, login
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="git-credentials", daemon=True)

    def start(self) -> None:
        _bind(self.sock, self.path)
        self.path.chmod(0o600)
        self.sock.listen(8)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(CONNECTION_TIMEOUT)
        request = b""
        try:
            while len(request) < MAX_REQUEST:
                chunk = conn.recv(MAX_REQUEST)
                if not chunk:
                    break
                request += chunk
            conn.sendall(answer(request, self.origin, self.login))
        except OSError:
            pass  # the helper went away; git carries on without credentials


def _bind(sock: socket.socket, path: Path) -> None:
    """Bind to path; a path longer than a socket address allows is reached through the
    directory's file descriptor (/proc/self/fd/N/name), as the helper reaches it by chdir."""
    if len(str(path).encode()) <= _SUN_PATH_MAX:
        sock.bind(str(path))
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)
