"""An isolated work directory per job; every user-given path is resolved inside it.

Layout: `root` is <parent_dir>/<name>, the job's directory (checkouts and plan files go in
subdirectories of it); `root/home` and `root/tmp` become HOME and TMPDIR of the processes
the job runs.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PathEscape(ValueError):
    """A path (from a comment or a repo config) would leave the work directory."""


@dataclass(frozen=True)
class Workspace:
    root: Path
    home: Path
    tmp: Path
    base: Optional[Path] = None  # the directory holding all three; removed by cleanup()

    def resolve(self, rel: str, base: str = ".") -> Path:
        """Absolute path of rel, taken relative to root/base.

        Raises PathEscape for absolute paths, `..` that leaves root, and paths whose
        symlinks resolve outside root. The path need not exist.
        """
        joined = os.path.normpath(os.path.join(_relative(base, "base"), _relative(rel, "path")))
        if joined == ".." or joined.startswith("../"):
            raise PathEscape(f"path {rel!r} leaves the repository")
        path = self.root if joined == "." else self.root / joined
        if not resolves_inside(path, os.path.realpath(self.root)):
            raise PathEscape(f"path {rel!r} resolves through a symlink to outside the repository")
        return path

    def cleanup(self) -> None:
        """Remove the work directory and everything in it; missing dirs are fine."""
        for path in [self.base] if self.base else [self.root, self.home, self.tmp]:
            shutil.rmtree(path, ignore_errors=True)


def _relative(rel: str, what: str) -> str:
    if "\x00" in rel:
        raise PathEscape(f"{what} {rel!r} contains a NUL byte")
    if os.path.isabs(rel):
        raise PathEscape(f"{what} {rel!r} is absolute; give a path relative to the repository root")
    return rel or "."


def sanitize_name(name: str) -> str:
    """A directory name made of [A-Za-z0-9._-], never empty, `.` or `..`."""
    clean = _UNSAFE.sub("-", name).strip(".-")[:100]
    return clean or "job"


def create_workspace(parent_dir: Path, name: str) -> Workspace:
    """Create a fresh work dir named after name (sanitized) under parent_dir.

    A leftover dir of the same name (a retried job) is replaced.
    """
    base = Path(parent_dir).resolve() / sanitize_name(name)
    if base.exists():
        shutil.rmtree(base)
    ws = Workspace(root=base, home=base / "home", tmp=base / "tmp", base=base)
    for path in (ws.root, ws.home, ws.tmp):
        path.mkdir(parents=True, mode=0o700, exist_ok=path != base)
    return ws


def check_symlinks(root: Path, skip: Iterable[str] = ()) -> None:
    """Raise PathEscape naming the first symlink under root (in path order) that points outside it.

    `skip`: directories (relative to root) not looked into, themselves still checked: the
    `.terraform` an init of ours made in a kept work tree (its providers may link to a mirror)."""
    real_root = os.path.realpath(root)
    skipped = {os.path.normpath(os.path.join(root, rel)) for rel in skip}
    escaping = []
    pending = [os.fspath(root)]
    while pending:  # os.scandir: the entry types come with the listing, no lstat per file
        try:
            with os.scandir(pending.pop()) as listing:
                for entry in listing:
                    if entry.is_symlink():
                        if not resolves_inside(entry.path, real_root):
                            escaping.append(entry.path)
                    elif entry.is_dir() and os.path.normpath(entry.path) not in skipped:
                        pending.append(entry.path)
        except OSError:
            continue  # unreadable: nothing in it can be used either (as os.walk)
    if escaping:  # sorted only now: sorting every listing was a third of the walk
        first = min(escaping, key=lambda path: os.path.relpath(path, root).split(os.sep))
        rel = os.path.relpath(first, root)
        raise PathEscape(f"symlink {rel!r} points to {os.readlink(first)!r}, outside the repository")


def resolves_inside(path: str | os.PathLike, real_root: str) -> bool:
    """Whether path, its symlinks followed, is real_root (already resolved) or under it."""
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)
