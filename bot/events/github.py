"""GitHub webhooks (`X-GitHub-Event`) read into plain events; pure, no I/O."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.events.base import (
    Headers,
    Ignored,
    WebhookSource,
    get_flag,
    get_int,
    get_obj,
    get_opt_obj,
    get_opt_str,
    get_str,
    header,
    host_of,
    is_self,
    missing_secret,
    require_object,
)
from bot.models import CommentEvent, Event, PullRequest, PullRequestEvent, Repo, ReviewEvent
from bot.signatures import verify_github

_GITHUB_PR_ACTIONS = {
    "opened": "opened",
    "reopened": "opened",
    "synchronize": "updated",
    "ready_for_review": "updated",
    "closed": "closed",  # becomes "merged" when pull_request.merged
}


def parse_github(
    event_name: str,
    payload: Any,
    *,
    bot_login: str | None,
    allow_draft_prs: bool,
    api_host: str = "github.com",
    delivery_id: str = "",
) -> Event | Ignored:
    """Translate one GitHub delivery (`X-GitHub-Event` name + JSON body).

    `api_host` is the host used when `repository.html_url` is absent. Raises
    `MalformedEvent` when a field the bot needs is missing or has the wrong type.
    """
    payload = require_object(payload)
    if event_name == "ping":
        return Ignored("ping")
    handler = _GITHUB_HANDLERS.get(event_name)
    if handler is None:
        return Ignored(f"event {event_name} not handled")
    ctx = _GitHubContext(bot_login, allow_draft_prs, api_host, delivery_id)
    return handler(get_str(payload, "action"), payload, ctx)


@dataclass(frozen=True)
class _GitHubContext:
    bot_login: str | None
    allow_draft_prs: bool
    api_host: str
    delivery: str


def _github_repo(payload: dict, api_host: str) -> Repo:
    repo = get_obj(payload, "repository")
    html_url = get_opt_str(repo, "html_url", "repository.")
    installation = get_opt_obj(payload, "installation")
    return Repo(
        forge="github",
        host=host_of(html_url, "repository.html_url") if html_url else api_host,
        full_name=get_str(repo, "full_name", "repository."),
        clone_url=get_str(repo, "clone_url", "repository."),
        default_branch=get_opt_str(repo, "default_branch", "repository.", "main"),
        html_url=html_url,
        installation_id=get_int(installation, "id", "installation.") if installation else None,
    )


def _github_pull(payload: dict, repo: Repo) -> PullRequest:
    pr = get_obj(payload, "pull_request")
    where = "pull_request."
    head, base = get_obj(pr, "head", where), get_obj(pr, "base", where)
    head_repo = get_opt_obj(head, "repo", "pull_request.head.")
    merged = get_flag(pr, "merged", where)
    closed = get_opt_str(pr, "state", where, "open") == "closed"
    return PullRequest(
        repo=repo,
        number=get_int(pr, "number", where),
        author=get_str(get_obj(pr, "user", where), "login", "pull_request.user."),
        head_sha=get_str(head, "sha", "pull_request.head."),
        head_ref=get_str(head, "ref", "pull_request.head."),
        base_ref=get_str(base, "ref", "pull_request.base."),
        base_sha=get_opt_str(base, "sha", "pull_request.base."),
        url=get_opt_str(pr, "html_url", where),
        title=get_opt_str(pr, "title", where),
        head_clone_url=get_opt_str(head_repo, "clone_url", "pull_request.head.repo.")
        if head_repo else "",
        # A deleted fork has head.repo = null: treat it as a fork (never the base repo).
        is_fork=head_repo is None
        or get_str(head_repo, "full_name", "pull_request.head.repo.") != repo.full_name,
        is_draft=get_flag(pr, "draft", where),
        state="merged" if merged else ("closed" if closed else "open"),
        merge_sha=(get_opt_str(pr, "merge_commit_sha", where) or None) if merged else None,
    )


def _sender(payload: dict) -> str:
    sender = get_opt_obj(payload, "sender")
    return get_opt_str(sender, "login", "sender.") if sender else ""


def _github_pull_request(action: str, payload: dict, ctx: _GitHubContext) -> Event | Ignored:
    kind = _GITHUB_PR_ACTIONS.get(action)
    if kind is None:
        return Ignored(f"pull_request action {action} not handled")
    pull = _github_pull(payload, _github_repo(payload, ctx.api_host))
    if kind == "closed":
        kind = "merged" if pull.state == "merged" else "closed"
    elif pull.is_draft and not ctx.allow_draft_prs:
        return Ignored("draft pull request")
    return PullRequestEvent(delivery_id=ctx.delivery, action=kind, pull=pull,
                            sender=_sender(payload))


def _github_comment(action: str, payload: dict, ctx: _GitHubContext) -> Event | Ignored:
    if action != "created":
        return Ignored(f"issue_comment action {action} not handled")
    issue = get_obj(payload, "issue")
    if issue.get("pull_request") is None:
        return Ignored("comment on an issue, not a pull request")
    comment = get_obj(payload, "comment")
    user = get_obj(comment, "user", "comment.")
    login = get_str(user, "login", "comment.user.")
    is_bot_account = get_opt_str(user, "type", "comment.user.") == "Bot"
    if is_self(login, ctx.bot_login, is_bot_account=is_bot_account):
        return Ignored("comment by the bot itself")
    return CommentEvent(
        delivery_id=ctx.delivery,
        repo=_github_repo(payload, ctx.api_host),
        pull_number=get_int(issue, "number", "issue."),
        comment_id=str(get_int(comment, "id", "comment.")),
        body=get_opt_str(comment, "body", "comment."),
        author=login,
    )


def _github_review(action: str, payload: dict, ctx: _GitHubContext) -> Event | Ignored:
    if action != "submitted":
        return Ignored(f"pull_request_review action {action} not handled")
    review = get_obj(payload, "review")
    reviewer = get_str(get_obj(review, "user", "review."), "login", "review.user.")
    state = get_str(review, "state", "review.").lower()
    pull = _github_pull(payload, _github_repo(payload, ctx.api_host))
    return ReviewEvent(delivery_id=ctx.delivery, pull=pull, reviewer=reviewer, state=state,
                       review_id=str(review.get("id") or ""), commit_sha=str(review.get("commit_id") or ""))


_GITHUB_HANDLERS: dict[str, Callable[[str, dict, _GitHubContext], Event | Ignored]] = {
    "pull_request": _github_pull_request,
    "issue_comment": _github_comment,
    "pull_request_review": _github_review,
}




def _authenticate(section: Any, headers: Headers, body: bytes) -> str | None:
    problem = missing_secret("github", section.webhook_secret)
    if problem:
        return problem
    if verify_github(section.webhook_secret, body, header(headers, "X-Hub-Signature-256")):
        return None
    return "missing or wrong X-Hub-Signature-256"


def _read(event_name: str, payload: Any, delivery: str, settings: Any) -> Event | Ignored:
    return parse_github(event_name, payload, bot_login=settings.github.bot_login,
                        allow_draft_prs=settings.allow_draft_prs, delivery_id=delivery)


SOURCE = WebhookSource("github", "X-GitHub-Event", ("X-GitHub-Delivery",), _authenticate, _read)
