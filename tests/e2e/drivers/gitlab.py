"""The GitLab driver: FakeGitLab, webhooks from tests/fixtures/gitlab."""
from __future__ import annotations

import json
import uuid

from tests.e2e.drivers import BOT_LOGIN, REPO, Delivery, PullSpec
from tests.fakes.gitlab import FakeGitLab
from tests.support import GitRepo
from tests.support_gitlab import MR_HOOK, NOTE_HOOK, gitlab_mr_payload, gitlab_note_payload

TOKEN, SECRET = "glpat-driver-token", "gitlab-driver-secret"
DEVELOPER = 30
_STATES = {"running": "pending", "pending": "pending", "success": "success", "failed": "failure",
           "canceled": "failure"}


class GitLabDriver:
    forge = "gitlab"
    repo_id = f"gitlab.example.com/{REPO}"

    def __init__(self) -> None:
        self.fake = FakeGitLab(token=TOKEN, bot_username=BOT_LOGIN).start()
        self.repo: GitRepo | None = None

    def config(self) -> dict:
        return {"url": self.fake.url, "token": TOKEN, "webhook_secret": SECRET, "bot_login": BOT_LOGIN}

    def add_repo(self, repo: GitRepo) -> None:
        self.repo = repo
        self.fake.add_project(REPO, repo.clone_url)

    def open_pull(self, pull: PullSpec) -> Delivery:
        self._publish_head(pull.number, pull.head_sha)
        self.fake.add_mr(REPO, pull.number, pull.head_sha, pull.branch, "main", pull.author,
                         files=pull.files, base_sha=pull.base_sha)
        return self._deliver(MR_HOOK, gitlab_mr_payload("open", self.fake, REPO, pull.number, pull.author))

    def push(self, number: int, head_sha: str, files: list[str]) -> Delivery:
        old = self.fake.mr(REPO, number)["sha"]
        self._publish_head(number, head_sha)
        self.fake.push(REPO, number, head_sha, files)
        return self._deliver(MR_HOOK, gitlab_mr_payload("update", self.fake, REPO, number, oldrev=old))

    def grant_write(self, login: str) -> None:
        self.fake.set_access(REPO, login, DEVELOPER)

    def comment(self, number: int, body: str, author: str) -> Delivery:
        return self._deliver(NOTE_HOOK, gitlab_note_payload(self.fake, REPO, number, body, author))

    def approve(self, number: int, reviewer: str) -> Delivery | None:
        self.fake.approve(REPO, number, reviewer)
        return self._deliver(MR_HOOK, gitlab_mr_payload("approved", self.fake, REPO, number, reviewer))

    def merge(self, number: int, merge_sha: str) -> Delivery:
        self.fake.mark_merged(REPO, number, merge_sha)
        return self._deliver(MR_HOOK, gitlab_mr_payload("merge", self.fake, REPO, number))

    def bot_comments(self, number: int) -> list[str]:
        return [n["body"] for n in self.fake.notes(REPO, number) if n["author"] == BOT_LOGIN]

    def statuses(self, sha: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for status in self.fake.statuses(REPO, sha):
            found.setdefault(status["name"], []).append(_STATES.get(status["status"], status["status"]))
        return found

    def drift_reports(self) -> list[str]:
        return [f"{i['title']}\n{i['description']}" for i in self.fake.issues(REPO) if i["state"] == "opened"]

    def close(self) -> None:
        self.fake.stop()

    def _publish_head(self, number: int, sha: str) -> None:
        """GitLab keeps every merge request's head at refs/merge-requests/<iid>/head."""
        assert self.repo is not None
        self.repo.git("push", "-q", "-f", "origin", f"{sha}:refs/merge-requests/{number}/head")

    def _deliver(self, event: str, payload: dict) -> Delivery:
        return Delivery({"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                         "X-Gitlab-Token": SECRET, "Content-Type": "application/json"},
                        json.dumps(payload).encode())
