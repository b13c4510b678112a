"""The Bitbucket drivers, with git over smart HTTP and webhooks from tests/fixtures/bitbucket:
Bitbucket Cloud (FakeBitbucketCloud, REST 2.0; the bot knows users by account id, the scenario's
users are names, translated here) and Bitbucket Data Center (FakeBitbucketDataCenter, REST 1.0; no
issue tracker, so its drift reports arrive as `drift` notifications at a receiver of the driver's)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.e2e.drivers import BOT_LOGIN, REPO, Delivery, PullSpec
from tests.fakes.bitbucket import FakeBitbucketCloud
from tests.fakes.bitbucket_dc import FakeBitbucketDataCenter
from tests.fakes.bitbucket_payloads import (
    cloud_headers,
    cloud_payload,
    dc_headers,
    dc_payload,
    encode,
)
from tests.support import GitRepo, WebhookReceiver

USERNAME, TOKEN, SECRET = "plankeeper-bot", "bb-driver-app-password", "bitbucket-driver-secret"
_STATES = {"INPROGRESS": "pending", "SUCCESSFUL": "success", "FAILED": "failure", "STOPPED": "failure"}
_OPEN_ISSUES = ("new", "open")
DC_REPO = "ACME/infra"  # a Data Center project key is written in capitals


def _serve(git_root: Path, full_name: str, repo: GitRepo) -> None:
    """The scenario's bare repository at <git_root>/<full_name>.git, where the git server finds it."""
    served = git_root / f"{full_name}.git"
    served.parent.mkdir(parents=True, exist_ok=True)
    served.symlink_to(repo.bare.resolve(), target_is_directory=True)


class BitbucketCloudDriver:
    forge = "bitbucket"

    def __init__(self) -> None:
        self._git_root = Path(tempfile.mkdtemp(prefix="bitbucket-git-"))
        self.fake = FakeBitbucketCloud(username=USERNAME, token=TOKEN, bot=BOT_LOGIN, git_root=self._git_root).start()

    @property
    def repo_id(self) -> str:
        """bitbucket.org/acme/infra on Bitbucket Cloud; here the host of the fake's web (and git) pages."""
        return f"{self.fake.web_url.removeprefix('http://')}/{REPO}"

    def config(self) -> dict:
        return {"url": self.fake.api_url, "username": USERNAME, "token": TOKEN, "webhook_secret": SECRET,
                "bot_login": self.fake.account_id(BOT_LOGIN)}

    def add_repo(self, repo: GitRepo) -> None:
        _serve(self._git_root, REPO, repo)
        self.fake.add_repo(REPO, git_path=repo.bare)

    def open_pull(self, pull: PullSpec) -> Delivery:
        self.fake.add_pull(REPO, pull.number, pull.head_sha, pull.branch, "main", pull.author,
                           files=pull.files, base_sha=pull.base_sha)
        return self._deliver("pullrequest:created", pull.number, pull.author)

    def push(self, number: int, head_sha: str, files: list[str]) -> Delivery:
        self.fake.push(REPO, number, head_sha, files)
        return self._deliver("pullrequest:updated", number, self.fake.name_of(self.fake.pull(REPO, number)["author"]["account_id"]))

    def grant_write(self, login: str) -> None:
        self.fake.set_permission(REPO, login, "write")

    def comment(self, number: int, body: str, author: str) -> Delivery:
        comment_id = self.fake.add_comment(REPO, number, body, author)
        return self._deliver("pullrequest:comment_created", number, author, comment_id)

    def approve(self, number: int, reviewer: str) -> Delivery | None:
        self.fake.approve(REPO, number, reviewer)
        return self._deliver("pullrequest:approved", number, reviewer)

    def merge(self, number: int, merge_sha: str) -> Delivery:
        self.fake.mark_merged(REPO, number, merge_sha)
        return self._deliver("pullrequest:fulfilled", number, "alice")

    def bot_comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.fake.comments(REPO, number) if c["author"] == BOT_LOGIN and not c["deleted"]]

    def statuses(self, sha: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for status in self.fake.statuses(REPO, sha):
            found.setdefault(status["key"], []).append(_STATES.get(status["state"], status["state"]))
        return found

    def drift_reports(self) -> list[str]:
        return [f"{i['title']}\n{i['content']['raw']}" for i in self.fake.issues(REPO) if i["state"] in _OPEN_ISSUES]

    def close(self) -> None:
        self.fake.stop()
        shutil.rmtree(self._git_root, ignore_errors=True)

    def _deliver(self, event_key: str, number: int, actor: str, comment_id: int | None = None) -> Delivery:
        body = encode(cloud_payload(self.fake, event_key, REPO, number, actor, comment_id))
        return Delivery(cloud_headers(event_key, body, SECRET), body)


class BitbucketDataCenterDriver:
    forge = "bitbucket"
    name = "bitbucket-dc"

    def __init__(self) -> None:
        self._git_root = Path(tempfile.mkdtemp(prefix="bitbucket-dc-git-"))
        self.fake = FakeBitbucketDataCenter(username=USERNAME, token=TOKEN, git_root=self._git_root).start()
        self.receiver = WebhookReceiver()

    @property
    def repo_id(self) -> str:
        """<server host>/<PROJECT>/<slug>."""
        return f"{self.fake.url.removeprefix('http://')}/{DC_REPO}"

    def config(self) -> dict:
        return {"url": self.fake.url, "username": USERNAME, "token": TOKEN, "webhook_secret": SECRET}

    def server_config(self) -> dict:
        """Data Center has no issue tracker: drift is reported to the notifications."""
        return {"notifications": [{"kind": "http", "url": self.receiver.url, "events": ["drift"]}]}

    def add_repo(self, repo: GitRepo) -> None:
        _serve(self._git_root, DC_REPO, repo)
        self.fake.add_repo(DC_REPO, git_path=repo.bare)

    def open_pull(self, pull: PullSpec) -> Delivery:
        self.fake.add_pull(DC_REPO, pull.number, pull.head_sha, pull.branch, "main", pull.author,
                           files=pull.files, base_sha=pull.base_sha)
        return self._deliver("pr:opened", pull.number, pull.author)

    def push(self, number: int, head_sha: str, files: list[str]) -> Delivery:
        previous = self.fake.push(DC_REPO, number, head_sha, files)
        author = self.fake.pull(DC_REPO, number)["author"]["user"]["name"]
        return self._deliver("pr:from_ref_updated", number, author, previous_head=previous)

    def grant_write(self, login: str) -> None:
        self.fake.set_permission(DC_REPO, login, "REPO_WRITE")

    def comment(self, number: int, body: str, author: str) -> Delivery:
        comment_id = self.fake.add_comment(DC_REPO, number, body, author)
        return self._deliver("pr:comment:added", number, author, comment_id=comment_id)

    def approve(self, number: int, reviewer: str) -> Delivery | None:
        self.fake.approve(DC_REPO, number, reviewer)
        return self._deliver("pr:reviewer:approved", number, reviewer)

    def merge(self, number: int, merge_sha: str) -> Delivery:
        self.fake.mark_merged(DC_REPO, number, merge_sha)
        return self._deliver("pr:merged", number, "alice")

    def bot_comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.fake.comments(DC_REPO, number) if c["author"] == USERNAME]

    def statuses(self, sha: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for status in self.fake.statuses(DC_REPO, sha):
            found.setdefault(status["key"], []).append(_STATES.get(status["state"], status["state"]))
        return found

    def drift_reports(self) -> list[str]:
        return [f"{body['title']}\n{body['text']}" for _, body in self.receiver.received if body.get("event") == "drift"]

    def close(self) -> None:
        self.fake.stop()
        self.receiver.close()
        shutil.rmtree(self._git_root, ignore_errors=True)

    def _deliver(self, event_key: str, number: int, actor: str, **extra: object) -> Delivery:
        body = encode(dc_payload(self.fake, event_key, DC_REPO, number, actor, **extra))
        return Delivery(dc_headers(event_key, body, SECRET), body)
