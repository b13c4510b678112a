"""The GitHub driver: FakeGitHub, webhooks from tests/fixtures/github."""
from __future__ import annotations

import json
import uuid

from bot.signatures import sign_github
from tests.e2e.drivers import BOT_LOGIN, REPO, Delivery, PullSpec
from tests.fakes.github import FakeGitHub
from tests.support import GitRepo, github_comment_payload, github_pr_payload, github_review_payload

TOKEN, SECRET = "ghp-driver-token", "github-driver-secret"


class GitHubDriver:
    forge = "github"
    repo_id = f"github.com/{REPO}"

    def __init__(self) -> None:
        self.fake = FakeGitHub(token=TOKEN, login=BOT_LOGIN).start()

    def config(self) -> dict:
        return {"api_url": self.fake.api_url, "token": TOKEN, "webhook_secret": SECRET,
                "bot_login": BOT_LOGIN, "write_interval": 0}

    def add_repo(self, repo: GitRepo) -> None:
        self.fake.add_repo(REPO, repo.clone_url)

    def open_pull(self, pull: PullSpec) -> Delivery:
        self.fake.add_pull(REPO, pull.number, pull.head_sha, pull.branch, "main", pull.author,
                           files=pull.files, base_sha=pull.base_sha)
        return self._deliver("pull_request", github_pr_payload("opened", self.fake, REPO, pull.number))

    def push(self, number: int, head_sha: str, files: list[str]) -> Delivery:
        self.fake.push(REPO, number, head_sha, files)
        return self._deliver("pull_request", github_pr_payload("synchronize", self.fake, REPO, number))

    def grant_write(self, login: str) -> None:
        self.fake.set_permission(REPO, login, "write")

    def comment(self, number: int, body: str, author: str) -> Delivery:
        return self._deliver("issue_comment", github_comment_payload(self.fake, REPO, number, body, author))

    def approve(self, number: int, reviewer: str) -> Delivery | None:
        self.fake.add_review(REPO, number, reviewer, "APPROVED")
        return self._deliver("pull_request_review", github_review_payload(self.fake, REPO, number, reviewer))

    def merge(self, number: int, merge_sha: str) -> Delivery:
        self.fake.set_state(REPO, number, closed=True, merged=True)
        self.fake.pull(REPO, number).merge_commit_sha = merge_sha
        return self._deliver("pull_request", github_pr_payload("closed", self.fake, REPO, number))

    def bot_comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.fake.comments(REPO, number) if c["user"] == BOT_LOGIN]

    def statuses(self, sha: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for status in self.fake.statuses(REPO, sha):
            found.setdefault(status["context"], []).append(status["state"])
        return found

    def drift_reports(self) -> list[str]:
        return [f"{i['title']}\n{i['body']}" for i in self.fake.issues(REPO) if i["state"] == "open"]

    def close(self) -> None:
        self.fake.stop()

    def _deliver(self, event: str, payload: dict) -> Delivery:
        body = json.dumps(payload).encode()
        return Delivery({"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
                         "Content-Type": "application/json",
                         "X-Hub-Signature-256": sign_github(SECRET, body)}, body)
