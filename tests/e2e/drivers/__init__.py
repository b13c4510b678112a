"""One driver per forge for the end-to-end flow that every forge passes (test_forge_flow.py).

A driver stands up the forge's fake server, registers the test repository on it, plays the
users' side (open, push, comment, approve, merge) and hands back each webhook the forge would
send as a `Delivery`, built from the forge's published payloads (tests/fixtures/<forge>/). It
reads back what the bot wrote (comments, statuses, drift reports) in forge-neutral words.
Git itself (commits, merges) is the scenario's: the driver only publishes what the forge
publishes (e.g. GitLab's refs/merge-requests/N/head) and records head and merge commits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tests.support import GitRepo

REPO = "acme/infra"  # every driver hosts the scenario's repository under this owner/name
BOT_LOGIN = "plankeeper-bot"


@dataclass
class Delivery:
    """One webhook as the forge would POST it to /events."""

    headers: dict[str, str]
    body: bytes
    expect: int = 202  # what the bot should answer; 200 for deliveries it ignores


@dataclass
class PullSpec:
    number: int
    head_sha: str
    branch: str
    base_sha: str
    author: str
    files: list[str] = field(default_factory=list)


class ForgeDriver(Protocol):
    forge: str  # the settings section and Repo.forge: "github", "gitlab", ...
    repo_id: str  # REPO as the bot names it: host/owner/name (the host of the forge's web URLs)

    def config(self) -> dict:
        """The forge's section of the server config (URL, token, webhook secret, bot login)."""

    def add_repo(self, repo: GitRepo) -> None:
        """Host `repo` (its commits so far on main) as REPO on the fake forge."""

    def open_pull(self, pull: PullSpec) -> Delivery:
        """Open the pull request in the fake and return the "opened" webhook."""

    def push(self, number: int, head_sha: str, files: list[str]) -> Delivery:
        """New commits on the pull request's branch (already pushed): the "updated" webhook."""

    def grant_write(self, login: str) -> None:
        """Give a user write (developer, contributor...) permission on the repository."""

    def comment(self, number: int, body: str, author: str) -> Delivery:
        """A user's comment, created in the fake, and its webhook."""

    def approve(self, number: int, reviewer: str) -> Delivery | None:
        """An approval of the current head, and its webhook (None when the forge sends none)."""

    def merge(self, number: int, merge_sha: str) -> Delivery:
        """The pull request merged (merge_sha already pushed to main): the "merged" webhook."""

    def bot_comments(self, number: int) -> list[str]:
        """The bodies of the bot's comments on the pull request as they read now, oldest first."""

    def statuses(self, sha: str) -> dict[str, list[str]]:
        """Every state the bot set per status context on sha, in order: "pending", "success",
        "failure" (mapped from the forge's words)."""

    def drift_reports(self) -> list[str]:
        """Titles and bodies of the open drift reports (issues, work items...), one string each."""

    def close(self) -> None:
        """Stop the fake server."""
