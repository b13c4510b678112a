"""The Gitea driver: FakeGitea (git over smart HTTP, the token as the password), webhooks from
tests/fixtures/gitea with every header Gitea sends, GitHub's included."""
from __future__ import annotations

import json

from tests.e2e.drivers import BOT_LOGIN, REPO, Delivery, PullSpec
from tests.fakes.gitea import FakeGitea
from tests.support import GitRepo
from tests.support_gitea import (
    REVIEWS,
    comment_payload,
    gitea_headers,
    pr_event_type,
    pr_payload,
    review_payload,
)

TOKEN, SECRET = "gitea-driver-token", "gitea-driver-secret"
_STATES = {"pending": "pending", "success": "success", "failure": "failure", "error": "failure"}


class GiteaDriver:
    forge = "gitea"

    def __init__(self) -> None:
        self.fake = FakeGitea(token=TOKEN, bot_login=BOT_LOGIN).start()
        self.repo_id = f"{self.fake.web_host}/{REPO}"
        self.repo: GitRepo | None = None

    def config(self) -> dict:
        return {"url": self.fake.url, "token": TOKEN, "webhook_secret": SECRET, "bot_login": BOT_LOGIN}

    def add_repo(self, repo: GitRepo) -> None:
        self.repo = repo
        self.fake.add_repo(REPO, repo.bare)

    def open_pull(self, pull: PullSpec) -> Delivery:
        self._publish_head(pull.number, pull.head_sha)
        self.fake.add_pull(REPO, pull.number, pull.head_sha, pull.branch, "main", pull.author, files=pull.files,
                           base_sha=pull.base_sha)
        return self._pull_event(pull.number, "opened", pull.author)

    def push(self, number: int, head_sha: str, files: list[str]) -> Delivery:
        self._publish_head(number, head_sha)
        self.fake.push(REPO, number, head_sha, files)
        return self._pull_event(number, "synchronized", self.fake.pull(REPO, number)["author"])

    def grant_write(self, login: str) -> None:
        self.fake.set_permission(REPO, login, "write")

    def comment(self, number: int, body: str, author: str) -> Delivery:
        return self._deliver("issue_comment", "pull_request_comment",
                             comment_payload(self.fake, REPO, number, body, author))

    def approve(self, number: int, reviewer: str) -> Delivery | None:
        _, event, event_type, _ = REVIEWS["approved"]
        return self._deliver(event, event_type, review_payload(self.fake, REPO, number, reviewer))

    def merge(self, number: int, merge_sha: str) -> Delivery:
        self.fake.mark_merged(REPO, number, merge_sha)
        return self._pull_event(number, "closed", "alice")

    def bot_comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.fake.comments(REPO, number) if c["author"] == BOT_LOGIN]

    def statuses(self, sha: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for status in self.fake.statuses(REPO, sha):
            found.setdefault(status["context"], []).append(_STATES.get(status["state"], status["state"]))
        return found

    def drift_reports(self) -> list[str]:
        return [f"{i['title']}\n{i['body']}" for i in self.fake.issues(REPO) if i["state"] == "open"]

    def close(self) -> None:
        self.fake.stop()

    def _publish_head(self, number: int, sha: str) -> None:
        """Gitea keeps every pull request's head at refs/pull/<index>/head in the base repository."""
        assert self.repo is not None
        self.repo.git("push", "-q", "-f", "origin", f"{sha}:refs/pull/{number}/head")

    def _pull_event(self, number: int, action: str, sender: str) -> Delivery:
        payload = pr_payload(self.fake, REPO, number, action, sender)
        return self._deliver("pull_request", pr_event_type(action), payload)

    def _deliver(self, event: str, event_type: str, payload: dict) -> Delivery:
        body = json.dumps(payload, indent=2).encode()  # Gitea indents with two spaces
        return Delivery(gitea_headers(event, event_type, body, SECRET), body)
