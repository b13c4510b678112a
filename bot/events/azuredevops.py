"""Azure DevOps service hooks (a "Web Hooks" subscription) read into plain events; pure, no I/O.

Azure DevOps sends no header of its own: the event is `eventType` in the body, the notification
`id` is the delivery id, and the subscription's basic auth (`Authorization: Basic`) is the only
proof of origin. Repository ids are `<host>/<organization>/<project>/<repository>`, host and
organization (or Server collection path) from `azuredevops.org_url`.

`git.pullrequest.updated` covers pushes, votes, reviewer and status changes alike; only
`message.text` says which ("updated the source branch", "approved pull request", ...).
`git.pullrequest.merged` is "merge attempted": it also arrives for an active pull request whose
test merge was computed; only `status: completed` means merged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
    is_self,
    require_object,
)
from bot.models import CommentEvent, Event, PullRequest, PullRequestEvent, Repo, ReviewEvent
from bot.settings import AzureDevOpsSettings
from bot.signatures import verify_basic_auth

CREATED = "git.pullrequest.created"
UPDATED = "git.pullrequest.updated"
MERGED = "git.pullrequest.merged"
COMMENTED = "ms.vss-code.git-pullrequest-comment-event"
EVENT_TYPES = (CREATED, UPDATED, MERGED, COMMENTED)

APPROVING_VOTES = (10, 5)  # approved; approved with suggestions
_STATES = {"active": "open", "completed": "merged", "abandoned": "closed"}
# message.text of git.pullrequest.updated -> what happened (the payload says it nowhere else)
_PUSHED = "updated the source branch"
_REACTIVATED = "reactivated"
_PUBLISHED = "published"  # a draft marked ready for review
_APPROVED = "approved"  # "approved pull request 1 (...)", "has approved and left suggestions ..."
_MOMENT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z?")
EDIT_MARGIN = 2.0  # seconds between publishing and the last content change that still make a new comment
_THREAD_HREF = re.compile(r"/pullRequests/\d+/threads/(\d+)/?$", re.IGNORECASE)


def parse_azuredevops(
    event_name: str,
    payload: Any,
    *,
    section: AzureDevOpsSettings,
    bot_login: str | None,
    allow_draft_prs: bool,
    delivery_id: str = "",
) -> Event | Ignored:
    """Translate one service hook notification (`eventType` + its JSON body).

    `section` (azuredevops settings) gives the host and organization of repository ids. Raises
    `MalformedEvent` naming the field when one the bot needs is missing or mistyped. A
    notification from another organization than `section.org_url` is ignored.
    """
    payload = require_object(payload)
    if event_name not in EVENT_TYPES:
        return Ignored(f"event {event_name or '(none)'} not handled")
    foreign = _foreign_collection(payload, section.org_url or "")
    if foreign:
        return Ignored(f"notification from {foreign}, not from azuredevops.org_url ({section.org_url})")
    resource = get_obj(payload, "resource")
    if event_name == COMMENTED:
        return _comment(payload, resource, section, bot_login, delivery_id)
    return _pull_request_event(event_name, payload, resource, section, allow_draft_prs, delivery_id)


# ---------------------------------------------------------------- pull requests


def _pull_request_event(event_name: str, payload: dict, resource: dict, section: AzureDevOpsSettings,
                        allow_draft_prs: bool, delivery: str) -> Event | Ignored:
    pull = pull_from(resource, "resource.", section)
    text = _message(payload)
    if pull.state == "merged":
        return PullRequestEvent(delivery_id=delivery, action="merged", pull=pull, sender=pull.author)
    if event_name == MERGED:
        return Ignored("merge commit created for an active pull request (merge attempted, not completed)")
    if pull.state == "closed":
        return PullRequestEvent(delivery_id=delivery, action="closed", pull=pull, sender=pull.author)
    if pull.state != "open":
        return Ignored(f"pull request status {get_opt_str(resource, 'status', 'resource.')!r} not handled")
    action = "opened" if event_name == CREATED else _update_kind(_without_title(text, pull.title))
    if action == "approved":
        return _approval(resource, pull, text, delivery)
    if action is None:
        return Ignored(f"pull request update not acted on ({text[:120] or 'no message'})")
    if pull.is_draft and not allow_draft_prs:
        return Ignored("draft pull request")
    return PullRequestEvent(delivery_id=delivery, action=action, pull=pull, sender=pull.author)


def _without_title(text: str, title: str) -> str:
    """The message without the pull request's title it ends with ("... pull request 1 (TITLE)"):
    the title is its author's to choose, and must not pass for what happened."""
    text, suffix = text.rstrip(), f"({title})"
    return text[: -len(suffix)] if title and text.endswith(suffix) else text


def _update_kind(text: str) -> str | None:
    """What a `git.pullrequest.updated` of an active pull request was, by its message."""
    lowered = text.lower()
    if _PUSHED in lowered or _PUBLISHED in lowered:
        return "updated"
    if _REACTIVATED in lowered:
        return "opened"
    if _APPROVED in lowered:
        return "approved"
    return None


def _approval(resource: dict, pull: PullRequest, text: str, delivery: str) -> Event | Ignored:
    """A vote of 10 (approved) or 5 (approved with suggestions). The notification does not say
    whose vote it is: the approving reviewer whose display name opens the message, or the only
    approving one. A vote is not tied to a commit (Azure DevOps records none)."""
    approvers = _approvers(resource)
    named = [login for login, name in approvers if name and text.startswith(f"{name} ")]
    chosen = named or [login for login, _ in approvers]
    if len(chosen) != 1:
        return Ignored("an approval, but the notification does not say whose vote it is")
    reviewer = chosen[0]
    return ReviewEvent(delivery_id=delivery, pull=pull, reviewer=reviewer, state="approved",
                       review_id=f"{reviewer}@{pull.head_sha}")


def _approvers(resource: dict) -> list[tuple[str, str]]:
    """(uniqueName, displayName) of each person (not group) whose vote approves."""
    reviewers = resource.get("reviewers") or []
    if not isinstance(reviewers, list):
        raise MalformedEvent(f"resource.reviewers: expected a list, got {type(reviewers).__name__}")
    found = []
    for index, reviewer in enumerate(reviewers):
        where = f"resource.reviewers[{index}]."
        if not isinstance(reviewer, dict):
            raise MalformedEvent(f"{where[:-1]}: expected an object, got {type(reviewer).__name__}")
        vote = reviewer.get("vote")
        if vote in APPROVING_VOTES and not get_flag(reviewer, "isContainer", where):
            found.append((get_str(reviewer, "uniqueName", where), get_opt_str(reviewer, "displayName", where)))
    return found


def pull_from(pr: dict, where: str, section: AzureDevOpsSettings) -> PullRequest:
    """A PullRequest from a GitPullRequest object as service hooks (and the REST API) send it."""
    repo = repo_from(get_obj(pr, "repository", where), f"{where}repository.", section)
    head = get_obj(pr, "lastMergeSourceCommit", where)
    fork = get_opt_obj(pr, "forkSource", where)
    state = get_str(pr, "status", where)
    merge = get_opt_obj(pr, "lastMergeCommit", where)
    return PullRequest(
        repo=repo,
        number=get_int(pr, "pullRequestId", where),
        author=get_str(get_obj(pr, "createdBy", where), "uniqueName", f"{where}createdBy."),
        head_sha=get_str(head, "commitId", f"{where}lastMergeSourceCommit."),
        head_ref=branch_name(get_str(pr, "sourceRefName", where)),
        base_ref=branch_name(get_str(pr, "targetRefName", where)),
        base_sha=_commit_id(pr, "lastMergeTargetCommit", where),
        url=_web_url(pr, where, repo),
        title=get_opt_str(pr, "title", where),
        head_clone_url=_fork_clone_url(fork, f"{where}forkSource.") if fork else repo.clone_url,
        is_fork=fork is not None,
        is_draft=get_flag(pr, "isDraft", where),
        state=_STATES.get(state, state),
        merge_sha=(get_opt_str(merge, "commitId", f"{where}lastMergeCommit.") or None)
        if merge and state == "completed" else None,
    )


def repo_from(repository: dict, where: str, section: AzureDevOpsSettings) -> Repo:
    """A Repo from a GitRepository object; its id is host/organization/project/name."""
    project = _name(get_obj(repository, "project", where), f"{where}project.")
    name = _name(repository, where)
    remote = _without_userinfo(get_str(repository, "remoteUrl", where), f"{where}remoteUrl")
    full_name = "/".join(part for part in (section.collection_path, project, name) if part)
    return Repo(
        forge="azuredevops",
        host=section.web_host,
        full_name=full_name,
        clone_url=remote,
        default_branch=branch_name(get_opt_str(repository, "defaultBranch", where, "refs/heads/main")),
        html_url=remote,
    )


def _name(obj: dict, where: str) -> str:
    """A project's or repository's name: one part of repository ids, so never a path."""
    name = get_str(obj, "name", where)
    if name.strip() in ("", ".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise MalformedEvent(f"{where}name: not a project or repository name")
    return name


def branch_name(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def _commit_id(obj: dict, key: str, where: str) -> str:
    commit = get_opt_obj(obj, key, where)
    return get_opt_str(commit, "commitId", f"{where}{key}.") if commit else ""


def _web_url(pr: dict, where: str, repo: Repo) -> str:
    web = get_opt_obj(get_opt_obj(pr, "_links", where) or {}, "web", f"{where}_links.")
    href = get_opt_str(web, "href", f"{where}_links.web.") if web else ""
    return href or f"{repo.html_url}/pullrequest/{get_int(pr, 'pullRequestId', where)}"


def _fork_clone_url(fork: dict, where: str) -> str:
    repository = get_obj(fork, "repository", where)
    return _without_userinfo(get_str(repository, "remoteUrl", f"{where}repository."),
                             f"{where}repository.remoteUrl")


# ---------------------------------------------------------------- comments


def _comment(payload: dict, resource: dict, section: AzureDevOpsSettings, bot_login: str | None,
             delivery: str) -> Event | Ignored:
    comment = get_obj(resource, "comment", "resource.")
    where = "resource.comment."
    if get_flag(comment, "isDeleted", where):
        return Ignored("comment deleted")
    if get_opt_str(comment, "commentType", where, "text") != "text":
        return Ignored(f"{get_opt_str(comment, 'commentType', where)} comment (not written by a person)")
    if _edited(payload, comment, where):
        return Ignored("comment edited (a command runs when it is posted)")
    author = get_str(get_obj(comment, "author", where), "uniqueName", f"{where}author.")
    if is_self(author, bot_login):
        return Ignored("comment by the bot itself")
    pr = get_obj(resource, "pullRequest", "resource.")
    pr_where = "resource.pullRequest."
    return CommentEvent(
        delivery_id=delivery,
        repo=repo_from(get_obj(pr, "repository", pr_where), f"{pr_where}repository.", section),
        pull_number=get_int(pr, "pullRequestId", pr_where),
        comment_id=f"{_thread_id(comment, where)}/{get_int(comment, 'id', where)}",
        body=get_opt_str(comment, "content", where),
        author=author,
    )


def _edited(payload: dict, comment: dict, where: str) -> bool:
    """An edit notification: its message says so, or the content changed after it was published."""
    if "has edited" in _message(payload).lower():
        return True
    published = _moment(get_opt_str(comment, "publishedDate", where))
    changed = _moment(get_opt_str(comment, "lastContentUpdatedDate", where))
    return published is not None and changed is not None and changed - published > EDIT_MARGIN


def _moment(text: str) -> float | None:
    """Epoch seconds of Azure DevOps' UTC times (2024-06-17T16:58:33.1238896Z: up to 7 digits)."""
    found = _MOMENT.fullmatch(text.strip())
    if not found:
        return None
    whole = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return whole.timestamp() + float(found.group(2) or 0)


def _thread_id(comment: dict, where: str) -> int:
    """The thread of a comment: only its `_links.threads.href` names it."""
    links = get_obj(comment, "_links", where)
    threads = get_obj(links, "threads", f"{where}_links.")
    href = get_str(threads, "href", f"{where}_links.threads.")
    found = _THREAD_HREF.search(urlsplit(href).path)
    if not found:
        raise MalformedEvent(f"{where}_links.threads.href: not a pull request thread URL")
    return int(found.group(1))


# ---------------------------------------------------------------- shared


def _message(payload: dict) -> str:
    message = get_opt_obj(payload, "message")
    return get_opt_str(message, "text", "message.") if message else ""


def _foreign_collection(payload: dict, org_url: str) -> str:
    """The collection URL of a notification from another organization; "" when it is ours or
    the notification does not say (Microsoft's published samples carry no baseUrl)."""
    containers = get_opt_obj(payload, "resourceContainers")
    collection = get_opt_obj(containers, "collection", "resourceContainers.") if containers else None
    base = get_opt_str(collection, "baseUrl", "resourceContainers.collection.") if collection else ""
    return base if base and _canonical(base) != _canonical(org_url) else ""


def _canonical(url: str) -> str:
    """An organization URL compared case-blind; https://ORG.visualstudio.com = https://dev.azure.com/ORG."""
    parts = urlsplit(url.strip())
    host, path = parts.netloc.rpartition("@")[2].lower(), parts.path.strip("/").lower()
    if host.endswith(".visualstudio.com"):
        host, path = "dev.azure.com", "/".join(p for p in (host.split(".")[0], path) if p)
    return f"{host}/{path}"


def _without_userinfo(url: str, field_name: str) -> str:
    """remoteUrl as https://ORG@dev.azure.com/...: the user part would be git's, never ours."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError as exc:
        raise MalformedEvent(f"{field_name}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise MalformedEvent(f"{field_name}: not an http(s) URL")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


# ---------------------------------------------------------------- the webhook source


@dataclass(frozen=True)
class AzureDevOpsSource(WebhookSource):
    """Service hooks: no event header, so a delivery is one with basic auth and no other forge's
    event header (this source comes last in bot.events.SOURCES); the event and the delivery id
    are read from the body."""

    def recognises(self, headers: Headers) -> bool:
        scheme = (header(headers, "Authorization") or "").strip().partition(" ")[0]
        if scheme.lower() != "basic":
            return False
        return not any(isinstance(k, str) and _other_forge_header(k) for k, _ in headers.items())

    @property
    def recognised_by(self) -> str:
        return "Authorization: Basic without another forge's event header (an azuredevops service hook)"

    @property
    def delivery_named_by(self) -> str:
        return "the notification's `id` in the body"

    def event_name(self, headers: Headers, payload: Any = None) -> str:
        value = payload.get("eventType") if isinstance(payload, dict) else None
        return value if isinstance(value, str) else ""

    def delivery_id(self, headers: Headers, payload: Any = None) -> str | None:
        value = payload.get("id") if isinstance(payload, dict) else None
        return value.strip() if isinstance(value, str) and value.strip() else None


def _other_forge_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith("-event") or lowered == "x-event-key"


def _authenticate(section: Any, headers: Headers, body: bytes) -> str | None:
    if not section.configured:
        return "azuredevops is not configured on this server: set azuredevops.org_url and azuredevops.token"
    if not (section.webhook_username and section.webhook_password):
        return ("azuredevops.webhook_username and azuredevops.webhook_password are not configured on "
                "this server: set them to accept Azure DevOps service hooks")
    if verify_basic_auth(section.webhook_username, section.webhook_password, header(headers, "Authorization")):
        return None
    return "wrong basic auth (Authorization: Basic) for an Azure DevOps service hook"


def _read(event_name: str, payload: Any, delivery: str, settings: Any) -> Event | Ignored:
    payload = require_object(payload)
    get_str(payload, "eventType")  # named when missing, before anything else
    section = settings.azuredevops
    return parse_azuredevops(event_name, payload, section=section, bot_login=section.bot_login,
                             allow_draft_prs=settings.allow_draft_prs, delivery_id=delivery)


SOURCE = AzureDevOpsSource("azuredevops", "", (), _authenticate, _read)
