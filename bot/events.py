"""Pure translation of forge webhook payloads into plain events (no I/O).

`parse_github` and `parse_gitlab` return a `PullRequestEvent`, `CommentEvent` or
`ReviewEvent`, or `Ignored(reason)` for deliveries the bot has nothing to do with. A payload
that lacks a field the bot needs, or carries it with the wrong JSON type, raises
`MalformedEvent` naming the field (the receiver answers 400); nothing else is ever raised.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from bot.models import CommentEvent, Event, PullRequest, PullRequestEvent, Repo, ReviewEvent


@dataclass(frozen=True)
class Ignored:
    """A well-formed delivery the bot deliberately does nothing with, and why."""

    reason: str


class MalformedEvent(ValueError):
    """The payload is not the JSON the forge documents; the message names the field."""


# ---------------------------------------------------------------- headers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts as well as Werkzeug headers."""
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def forge_of(headers: Mapping[str, str]) -> str | None:
    """"github" when `X-GitHub-Event` is present, "gitlab" for `X-Gitlab-Event`, else None."""
    if _header(headers, "X-GitHub-Event") is not None:
        return "github"
    if _header(headers, "X-Gitlab-Event") is not None:
        return "gitlab"
    return None


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The forge's unique id for this delivery, used to de-duplicate retries; None if absent.

    GitHub: `X-GitHub-Delivery`. GitLab: `X-Gitlab-Event-UUID`, else `Idempotency-Key`
    (newer GitLab sends the same key on every retry of one event).
    """
    for name in ("X-GitHub-Delivery", "X-Gitlab-Event-UUID", "Idempotency-Key"):
        value = _header(headers, name)
        if value and value.strip():
            return value.strip()
    return None


# ---------------------------------------------------------------- typed field access

T = TypeVar("T")
_TYPE_NAMES = {dict: "an object", str: "a string", int: "an integer", bool: "a boolean"}


def _req(obj: Mapping[str, Any], key: str, where: str, kind: type[T]) -> T:
    """obj[key] as `kind`; MalformedEvent("<where><key>: ...") when null, absent or mistyped."""
    value = obj.get(key)
    if value is None:
        raise MalformedEvent(f"{where}{key}: missing")
    # bool is an int subclass in Python; JSON true is not a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = _TYPE_NAMES.get(kind, kind.__name__)
        raise MalformedEvent(f"{where}{key}: expected {expected}, got {type(value).__name__}")
    return value


def _obj(obj: Mapping[str, Any], key: str, where: str = "") -> dict:
    return _req(obj, key, where, dict)


def _opt_obj(obj: Mapping[str, Any], key: str, where: str = "") -> dict | None:
    return None if obj.get(key) is None else _req(obj, key, where, dict)


def _str(obj: Mapping[str, Any], key: str, where: str = "") -> str:
    return _req(obj, key, where, str)


def _opt_str(obj: Mapping[str, Any], key: str, where: str = "", default: str = "") -> str:
    return default if obj.get(key) is None else _req(obj, key, where, str)


def _int(obj: Mapping[str, Any], key: str, where: str = "") -> int:
    return _req(obj, key, where, int)


def _opt_int(obj: Mapping[str, Any], key: str, where: str = "") -> int | None:
    return None if obj.get(key) is None else _req(obj, key, where, int)


def _flag(obj: Mapping[str, Any], key: str, where: str = "") -> bool:
    return obj.get(key) is not None and _req(obj, key, where, bool)


def _host(url: str, field_name: str) -> str:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise MalformedEvent(f"{field_name}: not a URL ({exc})") from None
    if not host:
        raise MalformedEvent(f"{field_name}: not a URL with a host")
    return f"{host}:{port}" if port else host


def _require_object(payload: Any) -> dict:
    if not isinstance(payload, dict):
        raise MalformedEvent(f"payload: expected a JSON object, got {type(payload).__name__}")
    return payload


def _is_self(login: str, bot_login: str | None, *, is_bot_account: bool = False) -> bool:
    """Whether `login` is this bot; GitHub App accounts log in as `<app>[bot]`."""
    if not bot_login:
        return False
    login, bot_login = login.lower(), bot_login.lower()
    if login == bot_login:
        return True
    return is_bot_account and login == f"{bot_login}[bot]"


# ---------------------------------------------------------------- GitHub

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
    payload = _require_object(payload)
    if event_name == "ping":
        return Ignored("ping")
    handler = _GITHUB_HANDLERS.get(event_name)
    if handler is None:
        return Ignored(f"event {event_name} not handled")
    ctx = _GitHubContext(bot_login, allow_draft_prs, api_host, delivery_id)
    return handler(_str(payload, "action"), payload, ctx)


@dataclass(frozen=True)
class _GitHubContext:
    bot_login: str | None
    allow_draft_prs: bool
    api_host: str
    delivery: str


def _github_repo(payload: dict, api_host: str) -> Repo:
    repo = _obj(payload, "repository")
    html_url = _opt_str(repo, "html_url", "repository.")
    installation = _opt_obj(payload, "installation")
    return Repo(
        forge="github",
        host=_host(html_url, "repository.html_url") if html_url else api_host,
        full_name=_str(repo, "full_name", "repository."),
        clone_url=_str(repo, "clone_url", "repository."),
        default_branch=_opt_str(repo, "default_branch", "repository.", "main"),
        html_url=html_url,
        installation_id=_int(installation, "id", "installation.") if installation else None,
    )


def _github_pull(payload: dict, repo: Repo) -> PullRequest:
    pr = _obj(payload, "pull_request")
    where = "pull_request."
    head, base = _obj(pr, "head", where), _obj(pr, "base", where)
    head_repo = _opt_obj(head, "repo", "pull_request.head.")
    merged = _flag(pr, "merged", where)
    closed = _opt_str(pr, "state", where, "open") == "closed"
    return PullRequest(
        repo=repo,
        number=_int(pr, "number", where),
        author=_str(_obj(pr, "user", where), "login", "pull_request.user."),
        head_sha=_str(head, "sha", "pull_request.head."),
        head_ref=_str(head, "ref", "pull_request.head."),
        base_ref=_str(base, "ref", "pull_request.base."),
        base_sha=_opt_str(base, "sha", "pull_request.base."),
        url=_opt_str(pr, "html_url", where),
        title=_opt_str(pr, "title", where),
        head_clone_url=_opt_str(head_repo, "clone_url", "pull_request.head.repo.")
        if head_repo else "",
        # A deleted fork has head.repo = null: treat it as a fork (never the base repo).
        is_fork=head_repo is None
        or _str(head_repo, "full_name", "pull_request.head.repo.") != repo.full_name,
        is_draft=_flag(pr, "draft", where),
        state="merged" if merged else ("closed" if closed else "open"),
        merge_sha=(_opt_str(pr, "merge_commit_sha", where) or None) if merged else None,
    )


def _sender(payload: dict) -> str:
    sender = _opt_obj(payload, "sender")
    return _opt_str(sender, "login", "sender.") if sender else ""


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
    issue = _obj(payload, "issue")
    if issue.get("pull_request") is None:
        return Ignored("comment on an issue, not a pull request")
    comment = _obj(payload, "comment")
    user = _obj(comment, "user", "comment.")
    login = _str(user, "login", "comment.user.")
    is_bot_account = _opt_str(user, "type", "comment.user.") == "Bot"
    if _is_self(login, ctx.bot_login, is_bot_account=is_bot_account):
        return Ignored("comment by the bot itself")
    return CommentEvent(
        delivery_id=ctx.delivery,
        repo=_github_repo(payload, ctx.api_host),
        pull_number=_int(issue, "number", "issue."),
        comment_id=str(_int(comment, "id", "comment.")),
        body=_opt_str(comment, "body", "comment."),
        author=login,
    )


def _github_review(action: str, payload: dict, ctx: _GitHubContext) -> Event | Ignored:
    if action != "submitted":
        return Ignored(f"pull_request_review action {action} not handled")
    review = _obj(payload, "review")
    reviewer = _str(_obj(review, "user", "review."), "login", "review.user.")
    state = _str(review, "state", "review.").lower()
    pull = _github_pull(payload, _github_repo(payload, ctx.api_host))
    return ReviewEvent(delivery_id=ctx.delivery, pull=pull, reviewer=reviewer, state=state,
                       review_id=str(review.get("id") or ""), commit_sha=str(review.get("commit_id") or ""))


_GITHUB_HANDLERS: dict[str, Callable[[str, dict, _GitHubContext], Event | Ignored]] = {
    "pull_request": _github_pull_request,
    "issue_comment": _github_comment,
    "pull_request_review": _github_review,
}


# ---------------------------------------------------------------- GitLab

_GITLAB_KINDS = {"Merge Request Hook": "merge_request", "Note Hook": "note"}
_DRAFT_PREFIXES = ("draft:", "[draft]", "(draft)", "wip:", "[wip]")


def parse_gitlab(
    event_name: str,
    payload: Any,
    *,
    bot_login: str | None,
    allow_draft_prs: bool,
    delivery_id: str = "",
) -> Event | Ignored:
    """Translate one GitLab delivery (`X-Gitlab-Event` name + JSON body).

    Raises `MalformedEvent` when a field the bot needs is missing or has the wrong type,
    or when `object_kind` contradicts the header.
    """
    payload = _require_object(payload)
    kind = _GITLAB_KINDS.get(event_name)
    if kind is None:
        return Ignored(f"event {event_name} not handled")
    object_kind = payload.get("object_kind")
    if object_kind is not None and object_kind != kind:
        raise MalformedEvent(f"object_kind: {object_kind!r} does not match {event_name}")
    if kind == "note":
        return _gitlab_note(payload, bot_login, delivery_id)
    return _gitlab_merge_request(payload, allow_draft_prs, delivery_id)


def _gitlab_repo(payload: dict) -> Repo:
    project = _obj(payload, "project")
    web_url = _str(project, "web_url", "project.")
    return Repo(
        forge="gitlab",
        host=_host(web_url, "project.web_url"),
        full_name=_str(project, "path_with_namespace", "project."),
        clone_url=_str(project, "git_http_url", "project."),
        default_branch=_opt_str(project, "default_branch", "project.", "main"),
        html_url=web_url,
        forge_id=_int(project, "id", "project."),
    )


def _gitlab_user(payload: dict) -> str:
    return _str(_obj(payload, "user"), "username", "user.")


def _gitlab_pull(mr: dict, where: str, repo: Repo, author: str) -> PullRequest:
    """A PullRequest from a Merge Request Hook's `object_attributes`."""
    source = _opt_obj(mr, "source", where)
    source_id = _opt_int(mr, "source_project_id", where)
    target_id = _opt_int(mr, "target_project_id", where)
    is_fork = source_id is not None and target_id is not None and source_id != target_id
    head_clone_url = _opt_str(source, "git_http_url", f"{where}source.") if source else ""
    state = _opt_str(mr, "state", where, "opened")
    return PullRequest(
        repo=repo,
        number=_int(mr, "iid", where),
        # Payloads carry only author_id; the event's user is the best name offline.
        author=author,
        head_sha=_str(_obj(mr, "last_commit", where), "id", f"{where}last_commit."),
        head_ref=_str(mr, "source_branch", where),
        base_ref=_str(mr, "target_branch", where),
        url=_opt_str(mr, "url", where),
        title=_opt_str(mr, "title", where),
        head_clone_url=head_clone_url or ("" if is_fork else repo.clone_url),
        is_fork=is_fork,
        is_draft=_flag(mr, "draft", where) or _flag(mr, "work_in_progress", where),
        state={"merged": "merged", "closed": "closed", "locked": "closed"}.get(state, "open"),
        merge_sha=_opt_str(mr, "merge_commit_sha", where) or None,
    )


def _change(changes: dict, key: str) -> tuple[Any, Any]:
    value = changes.get(key)
    if not isinstance(value, dict):
        return None, None
    return value.get("previous"), value.get("current")


def _marked_ready(payload: dict) -> bool:
    """An update that turned a draft into a ready merge request (draft flag or title prefix)."""
    changes = payload.get("changes")
    if not isinstance(changes, dict):
        return False
    if (True, False) in (_change(changes, "draft"), _change(changes, "work_in_progress")):
        return True
    before, after = _change(changes, "title")
    return (isinstance(before, str) and isinstance(after, str)
            and _draft_title(before) and not _draft_title(after))


def _draft_title(title: str) -> bool:
    return title.strip().lower().startswith(_DRAFT_PREFIXES)


def _gitlab_merge_request(payload: dict, allow_draft_prs: bool,
                          delivery: str) -> Event | Ignored:
    attrs = _obj(payload, "object_attributes")
    action = _opt_str(attrs, "action", "object_attributes.")
    if action in ("unapproved", "unapproval"):
        # Requirements are re-checked against the forge at apply time; nothing to do now.
        return Ignored(f"merge request action {action} not handled (approval withdrawn)")
    kinds = {"open": "opened", "reopen": "opened", "update": "updated",
             "merge": "merged", "close": "closed", "approved": "approved",
             "approval": "approved"}
    kind = kinds.get(action)
    if kind is None:
        return Ignored(f"merge request action {action or '(none)'} not handled")
    if kind == "updated" and attrs.get("oldrev") is None and not _marked_ready(payload):
        return Ignored("merge request updated without new commits")
    user = _gitlab_user(payload)
    pull = _gitlab_pull(attrs, "object_attributes.", _gitlab_repo(payload), user)
    if kind == "approved":
        return ReviewEvent(delivery_id=delivery, pull=pull, reviewer=user, state="approved",
                           review_id=f"{user}@{pull.head_sha}", commit_sha=pull.head_sha)
    if kind in ("opened", "updated") and pull.is_draft and not allow_draft_prs:
        return Ignored("draft pull request")
    return PullRequestEvent(delivery_id=delivery, action=kind, pull=pull, sender=user)


def _gitlab_note(payload: dict, bot_login: str | None, delivery: str) -> Event | Ignored:
    attrs = _obj(payload, "object_attributes")
    where = "object_attributes."
    noteable = _opt_str(attrs, "noteable_type", where)
    if noteable != "MergeRequest":
        return Ignored(f"comment on {noteable or 'unknown'} not handled")
    action = _opt_str(attrs, "action", where, "create")
    if action != "create":
        return Ignored(f"note action {action} not handled")
    if _flag(attrs, "system", where):
        return Ignored("system note")
    author = _gitlab_user(payload)
    if _is_self(author, bot_login):
        return Ignored("comment by the bot itself")
    mr = _obj(payload, "merge_request")
    return CommentEvent(
        delivery_id=delivery,
        repo=_gitlab_repo(payload),
        pull_number=_int(mr, "iid", "merge_request."),
        comment_id=str(_int(attrs, "id", where)),
        body=_opt_str(attrs, "note", where),
        author=author,
    )
