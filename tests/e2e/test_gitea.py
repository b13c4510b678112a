"""Gitea against hostile input, through a real `plankeeper serve` and FakeGitea: a forged delivery,
the bot's own comment, `/apply` and an approval from a user who may only read, a Forgejo delivery,
and the bot's git credentials (only over HTTP, never on disk)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.bot.drift.test_check import main_tf
from tests.e2e.drivers import BOT_LOGIN, REPO, Delivery, PullSpec
from tests.e2e.drivers.gitea import TOKEN, GiteaDriver
from tests.support import EMBEDDED_TERRAFORM, GitRepo, Server
from tests.support_gitea import comment_payload, gitea_headers

pytestmark = pytest.mark.e2e
PROJECT = "infra/app/main.tf"


class Bench:
    def __init__(self, tmp: Path):
        self.driver = GiteaDriver()
        self.state = tmp / "state" / "app.tfstate"
        self.state.parent.mkdir()
        self.repo = GitRepo(tmp)
        base = self.repo.commit({"README.md": "infra\n"}, "initial")
        self.driver.add_repo(self.repo)
        self.driver.grant_write("alice")
        self.driver.fake.set_permission(REPO, "mallory", "read")
        self.head = self.repo.commit({PROJECT: main_tf(self.state, "one")}, "pr 1", branch="feature-1")
        self.repo.checkout("main")
        (tmp / "server").mkdir()
        self.server = Server(tmp / "server", {
            "workers": 1, "gitea": self.driver.config(),
            "terraform": {"binary": EMBEDDED_TERRAFORM, "timeout": 120},
            "sandbox_paths": [f"{self.state.parent}:rw"],
            "defaults": {"apply_requirements": ["approved"], "apply_on_approval": True},
        }).start()
        self.send(self.driver.open_pull(PullSpec(1, self.head, "feature-1", base, "alice", [PROJECT])))

    def post(self, delivery: Delivery) -> requests.Response:
        return requests.post(f"{self.server.url}/events", data=delivery.body, headers=delivery.headers,
                             timeout=10)

    def send(self, delivery: Delivery, expect: int = 202) -> dict:
        answer = self.post(delivery)
        assert answer.status_code == expect, answer.text
        self.server.wait_jobs_idle()
        return answer.json()

    def last_comment(self) -> str:
        return self.driver.bot_comments(1)[-1]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    made = Bench(tmp_path_factory.mktemp("gitea"))
    yield made
    code = made.server.stop()
    made.driver.close()
    assert code == 0, made.server.log()


def test_the_pull_request_was_planned_from_the_http_clone(bench: Bench) -> None:
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in bench.last_comment(), bench.server.log()
    assert bench.driver.statuses(bench.head)["plankeeper/plan"][-1] == "success"
    fetched = [r for r in bench.driver.fake.git.requests if r.status == 200]
    assert fetched and {r.username for r in fetched} == {BOT_LOGIN}


def test_the_token_is_never_written_to_disk(bench: Bench) -> None:
    data_dir = Path(bench.server.config["data_dir"])
    leaks = [p for p in data_dir.rglob("*") if p.is_file() and not p.is_symlink()
             and p.stat().st_size < 50_000_000 and TOKEN.encode() in p.read_bytes()]
    assert leaks == []


def test_a_forged_delivery_is_refused(bench: Bench) -> None:
    body = json.dumps(comment_payload(bench.driver.fake, REPO, 1, "/apply", "alice")).encode()
    answer = bench.post(Delivery(gitea_headers("issue_comment", "pull_request_comment", body, "guessed"), body))
    assert answer.status_code == 401 and "X-Gitea-Signature" in answer.json()["error"]
    assert not bench.state.exists()


def test_the_bot_s_own_comment_is_not_a_command(bench: Bench) -> None:
    answer = bench.send(bench.driver.comment(1, "/apply", BOT_LOGIN), expect=200)
    assert answer["reason"] == "comment by the bot itself" and not bench.state.exists()


def test_a_reader_can_neither_apply_nor_approve_into_an_apply(bench: Bench) -> None:
    bench.send(bench.driver.comment(1, "/apply", "mallory"))
    assert "needs write permission" in bench.last_comment() and not bench.state.exists()
    before = len(bench.driver.bot_comments(1))
    bench.send(bench.driver.approve(1, "mallory"))
    assert not bench.state.exists() and len(bench.driver.bot_comments(1)) == before
    audit = requests.get(f"{bench.server.url}/api/audit", timeout=5).json()
    refused = [e for e in audit if e.get("user") == "mallory" and e.get("action") == "apply_refused"]
    assert refused and "write permission" in refused[0]["result"], audit


def test_a_forgejo_delivery_is_read_as_gitea_s(bench: Bench) -> None:
    delivery = bench.driver.comment(1, "/plan", "alice")
    forgejo = gitea_headers("issue_comment", "pull_request_comment", delivery.body, "", forgejo=True)
    headers = {k: v for k, v in delivery.headers.items() if not k.startswith("X-Gitea")}
    headers.update({k: v for k, v in forgejo.items() if k.startswith("X-Forgejo")})
    headers["X-Forgejo-Signature"] = delivery.headers["X-Gitea-Signature"]
    before = len(bench.driver.bot_comments(1))
    bench.send(Delivery(headers, delivery.body))
    comments = bench.driver.bot_comments(1)
    assert len(comments) > before and "Plan: 1 to add" in comments[-1]
