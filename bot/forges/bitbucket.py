"""Bitbucket Cloud behind the Forge protocol, on atlassian-python-api (`atlassian.bitbucket.Cloud`);
`bitbucket_forge` picks it or the Data Center client (bot.forges.bitbucket_dc) by `bitbucket.url`.

Repo.full_name is `workspace/repo_slug`; a login is an account id (see bot.events.bitbucket).
Bitbucket Cloud writes commits as 12 hex digits, in its webhooks and its REST API alike; the bot
keeps them as given, and git refuses an abbreviation that is ambiguous rather than guess.
An approval records no commit on Bitbucket Cloud: turn on the branch restriction "Reset
approvals when the source branch is modified" so that a push takes approvals back.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
from atlassian.bitbucket import Cloud

from bot.errors import ForgeError, IssuesUnavailable
from bot.forges.base import Forge
from bot.forges.bitbucket_common import (
    FORGE_STATE,
    PULL_STATE,
    BitbucketClient,
    iso_epoch,
    ref,
    split_full_name,
    status_payload,
)
from bot.forges.bitbucket_dc import BitbucketDataCenterForge
from bot.models import Comment, CommentRef, Mergeability, PullRequest, Repo

# Our merge methods -> Bitbucket Cloud's merge strategies.
MERGE_STRATEGIES = {"merge": "merge_commit", "squash": "squash", "rebase": "fast_forward"}
WRITE_PERMISSIONS = ("write", "admin")
DRIFT_ISSUE = {"kind": "task", "priority": "major"}
_CLOSED_STATES = ["MERGED", "DECLINED", "SUPERSEDED"]
_CONFLICTS = ("merge conflict", "rename conflict", "rename/delete conflict", "subrepo conflict",
              "local deleted", "remote deleted")


def bitbucket_forge(section: Any) -> Forge:
    """The client for the `bitbucket:` settings section: Cloud for a URL ending in /2.0, else Data Center."""
    flavour = BitbucketCloudForge if section.is_cloud else BitbucketDataCenterForge
    return flavour(section.url, section.username, section.token, section.bot_login)


def login_of(user: dict) -> str:
    """A Bitbucket Cloud user's login: its account id, else its uuid."""
    return str(user.get("account_id") or user.get("uuid") or "")


class BitbucketCloudForge(BitbucketClient):
    """The Forge protocol on Bitbucket Cloud; see bot.forges.base.Forge for each method."""

    flavour = "Bitbucket Cloud"

    def __init__(self, url: str, username: str | None, token: str | None, bot_login: str | None = None,
                 *, sleep: Callable[[float], None] = time.sleep, attempts: int = 4):
        super().__init__(username, token, bot_login, sleep=sleep, attempts=attempts)
        # The library appends the API version itself.
        self._cloud = Cloud(url=url.rstrip("/").removesuffix("/2.0"), timeout=30, **self.credentials())
        self.watch(self._cloud.session)
        self._repositories: dict[str, Any] = {}

    def whoami(self) -> str:
        return login_of(self._cloud.get("user"))

    # ---- pull requests -------------------------------------------------------------
    def pull_request(self, repo: Repo, number: int) -> PullRequest:
        return self._call(f"read {repo.full_name} PR #{number}",
                          lambda: _pull_from(repo, self._pull(repo, number).data))

    def create_pull_request(self, repo: Repo, head_branch: str, base_branch: str, title: str,
                            body: str) -> PullRequest:
        def create() -> PullRequest:
            created = self._repository(repo).pullrequests.create(
                title, head_branch, destination_branch=base_branch, description=body, close_source_branch=True)
            return _pull_from(repo, created.data)
        return self._call(f"open a pull request from {head_branch} into {base_branch} of {repo.full_name}", create)

    def changed_files(self, pull: PullRequest) -> list[str]:
        """Old and new path of every diffstat entry, over all pages."""
        def fetch() -> list[str]:
            entries = self._pull(pull.repo, pull.number).diffstat()
            paths = (path for entry in entries for path in (entry.old.path, entry.new.path) if path)
            return list(dict.fromkeys(paths))
        return self._call(f"list the changes of {ref(pull)}", fetch)

    # ---- comments ------------------------------------------------------------------
    def create_comment(self, pull: PullRequest, body: str) -> CommentRef:
        def post() -> CommentRef:
            made = self._pull(pull.repo, pull.number).comment(body)
            html = ((made.get("links") or {}).get("html") or {}).get("href", "")
            return CommentRef(id=str(made["id"]), url=html)
        return self._call(f"comment on {ref(pull)}", post)

    def update_comment(self, pull: PullRequest, comment_id: str, body: str) -> None:
        """Replace the comment's text (how an outdated plan is marked: Bitbucket cannot hide one)."""
        self._call(f"edit comment {comment_id} on {ref(pull)}", lambda: self._pull(pull.repo, pull.number).put(
            f"comments/{int(comment_id)}", data={"content": {"raw": body}}))

    def comment(self, pull: PullRequest, comment_id: str) -> Comment | None:
        def fetch() -> Comment | None:
            found = self._pull(pull.repo, pull.number).get(f"comments/{int(comment_id)}")
            if found.get("deleted"):
                return None
            return Comment(str(comment_id), login_of(found.get("user") or {}), _raw(found))
        return self._unless_missing(f"read comment {comment_id} on {ref(pull)}", fetch, None)

    # ---- statuses, approvals, mergeability -----------------------------------------
    def set_status(self, repo: Repo, sha: str, context: str, state: str, description: str,
                   target_url: str = "") -> None:
        """A build status keyed by `context` (posting the key again replaces it). Bitbucket wants a
        link: the repository's page when there is no job to link to."""
        status = status_payload(context, state, description, target_url or repo.html_url)
        self._call(f"set status {context} on {sha[:12]} of {repo.full_name}", lambda: self._commit(repo, sha).add_build(
            status["key"], url=status["url"], description=status["description"], state=status["state"]))

    def statuses(self, repo: Repo, sha: str) -> dict[str, str]:
        def fetch() -> dict[str, str]:
            found = [s for s in self._commit(repo, sha).statuses() if s.get("type") == "build"]
            return {s["key"]: FORGE_STATE.get(s["state"], s["state"].lower()) for s in found}
        return self._call(f"read the statuses of {sha[:12]} of {repo.full_name}", fetch)

    def approvals(self, pull: PullRequest) -> tuple[list[str], int]:
        """Participants who approve now; 1 still required when none does (Bitbucket enforces its own
        merge checks when merging). Bitbucket Cloud records no commit for an approval (module doc)."""
        def fetch() -> list[str]:
            participants = self._pull(pull.repo, pull.number).participants()
            return [login_of(p.get_data("user") or {}) for p in participants if p.has_approved]
        approvers = self._call(f"read the approvals of {ref(pull)}", fetch)
        return approvers, 0 if approvers else 1

    def mergeability(self, pull: PullRequest) -> Mergeability:
        """Open, not a draft, no conflict in the diffstat. Bitbucket Cloud's API says nothing more
        (its merge checks are enforced when merging); the bot's own statuses never count."""
        def fetch() -> Mergeability:
            current = self._pull(pull.repo, pull.number)
            if not current.is_open:
                return Mergeability(False, f"it is {PULL_STATE.get(current.get_data('state'), 'closed')}")
            if current.get_data("draft"):
                return Mergeability(False, "it is a draft; mark it as ready first")
            if any(str(entry.get_data("status")) in _CONFLICTS for entry in current.diffstat()):
                return Mergeability(False, "there is a merge conflict between the source and destination branches")
            return Mergeability(True)
        return self._call(f"read the merge status of {ref(pull)}", fetch)

    # ---- permissions ---------------------------------------------------------------
    def has_write_permission(self, repo: Repo, login: str) -> bool:
        """Write or admin as the repository's effective permissions list it (direct, from groups or
        the workspace); reading that list needs admin permission on the repository."""
        workspace, slug = split_full_name(repo)

        def fetch() -> bool:
            listed = self._cloud.workspaces.get(workspace).permissions.repositories(slug, pagelen=100)
            return any(login_of(p.user or {}) == login and p.permission in WRITE_PERMISSIONS for p in listed)
        return self._unless_missing(f"read {login}'s permission on {repo.full_name}", fetch, False)

    def in_group(self, repo: Repo, login: str, group: str) -> bool:
        """Bitbucket Cloud's API has no group membership lookup: never a member (list account ids
        under `permissions` instead)."""
        return False

    # ---- merging -------------------------------------------------------------------
    def merge(self, pull: PullRequest, delete_source_branch: bool = False, method: str = "merge") -> None:
        """Merge with merge_commit, squash or fast_forward (for `rebase`), if the head is still the
        one the bot knows. ForgeError for another method, a moved head or Bitbucket's refusal."""
        strategy = MERGE_STRATEGIES.get(method)
        if strategy is None:
            raise ForgeError(f"Bitbucket Cloud cannot merge with {method!r}: use one of {', '.join(MERGE_STRATEGIES)}")

        def run() -> None:
            current = self._pull(pull.repo, pull.number)
            if current.source_commit != pull.head_sha:
                raise ForgeError(f"Bitbucket Cloud: {ref(pull)} has new commits ({current.source_commit}): not merged")
            current.merge(merge_strategy=strategy, close_source_branch=delete_source_branch and not pull.is_fork)
        self._call(f"merge {ref(pull)}", run)

    # ---- issues ----------------------------------------------------------------------
    def create_or_update_issue(self, repo: Repo, title: str, body: str, issue_id: str | None) -> str:
        """Update (and reopen) issue #issue_id, or open one; IssuesUnavailable when the repository
        has no issue tracker."""
        def run() -> str:
            repository = self._repository(repo)
            if not repository.get_data("has_issues"):
                raise IssuesUnavailable(f"{repo.full_name} has no issue tracker on Bitbucket Cloud")
            if issue_id and _reopened(repository, issue_id, title, body):
                return str(issue_id)
            return str(repository.issues.create(title, body, **DRIFT_ISSUE).id)
        return self._call(f"write an issue in {repo.full_name}", run)

    def close_issue(self, repo: Repo, issue_id: str, comment: str) -> None:
        def run() -> None:
            issue = self._repository(repo).issues.get(issue_id)
            if comment:
                issue.post("comments", data={"content": {"raw": comment}})
            issue.update(state="resolved")
        self._call(f"resolve issue #{issue_id} in {repo.full_name}", run)

    # ---- listing, for the reconciliation sweep -------------------------------------
    def open_pull_requests(self, repo: Repo) -> list[PullRequest]:
        def fetch() -> list[PullRequest]:
            listed = self._pages(repo, "pullrequests", {"state": "OPEN", "sort": "created_on", "pagelen": 50})
            return [_pull_from(repo, pr) for pr in listed]
        return self._call(f"list the open pull requests of {repo.full_name}", fetch)

    def recently_closed_pull_requests(self, repo: Repo, since: float) -> list[PullRequest]:
        """Merged, declined or superseded ones by last update, newest first, until one is older."""
        def fetch() -> list[PullRequest]:
            found = []
            params = {"state": _CLOSED_STATES, "sort": "-updated_on", "pagelen": 50}
            for pr in self._pages(repo, "pullrequests", params):
                if iso_epoch(pr.get("updated_on")) < since:
                    break
                found.append(_pull_from(repo, pr))
            return found
        return self._call(f"list the recently closed pull requests of {repo.full_name}", fetch)

    def comments_since(self, pull: PullRequest, since: float) -> list[Comment]:
        """Comments by last update, newest first, read until one is older; deleted and unpublished
        (pending) ones left out."""
        def fetch() -> list[Comment]:
            found = []
            for comment in self._pull(pull.repo, pull.number).comments(sort="-updated_on"):
                data = comment.data
                if iso_epoch(data.get("updated_on") or data.get("created_on")) < since:
                    break
                if not data.get("deleted") and not data.get("pending"):
                    found.append(Comment(str(data["id"]), login_of(data.get("user") or {}), _raw(data)))
            return sorted(found, key=lambda c: int(c.id))
        return self._call(f"list the comments of {ref(pull)}", fetch)

    # ---- internals -----------------------------------------------------------------
    def _repository(self, repo: Repo) -> Any:
        """The library's Repository (read once per client: its URL leads to everything else)."""
        if repo.full_name not in self._repositories:
            self._repositories[repo.full_name] = self._cloud.repositories.get(*split_full_name(repo))
        return self._repositories[repo.full_name]

    def _pull(self, repo: Repo, number: int) -> Any:
        return self._repository(repo).pullrequests.get(int(number))

    def _commit(self, repo: Repo, sha: str) -> Any:
        return self._repository(repo).commits.get(sha)

    def _pages(self, repo: Repo, path: str, params: dict) -> Iterator[dict]:
        """Every value of a collection of the repository, following Bitbucket's `next` links (the
        library's listing methods take no `state`)."""
        page = self._repository(repo).get(path, params=params)
        while True:
            yield from page.get("values") or []
            if not page.get("next"):
                return
            page = self._cloud.get(page["next"], absolute=True)


def _reopened(repository: Any, issue_id: str, title: str, body: str) -> bool:
    """Update issue #issue_id and open it again; False when it is gone."""
    try:
        repository.issues.get(issue_id).update(title=title, content={"raw": body}, state="open")
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return False
        raise
    return True


def _raw(comment: dict) -> str:
    return str((comment.get("content") or {}).get("raw") or "")


def _href(obj: dict, name: str) -> str:
    return str(((obj.get("links") or {}).get(name) or {}).get("href") or "")


def _pull_from(repo: Repo, pr: dict) -> PullRequest:
    """Our PullRequest from Bitbucket Cloud's pull request JSON (the REST API's and a webhook's)."""
    source, destination = pr["source"], pr["destination"]
    head_repo = source.get("repository") or {}
    base_name = (destination.get("repository") or {}).get("full_name") or repo.full_name
    is_fork = bool(head_repo) and head_repo.get("full_name") != base_name
    merge_commit = pr.get("merge_commit") or {}
    return PullRequest(
        repo=repo, number=int(pr["id"]), author=login_of(pr.get("author") or {}),
        head_sha=source["commit"]["hash"], head_ref=source["branch"]["name"],
        base_ref=destination["branch"]["name"], base_sha=(destination.get("commit") or {}).get("hash") or "",
        url=_href(pr, "html"), title=pr.get("title") or "",
        head_clone_url=f"{_href(head_repo, 'html')}.git" if is_fork else repo.clone_url,
        is_fork=is_fork, is_draft=bool(pr.get("draft")), state=PULL_STATE.get(pr.get("state"), "closed"),
        merge_sha=merge_commit.get("hash") or None, updated_at=iso_epoch(pr.get("updated_on")),
    )
