"""GitHub (and GitHub Enterprise) behind the Forge protocol, on PyGithub.

Authenticates with a token or as a GitHub App (bot.forges.github_auth). PyGithub's own
retries are off; every call goes through bot.forges.retry so failures are retried, and
reported, the same way everywhere.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import quote

from github import Github
from github.Repository import Repository

from bot.errors import ForgeError
from bot.forges.github_auth import GitHubAuth
from bot.forges.github_checks import minimize_outdated, write_check_run
from bot.forges.retry import ForgeRequestFailed, call_with_retry, unless_missing
from bot.models import CheckReport, Comment, CommentRef, Mergeability, PullRequest, Repo

T = TypeVar("T")

STATUS_DESCRIPTION_LIMIT = 140  # GitHub answers 422 to longer commit status descriptions
MERGEABILITY_POLLS = (0.5, 1.0, 2.0, 3.0)  # waits while GitHub computes `mergeable`
WRITE_ROLES = {"admin", "maintain", "write"}

BLOCKED = "blocked by branch protection (required reviews or checks)"
NOT_MERGEABLE = {
    "dirty": "merge conflict",
    "blocked": BLOCKED,
    "behind": "head branch is behind the base branch",
    "draft": "draft pull request",
    "unknown": "GitHub has not computed mergeability yet",
}
OK_CHECK_CONCLUSIONS = {"success", "neutral", "skipped"}


class GitHubForge:
    """The Forge protocol for one GitHub server; see bot.forges.base.Forge for each method."""

    comment_limit = 65536
    status_prefix = "plankeeper"  # settings.statuses.prefix, set by bot.forges.make_forge

    def __init__(
        self,
        api_url: str,
        token: Optional[str] = None,
        app_id: Optional[int] = None,
        private_key: Optional[str] = None,
        installation_id: Optional[int] = None,
        bot_login: Optional[str] = None,
        *,
        write_interval: float = 1.0,
        checks: str = "auto",
        attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        """Raises SettingsError unless a token or both app_id and private_key are given.

        write_interval: seconds PyGithub waits between two writes, which GitHub asks of
        integrations to avoid secondary rate limits; 0 turns it off (test servers).
        checks: settings.github.checks; as an App, check runs replace commit statuses unless
        "off", and outdated comments are minimized instead of edited.
        """
        self.api_url = api_url.rstrip("/")
        self._attempts, self._sleep, self._clock = attempts, sleep, clock
        self._bot_login = bot_login
        self._auth = GitHubAuth(
            self.api_url,
            self._call,
            token=token,
            app_id=app_id,
            private_key=private_key,
            installation_id=installation_id,
            write_interval=write_interval,
            clock=clock,
        )
        self.checks_enabled = self._auth.is_app and checks != "off"  # bot.forges.base.CheckRuns
        self.hides_outdated_comments = self._auth.is_app  # bot.forges.base.OutdatedComments

    @classmethod
    def from_settings(cls, gh: Any, installation_id: Optional[int] = None) -> "GitHubForge":
        """From Settings.github (api_url, token, app_id, private_key, webhook_secret)."""
        return cls(
            gh.api_url,
            token=gh.token,
            app_id=gh.app_id,
            private_key=gh.private_key,
            installation_id=installation_id,
            bot_login=getattr(gh, "bot_login", None),
            write_interval=getattr(gh, "write_interval", 1.0),
            checks=getattr(gh, "checks", "auto"),
        )

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        return call_with_retry(
            fn,
            action=f"GitHub: {action}",
            attempts=self._attempts,
            sleep=self._sleep,
            clock=self._clock,
        )

    def _gh(self, repo: Optional[Repo] = None) -> Github:
        return self._auth.client(repo)

    @property
    def bot_login(self) -> str:
        """The login the bot posts as: given, the token's user, or "<app slug>[bot]"."""
        if self._bot_login is None:
            self._bot_login = self._auth.login()
        return self._bot_login

    @bot_login.setter
    def bot_login(self, login: str) -> None:
        self._bot_login = login

    def _repo(self, repo: Repo) -> Repository:
        # Lazy: no request until an attribute or method needs one.
        return self._gh(repo).get_repo(repo.full_name)

    # -- pull requests --------

    def pull_request(self, repo: Repo, number: int) -> PullRequest:
        return self._call(f"read pull request {repo.full_name}#{number}",
                          lambda: _pull_from(repo, self._repo(repo).get_pull(number)))

    def create_pull_request(self, repo: Repo, head_branch: str, base_branch: str, title: str,
                            body: str) -> PullRequest:
        return self._call(
            f"open a pull request from {head_branch} into {base_branch} of {repo.full_name}",
            lambda: _pull_from(repo, self._repo(repo).create_pull(base=base_branch, head=head_branch,
                                                                  title=title, body=body)),
        )

    def changed_files(self, pull: PullRequest) -> list[str]:
        def fetch() -> list[str]:
            paths: dict[str, None] = {}
            for changed in self._repo(pull.repo).get_pull(pull.number).get_files():
                paths[changed.filename] = None
                if changed.previous_filename:
                    paths[changed.previous_filename] = None
            return list(paths)

        return self._call(f"list files of {_ref(pull)}", fetch)

    # -- comments --------

    def create_comment(self, pull: PullRequest, body: str) -> CommentRef:
        def post() -> CommentRef:
            comment = self._repo(pull.repo).get_issue(pull.number).create_comment(body)
            return CommentRef(id=str(comment.id), url=comment.html_url)

        return self._call(f"comment on {_ref(pull)}", post)

    def update_comment(self, pull: PullRequest, comment_id: str, body: str) -> None:
        self._call(
            f"update comment {comment_id} on {_ref(pull)}",
            lambda: self._comment(pull, comment_id).edit(body),
        )

    def comment(self, pull: PullRequest, comment_id: str) -> Optional[Comment]:
        def fetch() -> Optional[Comment]:
            found = self._comment(pull, comment_id)
            return Comment(str(comment_id), found.user.login if found.user else "", found.body or "")

        return self._unless_missing(f"read comment {comment_id} on {_ref(pull)}", fetch, None)

    def add_reaction(self, pull: PullRequest, comment_id: str, reaction: str = "eyes") -> None:
        self._call(
            f"react to comment {comment_id} on {_ref(pull)}",
            lambda: self._comment(pull, comment_id).create_reaction(reaction),
        )

    def _comment(self, pull: PullRequest, comment_id: str) -> Any:
        return self._repo(pull.repo).get_issue(pull.number).get_comment(int(comment_id))

    def hide_outdated_comment(self, pull: PullRequest, comment_id: str) -> None:
        """Minimize the comment as OUTDATED (GraphQL, by its node id); a deleted one is skipped."""
        node_id = self._unless_missing(f"read comment {comment_id} on {_ref(pull)}",
                                       lambda: self._comment(pull, comment_id).node_id, None)
        if node_id is None:
            return
        minimized = self._call(f"minimize comment {comment_id} on {_ref(pull)}",
                               lambda: minimize_outdated(self._gh(pull.repo).requester, node_id))
        if not minimized:
            raise ForgeError(f"GitHub: minimize comment {comment_id} on {_ref(pull)}: the answer says it is not")

    # -- statuses, reviews, mergeability --------

    def set_status(
        self, repo: Repo, sha: str, context: str, state: str, description: str, target_url: str = ""
    ) -> None:
        """Raises ValueError for a state other than pending, success or failure."""
        if state not in ("pending", "success", "failure"):
            raise ValueError(f"unknown commit status state {state!r}")
        limit = STATUS_DESCRIPTION_LIMIT
        text = description if len(description) <= limit else description[: limit - 1] + "…"
        extra = {"target_url": target_url} if target_url else {}
        self._call(
            f"set status {context} on {repo.full_name}@{sha[:12]}",
            lambda: (
                self._repo(repo)
                .get_commit(sha)
                .create_status(state, description=text, context=context, **extra)
            ),
        )

    def report_check(self, repo: Repo, sha: str, check: CheckReport, check_id: Optional[str] = None) -> str:
        """Create the check run (check_id None) or update it; its id. Only an App may (403 otherwise)."""
        doing = f"update check run {check_id}" if check_id else "create check run"
        return self._call(f"{doing} {check.name} on {repo.full_name}@{sha[:12]}",
                          lambda: write_check_run(self._repo(repo), sha, check, check_id))

    def approvals(self, pull: PullRequest) -> tuple[list[str], int]:
        """Approvers by their latest approving or blocking review; 1 still required if none.

        The REST API shows branch-protection rules (the real required count) only to admins,
        so the bot asks for at least one approval; GitHub itself enforces the rest at merge.
        COMMENTED reviews do not change a reviewer's standing, as on GitHub.
        """

        def fetch() -> list[str]:
            latest: dict[str, tuple[str, str]] = {}
            for review in self._repo(pull.repo).get_pull(pull.number).get_reviews():
                if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED") and review.user:
                    latest[review.user.login] = (review.state, review.commit_id)
            return [login for login, (state, commit) in latest.items()
                    if state == "APPROVED" and commit == pull.head_sha]  # a push makes approvals stale

        approvers = self._call(f"list reviews of {_ref(pull)}", fetch)
        return approvers, 0 if approvers else 1

    def mergeability(self, pull: PullRequest) -> Mergeability:
        """Ask GitHub (re-polling while it computes); the bot's own apply status never blocks."""
        for wait in (*MERGEABILITY_POLLS, None):
            state = self._call(
                f"read mergeability of {_ref(pull)}", lambda: self._merge_state(pull)
            )
            if state[0] is not None or wait is None:
                break
            self._sleep(wait)
        mergeable, mergeable_state, head_sha, closed = state
        if closed:
            return Mergeability(False, "pull request is closed")
        if mergeable is None:
            return Mergeability(False, NOT_MERGEABLE["unknown"])
        if mergeable_state == "blocked" and self._only_own_apply_status_blocks(pull.repo, head_sha):
            return Mergeability(True)
        if mergeable_state in NOT_MERGEABLE:
            return Mergeability(False, NOT_MERGEABLE[mergeable_state])
        if not mergeable:
            return Mergeability(False, "GitHub reports the pull request cannot be merged")
        return Mergeability(True)  # clean, unstable (failing optional checks), has_hooks

    def _merge_state(self, pull: PullRequest) -> tuple[Optional[bool], str, str, bool]:
        pr = self._repo(pull.repo).get_pull(pull.number)
        return pr.mergeable, pr.mergeable_state, pr.head.sha, pr.state != "open"

    def _only_own_apply_status_blocks(self, repo: Repo, sha: str) -> bool:
        """Whether the bot's own `{prefix}/apply` (a status, or a check run) is the only status or
        check run on sha not succeeding."""

        def fetch() -> bool:
            commit = self._repo(repo).get_commit(sha)
            blocking = [s.context for s in commit.get_combined_status().statuses if s.state != "success"]
            blocking += [c.name for c in commit.get_check_runs() if c.conclusion not in OK_CHECK_CONCLUSIONS]
            return set(blocking) == {f"{self.status_prefix}/apply"}

        return self._call(f"read statuses of {repo.full_name}@{sha[:12]}", fetch)

    # -- permissions --------

    def has_write_permission(self, repo: Repo, login: str) -> bool:
        def fetch() -> bool:
            _, data = self._gh(repo).requester.requestJsonAndCheck(
                "GET", f"/repos/{repo.full_name}/collaborators/{quote(login, safe='')}/permission"
            )
            return (
                data.get("permission") in ("admin", "write") or data.get("role_name") in WRITE_ROLES
            )

        return self._unless_missing(f"read {login}'s permission on {repo.full_name}", fetch, False)

    def in_group(self, repo: Repo, login: str, group: str) -> bool:
        """Only `team:org/slug` means anything on GitHub; other groups are never matched."""
        kind, _, name = group.partition(":")
        org, _, slug = name.partition("/")
        if kind != "team" or not org or not slug:
            return False

        def fetch() -> bool:
            _, data = self._gh(repo).requester.requestJsonAndCheck(
                "GET", f"/orgs/{quote(org)}/teams/{quote(slug)}/memberships/{quote(login, safe='')}"
            )
            return data.get("state") == "active"

        return self._unless_missing(f"read {login}'s membership of {org}/{slug}", fetch, False)

    def _unless_missing(self, action: str, fn: Callable[[], T], missing: T) -> T:
        """fn(), or `missing` when GitHub answers 404 (unknown user, team or non-member)."""
        return unless_missing(self._call, action, fn, missing)

    # -- merging --------

    def merge(self, pull: PullRequest, delete_source_branch: bool = False, method: str = "merge") -> None:
        """Merge exactly pull.head_sha (GitHub refuses with 409 if the head moved) with GitHub's
        merge_method of the same name (405 when the repository does not allow it)."""
        self._call(
            f"merge {_ref(pull)} ({method})",
            lambda: self._repo(pull.repo).get_pull(pull.number).merge(sha=pull.head_sha, merge_method=method),
        )
        if delete_source_branch and not pull.is_fork:
            path = f"/repos/{pull.repo.full_name}/git/refs/heads/{quote(pull.head_ref)}"
            # 422: the branch is already gone (e.g. GitHub's own auto-delete), which is the goal.
            self._unless_status(
                f"delete branch {pull.head_ref} of {pull.repo.full_name}",
                lambda: self._gh(pull.repo).requester.requestJsonAndCheck("DELETE", path),
                422,
            )

    def _unless_status(self, action: str, fn: Callable[[], Any], ok_status: int) -> None:
        try:
            self._call(action, fn)
        except ForgeRequestFailed as exc:
            if exc.status != ok_status:
                raise

    def clone_auth(self, repo: Repo) -> Optional[tuple[str, str]]:
        return "x-access-token", self._auth.token(repo)

    def pull_refs(self, pull: PullRequest) -> list[str]:
        return [f"refs/pull/{pull.number}/head"]

    # -- issues --------

    def create_or_update_issue(
        self, repo: Repo, title: str, body: str, issue_id: Optional[str]
    ) -> str:
        if issue_id:
            self._call(
                f"update issue {repo.full_name}#{issue_id}",
                lambda: (
                    self._repo(repo)
                    .get_issue(int(issue_id))
                    .edit(title=title, body=body, state="open")
                ),
            )
            return issue_id
        return self._call(
            f"open an issue on {repo.full_name}",
            lambda: str(self._repo(repo).create_issue(title=title, body=body).number),
        )

    def close_issue(self, repo: Repo, issue_id: str, comment: str) -> None:
        issue_ref = f"{repo.full_name}#{issue_id}"
        self._call(
            f"comment on issue {issue_ref}",
            lambda: self._repo(repo).get_issue(int(issue_id)).create_comment(comment),
        )
        self._call(
            f"close issue {issue_ref}",
            lambda: self._repo(repo).get_issue(int(issue_id)).edit(state="closed"),
        )

    # -- listing, for the reconciliation sweep --------

    def open_pull_requests(self, repo: Repo) -> list[PullRequest]:
        return self._call(
            f"list open pull requests of {repo.full_name}",
            lambda: [_listed_pull(repo, pr) for pr in self._repo(repo).get_pulls(state="open", sort="created",
                                                                                 direction="asc")],
        )

    def recently_closed_pull_requests(self, repo: Repo, since: float) -> list[PullRequest]:
        """Closed pull requests by last update, newest first, read until one is older than since."""

        def fetch() -> list[PullRequest]:
            found = []
            for pr in self._repo(repo).get_pulls(state="closed", sort="updated", direction="desc"):
                if _epoch(pr.updated_at) < since:
                    break
                if _epoch(pr.closed_at or pr.merged_at) >= since:
                    found.append(_listed_pull(repo, pr))
            return found

        return self._call(f"list recently closed pull requests of {repo.full_name}", fetch)

    def statuses(self, repo: Repo, sha: str) -> dict[str, str]:
        """Commit statuses (latest per context) and check runs (by name) on sha."""

        def fetch() -> dict[str, str]:
            commit = self._repo(repo).get_commit(sha)
            found = {run.name: _check_state(run.status, run.conclusion) for run in commit.get_check_runs()}
            for status in commit.get_combined_status().statuses:
                found[status.context] = "failure" if status.state == "error" else status.state
            return found

        return self._call(f"read statuses of {repo.full_name}@{sha[:12]}", fetch)

    def comments_since(self, pull: PullRequest, since: float) -> list[Comment]:
        def fetch() -> list[Comment]:
            issue = self._repo(pull.repo).get_issue(pull.number)
            listed = issue.get_comments(since=datetime.fromtimestamp(int(since), timezone.utc))
            found = [Comment(str(c.id), c.user.login if c.user else "", c.body or "") for c in listed]
            return sorted(found, key=lambda c: int(c.id))

        return self._call(f"list comments of {_ref(pull)}", fetch)


def _listed_pull(repo: Repo, pr: Any) -> PullRequest:
    """Our PullRequest from an item of a pull request list, reading only what a list item carries
    (`merged` and `mergeable` are not in it: touching them would fetch each pull request)."""
    head_repo, base_repo = pr.head.repo, pr.base.repo
    merged = pr.merged_at is not None
    return PullRequest(
        repo=repo, number=pr.number, author=pr.user.login, head_sha=pr.head.sha, head_ref=pr.head.ref,
        base_ref=pr.base.ref, url=pr.html_url, title=pr.title, base_sha=pr.base.sha,
        head_clone_url=head_repo.clone_url if head_repo else "",
        is_fork=head_repo is None or head_repo.full_name != base_repo.full_name,
        is_draft=bool(pr.draft), state="merged" if merged else pr.state,
        merge_sha=pr.merge_commit_sha if merged else None, updated_at=_epoch(pr.updated_at),
    )


def _epoch(moment: Optional[datetime]) -> float:
    if moment is None:
        return 0.0
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _check_state(status: str, conclusion: Optional[str]) -> str:
    if status != "completed":
        return "pending"
    return "success" if conclusion in OK_CHECK_CONCLUSIONS else "failure"


def _ref(pull: PullRequest) -> str:
    return f"{pull.repo.full_name}#{pull.number}"


def _pull_from(repo: Repo, pr: Any) -> PullRequest:
    """Our PullRequest from PyGithub's."""
    head_repo, base_repo = pr.head.repo, pr.base.repo
    merged = bool(pr.merged)
    return PullRequest(
        repo=repo,
        number=pr.number,
        author=pr.user.login,
        head_sha=pr.head.sha,
        head_ref=pr.head.ref,
        base_ref=pr.base.ref,
        url=pr.html_url,
        title=pr.title,
        base_sha=pr.base.sha,
        head_clone_url=head_repo.clone_url if head_repo else "",
        is_fork=head_repo is None or head_repo.full_name != base_repo.full_name,
        is_draft=bool(pr.draft),
        state="merged" if merged else pr.state,
        merge_sha=pr.merge_commit_sha if merged else None,
    )
