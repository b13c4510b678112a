"""Work trees kept between jobs: one per (repository, key) on this machine, updated in place.

A key is "pull-7" for a pull request, "branch-main" for runs of a branch (drift checks, deploys,
API runs). A tree is a `git worktree` of the repository's mirror (runners.git), so the next
commit of the same pull request writes only the files that changed; untracked files are cleaned
away except the `.terraform` and lock file of each project an init of ours made
(runners.incremental_init keeps the records of those).

Under `root` (data_dir/trees), one slot per key:

    <slot>/lock        flock, held by the job that has the tree
    <slot>/meta.json   repository, key, mirror, git's admin dir of the tree, last use, size
    <slot>/tree/       the work tree, while no job has it
    <slot>/init/       init records: outside the tree, so a pull request cannot write them
    <slot>/closed      the pull request closed while a job had the tree: dropped at release

A job leases a tree without waiting: a busy one gives None (the caller checks out afresh). The
tree moves into the job's work dir (one rename on the same file system), so the job's sandbox
confines it like any checkout, and moves back when the job ends. Slots are named by repository
and key, and a tree made from another mirror is dropped: code from one pull request never
reaches another's tree. Trees past the limits (count, size, age) are removed, least recently
used first.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from runners.git import GitError, RepoCache, run_git
from runners.incremental_init import DATA_DIR, InitRecords
from runners.init_fingerprint import LOCK_FILE
from runners.workspace import sanitize_name

LOCK, META, TREE, INIT, CLOSED = "lock", "meta.json", "tree", "init", "closed"
_GLOB_CHARS = re.compile(r"([*?\[\\])")


@dataclass(frozen=True)
class TreeLimits:
    """How many kept trees a machine keeps: beyond any limit the least recently used go."""

    max_trees: int = 50
    max_bytes: int = 20 * 2**30
    max_age: float = 14 * 86400.0


@dataclass
class TreeLease:
    """A job's hold on a kept tree, which is at `tree` (the job's checkout dir) until released."""

    slot: Path
    tree: Path
    records: InitRecords
    reused: bool = False  # the last check_out updated a kept tree in place (False: made one)
    present: bool = False  # a work tree is at `tree` (moved in, or checked out by this job)
    kept: tuple[str, ...] = ()  # project dirs whose .terraform was kept (relative to the tree)
    ready: bool = False  # the checkout is complete and checked: the tree may be kept
    lock: IO | None = field(default=None, repr=False)


class WorkTrees:
    """The kept trees of this machine, under root, made from the mirrors of cache."""

    def __init__(self, root: Path, cache: RepoCache, limits: TreeLimits = TreeLimits()) -> None:
        self.root = Path(root)
        self.cache = cache
        self.limits = limits

    def slot(self, repo_id: str, key: str) -> Path:
        digest = hashlib.sha256(f"{repo_id}\0{key}".encode()).hexdigest()[:16]
        return self.root / f"{sanitize_name(repo_id)[:60]}-{sanitize_name(key)[:40]}-{digest}"

    def lease(self, repo_id: str, key: str, dest: Path) -> TreeLease | None:
        """Take the tree of (repo_id, key) into dest (absent or an empty dir); None when another
        job has it. A tree to reuse is moved to dest; check_out() fills or updates it."""
        slot = self.slot(repo_id, key)
        slot.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = _try_lock(slot / LOCK)
        if lock is None:
            return None
        lease = TreeLease(slot, Path(dest), InitRecords(slot / INIT, Path(dest)), lock=lock)
        if (slot / CLOSED).exists():
            self._drop_slot_contents(slot)
        if (slot / TREE).is_dir():
            _remove_dir(Path(dest))  # the job's own checkout dir, left by an attempt that failed
            os.rename(slot / TREE, dest)
            lease.present = True
        return lease

    def check_out(self, lease: TreeLease, clone_url: str, sha: str, auth: tuple[str, str] | None = None,
                  refs: Sequence[str] = ()) -> None:
        """Make the leased tree hold exactly sha: updated in place when it was kept (only changed
        files written, untracked ones removed but the kept .terraform), else a new work tree of
        the mirror. Raises GitError when the commit cannot be fetched or checked out."""
        meta = _read_meta(lease.slot)
        lease.reused = False
        with self.cache.fetched(clone_url, sha, auth, refs) as mirror:
            if lease.present and meta.get("mirror") == str(mirror) and _admin_dir(lease.tree) is not None:
                try:
                    lease.kept = _update(lease.tree, sha, lease.records, self.cache.base_env,
                                         cleaned=bool(meta.get("cleaned")))
                    lease.reused = True
                except GitError:
                    pass  # e.g. files made unremovable: start over
            if not lease.reused:
                lease.present = False
                self._create(lease, mirror, sha, meta)
            lease.present = True
        meta.update(mirror=str(mirror), admin=str(_admin_dir(lease.tree) or ""), used_at=time.time(), cleaned=False)
        _write_meta(lease.slot, meta)

    def release(self, lease: TreeLease) -> None:
        """Keep the tree for the next job (when ready and its pull request is still open), or
        drop it; then let go of the slot and remove trees beyond the limits."""
        try:
            if lease.ready and lease.tree.is_dir() and not (lease.slot / CLOSED).exists():
                cleaned = _cleaned(lease.tree, lease.records, self.cache.base_env)
                _refresh_index(lease.tree, self.cache.base_env)
                os.rename(lease.tree, lease.slot / TREE)
                meta = _read_meta(lease.slot)
                meta.update(used_at=time.time(), size=_size(lease.slot / TREE), cleaned=cleaned)
                _write_meta(lease.slot, meta)
            else:
                _remove_dir(lease.tree)
                self._drop_slot_contents(lease.slot)
        finally:
            _unlock(lease)
        self.prune()

    def remove(self, repo_id: str, key: str) -> bool:
        """Remove the tree of (repo_id, key), e.g. when its pull request closed; a tree a job has
        now is marked and dropped when that job ends. True when it was removed now."""
        slot = self.slot(repo_id, key)
        if not slot.is_dir():
            return False
        lock = _try_lock(slot / LOCK)
        if lock is None:
            (slot / CLOSED).touch()
            return False
        try:
            self._remove_slot(slot)
        finally:
            lock.close()
        return True

    def prune(self) -> list[Path]:
        """Remove the trees beyond the limits, least recently used first (never one a job has);
        returns the slots removed."""
        slots = []
        for slot in self.root.iterdir() if self.root.is_dir() else []:
            meta = _read_meta(slot)
            slots.append((float(meta.get("used_at") or _mtime(slot)), int(meta.get("size") or 0), slot))
        slots.sort(reverse=True)
        removed, count, total = [], 0, 0
        oldest = time.time() - self.limits.max_age
        for used_at, size, slot in slots:
            count, total = count + 1, total + size
            if used_at >= oldest and count <= self.limits.max_trees and total <= self.limits.max_bytes:
                continue
            lock = _try_lock(slot / LOCK)
            if lock is None:
                continue
            try:
                self._remove_slot(slot)
                removed.append(slot)
                count, total = count - 1, total - size
            finally:
                lock.close()
        return removed

    # ------------------------------------------------------------------------ inside a slot

    def _create(self, lease: TreeLease, mirror: Path, sha: str, meta: dict) -> None:
        """A new work tree of the mirror at lease.tree, checked out at sha, with no init records."""
        _remove_dir(lease.tree)
        self._drop_admin(meta)
        lease.records.clear()
        lease.kept = ()
        # --lock: `git worktree prune` (or gc) never removes the record of a tree that a job moved
        run_git(mirror, ["worktree", "add", "--quiet", "--detach", "--force", "--lock", str(lease.tree), sha],
                self.cache.base_env, f"check out {sha}")

    def _drop_slot_contents(self, slot: Path) -> None:
        """Everything of the slot but its lock: the tree, its admin dir, its init records."""
        meta = _read_meta(slot)
        self._drop_admin(meta)
        for name in (TREE, INIT):
            _remove_dir(slot / name)
        for name in (META, CLOSED):
            (slot / name).unlink(missing_ok=True)

    def _remove_slot(self, slot: Path) -> None:
        """The whole slot; the caller holds its lock (others find the lock file replaced)."""
        self._drop_admin(_read_meta(slot))
        _remove_dir(slot)

    def _drop_admin(self, meta: dict) -> None:
        """git's record of a tree in the mirror (worktrees/NAME), when it is one of ours."""
        admin = Path(meta.get("admin") or "")
        cache = os.path.realpath(self.cache.cache_dir)
        if admin.name and admin.parent.name == "worktrees" and os.path.realpath(admin).startswith(cache + os.sep):
            _remove_dir(admin)


def shared_git_dir(checkout: Path) -> Path | None:
    """The mirror a work tree's .git file points to (its objects and refs), or None when
    checkout is a plain clone (or has no .git)."""
    admin = _admin_dir(checkout)
    if admin is None:
        return None
    try:
        common = (admin / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(os.path.normpath(admin / common))


def _update(tree: Path, sha: str, records: InitRecords, env: Mapping[str, str], cleaned: bool = False
            ) -> tuple[str, ...]:
    """Check out sha in place (git writes only what differs), remove untracked files but the
    recorded projects' .terraform and lock file (unless `cleaned`: the last job's release did, and
    nothing ran in the tree since); returns the projects whose .terraform stays."""
    dirs = records.kept_dirs()
    run_git(tree, ["-c", "advice.detachedHead=false", "-c", "core.hooksPath=/dev/null", "checkout", "--quiet",
                   "--force", "--detach", sha], env, f"check out {sha}")
    if not cleaned:
        _clean(tree, records, env)
    if not dirs:
        return ()
    specs = [f":(literal){_join(d, name)}" for d in dirs for name in (DATA_DIR, LOCK_FILE)]
    tracked = [f for f in run_git(tree, ["ls-files", "-z", "--", *specs], env, "list tracked files").split("\0") if f]
    return tuple(d for d in dirs if _keep(tree, d, tracked, records))


def _clean(tree: Path, records: InitRecords, env: Mapping[str, str]) -> None:
    """Remove untracked files but the recorded projects' .terraform and lock file."""
    keep = [arg for d in records.kept_dirs() for name in (DATA_DIR, LOCK_FILE) for arg in ("-e", _anchored(d, name))]
    run_git(tree, ["clean", "-ffdxq", *keep], env, "clean the work tree")


def _cleaned(tree: Path, records: InitRecords, env: Mapping[str, str]) -> bool:
    """_clean at release; False when git could not (the next checkout cleans then)."""
    try:
        _clean(tree, records, env)
    except GitError:
        return False
    return True


def _keep(tree: Path, project_dir: str, tracked: Sequence[str], records: InitRecords) -> bool:
    """Whether the project's .terraform stays: made by an init of ours and still a directory.
    What a job left in its place (a symlink) is removed; one the commit brings is init's to
    remove. Either way its record goes, so init decides anew."""
    data, lock = _join(project_dir, DATA_DIR), _join(project_dir, LOCK_FILE)
    if lock not in tracked and (tree / lock).is_symlink():
        (tree / lock).unlink()
    if any(f == data or f.startswith(data + "/") for f in tracked):
        records.drop(project_dir)
        return False
    path = tree / data
    if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
        path.unlink()
    record = records.get(project_dir)
    if record is None or not record.on_disk(tree / project_dir):
        records.drop(project_dir)
        return False
    return True


def _refresh_index(tree: Path, env: Mapping[str, str]) -> None:
    """Record the files' current stat data in the index now, while no job waits: files written in
    the same second as the index are "racily clean" to git, which would read them all again at the
    next checkout. Best effort."""
    try:
        run_git(tree, ["-c", "core.hooksPath=/dev/null", "update-index", "-q", "--refresh"], env, "refresh the index")
    except GitError:
        pass  # files the job changed: the next checkout compares them anyway


def _anchored(project_dir: str, name: str) -> str:
    """A git exclude pattern matching exactly <project_dir>/<name> from the tree's root."""
    return "/" + _GLOB_CHARS.sub(r"\\\1", _join(project_dir, name))


def _join(project_dir: str, name: str) -> str:
    return name if project_dir in ("", ".") else f"{project_dir}/{name}"


def _admin_dir(checkout: Path) -> Path | None:
    """The `gitdir:` a work tree's .git file names (a locked record: one of ours, never pruned
    and handed to another tree), or None for anything else."""
    dotgit = Path(checkout) / ".git"
    try:
        if not stat.S_ISREG(os.lstat(dotgit).st_mode):
            return None
        text = dotgit.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.startswith("gitdir: "):
        return None
    admin = Path(text.removeprefix("gitdir: "))
    return admin if admin.is_absolute() and (admin / "locked").is_file() else None


def _try_lock(path: Path) -> IO | None:
    """The lock file, locked without waiting; None when another process holds it (or it was
    replaced while we waited for it: the slot was removed)."""
    try:
        handle = open(path, "a+")  # noqa: SIM115 (held for the whole lease, closed by _unlock)
    except FileNotFoundError:  # the slot is being removed
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        handle.close()
        return None
    return handle


def _unlock(lease: TreeLease) -> None:
    if lease.lock is not None:
        lease.lock.close()
        lease.lock = None


def _read_meta(slot: Path) -> dict:
    try:
        data = json.loads((slot / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_meta(slot: Path, meta: dict) -> None:
    temp = slot / f".{META}.tmp"
    temp.write_text(json.dumps(meta), encoding="utf-8")
    os.replace(temp, slot / META)


def _size(path: Path) -> int:
    """Bytes of the regular files under path (links not followed)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _remove_dir(path: Path) -> None:
    """Remove path and everything under it, even directories a job made unwritable."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    shutil.rmtree(path, onerror=_writable_then_retry)


def _writable_then_retry(function, failed: str, _exc) -> None:
    """rmtree's error handler: make the parent (and a directory itself) ours to change, retry."""
    try:
        os.chmod(os.path.dirname(failed), stat.S_IRWXU)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, stat.S_IRWXU)
        function(failed)
    except OSError:
        pass
