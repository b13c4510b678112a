"""The Forge protocol: everything the bot needs from GitHub or GitLab, and nothing more.

Forge-agnostic code takes a `Forge`; only modules in this package (and bot/events.py)
know which forge they talk to. Every method raises `bot.errors.ForgeError` when the
API fails after retries (5xx and rate limits are retried with backoff, honouring
Retry-After).
"""
from __future__ import annotations

from typing import Optional, Protocol, TypeGuard

from bot.models import CheckReport, Comment, CommentRef, Mergeability, PullRequest, Repo

# Commit status states, forge-neutral; each forge maps them to its own words.
PENDING, SUCCESS, FAILURE = "pending", "success", "failure"
NEUTRAL = "neutral"  # check runs only: done, nothing to judge (no project changed)


class Forge(Protocol):
    #: The largest comment body the forge accepts, in characters.
    comment_limit: int
    #: The login the bot posts as (its own comments are ignored as commands).
    bot_login: str

    def pull_request(self, repo: Repo, number: int) -> PullRequest:
        """The pull request as the forge reports it now (head, base, state, fork, draft)."""

    def changed_files(self, pull: PullRequest) -> list[str]:
        """Every path the pull request changes (all pages; both sides of a rename)."""

    def create_comment(self, pull: PullRequest, body: str) -> CommentRef:
        """Post a new comment on the pull request."""

    def update_comment(self, pull: PullRequest, comment_id: str, body: str) -> None:
        """Replace the body of a comment the bot posted."""

    def comment(self, pull: PullRequest, comment_id: str) -> Optional[Comment]:
        """The comment as it is now (author, body), or None when it was deleted."""

    def add_reaction(self, pull: PullRequest, comment_id: str, reaction: str = "eyes") -> None:
        """React to a user's comment (👀 acknowledges a command)."""

    def set_status(
        self, repo: Repo, sha: str, context: str, state: str, description: str, target_url: str = ""
    ) -> None:
        """Set a commit status: state is PENDING, SUCCESS or FAILURE."""

    def approvals(self, pull: PullRequest) -> tuple[list[str], int]:
        """(logins whose latest review approves the current head, approvals still required by the forge).
        An approval of an older commit does not count where the forge records the commit (GitHub)."""

    def mergeability(self, pull: PullRequest) -> Mergeability:
        """Whether the forge would merge now, ignoring the bot's own `{statuses.prefix}/apply` status."""

    def has_write_permission(self, repo: Repo, login: str) -> bool:
        """Whether the user may push to the repository."""

    def in_group(self, repo: Repo, login: str, group: str) -> bool:
        """Whether the user is in a team (`team:org/slug`) or group (`group:path`)."""

    def merge(self, pull: PullRequest, delete_source_branch: bool = False, method: str = "merge") -> None:
        """Merge exactly pull.head_sha with `method` (merge | squash | rebase), then delete the
        source branch when asked (never a fork's). ForgeError when the forge refuses, or cannot
        merge with that method (the message says which it can)."""

    def create_pull_request(self, repo: Repo, head_branch: str, base_branch: str, title: str,
                            body: str) -> PullRequest:
        """Open a pull request from head_branch (in repo itself) into base_branch; the new one."""

    def clone_auth(self, repo: Repo) -> Optional[tuple[str, str]]:
        """(username, password) for HTTPS git, or None for anonymous; never logged or stored."""

    def pull_refs(self, pull: PullRequest) -> list[str]:
        """Git refs that hold the pull request's head in the base repository (fetched with heads)."""

    def create_or_update_issue(self, repo: Repo, title: str, body: str, issue_id: Optional[str]) -> str:
        """Open an issue (or update issue_id) and return its id. Used for drift reports."""

    def close_issue(self, repo: Repo, issue_id: str, comment: str) -> None:
        """Close an issue with a final comment."""

    # -- listing, for the sweep that catches up on missed webhooks (bot.reconcile) --------

    def open_pull_requests(self, repo: Repo) -> list[PullRequest]:
        """Every open pull request of the repository (all pages), with `updated_at` set."""

    def recently_closed_pull_requests(self, repo: Repo, since: float) -> list[PullRequest]:
        """Pull requests merged or closed at or after `since` (epoch seconds), newest first;
        `state` says which, `merge_sha` is the merge commit of a merged one."""

    def statuses(self, repo: Repo, sha: str) -> dict[str, str]:
        """The latest state of each commit status (or check run) on sha, by context: PENDING,
        SUCCESS, FAILURE, or the forge's own word for any other state."""

    def comments_since(self, pull: PullRequest, since: float) -> list[Comment]:
        """Comments created or edited at or after `since` (epoch seconds), the bot's own too,
        oldest first (by creation); system notes left out."""


# -- optional: a forge without these needs no change (the report layer asks `has_checks` and
# `hides_outdated_comments` first, and falls back to commit statuses and edited comments) --------


class CheckRuns(Protocol):
    """A forge that shows a command's result as a check run (GitHub, as an App)."""

    #: True when check runs replace commit statuses on this forge now.
    checks_enabled: bool

    def report_check(self, repo: Repo, sha: str, check: CheckReport, check_id: str | None = None) -> str:
        """Create the check run on sha (check_id None) or update check_id; returns its id."""


class OutdatedComments(Protocol):
    """A forge that can hide an outdated comment instead of editing it (GitHub, as an App)."""

    #: True when this forge hides outdated comments now.
    hides_outdated_comments: bool

    def hide_outdated_comment(self, pull: PullRequest, comment_id: str) -> None:
        """Collapse the comment as outdated; a deleted comment is no error."""


def has_checks(forge: object) -> TypeGuard[CheckRuns]:
    """Whether the forge writes check runs (bot.forges.base.CheckRuns) instead of commit statuses."""
    return bool(getattr(forge, "checks_enabled", False))


def hides_outdated_comments(forge: object) -> TypeGuard[OutdatedComments]:
    """Whether the forge hides outdated comments (OutdatedComments) rather than having them edited."""
    return bool(getattr(forge, "hides_outdated_comments", False))
