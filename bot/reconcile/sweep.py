"""One repository's sweep for missed webhooks, in a worker job (see bot.reconcile)."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Optional

from rq.job import Dependency

from bot import commands, queueing
from bot.context import Runtime
from bot.errors import UsageError
from bot.forges.base import Forge
from bot.models import Comment, CommentEvent, PullRequest, PullRequestEvent, Repo
from bot.runs.report import status_context
from bot.state import artifacts, keys, locks, replay

log = logging.getLogger(__name__)
SINCE_MARGIN = 600  # seconds each window reaches back before the previous sweep: clock skew, merges during it
FIRST_LOOKBACK = 24 * 3600  # the window of a repository's first sweep
SWEEP_TTL = 30 * 24 * 3600  # how long a repository's last sweep time is kept


def sweep_repo(rt: Runtime, forge: Forge, repo: Repo, now: Optional[float] = None) -> list[str]:
    """Queue the jobs of every event missed in the repository; returns their job ids."""
    started = time.time() if now is None else now
    since = window_start(rt.redis, repo, started)
    queued: list[str] = []
    for pull in forge.open_pull_requests(repo):
        queued += _queue(rt, missed_on_open_pull(rt, forge, pull, since))
    for pull in forge.recently_closed_pull_requests(repo, since):
        queued += _queue(rt, [e for e in [missed_close(rt, forge, pull)] if e])
    rt.redis.set(keys.RECONCILED.format(repo=repo.id), f"{started:.3f}", ex=SWEEP_TTL)
    if queued:
        log.info("reconcile %s: queued %d missed event(s) since %s", repo.id, len(queued),
                 time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since)))
    return queued


def window_start(r, repo: Repo, now: float) -> float:
    """What the sweep looks back to: a margin before the last completed sweep began, or
    FIRST_LOOKBACK on the repository's first one."""
    last = r.get(keys.RECONCILED.format(repo=repo.id))
    return float(last) - SINCE_MARGIN if last else now - FIRST_LOOKBACK


def missed_on_open_pull(rt: Runtime, forge: Forge, pull: PullRequest, since: float) -> list:
    """The missed command comments of an open pull request, then its missed autoplan. Only a
    pull request updated within the window can have missed one (opening it, a push or a comment
    updates it): older ones cost no forge call, and open pull requests from before the bot
    watched the repository are not planned all at once."""
    if pull.updated_at and pull.updated_at < since:
        return []
    autoplan = missed_autoplan(rt, forge, pull)
    return missed_commands(rt, forge, pull, since) + ([autoplan] if autoplan else [])


def missed_commands(rt: Runtime, forge: Forge, pull: PullRequest, since: float) -> list[CommentEvent]:
    """Command comments written after the bot's last comment on the pull request (within the
    window), neither acted on nor delivered."""
    comments = forge.comments_since(pull, since)
    own = [i for i, c in enumerate(comments) if _is_bot(c.author, forge.bot_login)]
    found = []
    for comment in comments[own[-1] + 1 if own else 0:]:
        if not _is_command(comment, rt, forge.bot_login):
            continue
        if replay.command_acted_on(rt.redis, pull.repo.id, pull.number, comment.id):
            continue
        event = CommentEvent("", pull.repo, pull.number, comment.id, comment.body, comment.author)
        delivery = queueing.sweep_delivery_id(event)
        if delivery and not queueing.delivery_seen(rt.redis, delivery):
            found.append(replace(event, delivery_id=delivery))
    return found


def missed_autoplan(rt: Runtime, forge: Forge, pull: PullRequest) -> Optional[PullRequestEvent]:
    """The pull request's `opened` (or, with plans of an older head stored, `updated`) event
    when its head was never planned, delivered or swept before."""
    settings, r = rt.settings, rt.redis
    if (pull.is_draft and not settings.allow_draft_prs) or (pull.is_fork and not settings.allow_fork_prs):
        return None  # as bot.events and bot.dispatch: nothing is planned (a fork is told so when it opens)
    if not settings.repo_settings(pull.repo.id).autoplan:
        return None
    action = "updated" if artifacts.pull_plans(r, pull.repo.id, pull.number) else "opened"
    event = PullRequestEvent("", action, pull, pull.author)
    delivery = queueing.sweep_delivery_id(event)
    if not delivery or queueing.delivery_seen(r, delivery):
        return None  # a webhook brought this head, or an earlier sweep found it
    if status_context(settings, "plan") in forge.statuses(pull.repo, pull.head_sha):
        queueing.claim_delivery(r, delivery)  # planned: recorded, so later sweeps do not ask the forge again
        return None
    return replace(event, delivery_id=delivery)


def missed_close(rt: Runtime, forge: Forge, pull: PullRequest) -> Optional[PullRequestEvent]:
    """The `merged` or `closed` event of a pull request that still holds plans or locks here;
    a merged one only when nothing was applied on its merge commit yet."""
    r = rt.redis
    if pull.state not in ("merged", "closed"):
        return None
    if not (artifacts.pull_plans(r, pull.repo.id, pull.number) or locks.pull_holds_locks(r, pull.repo.id, pull.number)):
        return None  # nothing to deploy or release: handled already, or never planned here
    event = PullRequestEvent("", pull.state, pull, pull.author)
    delivery = queueing.sweep_delivery_id(event)
    if not delivery or queueing.delivery_seen(r, delivery):
        return None
    applied = status_context(rt.settings, "apply")
    if pull.state == "merged" and applied in forge.statuses(pull.repo, pull.merge_sha or pull.head_sha):
        queueing.claim_delivery(r, delivery)  # deployed (or deploying): recorded
        return None
    return replace(event, delivery_id=delivery)


def _queue(rt: Runtime, events: list) -> list[str]:
    """Claim and queue one pull request's events, each after the one before it (whatever became
    of it); an event whose delivery id is claimed already (a webhook, another sweep) is skipped."""
    queued: list[str] = []
    for event in events:
        if not queueing.claim_delivery(rt.redis, event.delivery_id):
            continue
        job_id = queueing.sweep_job_id(event.delivery_id)
        try:
            queueing.enqueue_event(rt.redis, event, rt.settings.terraform.timeout, job_id=job_id,
                                   depends_on=Dependency([queued[-1]], allow_failure=True) if queued else None)
        except Exception:
            queueing.release_delivery(rt.redis, event.delivery_id)  # the next sweep finds it again
            raise
        log.info("reconcile: queued %s for what was missed: %s", job_id, event.delivery_id)
        queued.append(job_id)
    return queued


def _is_bot(author: str, bot_login: str) -> bool:
    """The bot's own comment (a GitHub App posts as `<slug>[bot]`)."""
    author, bot = author.lower(), bot_login.lower()
    return author == bot or author == f"{bot}[bot]" or (bot.endswith("[bot]") and author == bot[:-5])


def _is_command(comment: Comment, rt: Runtime, bot_login: str) -> bool:
    """A command, or something the bot answers with its usage (a malformed or near-miss one)."""
    if _is_bot(comment.author, bot_login):
        return False
    try:
        return commands.parse_comment(comment.body, bot_login=bot_login, aliases=rt.settings.comment_aliases,
                                      extra_args_allowlist=rt.settings.extra_args_allowlist) is not None
    except UsageError:
        return True
