"""What a forge reads from its own git repository when a pull request is opened through the API:
the fakes' repositories are local bare repos (their clone URL is a path), read here with git."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class BranchDiff:
    head_sha: str
    base_sha: str
    merge_base: str
    files: list[dict]  # {filename, status, previous_filename?} as GitHub lists them


def branch_diff(clone_url: str, base: str, head: str) -> Optional[BranchDiff]:
    """The head and base branches' commits and the files changed from their merge base to head;
    None when clone_url is not a local repository or either branch is missing."""
    path = clone_url.removeprefix("file://")
    if not os.path.isdir(path):
        return None
    try:
        head_sha = _git(path, "rev-parse", "--verify", f"refs/heads/{head}^{{commit}}")
        base_sha = _git(path, "rev-parse", "--verify", f"refs/heads/{base}^{{commit}}")
        merge_base = _git(path, "merge-base", base_sha, head_sha)
        out = _git(path, "diff", "--name-status", "-M", "-z", f"{merge_base}", head_sha)
    except subprocess.CalledProcessError:
        return None
    fields, files, i = out.split("\0"), [], 0
    statuses = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}
    while i < len(fields) and fields[i]:
        code = fields[i][0]
        if code in "RC":
            files.append({"filename": fields[i + 2], "previous_filename": fields[i + 1], "status": statuses[code]})
            i += 3
        else:
            files.append({"filename": fields[i + 1], "status": statuses.get(code, "modified")})
            i += 2
    return BranchDiff(head_sha, base_sha, merge_base, files)


def _git(path: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": path}).stdout.strip()
