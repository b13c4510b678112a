"""Fixtures for the runners tests: real Terraform roots, real git repositories."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from runners.embedded_terraform import embedded_argv
from runners.environment import minimal_env
from runners.terraform import TerraformRunner

@pytest.fixture
def tf_env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment with HOME and TMPDIR inside the test's tmp dir."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    parent = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "LANG": "C.UTF-8"}
    return minimal_env(parent, home, tmp)


@pytest.fixture
def runner(tf_env: dict[str, str]) -> TerraformRunner:
    """The embedded Terraform, so no terraform on PATH is needed."""
    return TerraformRunner(embedded_argv(), tf_env, timeout=120)


@pytest.fixture
def make_root(tmp_path: Path) -> Callable[..., Path]:
    """Write a Terraform root from {file name: text} and return its dir."""

    def make(files: dict[str, str], name: str = "root") -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    return make


def git(cwd: Path, *args: str) -> str:
    """Run the system git in cwd with a fixed identity; returns stdout stripped."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def commit_files(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    """Write (or delete, for None) files in a work tree, commit them, return the new sha."""
    for rel, text in files.items():
        path = repo / rel
        if text is None:
            git(repo, "rm", "-q", rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(repo, "add", rel)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def gitrun() -> Callable[..., str]:
    """git(cwd, *args) for building test repositories."""
    return git


@pytest.fixture
def commit() -> Callable[..., str]:
    """commit(repo, {path: text or None}, message) -> sha."""
    return commit_files


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, Path]:
    """A work tree with one commit on main, and the bare repo it pushes to: (work, bare)."""
    work, bare = tmp_path / "work", tmp_path / "upstream.git"
    work.mkdir()
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "origin", str(bare))
    commit_files(work, {"README.md": "hello\n"}, "first")
    git(work, "push", "-q", "origin", "main")
    return work, bare
