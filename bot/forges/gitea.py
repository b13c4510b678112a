"""Gitea, Forgejo and Codeberg behind the Forge protocol, over the REST API v1 (gitea_api).

Every call goes through `_call` (bot.forges.retry): 5xx, 429 and dropped connections are retried
with backoff, honouring Retry-After, and a `ForgeError` naming the action is raised once it gives
up. Gitea shows other users' permissions, branch protections and organization teams only to
admins: a 403 there raises `AdminRequired`, which says what the bot's account must be.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from bot.errors import ForgeError
from bot.forges import gitea_rules as rules
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.gitea_api import GiteaAPI, GiteaBadAnswer, segment
from bot.forges.retry import ForgeRequestFailed, call_with_retry, unless_missing
from bot.models import Comment, CommentRef, Mergeability, PullRequest, Repo

T = TypeVar("T")

# Gitea stores comments as LONGTEXT and documents no limit; GitHub's keeps pages quick to render.
GITEA_COMMENT_LIMIT = 65_536
STATUS_DESCRIPTION_LIMIT = 255
MERGEABILITY_POLLS = (0.5, 1.0, 2.0)  # waits while Gitea's background merge check runs
MERGE_METHODS = ("merge", "squash", "rebase")  # Gitea's `Do`
WRITE_PERMISSIONS = ("write", "admin", "owner")
_STATUS_STATE = {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"}


class AdminRequired(ForgeError):
    """Gitea refused (403) a read that only repository or organization admins may make."""


class GiteaForge:
    """The Forge protocol for one Gitea or Forgejo server; see bot.forges.base.Forge."""

    comment_limit = GITEA_COMMENT_LIMIT
    status_prefix = "plankeeper"  # settings.statuses.prefix, set by bot.forges.make_forge

    def __init__(self, url: str, token: str | None, bot_login: str | None = None, *,
                 attempts: int = 4, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time):
        self._api = GiteaAPI(url, token)
        self._token, self._bot_login = token, bot_login
        self._attempts, self._sleep, self._clock = attempts, sleep, clock

    @classmethod
    def from_settings(cls, section: Any) -> GiteaForge:
        """From Settings.gitea (url, token, bot_login)."""
        return cls(section.url, section.token, section.bot_login)

    @property
    def bot_login(self) -> str:
        """The configured login, else the token's user (GET /user, once)."""
        if self._bot_login is None:
            user = self._call("read the bot's user", lambda: self._api.get("/user"))
            self._bot_login = str(user["login"])
        return self._bot_login

    # -- pull requests --------

    def pull_request(self, repo: Repo, number: int) -> PullRequest:
        return self._call(f"read pull request {repo.full_name}#{number}", lambda: rules.pull_from(
            repo, self._api.get(f"{_path(repo)}/pulls/{number}")))

    def create_pull_request(self, repo: Repo, head_branch: str, base_branch: str, title: str,
                            body: str) -> PullRequest:
        data = {"head": head_branch, "base": base_branch, "title": title, "body": body}
        action = f"open a pull request from {head_branch} into {base_branch} of {repo.full_name}"
        return self._call(action, lambda: rules.pull_from(
            repo, self._api.post(f"{_path(repo)}/pulls", data)))

    def changed_files(self, pull: PullRequest) -> list[str]:
        """Every file of every page of .../pulls/{index}/files, both sides of a rename."""
        def fetch() -> list[str]:
            paths: dict[str, None] = {}
            for changed in self._api.pages(f"{_pull_path(pull)}/files"):
                for key in ("previous_filename", "filename"):
                    if changed.get(key):
                        paths[str(changed[key])] = None
            return list(paths)
        return self._call(f"list the files of {_ref(pull)}", fetch)

    # -- comments --------

    def create_comment(self, pull: PullRequest, body: str) -> CommentRef:
        made = self._call(f"comment on {_ref(pull)}", lambda: self._api.post(
            f"{_issue_path(pull)}/comments", {"body": body}))
        return CommentRef(id=str(made["id"]), url=str(made.get("html_url") or ""))

    def update_comment(self, pull: PullRequest, comment_id: str, body: str) -> None:
        self._call(f"edit comment {comment_id} on {_ref(pull)}", lambda: self._api.patch(
            _comment_path(pull, comment_id), {"body": body}))

    def comment(self, pull: PullRequest, comment_id: str) -> Comment | None:
        """None when it was deleted, or when it is not a comment on this pull request (Gitea
        reads comments by id across the whole repository)."""
        found = self._unless_missing(f"read comment {comment_id} on {_ref(pull)}",
                                     lambda: self._api.get(_comment_path(pull, comment_id)), None)
        if not found or not rules.comment_is_on(found, pull.number):
            return None
        return rules.comment_from(found)

    def add_reaction(self, pull: PullRequest, comment_id: str, reaction: str = "eyes") -> None:
        """Gitea answers 200 for a reaction already there, 201 for a new one."""
        self._call(f"react to comment {comment_id} on {_ref(pull)}", lambda: self._api.post(
            f"{_comment_path(pull, comment_id)}/reactions", {"content": reaction}))

    # -- statuses, reviews, mergeability --------

    def set_status(self, repo: Repo, sha: str, context: str, state: str, description: str,
                   target_url: str = "") -> None:
        """Raises ValueError for a state other than pending, success or failure."""
        if state not in _STATUS_STATE:
            raise ValueError(f"unknown commit status state {state!r}")
        limit = STATUS_DESCRIPTION_LIMIT
        text = description if len(description) <= limit else description[: limit - 1] + "…"
        data = {"state": _STATUS_STATE[state], "context": context, "description": text,
                "target_url": target_url}
        self._call(f"set status {context} on {repo.full_name}@{sha[:12]}",
                   lambda: self._api.post(f"{_path(repo)}/statuses/{segment(sha)}", data))

    def approvals(self, pull: PullRequest) -> tuple[list[str], int]:
        """Reviewers whose latest approving or change-requesting review (not dismissed) approves
        the current head; 1 still required when there is none (Gitea enforces its own count at
        merge)."""
        reviews = self._call(f"list the reviews of {_ref(pull)}",
                             lambda: list(self._api.pages(f"{_pull_path(pull)}/reviews")))
        approvers = rules.approvers_of(reviews, pull.head_sha)
        return approvers, 0 if approvers else 1

    def mergeability(self, pull: PullRequest) -> Mergeability:
        """Gitea's `mergeable` (read again while its merge check runs), then the base branch's
        protection: required status checks (the bot's own `{prefix}/apply` aside) and an outdated
        head. A head behind its base is said even when Gitea would merge it (for `undiverged`)."""
        pr = self._read_pull(pull)
        for wait in MERGEABILITY_POLLS:
            if pr.get("mergeable") or pr.get("state") != "open" or pr.get("merged"):
                break
            self._sleep(wait)
            pr = self._read_pull(pull)
        blocked = rules.pull_blocker(pr)
        if blocked:
            return Mergeability(False, blocked)
        behind = rules.is_behind(pr)
        blockers = self._protection_blockers(pull, pr, behind)
        if blockers:
            return Mergeability(False, "; ".join(blockers))
        return Mergeability(True, rules.BEHIND if behind else "")

    def _read_pull(self, pull: PullRequest) -> dict:
        return self._call(f"read the merge state of {_ref(pull)}",
                          lambda: self._api.get(_pull_path(pull)))

    def _protection_blockers(self, pull: PullRequest, pr: dict, behind: bool) -> list[str]:
        repo = pull.repo
        protections = self._admin_only(  # one answer: this list is not paginated
            f"read the branch protections of {repo.full_name}",
            lambda: self._api.get(f"{_path(repo)}/branch_protections"), _repo_admin(repo), [])
        rule = rules.protection_for(protections or [], pull.base_ref)
        if rule is None:
            return []
        head = str(pr["head"]["sha"])
        statuses = self.statuses(repo, head) if rule.get("enable_status_check") else {}
        return rules.protection_blockers(rule, statuses, behind, f"{self.status_prefix}/apply")

    # -- permissions --------

    def has_write_permission(self, repo: Repo, login: str) -> bool:
        """Write, admin or owner; an unknown user has none. Needs the bot to be a repo admin."""
        answer = self._admin_only(
            f"read {login}'s permission on {repo.full_name}",
            lambda: self._api.get(f"{_path(repo)}/collaborators/{segment(login)}/permission"),
            _repo_admin(repo), {})
        return str(answer.get("permission") or "").lower() in WRITE_PERMISSIONS

    def in_group(self, repo: Repo, login: str, group: str) -> bool:
        """Membership of `team:org/name` (a team's name, any case); other groups never match."""
        kind, _, name = group.partition(":")
        org, _, team_name = name.partition("/")
        if kind != "team" or not org or not team_name:
            return False
        teams = self._admin_only(f"list the teams of {org}",
                                 lambda: list(self._api.pages(f"/orgs/{segment(org)}/teams")),
                                 f"a member of the organization {org}", [])
        team = next((t for t in teams if str(t.get("name", "")).lower() == team_name.lower()), None)
        if team is None:
            return False
        member = self._unless_missing(
            f"read {login}'s membership of {org}/{team_name}",
            lambda: self._api.get(f"/teams/{segment(team['id'])}/members/{segment(login)}"), None)
        return member is not None

    def _admin_only(self, action: str, fn: Callable[[], T], who: str, missing: Any) -> T:
        """fn(), `missing` on a 404; AdminRequired naming what the bot must be on a 403."""
        try:
            return self._unless_missing(action, fn, missing)
        except ForgeRequestFailed as exc:
            if exc.status == 403:
                raise AdminRequired(
                    f"Gitea: {action} was refused (HTTP 403): the bot's account must be {who}. "
                    "Gitea shows others' permissions, branch protections and teams only to admins "
                    "(see docs/gitea.md)") from exc
            raise

    def _unless_missing(self, action: str, fn: Callable[[], T], missing: Any) -> T:
        return unless_missing(self._call, action, fn, missing)

    # -- merging, git --------

    def merge(self, pull: PullRequest, delete_source_branch: bool = False,
              method: str = "merge") -> None:
        """Merge exactly pull.head_sha (Gitea answers 409 when the head moved) with `method`:
        merge, squash or rebase. ForgeError saying why when Gitea refuses; ValueError for
        another method."""
        if method not in MERGE_METHODS:
            raise ValueError(f"unknown merge method {method!r}: expected one of "
                             f"{', '.join(MERGE_METHODS)}")
        data = {"Do": method, "head_commit_id": pull.head_sha,
                "delete_branch_after_merge": bool(delete_source_branch and not pull.is_fork)}
        try:
            self._call(f"merge {_ref(pull)}",
                       lambda: self._api.post(f"{_pull_path(pull)}/merge", data))
        except ForgeRequestFailed as exc:
            if exc.status not in rules.MERGE_REFUSALS:
                raise
            raise ForgeError(f"Gitea refused to merge {_ref(pull)}: {rules.MERGE_REFUSALS[exc.status]} "
                             f"(HTTP {exc.status}{rules.said(exc.__cause__)})") from exc

    def clone_auth(self, repo: Repo) -> tuple[str, str] | None:
        """HTTPS basic auth with the token as the password (Gitea ignores the user name then)."""
        return (self._bot_login or "plankeeper", self._token) if self._token else None

    def pull_refs(self, pull: PullRequest) -> list[str]:
        return [f"refs/pull/{pull.number}/head"]

    # -- issues --------

    def create_or_update_issue(self, repo: Repo, title: str, body: str,
                               issue_id: str | None) -> str:
        """Update (and reopen) issue #issue_id, or open a new one when unset or deleted."""
        if issue_id:
            change = {"title": title, "body": body, "state": "open"}
            updated = self._unless_missing(
                f"update issue {repo.full_name}#{issue_id}",
                lambda: self._api.patch(f"{_path(repo)}/issues/{segment(issue_id)}", change), None)
            if updated is not None:
                return str(issue_id)
        made = self._call(f"open an issue on {repo.full_name}", lambda: self._api.post(
            f"{_path(repo)}/issues", {"title": title, "body": body}))
        return str(made["number"])

    def close_issue(self, repo: Repo, issue_id: str, comment: str) -> None:
        issue = f"{_path(repo)}/issues/{segment(issue_id)}"
        if comment:
            self._call(f"comment on issue {repo.full_name}#{issue_id}",
                       lambda: self._api.post(f"{issue}/comments", {"body": comment}))
        self._call(f"close issue {repo.full_name}#{issue_id}",
                   lambda: self._api.patch(issue, {"state": "closed"}))

    # -- listing, for the reconciliation sweep --------

    def open_pull_requests(self, repo: Repo) -> list[PullRequest]:
        query = {"state": "open", "sort": "oldest"}
        return self._call(f"list the open pull requests of {repo.full_name}", lambda: [
            rules.listed_pull_from(repo, pr) for pr in self._api.pages(f"{_path(repo)}/pulls", query)])

    def recently_closed_pull_requests(self, repo: Repo, since: float) -> list[PullRequest]:
        """Closed pull requests by last update, newest first, read until one is older than since."""
        def fetch() -> list[PullRequest]:
            found = []
            query = {"state": "closed", "sort": "recentupdate"}
            for pr in self._api.pages(f"{_path(repo)}/pulls", query):
                if rules.epoch(pr.get("updated_at")) < since:
                    break
                if rules.epoch(pr.get("merged_at") or pr.get("closed_at")) >= since:
                    found.append(rules.listed_pull_from(repo, pr))
            return found
        return self._call(f"list the recently closed pull requests of {repo.full_name}", fetch)

    def statuses(self, repo: Repo, sha: str) -> dict[str, str]:
        """The latest status per context, PENDING/SUCCESS/FAILURE or Gitea's own word (warning)."""
        listed = f"{_path(repo)}/commits/{segment(sha)}/statuses"
        return self._call(f"read the statuses of {repo.full_name}@{sha[:12]}",
                          lambda: rules.latest_states(list(self._api.pages(listed))))

    def comments_since(self, pull: PullRequest, since: float) -> list[Comment]:
        """Comments updated since `since`, oldest first. Gitea lists only users' comments here,
        in one answer (this list is not paginated)."""
        def fetch() -> list[Comment]:
            listed = self._api.get(f"{_issue_path(pull)}/comments", {"since": rules.iso(since)})
            found = [rules.comment_from(c) for c in listed or []
                     if rules.epoch(c.get("updated_at") or c.get("created_at")) >= since]
            return sorted(found, key=lambda c: int(c.id))
        return self._call(f"list the comments of {_ref(pull)}", fetch)

    # -- internals --------

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """fn with retries; a ForgeError naming the action when Gitea keeps failing or answers
        something that is not the JSON it documents."""
        try:
            return call_with_retry(fn, action=f"Gitea: {action}", attempts=self._attempts,
                                   sleep=self._sleep, clock=self._clock)
        except GiteaBadAnswer as exc:
            raise ForgeError(f"Gitea: {action} failed: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:  # JSON of another shape
            raise ForgeError(f"Gitea: {action} failed: unexpected answer "
                             f"({type(exc).__name__}: {exc})") from exc


def _path(repo: Repo) -> str:
    owner, _, name = repo.full_name.partition("/")
    return f"/repos/{segment(owner)}/{segment(name)}"


def _pull_path(pull: PullRequest) -> str:
    return f"{_path(pull.repo)}/pulls/{pull.number}"


def _issue_path(pull: PullRequest) -> str:
    return f"{_path(pull.repo)}/issues/{pull.number}"


def _comment_path(pull: PullRequest, comment_id: str) -> str:
    return f"{_path(pull.repo)}/issues/comments/{segment(comment_id)}"


def _repo_admin(repo: Repo) -> str:
    return f"an administrator of {repo.full_name} (repository admin, or the owner)"


def _ref(pull: PullRequest) -> str:
    return f"{pull.repo.full_name}#{pull.number}"
