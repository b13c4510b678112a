"""GitLab forge client on python-gitlab: merge requests get the same flow as GitHub pull requests.

Repo.forge_id is the GitLab project id (Repo.full_name, the project path, when it is missing);
PullRequest.number is the merge request's iid. Every call goes through `_call` (bot.forges.retry),
which retries 5xx and rate limits with backoff (honouring Retry-After) and raises `ForgeError`
once it gives up.
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar

import gitlab
import requests
from gitlab.exceptions import GitlabError, GitlabGetError

from bot.errors import ForgeError
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.retry import call_with_retry
from bot.models import Comment, CommentRef, Mergeability, PullRequest, Repo

T = TypeVar("T")

GITLAB_COMMENT_LIMIT = 1_000_000
DEVELOPER_ACCESS = 30  # the lowest GitLab role that may push
GUEST_ACCESS = 10
_STATUS_DESCRIPTION_LIMIT = 255

_STATUS_STATE = {PENDING: "pending", SUCCESS: "success", FAILURE: "failed"}
_MR_STATE = {"opened": "open", "locked": "open", "merged": "merged", "closed": "closed"}
# GitLab commit status states -> the forge-neutral ones (others are returned as GitLab words them).
_FORGE_STATE = {"success": SUCCESS, "failed": FAILURE, "canceled": FAILURE, "pending": PENDING,
                "running": PENDING, "created": PENDING, "waiting_for_resource": PENDING, "preparing": PENDING,
                "scheduled": PENDING}
_GREEN_STATUSES = ("success", "skipped")
# GitHub reaction names (what callers use) -> GitLab award emoji names.
_EMOJI = {"+1": "thumbsup", "-1": "thumbsdown", "laugh": "laughing", "hooray": "tada"}

# detailed_merge_status -> why GitLab will not merge, in words a user can act on.
_MERGE_BLOCKERS = {
    "broken_status": "GitLab cannot merge it: the source branch is broken or a conflict is likely",
    "checking": "GitLab is still checking whether it can be merged; try again in a moment",
    "unchecked": "GitLab is still checking whether it can be merged (not checked yet)",
    "preparing": "GitLab is still preparing the merge request; try again in a moment",
    "approvals_syncing": "GitLab is still syncing its approvals; try again in a moment",
    "ci_must_pass": "the pipeline must succeed before it can be merged",
    "ci_still_running": "the pipeline is still running",
    "conflict": "there is a merge conflict between the source and target branches",
    "discussions_not_resolved": "all discussion threads must be resolved first",
    "draft_status": "it is a draft; mark it as ready first",
    "external_status_checks": "external status checks have not passed",
    "need_rebase": "the source branch is behind the target branch; rebase it first",
    "not_approved": "it needs approval",
    "not_open": "it is not open",
    "requested_changes": "a reviewer requested changes",
    "jira_association_missing": "the title or description must reference a Jira issue",
    "blocked_status": "it is blocked by another merge request",
    "merge_request_blocked": "it is blocked by another merge request",
    "commits_status": "the source branch is missing or has no commits",
    "locked_paths": "it changes paths that are locked by another user",
    "locked_lfs_files": "it changes LFS files that are locked by another user",
    "merge_time": "it cannot be merged before its scheduled merge time",
    "security_policy_violations": "security policies are violated",
    "security_policy_pipeline_check": "the security policy pipeline must succeed first",
    "title_regex": "the title does not match the project's required pattern",
}
_CI_BLOCKERS = ("ci_must_pass", "ci_still_running")
# Before detailed_merge_status (GitLab < 15.6) only merge_status existed.
_LEGACY_MERGE_STATUS = {"can_be_merged": "mergeable", "cannot_be_merged": "conflict",
                        "unchecked": "unchecked", "checking": "checking",
                        "cannot_be_merged_recheck": "checking", "cannot_be_merged_rechecking": "checking"}


class _Client(gitlab.Gitlab):
    """python-gitlab with its own 429 sleeping turned off: `_call` owns every retry."""

    def http_request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("obey_rate_limit", False)
        return super().http_request(*args, **kwargs)


class GitLabForge:
    """The Forge protocol on a GitLab instance (gitlab.com or self-hosted)."""

    comment_limit = GITLAB_COMMENT_LIMIT
    status_prefix = "plankeeper"  # settings.statuses.prefix, set by bot.forges.make_forge

    def __init__(self, url: str, token: Optional[str], bot_login: Optional[str] = None,
                 *, sleep: Callable[[float], None] = time.sleep):
        self._token = token
        self._bot_login = bot_login
        self._sleep = sleep
        self._gl = _Client(url, private_token=token, timeout=30)
        # GitlabHttpError keeps no headers; remember the last response's for Retry-After.
        self._last_headers: dict = {}
        self._gl.session.hooks["response"].append(self._remember_headers)

    @classmethod
    def from_settings(cls, gl: Any) -> "GitLabForge":
        """Build from the `gitlab:` settings section (url, token, bot_login)."""
        return cls(gl.url, gl.token, getattr(gl, "bot_login", None))

    @property
    def bot_login(self) -> str:
        """The username the token belongs to (GET /user once, when not configured)."""
        if self._bot_login is None:
            user = self._call("read the bot's user", lambda: self._gl.http_get("/user"))
            self._bot_login = user["username"]
        return self._bot_login

    # ---- merge requests ------------------------------------------------------------
    def pull_request(self, repo: Repo, number: int) -> PullRequest:
        """The merge request !number now. Raises ForgeError (e.g. 404) when it cannot be read."""
        return self._call(f"read merge request !{number} of {repo.full_name}",
                          lambda: self._pull_from(repo, self._project(repo).mergerequests.get(number).attributes))

    def create_pull_request(self, repo: Repo, head_branch: str, base_branch: str, title: str,
                            body: str) -> PullRequest:
        """A merge request from head_branch of the project itself; its source branch is removed on merge."""
        data = {"source_branch": head_branch, "target_branch": base_branch, "title": title,
                "description": body, "remove_source_branch": True}
        return self._call(f"open a merge request from {head_branch} into {base_branch} of {repo.full_name}",
                          lambda: self._pull_from(repo, self._project(repo).mergerequests.create(data).attributes))

    def _pull_from(self, repo: Repo, mr: dict) -> PullRequest:
        is_fork = mr["source_project_id"] != mr["target_project_id"]
        return PullRequest(
            repo=repo, number=mr["iid"], author=mr["author"]["username"],
            head_sha=mr["sha"], head_ref=mr["source_branch"], base_ref=mr["target_branch"],
            url=mr.get("web_url") or "", title=mr.get("title") or "",
            base_sha=(mr.get("diff_refs") or {}).get("base_sha") or "",
            head_clone_url=self._source_clone_url(repo, mr["source_project_id"], is_fork),
            is_fork=is_fork, is_draft=bool(mr.get("draft") or mr.get("work_in_progress")),
            state=_MR_STATE.get(mr["state"], mr["state"]),
            merge_sha=mr.get("merge_commit_sha") or mr.get("squash_commit_sha"),
        )

    def changed_files(self, pull: PullRequest) -> list[str]:
        """Old and new path of every diff, over all pages of .../diffs."""
        def fetch() -> list[str]:
            project = self._project(pull.repo)
            path = f"/projects/{project.encoded_id}/merge_requests/{pull.number}/diffs"
            diffs = self._gl.http_list(path, query_data={"per_page": 100}, get_all=True)
            paths = (p for d in diffs for p in (d["old_path"], d["new_path"]))
            return list(dict.fromkeys(paths))
        return self._call(f"list the changes of {_ref(pull)}", fetch)

    # ---- notes ---------------------------------------------------------------------
    def create_comment(self, pull: PullRequest, body: str) -> CommentRef:
        note = self._call(f"comment on {_ref(pull)}",
                          lambda: self._mr(pull).notes.create({"body": body}))
        return CommentRef(id=str(note.id), url=f"{pull.url}#note_{note.id}" if pull.url else "")

    def update_comment(self, pull: PullRequest, comment_id: str, body: str) -> None:
        self._call(f"edit note {comment_id} on {_ref(pull)}",
                   lambda: self._mr(pull).notes.update(int(comment_id), {"body": body}))

    def comment(self, pull: PullRequest, comment_id: str) -> Optional[Comment]:
        def fetch() -> Optional[Comment]:
            try:
                note = self._mr(pull).notes.get(int(comment_id))
            except GitlabGetError as err:
                if err.response_code == 404:
                    return None
                raise
            return Comment(str(comment_id), str((note.author or {}).get("username", "")), str(note.body))
        return self._call(f"read note {comment_id} on {_ref(pull)}", fetch)

    def add_reaction(self, pull: PullRequest, comment_id: str, reaction: str = "eyes") -> None:
        """Award an emoji on the note; awarding one already there is not an error."""
        def award() -> None:
            note = self._mr(pull).notes.get(int(comment_id), lazy=True)
            try:
                note.awardemojis.create({"name": _EMOJI.get(reaction, reaction)})
            except GitlabError as err:
                if "already been taken" not in str(err.error_message):
                    raise
        self._call(f"react to note {comment_id} on {_ref(pull)}", award)

    # ---- statuses, approvals, mergeability -----------------------------------------
    def set_status(self, repo: Repo, sha: str, context: str, state: str, description: str,
                   target_url: str = "") -> None:
        """POST a commit status named `context`; raises ValueError on an unknown state."""
        if state not in _STATUS_STATE:
            raise ValueError(f"unknown commit status state {state!r}")
        data = {"state": _STATUS_STATE[state], "name": context,
                "description": description[:_STATUS_DESCRIPTION_LIMIT]}
        if target_url:
            data["target_url"] = target_url

        def post() -> None:
            try:
                self._project(repo).commits.get(sha, lazy=True).statuses.create(data)
            except GitlabError as err:
                # Re-posting an unfinished state (pending -> pending) is refused but harmless.
                if "Cannot transition status" not in str(err.error_message):
                    raise
        self._call(f"set status {context} on {sha[:12]} of {repo.full_name}", post)

    def approvals(self, pull: PullRequest) -> tuple[list[str], int]:
        def fetch() -> tuple[list[str], int]:
            approval = self._mr(pull).approvals.get().attributes
            users = [a["user"]["username"] for a in approval.get("approved_by") or []]
            return users, int(approval.get("approvals_left") or 0)
        return self._call(f"read the approvals of {_ref(pull)}", fetch)

    def mergeability(self, pull: PullRequest) -> Mergeability:
        """GitLab's detailed_merge_status in words; the bot's own failing or pending
        `{statuses.prefix}/*` statuses do not count against it."""
        def fetch() -> Mergeability:
            mr = self._mr(pull, lazy=False).attributes
            status = mr.get("detailed_merge_status") or _legacy_status(mr)
            if status == "mergeable":
                return Mergeability(True)
            if status in _CI_BLOCKERS and self._only_own_statuses_pending(pull.repo, mr["sha"]):
                return Mergeability(True, "only Plankeeper's own statuses are not green")
            reason = _MERGE_BLOCKERS.get(status, f"GitLab reports merge status {status!r}")
            return Mergeability(False, reason)
        return self._call(f"read the merge status of {_ref(pull)}", fetch)

    def _only_own_statuses_pending(self, repo: Repo, sha: str) -> bool:
        commit = self._project(repo).commits.get(sha, lazy=True)
        latest = commit.statuses.list(get_all=True)  # latest status per name
        blocking = [s.name for s in latest
                    if s.status not in _GREEN_STATUSES and not s.attributes.get("allow_failure")]
        return bool(blocking) and all(n.startswith(f"{self.status_prefix}/") for n in blocking)

    # ---- permissions ---------------------------------------------------------------
    def has_write_permission(self, repo: Repo, login: str) -> bool:
        """Developer access or more, direct or inherited from groups."""
        def fetch() -> bool:
            user_id = self._user_id(login)
            if user_id is None:
                return False
            return _member_level(self._project(repo).members_all, user_id) >= DEVELOPER_ACCESS
        return self._call(f"read {login}'s access to {repo.full_name}", fetch)

    def in_group(self, repo: Repo, login: str, group: str) -> bool:
        """Membership of `group:path` (inherited included); GitLab has no `team:`."""
        if not group.startswith("group:"):
            return False
        path = group.removeprefix("group:")

        def fetch() -> bool:
            user_id = self._user_id(login)
            if user_id is None:
                return False
            members = self._gl.groups.get(path, lazy=True).members_all
            return _member_level(members, user_id) >= GUEST_ACCESS
        return self._call(f"read {login}'s membership of {path}", fetch)

    # ---- merging, git, issues ------------------------------------------------------
    def merge(self, pull: PullRequest, delete_source_branch: bool = False, method: str = "merge") -> None:
        """Merge exactly the head the bot knows (sha); ForgeError when GitLab refuses. `squash`
        squashes the commits; `rebase` is refused: GitLab's rebase rewrites the merge request's
        head, which would then no longer be the commit that was planned and applied."""
        if method == "rebase":
            raise ForgeError(f"GitLab cannot merge {_ref(pull)} by rebasing without rewriting the commit that was "
                             "applied: use --auto-merge-method merge or squash (or set the project's merge method "
                             "to fast-forward in GitLab, which `merge` then follows)")
        squash = {"squash": True} if method == "squash" else {}
        self._call(f"merge {_ref(pull)} ({method})", lambda: self._mr(pull).merge(
            should_remove_source_branch=delete_source_branch, sha=pull.head_sha, **squash))

    def clone_auth(self, repo: Repo) -> Optional[tuple[str, str]]:
        return ("oauth2", self._token) if self._token else None

    def pull_refs(self, pull: PullRequest) -> list[str]:
        return [f"refs/merge-requests/{pull.number}/head"]

    def create_or_update_issue(self, repo: Repo, title: str, body: str,
                               issue_id: Optional[str]) -> str:
        """Update (and reopen) issue #issue_id, or open a new one if unset or deleted."""
        def run() -> str:
            issues = self._project(repo).issues
            if issue_id:
                try:
                    issues.update(int(issue_id), {"title": title, "description": body,
                                                  "state_event": "reopen"})
                    return str(issue_id)
                except GitlabError as err:
                    if err.response_code != 404:
                        raise
            return str(issues.create({"title": title, "description": body}).iid)
        return self._call(f"write an issue in {repo.full_name}", run)

    def close_issue(self, repo: Repo, issue_id: str, comment: str) -> None:
        def run() -> None:
            issues = self._project(repo).issues
            if comment:
                issues.get(int(issue_id), lazy=True).notes.create({"body": comment})
            issues.update(int(issue_id), {"state_event": "close"})
        self._call(f"close issue #{issue_id} in {repo.full_name}", run)

    # ---- listing, for the reconciliation sweep -------------------------------------
    def open_pull_requests(self, repo: Repo) -> list[PullRequest]:
        def fetch() -> list[PullRequest]:
            listed = self._project(repo).mergerequests.list(state="opened", order_by="created_at", sort="asc",
                                                            iterator=True)
            return [self._listed_pull(repo, mr.attributes) for mr in listed]
        return self._call(f"list the open merge requests of {repo.full_name}", fetch)

    def recently_closed_pull_requests(self, repo: Repo, since: float) -> list[PullRequest]:
        """Merged, then closed, merge requests updated since `since` whose merge or close is that recent."""
        def fetch() -> list[PullRequest]:
            found = []
            for state, moment in (("merged", "merged_at"), ("closed", "closed_at")):
                listed = self._project(repo).mergerequests.list(
                    state=state, updated_after=_iso(since), order_by="updated_at", sort="desc", iterator=True)
                found += [self._listed_pull(repo, mr.attributes) for mr in listed
                          if _epoch(mr.attributes.get(moment) or mr.attributes.get("updated_at")) >= since]
            return found
        return self._call(f"list the recently merged or closed merge requests of {repo.full_name}", fetch)

    def statuses(self, repo: Repo, sha: str) -> dict[str, str]:
        def fetch() -> dict[str, str]:
            latest = self._project(repo).commits.get(sha, lazy=True).statuses.list(get_all=True)
            return {s.name: _FORGE_STATE.get(s.status, s.status) for s in reversed(latest)}
        return self._call(f"read the statuses of {sha[:12]} of {repo.full_name}", fetch)

    def comments_since(self, pull: PullRequest, since: float) -> list[Comment]:
        """Notes by last update, newest first, read until one is older than since; system notes
        (pushes, approvals...) are not comments."""
        def fetch() -> list[Comment]:
            found = []
            for note in self._mr(pull).notes.list(order_by="updated_at", sort="desc", iterator=True):
                attrs = note.attributes
                if _epoch(attrs.get("updated_at") or attrs.get("created_at")) < since:
                    break
                if not attrs.get("system"):
                    found.append(Comment(str(attrs["id"]), str((attrs.get("author") or {}).get("username", "")),
                                         str(attrs.get("body") or "")))
            return sorted(found, key=lambda c: int(c.id))
        return self._call(f"list the notes of {_ref(pull)}", fetch)

    def _listed_pull(self, repo: Repo, mr: dict) -> PullRequest:
        return replace(self._pull_from(repo, mr), updated_at=_epoch(mr.get("updated_at")))

    # ---- internals -----------------------------------------------------------------
    def _project(self, repo: Repo) -> Any:
        return self._gl.projects.get(repo.forge_id or repo.full_name, lazy=True)

    def _mr(self, pull: PullRequest, lazy: bool = True) -> Any:
        return self._project(pull.repo).mergerequests.get(pull.number, lazy=lazy)

    def _source_clone_url(self, repo: Repo, source_project_id: int, is_fork: bool) -> str:
        if not is_fork and repo.clone_url:
            return repo.clone_url
        return str(self._gl.projects.get(source_project_id).http_url_to_repo)

    def _user_id(self, login: str) -> Optional[int]:
        users = self._gl.users.list(username=login, get_all=False)
        return users[0].id if users else None

    def _remember_headers(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_headers = dict(response.headers)

    def _error_info(self, exc: BaseException) -> Optional[tuple[int, dict]]:
        if isinstance(exc, GitlabError) and isinstance(exc.response_code, int):
            return exc.response_code, self._last_headers
        return None

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run fn with retries; ForgeError naming the action when GitLab keeps failing."""
        try:
            return call_with_retry(fn, action=f"GitLab: {action}", error_info=self._error_info,
                                   sleep=self._sleep)
        except GitlabError as err:  # no HTTP status, e.g. an answer that is not JSON
            raise ForgeError(f"GitLab: {action} failed: {type(err).__name__}") from err


def _member_level(members: Any, user_id: int) -> int:
    """The member's access level, 0 when not a (active) member."""
    try:
        member = members.get(user_id).attributes
    except GitlabError as err:
        if err.response_code == 404:
            return 0
        raise
    if member.get("membership_state", "active") != "active":
        return 0
    return int(member.get("access_level") or 0)


def _legacy_status(mr: dict) -> str:
    if mr.get("state") != "opened":
        return "not_open"
    if mr.get("draft") or mr.get("work_in_progress"):
        return "draft_status"
    return _LEGACY_MERGE_STATUS.get(mr.get("merge_status") or "", "unchecked")


def _ref(pull: PullRequest) -> str:
    return f"{pull.repo.full_name}!{pull.number}"


def _epoch(moment: Optional[str]) -> float:
    """Epoch seconds of GitLab's ISO 8601 time (2024-01-31T12:00:00.000Z); 0 when absent."""
    if not moment:
        return 0.0
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
