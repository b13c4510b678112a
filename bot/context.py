"""What a process holds (Runtime) and what one job holds (JobContext).

The lowest layer of the job code: it imports settings, state and runners, nothing that
handles commands or runs. Everything above receives a JobContext (or just the Redis
connection or settings it needs) as an argument; there is no module-level runtime.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import redis

from bot import disk, metrics
from bot.engines import parent_environment
from bot.errors import ForgeError, UserFacingError
from bot.models import PullRequest, Repo
from bot.redact import Redactor, settings_secrets
from bot.settings import Settings
from bot.state import cancel, joblog
from bot.state.joblog import JobLog
from runners.git import GitError, MergeConflict, RepoCache
from runners.git_credentials import GitCredentials, origin_of
from runners.workspace import PathEscape, Workspace, check_symlinks, create_workspace

if TYPE_CHECKING:  # the web process builds a Runtime too, and needs no forge client library
    from bot.forges.base import Forge

REPO_DIR = "repo"
CANCEL_POLL_SECONDS = 1.0


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
        return RepoCache(Path(self.settings.data_dir) / "git-cache", parent_environment())

    def checkout(self, pull: PullRequest, sha: Optional[str] = None, subdir: str = REPO_DIR) -> str:
        """Check out `sha` (default: the head) into the job's work dir; returns its relative dir.

        A second call for the same commit and subdir reuses the first checkout. Raises
        UserFacingError when git fails or the checkout has symlinks out of the repository."""
        sha = sha or pull.head_sha
        if self.checkouts.get(subdir) == sha:
            return subdir
        clone_url = pull.head_clone_url or pull.repo.clone_url
        disk.ensure_free_space(self.settings.data_dir)
        self.log(f"checking out {sha[:12]} of {pull.repo.id}")
        refs = self.forge.pull_refs(pull)
        target = self.workspace.resolve(subdir)
        cache = self.repo_cache()
        try:
            cache.checkout(clone_url, sha, target, auth=self.forge.clone_auth(pull.repo), refs=refs)
            if self.settings.checkout_strategy == "merge" and sha == pull.head_sha and pull.state == "open":
                self._merge_base(cache, pull, target)
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
        try:
            check_symlinks(target)
        except PathEscape as exc:
            raise UserFacingError(f"{exc}. Symlinks out of the repository are refused.", title="Checkout refused") from exc
        self.checkouts[subdir] = sha
        return subdir

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

    def cleanup(self) -> None:
        if "workspace" in self.__dict__:
            self.workspace.cleanup()
