"""GitLab webhooks (`X-Gitlab-Event`) read into plain events; pure, no I/O."""
from __future__ import annotations

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
from bot.signatures import verify_gitlab

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
    payload = require_object(payload)
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
    project = get_obj(payload, "project")
    web_url = get_str(project, "web_url", "project.")
    return Repo(
        forge="gitlab",
        host=host_of(web_url, "project.web_url"),
        full_name=get_str(project, "path_with_namespace", "project."),
        clone_url=get_str(project, "git_http_url", "project."),
        default_branch=get_opt_str(project, "default_branch", "project.", "main"),
        html_url=web_url,
        forge_id=get_int(project, "id", "project."),
    )


def _gitlab_user(payload: dict) -> str:
    return get_str(get_obj(payload, "user"), "username", "user.")


def _gitlab_pull(mr: dict, where: str, repo: Repo, author: str) -> PullRequest:
    """A PullRequest from a Merge Request Hook's `object_attributes`."""
    source = get_opt_obj(mr, "source", where)
    source_id = get_opt_int(mr, "source_project_id", where)
    target_id = get_opt_int(mr, "target_project_id", where)
    is_fork = source_id is not None and target_id is not None and source_id != target_id
    head_clone_url = get_opt_str(source, "git_http_url", f"{where}source.") if source else ""
    state = get_opt_str(mr, "state", where, "opened")
    return PullRequest(
        repo=repo,
        number=get_int(mr, "iid", where),
        # Payloads carry only author_id; the event's user is the best name offline.
        author=author,
        head_sha=get_str(get_obj(mr, "last_commit", where), "id", f"{where}last_commit."),
        head_ref=get_str(mr, "source_branch", where),
        base_ref=get_str(mr, "target_branch", where),
        url=get_opt_str(mr, "url", where),
        title=get_opt_str(mr, "title", where),
        head_clone_url=head_clone_url or ("" if is_fork else repo.clone_url),
        is_fork=is_fork,
        is_draft=get_flag(mr, "draft", where) or get_flag(mr, "work_in_progress", where),
        state={"merged": "merged", "closed": "closed", "locked": "closed"}.get(state, "open"),
        merge_sha=get_opt_str(mr, "merge_commit_sha", where) or None,
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
    attrs = get_obj(payload, "object_attributes")
    action = get_opt_str(attrs, "action", "object_attributes.")
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
    attrs = get_obj(payload, "object_attributes")
    where = "object_attributes."
    noteable = get_opt_str(attrs, "noteable_type", where)
    if noteable != "MergeRequest":
        return Ignored(f"comment on {noteable or 'unknown'} not handled")
    action = get_opt_str(attrs, "action", where, "create")
    if action != "create":
        return Ignored(f"note action {action} not handled")
    if get_flag(attrs, "system", where):
        return Ignored("system note")
    author = _gitlab_user(payload)
    if is_self(author, bot_login):
        return Ignored("comment by the bot itself")
    mr = get_obj(payload, "merge_request")
    return CommentEvent(
        delivery_id=delivery,
        repo=_gitlab_repo(payload),
        pull_number=get_int(mr, "iid", "merge_request."),
        comment_id=str(get_int(attrs, "id", where)),
        body=get_opt_str(attrs, "note", where),
        author=author,
    )


def _authenticate(section: Any, headers: Headers, body: bytes) -> str | None:
    problem = missing_secret("gitlab", section.webhook_secret)
    if problem:
        return problem
    if verify_gitlab(section.webhook_secret, header(headers, "X-Gitlab-Token")):
        return None
    return "missing or wrong X-Gitlab-Token"


def _read(event_name: str, payload: Any, delivery: str, settings: Any) -> Event | Ignored:
    return parse_gitlab(event_name, payload, bot_login=settings.gitlab.bot_login,
                        allow_draft_prs=settings.allow_draft_prs, delivery_id=delivery)


# Newer GitLab sends the same Idempotency-Key on every retry of one event.
SOURCE = WebhookSource("gitlab", "X-Gitlab-Event", ("X-Gitlab-Event-UUID", "Idempotency-Key"),
                       _authenticate, _read)
