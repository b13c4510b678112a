"""What a process holds (Runtime) and what one job holds (JobContext).

The lowest layer of the job code: it imports settings, state and runners, nothing that
handles commands or runs. Everything above receives a JobContext (or just the Redis
connection or settings it needs) as an argument; there is no module-level runtime.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import redis

from bot import disk, metrics
from bot.engines import GIT_CACHE, parent_environment, prestart_terraform
from bot.errors import ForgeError, UserFacingError
from bot.models import PullRequest, Repo
from bot.redact import Redactor, settings_secrets
from bot.settings import Settings
from bot.state import cancel, joblog
from bot.state.joblog import JobLog
from runners.git import GitError, MergeConflict, RepoCache
from runners.git_credentials import GitCredentials, origin_of
from runners.incremental_init import DATA_DIR, InitRecords
from runners.process import SessionPool
from runners.workspace import PathEscape, Workspace, check_symlinks, create_workspace
from runners.worktrees import TreeLease, TreeLimits, WorkTrees

if TYPE_CHECKING:  # the web process builds a Runtime too, and needs no forge client library
    from bot.forges.base import Forge

REPO_DIR = "repo"
MERGED_DIR = "merged"  # a deploy's checkout of the merge commit
TREES_DIR = "trees"  # in data_dir: work trees kept between jobs (runners.worktrees)
CANCEL_POLL_SECONDS = 1.0
_COMMIT = re.compile(r"^[0-9a-fA-F]{40}$")
log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What a process holds once: settings and one Redis connection."""

    settings: Settings
    redis: redis.Redis

    @classmethod
    def connect(cls, settings: Settings) -> "Runtime":
        """Connect to settings.redis_url (serve sets it to the embedded Redis' socket)."""
        if not settings.redis_url:
            raise RuntimeError("redis_url is not set: start the embedded Redis first (plankeeper serve)")
        return cls(settings, redis.Redis.from_url(settings.redis_url, health_check_interval=30))

    def job_url(self, job_id: str) -> str:
        return job_url(self.settings, job_id)


def job_url(settings: Settings, job_id: str) -> str:
    return f"{settings.public_url.rstrip('/')}/jobs/{job_id}"


@dataclass
class JobContext:
    """What one job holds: settings, Redis, its forge, its id, its log, its redactor, its work dir."""

    settings: Settings
    redis: redis.Redis
    forge: Forge
    job_id: str
    log: JobLog
    redact: Redactor
    started_at: float = field(default_factory=time.time)
    checkouts: dict = field(default_factory=dict)  # subdir -> sha checked out there
    trees: dict = field(default_factory=dict)  # subdir -> TreeLease: a kept work tree is there
    terraform_sessions: SessionPool = field(default_factory=SessionPool)  # shared with lane contexts

    @classmethod
    def for_job(cls, rt: Runtime, forge: Forge, job_id: str) -> "JobContext":
        redact = Redactor(settings_secrets(rt.settings))
        return cls(rt.settings, rt.redis, forge, job_id, JobLog(rt.redis, job_id, redact), redact)

    @property
    def job_url(self) -> str:
        return job_url(self.settings, self.job_id)

    def url_of(self, job_id: str) -> str:
        """The log page of another job (a run's coordinator or project job)."""
        return job_url(self.settings, job_id)

    @cached_property
    def workspace(self) -> Workspace:
        return create_workspace(Path(self.settings.data_dir) / "work", self.job_id)

    def repo_cache(self) -> RepoCache:
        return RepoCache(Path(self.settings.data_dir) / GIT_CACHE, parent_environment())

    def work_trees(self) -> WorkTrees:
        limits = self.settings.work_trees
        return WorkTrees(Path(self.settings.data_dir) / TREES_DIR, self.repo_cache(),
                         TreeLimits(limits.max_trees, limits.max_size_mb * 2**20, limits.max_age_days * 86400.0))

    def checkout(self, pull: PullRequest, sha: Optional[str] = None, subdir: str = REPO_DIR) -> str:
        """Check out `sha` (default: the head) into the job's work dir; returns its relative dir.

        A second call for the same commit and subdir reuses the first checkout. The pull request's
        kept work tree (tree_key) is used when no other job has it. Raises UserFacingError when git
        fails or the checkout has symlinks out of the repository."""
        sha = sha or pull.head_sha
        if self.checkouts.get(subdir) == sha:
            return subdir
        self.log(f"checking out {sha[:12]} of {pull.repo.id}")
        cache = self.repo_cache()
        try:
            self.checkout_commit(pull.repo, sha, pull.head_clone_url or pull.repo.clone_url, subdir,
                                 tree_key(pull, subdir), self.forge.pull_refs(pull), record=False)
            if self.settings.checkout_strategy == "merge" and sha == pull.head_sha and pull.state == "open":
                self._merge_base(cache, pull, self.workspace.resolve(subdir))
            self._check_symlinks(subdir)
        except MergeConflict as exc:
            raise UserFacingError(
                f"`checkout_strategy: merge`: merging `{pull.base_ref}` into {sha[:12]} conflicts in "
                + ", ".join(f"`{f}`" for f in exc.files) + f". Merge or rebase `{pull.base_ref}` into the branch, "
                "resolve the conflicts and push, then comment `/plan`.",
                title="Merge conflict",
            ) from exc
        except GitError as exc:
            raise UserFacingError(
                f"Could not check out {sha[:12]}: {exc}\n\nCheck that the repository is reachable from the "
                "server and that the bot's credentials can read it, then comment `/plan`.",
                title="Checkout failed",
            ) from exc
        except PathEscape as exc:
            raise UserFacingError(f"{exc}. Symlinks out of the repository are refused.", title="Checkout refused") from exc
        self.checkouts[subdir] = sha
        return subdir

    def checkout_commit(self, repo: Repo, sha: str, clone_url: str, subdir: str = REPO_DIR,
                        key: str | None = None, refs: Sequence[str] = (), record: bool = True) -> str:
        """Check out sha of repo into subdir of the work dir: the kept work tree of `key` when it
        is given, reuse is on and no other job has it, else a fresh clone. With `record`, the
        checkout is checked for symlinks out of it and remembered. Raises GitError or PathEscape."""
        disk.ensure_free_space(self.settings.data_dir)
        target = self.workspace.resolve(subdir)
        auth = self.forge.clone_auth(repo)
        lease = self.trees.get(subdir)
        if lease is None and key and self.settings.work_trees.reuse:
            lease = self.work_trees().lease(repo.id, key, target)
            if lease is None:
                self.log(f"the kept work tree of {key} is in use by another job: checking out afresh")
        if lease is None:
            self.repo_cache().checkout(clone_url, sha, target, auth=auth, refs=refs)
        else:
            self.trees[subdir] = lease
            lease.ready = False
            self.work_trees().check_out(lease, clone_url, sha, auth, refs)
            self.log(f"{'updated the kept work tree' if lease.reused else 'made a work tree'} of {key}")
        if record:
            self._check_symlinks(subdir)
            self.checkouts[subdir] = sha
        return subdir

    def _check_symlinks(self, subdir: str) -> None:
        """Refuse symlinks out of the checkout; the kept .terraform of a work tree is ours."""
        lease = self.trees.get(subdir)
        kept = [f"{d}/{DATA_DIR}" for d in lease.kept] if lease else []
        check_symlinks(self.workspace.resolve(subdir), skip=kept)
        if lease is not None:
            lease.ready = True

    def init_records(self, repo_dir: str) -> InitRecords | None:
        """The init records of the kept work tree checked out at repo_dir, or None (a fresh clone:
        init runs as always)."""
        lease: TreeLease | None = self.trees.get(repo_dir)
        return lease.records if lease is not None and lease.ready else None

    def forget_pull_tree(self, pull: PullRequest) -> None:
        """The pull request is closed: remove its kept work tree on this machine (a job using it
        drops it when done; other machines' trees age out)."""
        if self.work_trees().remove(pull.repo.id, tree_key(pull, REPO_DIR) or ""):
            self.log(f"removed the kept work tree of {pull.repo.id}#{pull.number}")

    def _merge_base(self, cache: RepoCache, pull: PullRequest, target: Path) -> None:
        """Checkout strategy `merge`: the base branch as it is now, merged into the detached head
        with the bot's identity (nothing is pushed)."""
        login = self.forge.bot_login or "plankeeper"
        base = cache.merge_branch(target, pull.repo.clone_url, pull.base_ref,
                                  (login, f"{login}@users.noreply.{pull.repo.host}"),
                                  auth=self.forge.clone_auth(pull.repo))
        self.log(f"merged {pull.base_ref} ({base[:12]}) into {pull.head_sha[:12]} (checkout_strategy: merge)")

    def git_credentials(self, repo: Repo) -> Optional[GitCredentials]:
        """The bot's credentials for Terraform modules on the repository's own forge
        (`terraform.git_credentials`), asked of the forge when an init starts; None when the
        setting is off or the clone URL is not http(s)."""
        origin = origin_of(repo.clone_url)
        if origin is None or not self.settings.terraform.git_credentials:
            return None

        def fetch() -> Optional[tuple[str, str]]:
            try:
                return self.forge.clone_auth(repo)
            except ForgeError as exc:
                self.log(f"the bot's git credentials are not offered to init: {exc}")
                return None

        return GitCredentials(origin, fetch, self.workspace.root)

    def should_stop(self, pull: PullRequest) -> Callable[[], bool]:
        """A StopCheck: True once a /cancel newer than this job arrived (polled, cached 1 s)."""
        state = {"checked": 0.0, "stop": False}

        def check() -> bool:
            now = time.time()
            if not state["stop"] and now - state["checked"] >= CANCEL_POLL_SECONDS:
                state["checked"] = now
                at = cancel.cancelled_at(self.redis, pull.repo.id, pull.number)
                state["stop"] = at is not None and at >= self.started_at
            return state["stop"]

        return check

    def record_end(self, kind: str, state: str, summary: str) -> None:
        """The job's record, its metrics and its log say how it ended (`kind`: the metrics label)."""
        duration = time.time() - self.started_at
        joblog.record_job(self.redis, self.job_id, state=state, summary=summary, ended_at=time.time(),
                          duration=f"{duration:.2f}")
        metrics.count_job(self.redis, kind, state, duration)
        self.log(f"done: {summary}")

    def release_trees(self) -> None:
        """Give the kept work trees back for the next job (an unfinished one is dropped); a later
        checkout in this job takes them again."""
        if not self.trees:
            return
        trees = self.work_trees()
        for subdir, lease in self.trees.items():
            self.checkouts.pop(subdir, None)
            try:
                trees.release(lease)
            except OSError:
                log.exception("job %s: could not keep the work tree %s", self.job_id, lease.slot)
        self.trees.clear()

    def prestart_terraform(self, pull: PullRequest, repo_dir: str) -> None:
        """Start loading the embedded Terraform for the plans or applies of the checkout at
        repo_dir while the job selects projects (bot.engines.prestart_terraform)."""
        prestart_terraform(self.settings, self.workspace, pull.repo.id, self.terraform_sessions,
                           self.init_records(repo_dir))

    def cleanup(self) -> None:
        """End the Terraform sessions, give the kept work trees back, then remove the work dir."""
        self.terraform_sessions.close()
        self.release_trees()
        if "workspace" in self.__dict__:
            self.workspace.cleanup()


def branch_key(branch: str) -> str:
    return f"branch-{branch}"


def tree_key(pull: PullRequest, subdir: str) -> str | None:
    """Which kept work tree a checkout uses: the pull request's own (code from one pull request
    never reaches another's), the base branch's for a deploy's merge commit, the branch's for an
    API run of a branch; None (a fresh clone) for anything else."""
    if subdir == MERGED_DIR:
        return branch_key(pull.base_ref)
    if subdir != REPO_DIR:
        return None
    if pull.number > 0:
        return f"pull-{pull.number}"
    ref = pull.head_ref.removeprefix("refs/heads/")
    return branch_key(ref) if ref and not _COMMIT.match(ref) and not ref.startswith("refs/") else None
