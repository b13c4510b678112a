"""The fakes' smart-HTTP git server: real git clones through it, and only with the password."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fakes.git_http import GitHttpServer
from tests.support import GitRepo

ENV = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"}


def _clone(url: str, into: Path, password: str | None) -> subprocess.CompletedProcess:
    helper = f"!f() {{ echo username=bot; echo password={password}; }}; f" if password else ""
    return subprocess.run(["git", "-c", f"credential.helper={helper}", "clone", "-q", url, str(into)],
                          capture_output=True, text=True, env=ENV, check=False)


def test_clones_with_the_token_and_refuses_without(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    repo = GitRepo(tmp_path / "acme", "infra")
    repo.commit({"main.tf": "# hello\n"}, "one")
    server = GitHttpServer(tmp_path, lambda user, password: password == "s3cret").start()
    try:
        url = server.clone_url("acme/infra")
        assert _clone(url, tmp_path / "anonymous", None).returncode != 0
        assert _clone(url, tmp_path / "wrong", "guess").returncode != 0
        done = _clone(url, tmp_path / "bot", "s3cret")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "bot" / "main.tf").read_text() == "# hello\n"
        assert {(r.username, r.status) for r in server.requests} >= {("", 401), ("bot", 200)}
    finally:
        server.stop()
