"""Bitbucket webhooks (`X-Event-Key`) read into plain events; pure, no I/O.

Bitbucket Cloud names its pull request events `pullrequest:*`, Bitbucket Data Center `pr:*` (and
`diagnostics:ping` for its "Test connection"). A server talks to one of them (`bitbucket.url`), so
the other's events are ignored. Who did something: Cloud payloads have carried no user name since
2019 (GDPR) and nicknames are neither unique nor fixed, so a Cloud login is the `account_id` (the
`uuid` for accounts without one); a Data Center login is the user `name`.
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
from bot.signatures import verify_bitbucket

FORGE = "bitbucket"
_CLOUD_PULL_ACTIONS = {"pullrequest:created": "opened", "pullrequest:updated": "updated",
                       "pullrequest:fulfilled": "merged", "pullrequest:rejected": "closed"}
_DC_PULL_ACTIONS = {"pr:opened": "opened", "pr:from_ref_updated": "updated", "pr:merged": "merged",
                    "pr:declined": "closed", "pr:deleted": "closed"}
_STATES = {"OPEN": "open", "MERGED": "merged", "DECLINED": "closed", "SUPERSEDED": "closed"}


@dataclass(frozen=True)
class _Context:
    bot_login: str | None
    allow_draft_prs: bool
    delivery: str
    server_url: str  # Data Center's base URL: repository ids and links missing from a payload


def parse_bitbucket(
    event_key: str,
    payload: Any,
    *,
    bot_login: str | None,
    allow_draft_prs: bool,
    cloud: bool = True,
    server_url: str = "",
    delivery_id: str = "",
) -> Event | Ignored:
    """Translate one Bitbucket delivery (`X-Event-Key` + JSON body) of the flavour the server talks
    to (`cloud`: Bitbucket Cloud, else Data Center at `server_url`).

    Raises `MalformedEvent` naming the field when one the bot needs is missing or mistyped.
    """
    payload = require_object(payload)
    if event_key == "diagnostics:ping":
        return Ignored("ping")
    ctx = _Context(bot_login, allow_draft_prs, delivery_id, server_url.rstrip("/"))
    readers = _CLOUD_READERS if cloud else _DC_READERS
    reader = readers.get(event_key)
    if reader is not None:
        return reader(event_key, payload, ctx)
    other = _DC_READERS if cloud else _CLOUD_READERS
    if event_key in other:
        configured = "Bitbucket Cloud" if cloud else "a Bitbucket Data Center server"
        return Ignored(f"event {event_key} is not {configured}'s (bitbucket.url): ignored")
    return Ignored(f"event {event_key} not handled")


def _pull_event(kind: str, pull: PullRequest, sender: str, ctx: _Context) -> Event | Ignored:
    if kind in ("opened", "updated") and pull.is_draft and not ctx.allow_draft_prs:
        return Ignored("draft pull request")
    return PullRequestEvent(delivery_id=ctx.delivery, action=kind, pull=pull, sender=sender)


def _approval(pull: PullRequest, reviewer: str, commit: str, ctx: _Context) -> ReviewEvent:
    return ReviewEvent(delivery_id=ctx.delivery, pull=pull, reviewer=reviewer, state="approved",
                       review_id=f"{reviewer}@{commit}", commit_sha=commit)


# ---------------------------------------------------------------- Bitbucket Cloud


def cloud_login(user: dict, where: str) -> str:
    """A Bitbucket Cloud user's login: its account id, else its uuid (app accounts)."""
    login = get_opt_str(user, "account_id", where) or get_opt_str(user, "uuid", where)
    if not login:
        raise MalformedEvent(f"{where}account_id: missing")
    return login


def _href(obj: dict, name: str, where: str) -> str:
    links = get_obj(obj, "links", where)
    return get_str(get_obj(links, name, f"{where}links."), "href", f"{where}links.{name}.")


def _cloud_repo(payload: dict, base_branch: str) -> Repo:
    repo = get_obj(payload, "repository")
    html = _href(repo, "html", "repository.")
    main = get_opt_obj(repo, "mainbranch", "repository.")
    return Repo(
        forge=FORGE,
        host=host_of(html, "repository.links.html.href"),
        full_name=get_str(repo, "full_name", "repository."),
        clone_url=f"{html}.git",  # Bitbucket Cloud serves git at the repository's web address
        default_branch=get_str(main, "name", "repository.mainbranch.") if main else base_branch,
        html_url=html,
    )


def _side(pr: dict, name: str) -> tuple[dict, str]:
    where = f"pullrequest.{name}."
    return get_obj(pr, name, "pullrequest."), where


def _cloud_pull(payload: dict) -> PullRequest:
    pr, w = get_obj(payload, "pullrequest"), "pullrequest."
    (source, sw), (dest, dw) = _side(pr, "source"), _side(pr, "destination")
    head_repo = get_obj(source, "repository", sw)
    base_ref = get_str(get_obj(dest, "branch", dw), "name", f"{dw}branch.")
    repo = _cloud_repo(payload, base_ref)
    dest_repo = get_opt_obj(dest, "repository", dw)
    base_name = get_str(dest_repo, "full_name", f"{dw}repository.") if dest_repo else repo.full_name
    merge_commit = get_opt_obj(pr, "merge_commit", w)
    base_commit = get_opt_obj(dest, "commit", dw)
    return PullRequest(
        repo=repo,
        number=get_int(pr, "id", w),
        author=cloud_login(get_obj(pr, "author", w), f"{w}author."),
        # Bitbucket Cloud writes commits as 12 hex digits, in webhooks and in its REST API alike.
        head_sha=get_str(get_obj(source, "commit", sw), "hash", f"{sw}commit."),
        head_ref=get_str(get_obj(source, "branch", sw), "name", f"{sw}branch."),
        base_ref=base_ref,
        base_sha=get_opt_str(base_commit, "hash", f"{dw}commit.") if base_commit else "",
        url=_href(pr, "html", w) if isinstance(pr.get("links"), dict) else "",
        title=get_opt_str(pr, "title", w),
        head_clone_url=_href(head_repo, "html", f"{sw}repository.") + ".git",
        is_fork=get_str(head_repo, "full_name", f"{sw}repository.") != base_name,
        is_draft=get_flag(pr, "draft", w),
        state=_STATES.get(get_opt_str(pr, "state", w, "OPEN"), "closed"),
        merge_sha=(get_opt_str(merge_commit, "hash", f"{w}merge_commit.") or None) if merge_commit else None,
    )


def _cloud_pull_request(event_key: str, payload: dict, ctx: _Context) -> Event | Ignored:
    # pullrequest:updated does not say what changed (a push or a title edit): it always re-plans.
    pull = _cloud_pull(payload)
    return _pull_event(_CLOUD_PULL_ACTIONS[event_key], pull, cloud_login(get_obj(payload, "actor"), "actor."), ctx)


def _cloud_approved(event_key: str, payload: dict, ctx: _Context) -> Event | Ignored:
    # Bitbucket Cloud records no commit for an approval: the head when it was sent stands for it.
    pull = _cloud_pull(payload)
    reviewer = cloud_login(get_obj(get_obj(payload, "approval"), "user", "approval."), "approval.user.")
    return _approval(pull, reviewer, pull.head_sha, ctx)


def _cloud_unapproved(event_key: str, payload: dict, ctx: _Context) -> Event | Ignored:
    # Requirements are re-checked against the forge at apply time; nothing to do now.
    return Ignored("approval withdrawn (pullrequest:unapproved)")


def _cloud_comment(event_key: str, payload: dict, ctx: _Context) -> Event | Ignored:
    comment = get_obj(payload, "comment")
    author = cloud_login(get_obj(comment, "user", "comment."), "comment.user.")
    if is_self(author, ctx.bot_login):
        return Ignored("comment by the bot itself")
    pr = get_obj(payload, "pullrequest")
    dest, dw = _side(pr, "destination")
    base_ref = get_str(get_obj(dest, "branch", dw), "name", f"{dw}branch.")
    content = get_opt_obj(comment, "content", "comment.") or {}
    return CommentEvent(
        delivery_id=ctx.delivery,
        repo=_cloud_repo(payload, base_ref),
        pull_number=get_int(pr, "id", "pullrequest."),
        comment_id=str(get_int(comment, "id", "comment.")),
        body=get_opt_str(content, "raw", "comment.content."),
        author=author,
    )


Reader = Callable[[str, dict, _Context], "Event | Ignored"]
_CLOUD_READERS: dict[str, Reader] = {
    **{key: _cloud_pull_request for key in _CLOUD_PULL_ACTIONS},
    "pullrequest:approved": _cloud_approved,
    "pullrequest:unapproved": _cloud_unapproved,
    "pullrequest:comment_created": _cloud_comment,
}


# ---------------------------------------------------------------- Bitbucket Data Center


def _dc_links(obj: dict, name: str, where: str) -> list[dict]:
    links = get_opt_obj(obj, "links", where) or {}
    found = links.get(name)
    if found is None:
        return []
    if not isinstance(found, list):
        raise MalformedEvent(f"{where}links.{name}: expected a list, got {type(found).__name__}")
    return [link for link in found if isinstance(link, dict)]  # Atlassian's examples have [null]


def _dc_clone_url(repo: dict, where: str) -> str:
    return next((get_str(link, "href", f"{where}links.clone[].") for link in _dc_links(repo, "clone", where)
                 if link.get("name") == "http"), "")


def _dc_key_slug(ref: dict, where: str) -> tuple[dict, str, str]:
    repo = get_obj(ref, "repository", where)
    rw = f"{where}repository."
    key = get_str(get_obj(repo, "project", rw), "key", f"{rw}project.")
    return repo, key, get_str(repo, "slug", rw)


def _dc_repo(pr: dict, ctx: _Context) -> Repo:
    to_ref = get_obj(pr, "toRef", "pullRequest.")
    repo, key, slug = _dc_key_slug(to_ref, "pullRequest.toRef.")
    where = "pullRequest.toRef.repository."
    browse = next((get_str(link, "href", f"{where}links.self[].") for link in _dc_links(repo, "self", where)), "")
    return Repo(
        forge=FORGE,
        host=host_of(ctx.server_url, "bitbucket.url"),
        full_name=f"{key}/{slug}",
        clone_url=_dc_clone_url(repo, where) or f"{ctx.server_url}/scm/{key.lower()}/{slug}.git",
        default_branch=get_str(to_ref, "displayId", "pullRequest.toRef."),
        html_url=browse.removesuffix("/browse") or f"{ctx.server_url}/projects/{key}/repos/{slug}",
    )


def _dc_pull(payload: dict, ctx: _Context) -> PullRequest:
    pr, w = get_obj(payload, "pullRequest"), "pullRequest."
    repo = _dc_repo(pr, ctx)
    from_ref, to_ref = get_obj(pr, "fromRef", w), get_obj(pr, "toRef", w)
    head_repo, head_key, head_slug = _dc_key_slug(from_ref, f"{w}fromRef.")
    is_fork = f"{head_key}/{head_slug}" != repo.full_name
    links = _dc_links(pr, "self", w)
    merge = get_opt_obj(get_opt_obj(pr, "properties", w) or {}, "mergeCommit", f"{w}properties.")
    return PullRequest(
        repo=repo,
        number=get_int(pr, "id", w),
        author=get_str(get_obj(get_obj(pr, "author", w), "user", f"{w}author."), "name", f"{w}author.user."),
        head_sha=get_str(from_ref, "latestCommit", f"{w}fromRef."),
        head_ref=get_str(from_ref, "displayId", f"{w}fromRef."),
        base_ref=get_str(to_ref, "displayId", f"{w}toRef."),
        base_sha=get_opt_str(to_ref, "latestCommit", f"{w}toRef."),
        url=get_str(links[0], "href", f"{w}links.self[].") if links else "",
        title=get_opt_str(pr, "title", w),
        head_clone_url=(_dc_clone_url(head_repo, f"{w}fromRef.repository.")
                        or f"{ctx.server_url}/scm/{head_key.lower()}/{head_slug}.git") if is_fork else repo.clone_url,
        is_fork=is_fork,
        is_draft=get_flag(pr, "draft", w),
        state=_STATES.get(get_opt_str(pr, "state", w, "OPEN"), "closed"),
        merge_sha=(get_opt_str(merge, "id", f"{w}properties.mergeCommit.") or None) if merge else None,
    )


def _dc_user(payload: dict, key: str, where: str) -> str:
    return get_str(get_obj(payload, key, where), "name", f"{where}{key}.")


def _dc_pull_request(event_key: str, payload: dict, ctx: _Context) -> Event | Ignored:
    return _pull_event(_DC_PULL_ACTIONS[event_key], _dc_pull(payload, ctx), _dc_user(payload, "actor", ""), ctx)


def _dc_approved(event_key: str, payload: dict, ctx: _Context) -> Event | Ignored:
    pull = _dc_pull(payload, ctx)
    participant = get_obj(payload, "participant")
    reviewer = _dc_user(participant, "user", "participant.")
    # The commit the reviewer last looked at; Data Center says which one was approved.
    commit = get_opt_str(participant, "lastReviewedCommit", "participant.") or pull.head_sha
    return _approval(pull, reviewer, commit, ctx)


def _dc_comment(event_key: str, payload: dict, ctx: _Context) -> Event | Ignored:
    comment = get_obj(payload, "comment")
    author = _dc_user(comment, "author", "comment.")
    if is_self(author, ctx.bot_login):
        return Ignored("comment by the bot itself")
    pr = get_obj(payload, "pullRequest")
    return CommentEvent(
        delivery_id=ctx.delivery,
        repo=_dc_repo(pr, ctx),
        pull_number=get_int(pr, "id", "pullRequest."),
        comment_id=str(get_int(comment, "id", "comment.")),
        body=get_opt_str(comment, "text", "comment."),
        author=author,
    )


_DC_READERS: dict[str, Reader] = {
    **{key: _dc_pull_request for key in _DC_PULL_ACTIONS},
    "pr:reviewer:approved": _dc_approved,
    "pr:comment:added": _dc_comment,
}


# ---------------------------------------------------------------- the webhook source


def _authenticate(section: Any, headers: Headers, body: bytes) -> str | None:
    problem = missing_secret(FORGE, section.webhook_secret)
    if problem:
        return problem
    if verify_bitbucket(section.webhook_secret, body, header(headers, "X-Hub-Signature")):
        return None
    return "missing or wrong X-Hub-Signature"


def _read(event_key: str, payload: Any, delivery: str, settings: Any) -> Event | Ignored:
    section = settings.bitbucket
    # On Data Center the token's user name is the bot's login; a Cloud login is an account id.
    bot_login = section.bot_login or (None if section.is_cloud else section.username)
    return parse_bitbucket(event_key, payload, bot_login=bot_login,
                           allow_draft_prs=settings.allow_draft_prs, cloud=section.is_cloud,
                           server_url=section.url, delivery_id=delivery)


# Cloud names a delivery X-Request-UUID (the same on its retries), Data Center X-Request-Id.
SOURCE = WebhookSource(FORGE, "X-Event-Key", ("X-Request-UUID", "X-Request-Id"), _authenticate, _read)
