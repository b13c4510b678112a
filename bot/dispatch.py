"""An event -> the handler that does what it asks, and its run started by the engine.

Pull request opened or pushed -> plan (autoplan); closed -> release; merged -> deploy, then
release; a comment -> its command, after the permission check; an approval -> apply; a check
run's Apply button -> apply, its Re-run -> plan, as comments by whoever clicked.
Re-reads the pull request from the forge first and stops early when the event is stale.
"""
from __future__ import annotations

from bot import commands, permissions, render
from bot.context import JobContext
from bot.errors import UsageError, UserFacingError
from bot.handlers import HANDLERS, Request, Trigger
from bot.handlers.plan import FORK_MESSAGE, fork_refused
from bot.handlers.unlock import release_pull_request
from bot.models import (
    CheckRunEvent,
    Command,
    CommentEvent,
    Event,
    PullRequest,
    PullRequestEvent,
    ReviewEvent,
)
from bot.runs import engine
from bot.runs.model import NewRun
from bot.state import artifacts, audit, replay

AFTER_MERGE = ("revert",)  # commands for a merged pull request (the handler refuses an open or closed one)


def handle(ctx: JobContext, event: Event) -> str:
    """Handle one event; returns a one-line summary for the job record."""
    if isinstance(event, PullRequestEvent):
        return on_pull_request(ctx, event)
    if isinstance(event, CommentEvent):
        return on_comment(ctx, event)
    if isinstance(event, ReviewEvent):
        return on_review(ctx, event)
    if isinstance(event, CheckRunEvent):
        return on_check_run(ctx, event)
    raise TypeError(f"unknown event {type(event).__name__}")


def run(ctx: JobContext, name: str, request: Request) -> str:
    """Start the named handler; a run it asks for goes to the engine."""
    started = HANDLERS[name].start(ctx, request)
    return engine.start(ctx, started) if isinstance(started, NewRun) else started


def on_pull_request(ctx: JobContext, event: PullRequestEvent) -> str:
    if event.action in ("closed", "merged"):
        deployed = run(ctx, "deploy", Request(event.pull, Command("apply"), event.pull.author, Trigger.MERGE)) \
            if event.action == "merged" else ""
        return deployed or release_pull_request(ctx, event.pull, event.action, event.sender)
    pull = ctx.forge.pull_request(event.repo, event.number)
    if pull.head_sha != event.pull.head_sha:
        return f"skipped: head moved to {pull.head_sha[:7]} (a newer event plans it)"
    if event.action == "updated":
        dropped = artifacts.discard_pull_plans(ctx.redis, pull.repo.id, pull.number)
        ctx.log(f"new commits pushed: discarded {dropped} plan(s) of the previous head")
    if fork_refused(ctx, pull):
        if event.action == "opened":
            ctx.forge.create_comment(pull, FORK_MESSAGE)
        return "skipped: pull request from a fork (allow_fork_prs is off)"
    if not ctx.settings.repo_settings(pull.repo.id).autoplan:
        return "skipped: autoplan is off for this repository"
    return run(ctx, "plan", Request(pull, Command("plan"), pull.author, Trigger.AUTOPLAN))


def on_comment(ctx: JobContext, event: CommentEvent) -> str:
    if event.author.lower() == ctx.forge.bot_login.lower():
        return "ignored: the bot's own comment"
    try:
        command = commands.parse_comment(
            event.body, bot_login=ctx.forge.bot_login, aliases=ctx.settings.comment_aliases,
            extra_args_allowlist=ctx.settings.extra_args_allowlist,
        )
    except UsageError as exc:
        pull = ctx.forge.pull_request(event.repo, event.number)
        ctx.forge.create_comment(pull, ctx.redact(exc.message))
        return "replied: malformed command"
    if command is None:
        return "ignored: not a command"
    pull = ctx.forge.pull_request(event.repo, event.number)
    refusal = replayed_comment(ctx, pull, event)
    if refusal:
        audit.record(ctx.redis, "command_ignored", user=event.author, repo=pull.repo.id, pull=pull.number,
                     commit=pull.head_sha, result=refusal, job_id=ctx.job_id)
        return f"ignored: {refusal}"
    ctx.forge.add_reaction(pull, event.comment_id, "eyes")
    audit.record(ctx.redis, "command", user=event.author, repo=pull.repo.id, pull=pull.number,
                 commit=pull.head_sha, detail=ctx.redact(event.body.strip().splitlines()[0][:200]), job_id=ctx.job_id)
    return run_or_reply(ctx, pull, command, event.author)


def run_or_reply(ctx: JobContext, pull: PullRequest, command: Command, actor: str) -> str:
    """Run the command for actor; a refusal (permission, closed pull request...) is replied."""
    try:
        if pull.state != "open" and command.name not in AFTER_MERGE:
            raise UserFacingError(f"This pull request is {pull.state}: `/{command.name}` only works on open pull "
                                  "requests. Open a new pull request to plan or apply changes.",
                                  title=f"{command.name} refused")
        return run_command(ctx, pull, command, actor)
    except UserFacingError as exc:
        ctx.forge.create_comment(pull, render.error_comment(exc.title, exc.message, ctx.redact, ctx.job_url))
        return f"refused: {exc.title}"


def run_command(ctx: JobContext, pull: PullRequest, command: Command, actor: str) -> str:
    handler = HANDLERS.get(command.name)
    if handler is None or command.name == "deploy":
        raise UserFacingError(f"`/{command.name}` is not available yet on this server.", title="Not available")
    if handler.needs_permission:
        permissions.check(ctx.forge, pull.repo, actor, command.name, ctx.settings.permissions,
                          needs_write=bool(command.extra_args) and command.name == "plan")
    return run(ctx, command.name, Request(pull, command, actor, Trigger.COMMENT))


def revert_from_api(ctx: JobContext, pull: PullRequest, actor: str) -> str:
    """The UI's "Roll back" of a deployment: `/revert` on its pull request for a UI user or API client.
    The UI credentials are the authority here (as for the UI's unlock), not the forge's permissions.
    A refusal is replied on the pull request, then raised."""
    try:
        return run(ctx, "revert", Request(pull, Command("revert"), actor, Trigger.API))
    except UserFacingError as exc:
        ctx.forge.create_comment(pull, render.error_comment(exc.title, exc.message, ctx.redact, ctx.job_url))
        raise


def replayed_comment(ctx: JobContext, pull: PullRequest, event: CommentEvent) -> str:
    """Why this command comment must not run ("" when it may): it was acted on already (a
    replayed delivery), or the forge no longer has it as delivered (deleted, edited, forged)."""
    current = ctx.forge.comment(pull, event.comment_id)
    if current is None:
        return f"comment {event.comment_id} no longer exists"
    if current.author.lower() != event.author.lower() or _text(current.body) != _text(event.body):
        return f"comment {event.comment_id} differs on the forge from the delivered one"
    if not replay.first_time_command(ctx.redis, pull.repo.id, pull.number, event.comment_id):
        return f"comment {event.comment_id} was already acted on"
    return ""


def _text(body: str) -> str:
    return body.replace("\r\n", "\n").strip()


def on_review(ctx: JobContext, event: ReviewEvent) -> str:
    """An approval applies (apply_on_approval) when its reviewer may `/apply`, it approves the
    current head, and it was not acted on before."""
    if event.state != "approved":
        return f"ignored: review {event.state}"
    pull = ctx.forge.pull_request(event.repo, event.number)
    if pull.state != "open":
        return f"ignored: the pull request is {pull.state}"
    if event.commit_sha and event.commit_sha != pull.head_sha:
        return f"ignored: the approval is of {event.commit_sha[:7]}, the head is {pull.head_sha[:7]}"
    if not artifacts.pull_plans(ctx.redis, pull.repo.id, pull.number):
        return "ignored: nothing planned to apply"
    review_id = event.review_id or f"{event.reviewer}@{pull.head_sha}"
    if not replay.first_time_approval(ctx.redis, pull.repo.id, pull.number, review_id):
        return f"ignored: approval {review_id} was already acted on"
    try:
        permissions.check(ctx.forge, pull.repo, event.reviewer, "apply", ctx.settings.permissions)
    except UserFacingError as exc:
        audit.record(ctx.redis, "apply_refused", user=event.reviewer, repo=pull.repo.id, pull=pull.number,
                     commit=pull.head_sha, result=f"approval does not apply: {exc.message}", job_id=ctx.job_id)
        return f"ignored: approval by @{event.reviewer}, who may not apply"
    return run(ctx, "apply", Request(pull, Command("apply"), event.reviewer, Trigger.APPROVAL))


def on_check_run(ctx: JobContext, event: CheckRunEvent) -> str:
    """A click on one of the bot's check runs: Apply acts as `/apply`, Re-run as `/plan`, by the
    clicker, with the same permission checks and replies as the comment. Apply acts once per check
    run and clicker (a replayed delivery does nothing), and only while the check run is on the head."""
    pull = ctx.forge.pull_request(event.repo, event.number)
    button = "Apply" if event.command == "apply" else "Re-run"
    if pull.head_sha != event.head_sha:
        return _stale_click(ctx, pull, event, button)
    if event.command == "apply" and not replay.first_time_command(
            ctx.redis, pull.repo.id, pull.number, f"{event.check_id}:apply:{event.sender}"):
        acted = f"{event.check_id} Apply by @{event.sender} was already acted on"
        audit.record(ctx.redis, "command_ignored", user=event.sender, repo=pull.repo.id, pull=pull.number,
                     commit=pull.head_sha, result=acted, job_id=ctx.job_id)
        return f"ignored: {acted}"
    audit.record(ctx.redis, "command", user=event.sender, repo=pull.repo.id, pull=pull.number,
                 commit=pull.head_sha, detail=f"/{event.command} ({button} button of {event.check_id})",
                 job_id=ctx.job_id)
    return run_or_reply(ctx, pull, Command(event.command), event.sender)


def _stale_click(ctx: JobContext, pull: PullRequest, event: CheckRunEvent, button: str) -> str:
    """A click on the check run of a commit that is no longer the head: a Re-run is moot (the head
    is planned on its own), an Apply is refused with a reply (it would apply an unseen plan)."""
    stale = f"{button} of {event.head_sha[:7]}, the head is {pull.head_sha[:7]}"
    audit.record(ctx.redis, "command_ignored", user=event.sender, repo=pull.repo.id, pull=pull.number,
                 commit=pull.head_sha, result=f"{event.check_id}: {stale}", job_id=ctx.job_id)
    if event.command != "apply":
        return f"ignored: {stale} (planned on its own)"
    ctx.forge.create_comment(pull, render.error_comment(
        "Apply refused", f"@{event.sender} clicked Apply on the check run of {event.head_sha[:7]}, but the head "
        f"is now {pull.head_sha[:7]}: use the Apply button of the newest plan, or comment `/apply`.",
        ctx.redact, ctx.job_url))
    return "refused: the check run is not on the head"
