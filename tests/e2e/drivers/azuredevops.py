"""The Azure DevOps driver: FakeAzureDevOps, service hooks from tests/fixtures/azuredevops.

REPO (acme/infra) is the repository `infra` of the project `acme` in the organization `fabrikam`:
the bot names it HOST/fabrikam/acme/infra. The scenario's users are identities
`<name>@fabrikam.example`; write access is the Contribute permission of the project's
Contributors group, which grant_write adds them to. The bot is not told its login: it asks
Azure DevOps who its token is (`_apis/connectionData`).
"""
from __future__ import annotations

import html
from collections.abc import Iterable

from tests.e2e.drivers import REPO, Delivery, PullSpec
from tests.fakes.azuredevops import ORG, FakeAzureDevOps
from tests.fakes.azuredevops_payloads import (
    CREATED,
    MERGED,
    UPDATED,
    approval_text,
    as_body,
    comment_event,
    delivery_headers,
    pull_request_event,
    push_text,
)
from tests.support import GitRepo

TOKEN = "ado-driver-pat"
HOOK_USER, HOOK_PASSWORD = "plankeeper-hooks", "ado-driver-hook-password"
BOT = "plankeeper-bot@fabrikam.example"
CONTRIBUTORS = "[acme]\\Contributors"
_STATES = {"pending": "pending", "succeeded": "success", "failed": "failure", "error": "failure"}


def identity(login: str) -> str:
    return f"{login}@fabrikam.example"


class AzureDevOpsDriver:
    forge = "azuredevops"

    def __init__(self) -> None:
        self.fake = FakeAzureDevOps(token=TOKEN, bot=BOT).start()
        self.project, _, self.name = REPO.partition("/")
        self.repo_id = f"{self.fake.url.removeprefix('http://')}/{ORG}/{REPO}"

    def config(self) -> dict:
        return {"org_url": self.fake.org_url, "token": TOKEN, "webhook_username": HOOK_USER,
                "webhook_password": HOOK_PASSWORD}

    def add_repo(self, repo: GitRepo) -> None:
        self.fake.add_repo(self.project, self.name, repo.bare)
        self.fake.add_group(CONTRIBUTORS)
        self.fake.grant_project(self.project, CONTRIBUTORS, allow=4)

    def open_pull(self, pull: PullSpec) -> Delivery:
        author = identity(pull.author)
        self.fake.add_pull(self.project, self.name, pull.number, pull.head_sha, pull.branch, "main", author,
                           files=pull.files)
        return self._pull_event(CREATED, pull.number, f"{self._display(author)} created a new pull request")

    def push(self, number: int, head_sha: str, files: list[str]) -> Delivery:
        self.fake.push(self.project, self.name, number, head_sha, files)
        pr = self.fake.pull(self.project, self.name, number)
        return self._pull_event(UPDATED, number, f"{pr['createdBy']['displayName']} {push_text(pr)}")

    def grant_write(self, login: str) -> None:
        self.fake.add_group(CONTRIBUTORS, (identity(login),))

    def comment(self, number: int, body: str, author: str) -> Delivery:
        comment = self.fake.add_comment(self.project, self.name, number, body, identity(author))
        return self._deliver(comment_event(self.fake, self.project, self.name, number, comment))

    def approve(self, number: int, reviewer: str) -> Delivery | None:
        who = identity(reviewer)
        self.fake.vote(self.project, self.name, number, who, 10)
        pr = self.fake.pull(self.project, self.name, number)
        return self._pull_event(UPDATED, number, f"{self._display(who)} {approval_text(pr)}")

    def merge(self, number: int, merge_sha: str) -> Delivery:
        """Completed (in the web UI): Azure DevOps' "merge attempted" notification, status completed."""
        self.fake.mark_completed(self.project, self.name, number, merge_sha)
        merger = self.fake.pull(self.project, self.name, number)["createdBy"]["displayName"]
        return self._pull_event(MERGED, number, f"{merger} has created a pull request merge commit")

    def bot_comments(self, number: int) -> list[str]:
        return [c["content"] for c in self.fake.comments(self.project, self.name, number) if c["author"] == BOT]

    def statuses(self, sha: str) -> dict[str, list[str]]:
        """Pull request statuses on the iteration of sha, else the commit statuses of sha."""
        on_pulls = _by_context(s for number in self.fake.pull_numbers(self.project, self.name)
                               for s in self.fake.pull_statuses(self.project, self.name, number) if s["commit"] == sha)
        on_commit = _by_context(self.fake.commit_statuses(self.project, self.name, sha))
        return {**on_commit, **on_pulls}

    def drift_reports(self) -> list[str]:
        return [f"{w['fields']['System.Title']}\n{html.unescape(w['fields'].get('System.Description', ''))}"
                for w in self.fake.work_items() if w["fields"]["System.State"] != "Done"]

    def close(self) -> None:
        self.fake.stop()

    def _display(self, unique_name: str) -> str:
        return self.fake.identity_ref(unique_name)["displayName"]

    def _pull_event(self, event_type: str, number: int, message: str) -> Delivery:
        return self._deliver(pull_request_event(self.fake, event_type, self.project, self.name, number, message))

    def _deliver(self, payload: dict) -> Delivery:
        return Delivery(delivery_headers(HOOK_USER, HOOK_PASSWORD), as_body(payload))


def _by_context(statuses: Iterable[dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for status in statuses:
        context = "/".join(p for p in (status["context"].get("genre"), status["context"]["name"]) if p)
        found.setdefault(context, []).append(_STATES.get(status["state"], status["state"]))
    return found
