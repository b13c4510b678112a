"""What Azure DevOps does in a repository for FakeAzureDevOps: read a branch, and compute a pull
request's test merge and publish it as refs/pull/N/merge (never on a branch)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def branch_sha(bare: Path, ref: str) -> str:
    """The commit a ref points at, "" when there is none."""
    found = _git(bare, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return found.stdout.strip() if found.returncode == 0 else ""


def publish_merge(bare: Path, number: int, base: str, head: str) -> str:
    """The head merged into the target as refs/pull/N/merge; its commit, "" on a conflict."""
    tree = _git(bare, "merge-tree", "--write-tree", base, head)
    if tree.returncode != 0:
        return ""
    commit = _git(bare, "commit-tree", tree.stdout.split()[0], "-p", base, "-p", head, "-m", f"Merged PR {number}")
    if commit.returncode != 0:
        return ""
    sha = commit.stdout.strip()
    _git(bare, "update-ref", f"refs/pull/{number}/merge", sha)
    return sha


def _git(bare: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(bare), "GIT_AUTHOR_NAME": "Azure DevOps",
           "GIT_AUTHOR_EMAIL": "ado@fake.invalid", "GIT_COMMITTER_NAME": "Azure DevOps",
           "GIT_COMMITTER_EMAIL": "ado@fake.invalid"}
    return subprocess.run(["git", *args], cwd=bare, env=env, capture_output=True, text=True, check=False)
