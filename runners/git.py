"""Cached clones: one bare mirror per repository URL, cheap local checkouts of exact commits.

Credentials travel only in the git process's environment (GIT_CONFIG_COUNT/KEY/VALUE set an
http.extraHeader scoped to the URL's origin): never in argv, in a stored remote URL, on disk
or in an error message.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import signal
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from runners.environment import is_allowed

FETCH_TIMEOUT = 900  # seconds for one fetch of a large repository
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_GIT_PASSTHROUGH = ("HOME", "SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO")


class GitError(Exception):
    """A git operation failed; the message is safe to show users (no credentials)."""


class RevertConflict(GitError):
    """Reverting does not apply cleanly on the base branch; `files` are the conflicting paths."""

    def __init__(self, files: Sequence[str]):
        self.files = tuple(files)
        super().__init__(f"the revert conflicts in {', '.join(self.files) or 'the work tree'}")


class MergeConflict(GitError):
    """Merging the base branch into the head conflicts in `files`."""

    def __init__(self, files: Sequence[str]):
        super().__init__("merge conflict in " + ", ".join(files))
        self.files = list(files)


class NothingToRevert(GitError):
    """The base branch no longer has any of the changes (reverted already)."""


@dataclass(frozen=True)
class RevertPlan:
    """What undoes a merged pull request on its base branch.

    kind: "merge" (a merge commit, reverted against its first parent), "squash" (one commit),
    "rebase" (the pull request's commits rebased onto the base) or "fast-forward" (its own
    commits, now on the base). commits: newest first, in the order they are reverted."""

    kind: str
    commits: tuple[str, ...]

    @property
    def mainline(self) -> Optional[int]:
        return 1 if self.kind == "merge" else None


def strip_credentials(text: str) -> str:
    """Remove user:password@ from every URL in text."""
    return _USERINFO.sub(lambda m: m.group("scheme"), text)


class RepoCache:
    """Bare mirrors under cache_dir, shared by every job on this machine."""

    def __init__(self, cache_dir: Path, parent_env: Mapping[str, str]) -> None:
        self.cache_dir = Path(cache_dir)
        self.base_env = {k: v for k, v in parent_env.items() if k in _GIT_PASSTHROUGH or is_allowed(k)}
        self.base_env.update({"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"})

    def checkout(
        self,
        clone_url: str,
        sha: str,
        dest: Path,
        auth: Optional[tuple[str, str]] = None,
        refs: Sequence[str] = (),
    ) -> None:
        """Check out exactly sha (detached) at dest, an absent or empty directory.

        Fetches heads, tags and refs (e.g. "refs/pull/7/head") into the mirror, and sha itself
        when still missing. Raises GitError when the URL cannot be reached or sha is not found.
        """
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise GitError(f"checkout destination {dest} is not empty")
        with self.fetched(clone_url, sha, auth, refs) as mirror:
            self._clone(mirror, dest, sha, strip_credentials(clone_url))

    @contextmanager
    def fetched(self, clone_url: str, sha: str, auth: tuple[str, str] | None = None,
                refs: Sequence[str] = ()) -> Iterator[Path]:
        """Fetch heads, tags, refs and sha into the repository's mirror and yield the mirror,
        locked against other jobs' fetches until the block ends (check out from it there).

        Raises GitError when the URL cannot be reached or sha is not found."""
        url, auth = _split_auth(clone_url, auth)
        if not _SHA.match(sha):
            raise GitError(f"not a commit id: {sha!r}")
        mirror = self.mirror_path(url)
        with self._locked(mirror):
            self._ensure_mirror(mirror)
            self._fetch(mirror, url, self._env(url, auth), refs, sha)
            yield mirror

    def merge_branch(self, dest: Path, clone_url: str, branch: str, author: tuple[str, str],
                     auth: Optional[tuple[str, str]] = None) -> str:
        """Merge `branch` as the remote has it now into the detached checkout at dest (checkout
        strategy `merge`); returns the merged branch's commit. Nothing is pushed. Raises
        MergeConflict (naming the files; the checkout is left as it was) or GitError."""
        url, auth = _split_auth(clone_url, auth)
        repo = Path(dest)
        env = self._env(url, auth)
        _git(repo, ["check-ref-format", "--branch", branch], env, f"read the branch name {branch!r}")
        ref = "refs/worktree/plankeeper-merge-base"  # per work tree: kept trees share the mirror's refs
        _git(repo, ["fetch", "--quiet", "--no-write-fetch-head", url, f"+refs/heads/{branch}:{ref}"], env,
             f"fetch {branch}")
        base = _git(repo, ["rev-parse", ref], env, f"read {branch}").strip()
        name, email = author
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                    "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        safe = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false"]
        try:
            _git(repo, [*safe, "merge", "--quiet", "--no-edit", "--no-ff", "-m",
                     f"Merge {branch} (checkout strategy merge)", base], {**self.base_env, **identity}, "merge")
        except GitError:
            conflicts = _lines(_git(repo, ["diff", "--name-only", "--diff-filter=U"], self.base_env, "list conflicts"))
            if conflicts:
                _git(repo, ["merge", "--abort"], self.base_env, "abort the merge")
                raise MergeConflict(conflicts) from None
            raise
        return base

    def diverged_from(self, dest: Path, clone_url: str, branch: str, head: str,
                      auth: Optional[tuple[str, str]] = None) -> Optional[str]:
        """The remote tip of `branch` when the checkout's commit `head` does not contain it
        (the `undiverged` requirement), None when it does. Raises GitError."""
        url, auth = _split_auth(clone_url, auth)
        repo = Path(dest)
        env = self._env(url, auth)
        _git(repo, ["check-ref-format", "--branch", branch], env, f"read the branch name {branch!r}")
        ref = "refs/plankeeper/undiverged-base"
        _git(repo, ["fetch", "--quiet", "--no-write-fetch-head", url, f"+refs/heads/{branch}:{ref}"], env,
             f"fetch {branch}")
        tip = _git(repo, ["rev-parse", ref], env, f"read {branch}").strip()
        status, _, err = _run(repo, ["merge-base", "--is-ancestor", tip, head], self.base_env, f"compare {branch}")
        if status == 1:  # not an ancestor: the base moved on without the pull request
            return tip
        if status:
            raise GitError(_failure(f"compare {branch} with {head[:12]}", status, err))
        return None

    def branch_head(self, clone_url: str, branch: str, auth: Optional[tuple[str, str]] = None) -> str:
        """The commit at the head of `branch` on the remote (git ls-remote). Raises GitError."""
        url, auth = _split_auth(clone_url, auth)
        out = _git(None, ["ls-remote", "--", url, f"refs/heads/{branch}"], self._env(url, auth),
                   what=f"read the head of {branch}")
        lines = out.strip().splitlines()
        if not lines:
            raise GitError(f"branch {branch!r} not found in {strip_credentials(url)}")
        return lines[0].split()[0]

    def changed_files(self, repo_dir: Path, base: str, head: str) -> list[str]:
        """Files changed between the merge base of base and head, and head.

        Renamed files are listed under both names. Raises GitError when a commit is unknown.
        """
        out = _git(
            Path(repo_dir),
            ["diff", "--name-status", "-M", "-z", "--no-color", f"{base}...{head}"],
            self.base_env,
            what=f"compare {base}...{head}",
        )
        fields = out.split("\0")
        files: set[str] = set()
        i = 0
        while i < len(fields) and fields[i]:
            status = fields[i]
            count = 2 if status[0] in "RC" else 1
            files.update(fields[i + 1 : i + 1 + count])
            i += 1 + count
        return sorted(files)

    # -- reverting a merged pull request (GitOps rollback) --------

    def revert_plan(self, repo_dir: Path, merged: str, pr_head: str = "", pr_base: str = "") -> RevertPlan:
        """How to revert the pull request merged as `merged` on the checked-out base (HEAD).

        A merge commit is reverted against its first parent. A single-parent commit is a squash
        merge unless the pull request's own commits (`pr_head`, when still known) were rebased
        onto the base: then the chain of commits with their authors, dates and subjects is
        reverted. When `pr_head` itself is on the base (a fast-forward merge), its commits since
        `pr_base` are. Raises GitError when `merged` is unknown or not on the base."""
        repo, env = Path(repo_dir), self.base_env
        if not _SHA.match(merged) or not _has_commit(repo, merged, env):
            raise GitError(f"commit {merged} is not in the repository")
        if not _is_ancestor(repo, merged, "HEAD", env):
            raise GitError(f"commit {merged[:12]} is not on the base branch any more (was it force-pushed away?)")
        parents = _git(repo, ["rev-list", "--parents", "-n", "1", merged], env, f"read {merged[:12]}").split()[1:]
        if len(parents) >= 2:
            return RevertPlan("merge", (merged,))
        known_head = bool(pr_head) and _SHA.match(pr_head) is not None and _has_commit(repo, pr_head, env)
        if known_head and _is_ancestor(repo, pr_head, "HEAD", env):
            since = [pr_base] if pr_base and _SHA.match(pr_base) and _has_commit(repo, pr_base, env) \
                and _is_ancestor(repo, pr_base, pr_head, env) and pr_base != pr_head else []
            commits = _lines(_git(repo, ["rev-list", "--no-merges", pr_head, *(f"^{c}" for c in since)], env,
                                  "list the pull request's commits")) if since else [pr_head]
            return RevertPlan("fast-forward", tuple(commits or [pr_head]))
        originals = _lines(_git(repo, ["rev-list", "--no-merges", pr_head, "^HEAD"], env,
                                "list the pull request's commits")) if known_head else []
        if len(originals) > 1:
            chain = _lines(_git(repo, ["rev-list", "--first-parent", "-n", str(len(originals)), merged], env,
                                f"read the history of {merged[:12]}"))
            if len(chain) == len(originals) and _identities(repo, env, chain) == _identities(repo, env, originals):
                return RevertPlan("rebase", tuple(chain))
        return RevertPlan("squash", (merged,))

    def revert_and_push(
        self,
        repo_dir: Path,
        push_url: str,
        branch: str,
        plan: RevertPlan,
        message: str,
        author: tuple[str, str],
        auth: Optional[tuple[str, str]] = None,
    ) -> str:
        """Commit the revert of `plan` on top of the checked-out base as one commit on a new local
        `branch`, and push it to `push_url` as that (new) branch; returns the revert commit.

        Never force-pushes: an existing branch of that name is an error. Credentials only in the
        push's environment. Raises RevertConflict (naming the files, nothing pushed),
        NothingToRevert, or GitError."""
        url, auth = _split_auth(push_url, auth)
        repo = Path(repo_dir)
        name, email = author
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                    "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        env = {**self.base_env, **identity}
        safe = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false"]
        _git(repo, ["checkout", "--quiet", "-b", branch], env, f"create branch {branch}")
        mainline = ["-m", str(plan.mainline)] if plan.mainline else []
        try:
            _git(repo, [*safe, "revert", "--no-commit", *mainline, *plan.commits], env, "revert")
        except GitError as exc:
            conflicts = _lines(_git(repo, ["diff", "--name-only", "--diff-filter=U"], env, "list conflicts"))
            if conflicts:
                raise RevertConflict(conflicts) from exc
            raise
        if _quiet_diff(repo, env):
            raise NothingToRevert("the base branch has none of the pull request's changes any more: "
                                  "nothing to revert")
        _git(repo, [*safe, "commit", "--quiet", "--no-verify", "-m", message], env, "commit the revert")
        commit = _git(repo, ["rev-parse", "HEAD"], env, "read the revert commit").strip()
        push_env = {**self._env(url, auth), **identity}
        if _git(repo, ["ls-remote", "--", url, f"refs/heads/{branch}"], push_env, f"look for {branch}").strip():
            raise GitError(f"branch {branch} already exists in {strip_credentials(url)}")
        # The lease with no value: the push only creates the branch, it never moves an existing one.
        _git(repo, [*safe, "push", "--quiet", "--no-verify", f"--force-with-lease=refs/heads/{branch}:", url,
                 f"HEAD:refs/heads/{branch}"], push_env, f"push {branch}")
        return commit

    def _env(self, url: str, auth: Optional[tuple[str, str]]) -> dict[str, str]:
        env = dict(self.base_env)
        if auth is None:
            return env
        parts = urlsplit(url)
        origin = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": f"http.{origin}.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
            }
        )
        return env

    def mirror_path(self, clone_url: str) -> Path:
        """Where the mirror of clone_url is (or will be) kept."""
        url, _ = _split_auth(clone_url, None)
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
        return self.cache_dir / f"{slug.strip('.-') or 'repo'}-{digest}.git"

    @contextmanager
    def _locked(self, mirror: Path) -> Iterator[None]:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(mirror.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _ensure_mirror(self, mirror: Path) -> None:
        if (mirror / "HEAD").exists():
            return
        _git(None, ["init", "--quiet", "--bare", str(mirror)], self.base_env, "make the repository's mirror")
        # no gc racing a clone that reads the mirror
        _git(mirror, ["config", "gc.auto", "0"], self.base_env, "configure the repository's mirror")

    def _fetch(
        self, mirror: Path, url: str, env: dict[str, str], refs: Sequence[str], sha: str
    ) -> None:
        # refs/remotes/origin/*: a work tree of the mirror knows `origin/main` as a clone does
        specs = ["+refs/heads/*:refs/heads/*", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        # --no-auto-maintenance: gc.auto is 0 here, so `git maintenance run --auto` would be a
        # process started after every fetch to do nothing
        fetch = ["fetch", "--quiet", "--no-write-fetch-head", "--no-auto-maintenance", url]
        try:
            _git(mirror, [*fetch, *specs, *(f"+{ref}:{ref}" for ref in refs)], env, f"fetch {url}")
        except GitError:
            if not refs:
                raise
            # a ref the forge has not published (yet): heads, tags and the sha may still do
            _git(mirror, [*fetch, *specs], env, f"fetch {url}")
        # a small fetch leaves its objects loose: no git process to ask (~2 ms of a kept tree's update)
        if _is_loose_object(mirror, sha) or _has_commit(mirror, sha, self.base_env):
            return
        try:
            _git(mirror, [*fetch, sha], env, f"fetch {url}")
        except GitError:
            pass  # servers may refuse unadvertised commits; reported below as not found
        if not _has_commit(mirror, sha, self.base_env):
            raise GitError(f"commit {sha} not found in {url} (was it force-pushed away?)")

    def _clone(self, mirror: Path, dest: Path, sha: str, url: str) -> None:
        _git(
            self.cache_dir,
            ["clone", "--quiet", "--local", "--no-checkout", str(mirror), str(dest)],
            self.base_env,
            f"clone {url}",
        )
        _git(
            dest,
            ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha],
            self.base_env,
            f"check out {sha}",
        )


def run_git(cwd: Path, args: list[str], env: Mapping[str, str], what: str) -> str:
    """`git ARGS` in cwd with env (an argument list, never a shell); its output. Raises GitError
    saying what could not be done."""
    return _git(Path(cwd), args, env, what)


def _split_auth(
    clone_url: str, auth: Optional[tuple[str, str]]
) -> tuple[str, Optional[tuple[str, str]]]:
    """Move user:password@ out of the URL (it would be stored in git config) into auth."""
    parts = urlsplit(clone_url)
    if "://" not in clone_url or "@" not in parts.netloc:
        return clone_url, auth
    userinfo, host = parts.netloc.rsplit("@", 1)
    url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    if auth is None and ":" in userinfo:
        user, password = userinfo.split(":", 1)
        auth = (user, password)
    return url, auth


def _has_commit(repo: Path, sha: str, env: Mapping[str, str]) -> bool:
    return _run(repo, ["cat-file", "-e", f"{sha}^{{commit}}"], env, f"look for {sha}")[0] == 0


def _is_loose_object(git_dir: Path, sha: str) -> bool:
    """Whether sha (a full object name) is a loose object of the bare repository git_dir."""
    return bool(re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha)) and (git_dir / "objects" / sha[:2] / sha[2:]).is_file()


def _is_ancestor(repo: Path, ancestor: str, descendant: str, env: Mapping[str, str]) -> bool:
    return _run(repo, ["merge-base", "--is-ancestor", ancestor, descendant], env, "compare commits")[0] == 0


def _quiet_diff(repo: Path, env: Mapping[str, str]) -> bool:
    """True when nothing is staged."""
    return _run(repo, ["diff", "--cached", "--quiet"], env, "compare the index")[0] == 0


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def _identities(repo: Path, env: Mapping[str, str], commits: Sequence[str]) -> list[str]:
    """Author, author date and subject of each commit, in the order given (a rebase keeps them)."""
    out = _git(repo, ["show", "--no-patch", "--no-walk=unsorted", "--format=%an%x1f%ae%x1f%at%x1f%s", *commits],
               env, "read commits")
    return _lines(out)


def _git(cwd: Path | None, args: list[str], env: Mapping[str, str], what: str) -> str:
    """`git ARGS` in cwd (None: the current directory); its output. Raises GitError saying what
    could not be done."""
    status, out, err = _run(cwd, args, env, what)
    if status:
        raise GitError(_failure(what, status, err))
    return out.decode(errors="replace")


def _run(cwd: Path | None, args: list[str], env: Mapping[str, str], what: str) -> tuple[int, bytes, bytes]:
    """`git ARGS` in cwd with exactly env (and English messages): its exit status, output and
    errors. Raises GitError when it runs past FETCH_TIMEOUT.

    Not GitPython: its execute() merges the env it is given into the process' environment (the
    worker's secrets would reach git), and its timeout watchdog is a thread started for every
    call. The git process leads a session of its own, so a timeout kills what it started too
    (upload-pack, a remote helper, ssh)."""
    env = {"LANGUAGE": "C", "LC_ALL": "C", **env}
    with subprocess.Popen(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=FETCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise GitError(f"could not {what}: git took longer than {FETCH_TIMEOUT} s") from None
    return proc.returncode, out, err


def _failure(what: str, status: int, err: bytes) -> str:
    detail = err.decode(errors="replace").strip()
    return strip_credentials(f"could not {what}: {detail or f'exit status {status}'}")
