"""One event end to end: decide what it asks for, then plan, apply, unlock or reply.

Runs inside an RQ worker. Re-reads the pull request from the forge first and stops early
when the event is stale (the head moved: a newer event will do the work).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

from bot import artifacts, audit, commands, disk, permissions, policies, render
from bot.errors import UsageError, UserFacingError
from bot.forges.base import Forge
from bot.joblog import JobLog
from bot.models import Command, CommentEvent, Event, PullRequest, PullRequestEvent, ReviewEvent
from bot.runtime import Runtime
from runners.git import GitError, RepoCache
from runners.models import Project
from runners.workspace import PathEscape, Workspace, check_symlinks, create_workspace

log = logging.getLogger(__name__)
CANCEL_KEY = "pk:cancel:{repo}#{number}"
REPO_DIR = "repo"


@dataclass
class JobContext:
    """What one job holds: runtime, forge, its id, its log, its work dir."""

    rt: Runtime
    forge: Forge
    job_id: str
    log: JobLog
    redact: object
    started_at: float = field(default_factory=time.time)
    checkouts: dict = field(default_factory=dict)  # subdir -> sha checked out there

    @property
    def settings(self):
        return self.rt.settings

    @property
    def job_url(self) -> str:
        return self.rt.job_url(self.job_id)

    @cached_property
    def workspace(self) -> Workspace:
        return create_workspace(Path(self.settings.data_dir) / "work", self.job_id)

    def checkout(self, pull: PullRequest, sha: Optional[str] = None, subdir: str = REPO_DIR) -> str:
        """Check out `sha` (default: the head) into the job's work dir; returns its relative dir.

        A second call for the same commit and subdir reuses the first checkout."""
        sha = sha or pull.head_sha
        if self.checkouts.get(subdir) == sha:
            return subdir
        cache = RepoCache(Path(self.settings.data_dir) / "git-cache", _git_env())
        clone_url = pull.head_clone_url or pull.repo.clone_url
        disk.ensure_free_space(self.settings.data_dir)
        self.log(f"checking out {sha[:12]} of {pull.repo.id}")
        refs = self.forge.pull_refs(pull)
        try:
            cache.checkout(clone_url, sha, self.workspace.resolve(subdir), auth=self.forge.clone_auth(pull.repo), refs=refs)
        except GitError as exc:
            raise UserFacingError(
                f"Could not check out {sha[:12]}: {exc}\n\nCheck that the repository is reachable from the "
                "server and that the bot's credentials can read it, then comment `/plan`.",
                title="Checkout failed",
            ) from exc
        try:
            check_symlinks(self.workspace.resolve(subdir))
        except PathEscape as exc:
            raise UserFacingError(f"{exc}. Symlinks out of the repository are refused.", title="Checkout refused") from exc
        self.checkouts[subdir] = sha
        return subdir

    def should_stop(self, pull: PullRequest):
        """A StopCheck: True once a /cancel newer than this job arrived (polled, cached 1 s)."""
        key = CANCEL_KEY.format(repo=pull.repo.id, number=pull.number)
        state = {"checked": 0.0, "stop": False}

        def check() -> bool:
            now = time.time()
            if not state["stop"] and now - state["checked"] >= 1.0:
                state["checked"] = now
                raw = self.rt.redis.get(key)
                state["stop"] = bool(raw) and float(raw) >= self.started_at
            return state["stop"]

        return check

    def cleanup(self) -> None:
        if "workspace" in self.__dict__:
            self.workspace.cleanup()


def _git_env() -> dict[str, str]:
    from bot.engines import parent_environment

    return parent_environment()


def handle(ctx: JobContext, event: Event) -> str:
    """Handle one event; returns a one-line summary for the job record."""
    if isinstance(event, PullRequestEvent):
        return _on_pull_request(ctx, event)
    if isinstance(event, CommentEvent):
        return _on_comment(ctx, event)
    if isinstance(event, ReviewEvent):
        return _on_review(ctx, event)
    raise TypeError(f"unknown event {type(event).__name__}")


def _on_pull_request(ctx: JobContext, event: PullRequestEvent) -> str:
    from bot import applying, planning

    if event.action in ("closed", "merged"):
        return applying.on_closed(ctx, event)
    pull = ctx.forge.pull_request(event.pull.repo, event.pull.number)
    if pull.head_sha != event.pull.head_sha:
        return f"skipped: head moved to {pull.head_sha[:7]} (a newer event plans it)"
    if event.action == "updated":
        dropped = artifacts.discard_pull_plans(ctx.rt.redis, pull.repo.id, pull.number)
        ctx.log(f"new commits pushed: discarded {dropped} plan(s) of the previous head")
    if pull.is_fork and not ctx.settings.allow_fork_prs:
        if event.action == "opened":
            ctx.forge.create_comment(pull, _FORK_MESSAGE)
        return "skipped: pull request from a fork (allow_fork_prs is off)"
    if not ctx.settings.repo_settings(pull.repo.id).autoplan:
        return "skipped: autoplan is off for this repository"
    return planning.run_plan(ctx, pull, Command("plan"), autoplan=True)


_FORK_MESSAGE = (
    "**Plankeeper** does not plan pull requests from forks with the server's credentials "
    "(`allow_fork_prs` is off). A maintainer can push the branch to this repository instead."
)


def _on_comment(ctx: JobContext, event: CommentEvent) -> str:
    if event.author.lower() == ctx.forge.bot_login.lower():
        return "ignored: the bot's own comment"
    settings = ctx.settings
    try:
        command = commands.parse_comment(
            event.body, bot_login=ctx.forge.bot_login, aliases=settings.comment_aliases,
            extra_args_allowlist=settings.extra_args_allowlist,
        )
    except UsageError as exc:
        pull = ctx.forge.pull_request(event.repo, event.pull_number)
        ctx.forge.create_comment(pull, ctx.redact(exc.message))
        return "replied: malformed command"
    if command is None:
        return "ignored: not a command"
    pull = ctx.forge.pull_request(event.repo, event.pull_number)
    ctx.forge.add_reaction(pull, event.comment_id, "eyes")
    audit.record(ctx.rt.redis, "command", user=event.author, repo=pull.repo.id, pull=pull.number,
                 commit=pull.head_sha, detail=ctx.redact(event.body.strip().splitlines()[0][:200]), job_id=ctx.job_id)
    try:
        return _run_command(ctx, pull, command, event.author)
    except UserFacingError as exc:
        ctx.forge.create_comment(pull, render.error_comment(exc.title, exc.message, ctx.redact, ctx.job_url))
        return f"refused: {exc.title}"


def _run_command(ctx: JobContext, pull: PullRequest, command: Command, actor: str) -> str:
    from bot import applying, planning

    name = command.name
    if name in ("plan", "apply", "unlock", "cancel", "approve_policies"):
        permissions.check(ctx.forge, pull.repo, actor, name, ctx.settings.permissions)
    if name == "plan":
        if pull.is_fork and not ctx.settings.allow_fork_prs:
            raise UserFacingError(_FORK_MESSAGE, title="Plan refused")
        return planning.run_plan(ctx, pull, command, autoplan=False, actor=actor)
    if name == "apply":
        return applying.run_apply(ctx, pull, command, actor)
    if name == "unlock":
        return applying.unlock(ctx, pull, actor)
    if name == "cancel":
        return cancel(ctx, pull, actor)
    if name == "approve_policies":
        return policies.approve(ctx, pull, actor)
    if name == "help":
        ctx.forge.create_comment(pull, commands.usage(command.extra_args[0] if command.extra_args else None))
        return "replied: help"
    if name == "version":
        return _version(ctx, pull)
    raise UserFacingError(f"`/{name}` is not available yet on this server.", title="Not available")


def cancel(ctx: JobContext, pull: PullRequest, actor: str) -> str:
    """Stop this pull request's running jobs (they poll the cancel key) and queued ones."""
    from bot import queueing

    ctx.rt.redis.set(CANCEL_KEY.format(repo=pull.repo.id, number=pull.number), f"{time.time():.3f}", ex=24 * 3600)
    cancelled = queueing.cancel_queued(ctx.rt.redis, pull.repo.id, pull.number, except_job=ctx.job_id)
    audit.record(ctx.rt.redis, "cancel", user=actor, repo=pull.repo.id, pull=pull.number, commit=pull.head_sha,
                 result="ok", job_id=ctx.job_id)
    ctx.forge.create_comment(
        pull, f"**Plankeeper cancel**: running jobs of this pull request are being stopped; "
        f"{cancelled} queued job(s) cancelled."
    )
    return f"cancelled {cancelled} queued job(s)"


def _version(ctx: JobContext, pull: PullRequest) -> str:
    """Reply with the bot's version and the engine version of each project of the repo config."""
    from bot import __version__, selection
    from bot.engines import runner_for

    repo_dir = ctx.checkout(pull)
    _, effective = selection.load_effective(ctx.workspace, repo_dir, ctx.settings.repo_settings(pull.repo.id))
    lines = [f"**Plankeeper** {__version__}", ""]
    for ep in effective or [None]:
        project = ep.project if ep else Project(".")
        try:
            engine = runner_for(project, ctx.settings, ctx.workspace, ep).version()
        except Exception as exc:  # a missing binary is worth reporting, not crashing on
            engine = f"unavailable ({getattr(exc, 'message', exc)})"
        label = f"`{project.label}`" if ep else "default"
        lines.append(f"- {label}: {engine}")
    ctx.forge.create_comment(pull, ctx.redact("\n".join(lines)))
    return "replied: version"


def _on_review(ctx: JobContext, event: ReviewEvent) -> str:
    from bot import applying

    if event.state != "approved":
        return f"ignored: review {event.state}"
    pull = ctx.forge.pull_request(event.pull.repo, event.pull.number)
    if not artifacts.pull_plans(ctx.rt.redis, pull.repo.id, pull.number):
        return "ignored: nothing planned to apply"
    return applying.run_apply(ctx, pull, Command("apply"), event.reviewer, trigger="approval")

