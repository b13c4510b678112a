"""Gitea and Forgejo webhooks (`X-Gitea-Event` / `X-Forgejo-Event`) read into plain events; pure.

Gitea sends GitHub's and Gogs' headers too (`X-GitHub-Event`, `X-Hub-Signature-256`), so this
source is asked before GitHub's (bot.events.SOURCES). Forgejo sends `X-Forgejo-*` as well as
`X-Gitea-*`; either is accepted. The events read (`X-Gitea-Event`, then `action`):

- `pull_request`: opened, reopened, synchronized (a push), closed (`merged` says which), edited
  (only when it takes a work-in-progress prefix off the title: Gitea has no draft flag of its own);
- `issue_comment` on a pull request (`is_pull`): created;
- `pull_request_approved`, `pull_request_rejected`, `pull_request_comment`: a submitted review
  (`reviewed`), whose `sender` is the reviewer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.events.base import (
    Headers,
    Ignored,
    MalformedEvent,
    WebhookSource,
    get_flag,
    get_int,
    get_obj,
    get_opt_int,
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
from bot.signatures import verify_gitea

EVENT_HEADERS = ("X-Gitea-Event", "X-Forgejo-Event")
DELIVERY_HEADERS = ("X-Gitea-Delivery", "X-Forgejo-Delivery")
SIGNATURE_HEADERS = ("X-Gitea-Signature", "X-Forgejo-Signature")
# Gitea's default [repository.pull-request] WORK_IN_PROGRESS_PREFIXES, and newer ones' Draft forms.
DRAFT_PREFIXES = ("wip:", "[wip]", "draft:", "[draft]", "(draft)")

_PR_ACTIONS = {"opened": "opened", "reopened": "opened", "synchronized": "updated",
               "closed": "closed", "edited": "updated"}
# review.type (the hook event type) -> the review state the bot knows; X-Gitea-Event says the same.
_REVIEW_TYPES = {"pull_request_review_approved": "approved",
                 "pull_request_review_rejected": "changes_requested",
                 "pull_request_review_comment": "commented", "pull_request_comment": "commented"}
_REVIEW_EVENTS = {"pull_request_approved": "approved", "pull_request_rejected": "changes_requested",
                  "pull_request_comment": "commented"}


def parse_gitea(
    event_name: str,
    payload: Any,
    *,
    bot_login: str | None,
    allow_draft_prs: bool,
    delivery_id: str = "",
) -> Event | Ignored:
    """Translate one Gitea or Forgejo delivery (`X-Gitea-Event` name + JSON body).

    Raises `MalformedEvent` when a field the bot needs is missing or has the wrong type, or when
    a review's `review.type` contradicts the event header.
    """
    payload = require_object(payload)
    handler = _HANDLERS.get(event_name)
    if handler is None:
        return Ignored(f"event {event_name or '(none)'} not handled")
    ctx = _Context(event_name, bot_login, allow_draft_prs, delivery_id)
    return handler(get_str(payload, "action"), payload, ctx)


def is_draft_title(title: str) -> bool:
    """Whether Gitea would call a pull request with this title a work in progress."""
    return title.strip().lower().startswith(DRAFT_PREFIXES)


@dataclass(frozen=True)
class _Context:
    event: str
    bot_login: str | None
    allow_draft_prs: bool
    delivery: str


def _repo(payload: dict) -> Repo:
    repo = get_obj(payload, "repository")
    html_url = get_str(repo, "html_url", "repository.")
    return Repo(
        forge="gitea",
        host=host_of(html_url, "repository.html_url"),
        full_name=get_str(repo, "full_name", "repository."),
        clone_url=get_str(repo, "clone_url", "repository."),
        default_branch=get_opt_str(repo, "default_branch", "repository.", "main"),
        html_url=html_url,
    )


def _pull(payload: dict, repo: Repo) -> PullRequest:
    pr = get_obj(payload, "pull_request")
    where = "pull_request."
    head, base = get_obj(pr, "head", where), get_obj(pr, "base", where)
    head_repo = get_opt_obj(head, "repo", "pull_request.head.")
    # Gitea writes repo_id -1 on the head of a pull request whose fork was deleted.
    head_repo_id = get_opt_int(head, "repo_id", "pull_request.head.")
    is_fork = head_repo_id != get_opt_int(base, "repo_id", "pull_request.base.")
    clone_url = get_opt_str(head_repo, "clone_url", "pull_request.head.repo.") if head_repo else ""
    closed = get_opt_str(pr, "state", where, "open") == "closed"
    merged = get_flag(pr, "merged", where)
    title = get_opt_str(pr, "title", where)
    return PullRequest(
        repo=repo,
        number=get_int(pr, "number", where),
        author=get_str(get_obj(pr, "user", where), "login", "pull_request.user."),
        head_sha=get_str(head, "sha", "pull_request.head."),
        head_ref=get_str(head, "ref", "pull_request.head."),
        base_ref=get_str(base, "ref", "pull_request.base."),
        # Where the diff starts; base.sha is the base branch's head now.
        base_sha=get_opt_str(pr, "merge_base", where) or get_opt_str(base, "sha", "pull_request.base."),
        url=get_opt_str(pr, "html_url", where),
        title=title,
        head_clone_url=clone_url or ("" if is_fork else repo.clone_url),
        is_fork=is_fork,
        is_draft=_is_draft(pr, title),
        state="merged" if merged else ("closed" if closed else "open"),
        merge_sha=(get_opt_str(pr, "merge_commit_sha", where) or None) if merged else None,
    )


def _is_draft(pr: dict, title: str) -> bool:
    """Newer Gitea says `draft` (its work-in-progress check); older ones only have the title."""
    if pr.get("draft") is not None:
        return get_flag(pr, "draft", "pull_request.")
    return is_draft_title(title)


def _sender(payload: dict) -> str:
    return get_str(get_obj(payload, "sender"), "login", "sender.")


def _pull_request(action: str, payload: dict, ctx: _Context) -> Event | Ignored:
    kind = _PR_ACTIONS.get(action)
    if kind is None:
        return Ignored(f"pull_request action {action} not handled")
    pull = _pull(payload, _repo(payload))
    if kind == "closed":
        kind = "merged" if pull.state == "merged" else "closed"
    elif action == "edited" and not _left_draft(payload, pull):
        return Ignored("pull_request edited without leaving work in progress")
    elif pull.is_draft and not ctx.allow_draft_prs:
        return Ignored("draft pull request")
    return PullRequestEvent(delivery_id=ctx.delivery, action=kind, pull=pull, sender=_sender(payload))


def _left_draft(payload: dict, pull: PullRequest) -> bool:
    """An edit that took the work-in-progress prefix off the title (`changes.title.from`)."""
    changes = payload.get("changes")
    before = changes.get("title") if isinstance(changes, dict) else None
    old_title = before.get("from") if isinstance(before, dict) else None
    return isinstance(old_title, str) and is_draft_title(old_title) and not pull.is_draft


def _comment(action: str, payload: dict, ctx: _Context) -> Event | Ignored:
    if action != "created":
        return Ignored(f"issue_comment action {action} not handled")
    issue = get_obj(payload, "issue")
    if not (get_flag(payload, "is_pull") or get_opt_obj(issue, "pull_request", "issue.") is not None):
        return Ignored("comment on an issue, not a pull request")
    comment = get_obj(payload, "comment")
    login = get_str(get_obj(comment, "user", "comment."), "login", "comment.user.")
    if is_self(login, ctx.bot_login):
        return Ignored("comment by the bot itself")
    return CommentEvent(
        delivery_id=ctx.delivery,
        repo=_repo(payload),
        pull_number=get_int(issue, "number", "issue."),
        comment_id=str(get_int(comment, "id", "comment.")),
        body=get_opt_str(comment, "body", "comment."),
        author=login,
    )


def _review(action: str, payload: dict, ctx: _Context) -> Event | Ignored:
    if action != "reviewed":
        return Ignored(f"{ctx.event} action {action} not handled")
    review = get_obj(payload, "review")
    kind = get_opt_str(review, "type", "review.")
    state = _REVIEW_EVENTS[ctx.event]
    if kind and _REVIEW_TYPES.get(kind) != state:
        raise MalformedEvent(f"review.type: {kind!r} does not match the event {ctx.event}")
    pull = _pull(payload, _repo(payload))
    # Gitea's review hook names no review id and no commit: the approval is of the head it shows.
    return ReviewEvent(delivery_id=ctx.delivery, pull=pull, reviewer=_sender(payload), state=state,
                       commit_sha=pull.head_sha)


_HANDLERS: dict[str, Callable[[str, dict, _Context], Event | Ignored]] = {
    "pull_request": _pull_request,
    "issue_comment": _comment,
    **{event: _review for event in _REVIEW_EVENTS},
}


def _authenticate(section: Any, headers: Headers, body: bytes) -> str | None:
    problem = missing_secret("gitea", section.webhook_secret)
    if problem:
        return problem
    signature = next((value for name in SIGNATURE_HEADERS if (value := header(headers, name))), None)
    if verify_gitea(section.webhook_secret, body, signature):
        return None
    return "missing or wrong X-Gitea-Signature (give the webhook the secret in gitea.webhook_secret)"


def _read(event_name: str, payload: Any, delivery: str, settings: Any) -> Event | Ignored:
    return parse_gitea(event_name, payload, bot_login=settings.gitea.bot_login,
                       allow_draft_prs=settings.allow_draft_prs, delivery_id=delivery)


@dataclass(frozen=True)
class GiteaWebhookSource(WebhookSource):
    """Recognised by `X-Gitea-Event` or Forgejo's `X-Forgejo-Event`, never by the GitHub headers
    Gitea sends alongside."""

    event_headers: tuple[str, ...] = EVENT_HEADERS

    def recognises(self, headers: Headers) -> bool:
        return any(header(headers, name) is not None for name in self.event_headers)

    def event_name(self, headers: Headers, payload: Any = None) -> str:
        values = (header(headers, name) for name in self.event_headers)
        return next((value for value in values if value is not None), "")


SOURCE = GiteaWebhookSource("gitea", EVENT_HEADERS[0], DELIVERY_HEADERS, _authenticate, _read)
