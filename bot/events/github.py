"""GitHub webhooks (`X-GitHub-Event`) read into plain events; pure, no I/O."""
from __future__ import annotations

import re
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
    get_opt_obj,
    get_opt_str,
    get_str,
    header,
    host_of,
    is_self,
    missing_secret,
    require_object,
)
from bot.models import (
    CheckRunEvent,
    CommentEvent,
    Event,
    PullRequest,
    PullRequestEvent,
    Repo,
    ReviewEvent,
)
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
    check_prefix: str = "plankeeper/",
    app_id: int | None = None,
) -> Event | Ignored:
    """Translate one GitHub delivery (`X-GitHub-Event` name + JSON body).

    `api_host` is the host used when `repository.html_url` is absent. `app_id` is the GitHub
    App whose check runs are the bot's (None: the bot writes none); a click counts only on one of
    them named `check_prefix...`. Raises `MalformedEvent` when a field the bot needs is missing
    or has the wrong type.
    """
    payload = require_object(payload)
    if event_name == "ping":
        return Ignored("ping")
    handler = _GITHUB_HANDLERS.get(event_name)
    if handler is None:
        return Ignored(f"event {event_name} not handled")
    ctx = _GitHubContext(bot_login, allow_draft_prs, api_host, delivery_id, check_prefix, app_id)
    return handler(get_str(payload, "action"), payload, ctx)


@dataclass(frozen=True)
class _GitHubContext:
    bot_login: str | None
    allow_draft_prs: bool
    api_host: str
    delivery: str
    check_prefix: str = "plankeeper/"
    app_id: int | None = None


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


# -- clicks on the bot's check runs: Apply (requested_action `apply`) and Re-run (rerequested)

_CHECK_RUN_BUTTONS = {"requested_action": "apply", "rerequested": "plan"}
_EXTERNAL_PULL = re.compile(r"pull:([1-9][0-9]{0,9})")  # bot.runs.checks.external_id


def _github_check_run(action: str, payload: dict, ctx: _GitHubContext) -> Event | Ignored:
    command = _CHECK_RUN_BUTTONS.get(action)
    if command is None:
        return Ignored(f"check_run action {action} not handled")
    check = get_obj(payload, "check_run")
    name = get_str(check, "name", "check_run.")
    if not name.startswith(ctx.check_prefix):
        return Ignored(f"check run {name!r} is not one of the bot's")
    if action == "requested_action":
        identifier = get_str(get_obj(payload, "requested_action"), "identifier", "requested_action.")
        if identifier != "apply":
            return Ignored(f"requested action {identifier!r} not handled")
    return _check_click(payload, ctx, check, "check_run", command)


def _github_check_suite(action: str, payload: dict, ctx: _GitHubContext) -> Event | Ignored:
    if action != "rerequested":
        return Ignored(f"check_suite action {action} not handled")
    return _check_click(payload, ctx, get_obj(payload, "check_suite"), "check_suite", "plan")


def _check_click(payload: dict, ctx: _GitHubContext, check: dict, where: str, command: str) -> Event | Ignored:
    """The event of a click on a check run or suite of the bot's, on one pull request."""
    if ctx.app_id is None:
        return Ignored("this server writes no check runs (github.checks: as a GitHub App only)")
    if get_int(get_obj(check, "app", f"{where}."), "id", f"{where}.app.") != ctx.app_id:
        return Ignored(f"{where} of another GitHub App")
    head_sha = get_str(check, "head_sha", f"{where}.")
    number = _check_pull_number(check, head_sha, where)
    if isinstance(number, Ignored):
        return number
    return CheckRunEvent(
        delivery_id=ctx.delivery, repo=_github_repo(payload, ctx.api_host), pull_number=number, head_sha=head_sha,
        command=command, sender=get_str(get_obj(payload, "sender"), "login", "sender."),
        check_id=f"{where}:{get_int(check, 'id', f'{where}.')}",
    )


def _check_pull_number(check: dict, head_sha: str, where: str) -> int | Ignored:
    """The pull request the check is about: the one the bot named in its external_id, else the
    only one of `pull_requests` with that head (GitHub lists none for a fork's pull request)."""
    named = _EXTERNAL_PULL.fullmatch(get_opt_str(check, "external_id", f"{where}."))
    if named:
        return int(named.group(1))
    pulls = check.get("pull_requests")
    if not isinstance(pulls, list):
        raise MalformedEvent(f"{where}.pull_requests: expected a list")
    numbers = sorted({get_int(p, "number", f"{where}.pull_requests[].") for p in pulls
                      if isinstance(p, dict) and _head_sha(p) == head_sha})
    if not numbers:
        return Ignored(f"{where} is on no pull request of this repository")
    if len(numbers) > 1:
        listed = ", ".join(f"#{n}" for n in numbers)
        return Ignored(f"{where} is on several pull requests ({listed}): comment the command instead")
    return numbers[0]


def _head_sha(pull: dict) -> str:
    head = pull.get("head")
    return head.get("sha") if isinstance(head, dict) and isinstance(head.get("sha"), str) else ""


_GITHUB_HANDLERS: dict[str, Callable[[str, dict, _GitHubContext], Event | Ignored]] = {
    "pull_request": _github_pull_request,
    "issue_comment": _github_comment,
    "pull_request_review": _github_review,
    "check_run": _github_check_run,
    "check_suite": _github_check_suite,
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
                        allow_draft_prs=settings.allow_draft_prs, delivery_id=delivery,
                        check_prefix=f"{settings.statuses.prefix}/",
                        app_id=settings.github.app_id if settings.github.uses_checks else None)


SOURCE = WebhookSource("github", "X-GitHub-Event", ("X-GitHub-Delivery",), _authenticate, _read)
