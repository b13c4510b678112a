"""End to end through `plankeeper serve` as a GitHub App (`github.checks: auto`): check runs
instead of commit statuses, the Apply button (permission checked, once per click), Re-run, and
older plan comments minimized instead of edited. Real Terraform, the fake GitHub as the App's."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import _stop_embedded_redis
from tests.fakes.github import FakeGitHub
from tests.support import EMBEDDED_TERRAFORM, GitRepo, Server, github_pr_payload, wait_for
from tests.support_app import (
    APP_ID,
    APP_LOGIN,
    app_github,
    app_keys,
    check_run_payload,
    check_suite_payload,
)

pytestmark = pytest.mark.e2e
REPO, SECRET = "acme/infra", "checks-webhook-secret"
PLAN_LINE = "Plan: 1 to add, 0 to change, 0 to destroy."


class AppScenario:
    """A repository on the App's fake GitHub, a pull request changing infra/app, and `serve`."""

    def __init__(self, fake: FakeGitHub, tmp_path: Path):
        self.fake, self.tmp = fake, tmp_path
        self.git = GitRepo(tmp_path / "git")
        self.state = tmp_path / "state" / "app.tfstate"
        self.state.parent.mkdir()
        self.base = self.git.commit({"README.md": "infra\n"}, "initial")
        fake.add_repo(REPO, self.git.clone_url)
        self.server: Server | None = None

    def serve(self) -> Server:
        key = self.tmp / "app.pem"
        key.write_text(app_keys()[0])
        config = {
            "workers": 2,
            "github": {"api_url": self.fake.api_url, "app_id": APP_ID, "private_key_file": str(key),
                       "webhook_secret": SECRET, "write_interval": 0},
            "terraform": {"binary": EMBEDDED_TERRAFORM, "timeout": 120},
            "sandbox_paths": [f"{self.state.parent}:rw"],
            "defaults": {"apply_requirements": []},
        }
        (self.tmp / "server").mkdir()
        self.server = Server(self.tmp / "server", config).start()
        return self.server

    def open_pull(self, number: int = 7) -> str:
        module = (f'terraform {{\n  backend "local" {{\n    path = "{self.state}"\n  }}\n}}\n'
                  'resource "terraform_data" "x" {\n  input = "hello"\n}\n')
        head = self.git.commit({"infra/app/main.tf": module}, "add app", branch=f"feature-{number}")
        self.git.checkout("main")
        self.fake.add_pull(REPO, number, head, f"feature-{number}", "main", "alice", files=["infra/app/main.tf"],
                           base_sha=self.base)
        self.fake.set_permission(REPO, "alice", "write")
        self.deliver("pull_request", github_pr_payload("opened", self.fake, REPO, number))
        return head

    def deliver(self, event: str, payload: dict) -> None:
        assert self.server is not None
        answer = self.server.deliver_github(event, payload, SECRET)
        assert answer.status_code == 202, answer.text
        self.server.wait_jobs_idle()

    def runs(self, sha: str, name: str) -> list[dict]:
        return [r for r in self.fake.check_runs(REPO, sha) if r["name"] == name]

    def comments(self, prefix: str, number: int = 7) -> list[dict]:
        return [c for c in self.fake.comments(REPO, number) if c["body"].startswith(prefix)]

    def state_values(self) -> list[str]:
        if not self.state.exists():
            return []
        data = json.loads(self.state.read_text())
        return [i["attributes"]["input"]["value"] for r in data["resources"] for i in r["instances"]]


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[AppScenario]:
    with app_github() as fake:
        app = AppScenario(fake, tmp_path)
        yield app
        if app.server is not None:
            code = app.server.stop()
            _stop_embedded_redis(app.server)
            assert code == 0, f"serve exited with {code}:\n{app.server.log()}"


def test_plan_check_run_and_its_apply_button_for_writers_only(scenario: AppScenario) -> None:
    server = scenario.serve()
    head = scenario.open_pull()
    [plan] = scenario.runs(head, "plankeeper/plan")
    assert plan["history"] == [("in_progress", None), ("completed", "success")], server.log()
    assert plan["app_id"] == APP_ID and plan["external_id"] == "pull:7"
    assert plan["output"]["title"] == "1 project: 1 with changes, 0 without, 0 failed"
    assert f"| `infra/app` | `default` | 📝 changes | {PLAN_LINE} |" in plan["output"]["summary"]
    assert "terraform_data.x" in plan["output"]["text"] and PLAN_LINE in plan["output"]["text"]
    assert plan["details_url"].startswith(f"{server.url}/jobs/")
    assert [a["identifier"] for a in plan["actions"]] == ["apply"]
    assert scenario.fake.statuses(REPO, head) == []  # check runs instead of commit statuses
    [comment] = scenario.comments("**Plankeeper plan**")  # the plan comment stays
    assert comment["user"] == APP_LOGIN and PLAN_LINE in comment["body"]

    scenario.fake.set_permission(REPO, "mallory", "read")
    scenario.deliver("check_run", check_run_payload(scenario.fake, REPO, plan["id"], "requested_action", "mallory"))
    [refusal] = scenario.comments("**apply refused**")
    assert "@mallory cannot `/apply` here: it needs write permission on acme/infra" in refusal["body"]
    assert scenario.state_values() == [] and scenario.runs(head, "plankeeper/apply") == []

    click = check_run_payload(scenario.fake, REPO, plan["id"], "requested_action", "alice")
    scenario.deliver("check_run", click)
    [applied] = scenario.comments("**Plankeeper apply**")
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in applied["body"]
    assert scenario.state_values() == ["hello"]
    [apply] = scenario.runs(head, "plankeeper/apply")
    assert apply["history"] == [("in_progress", None), ("completed", "success")]
    assert apply["output"]["title"] == "1 project: 1 applied, 0 failed" and apply["actions"] == []
    audit = requests.get(f"{server.url}/api/audit?action=apply", timeout=5).json()
    assert audit[0]["user"] == "alice" and audit[0]["result"] == "success"

    scenario.deliver("check_run", click)  # the same signed click again, under a new delivery id
    assert len(scenario.comments("**Plankeeper apply**")) == 1 and len(scenario.runs(head, "plankeeper/apply")) == 1
    ignored = requests.get(f"{server.url}/api/audit?action=command_ignored", timeout=5).json()
    assert ignored and "Apply by @alice was already acted on" in ignored[0]["result"]


def test_rerun_replans_and_the_older_plan_comment_is_minimized(scenario: AppScenario) -> None:
    server = scenario.serve()
    head = scenario.open_pull()
    [first_run] = scenario.runs(head, "plankeeper/plan")
    scenario.deliver("check_run", check_run_payload(scenario.fake, REPO, first_run["id"], "rerequested", "alice"))
    runs = scenario.runs(head, "plankeeper/plan")
    assert len(runs) == 2 and runs[1]["history"][-1] == ("completed", "success"), server.log()
    first, second = scenario.comments("**Plankeeper plan**")
    assert scenario.fake.minimized(REPO, 7) == {first["id"]: "OUTDATED"}
    assert PLAN_LINE in first["body"] and "Outdated" not in first["body"]  # minimized, not edited
    assert any("minimizeComment" in call["query"] for call in scenario.fake.graphql_calls)

    scenario.deliver("check_suite", check_suite_payload(scenario.fake, REPO, 7, "alice"))  # "Re-run all checks"
    wait_for(lambda: len(scenario.comments("**Plankeeper plan**")) == 3, timeout=30, what="a third plan")
    assert scenario.fake.minimized(REPO, 7) == {first["id"]: "OUTDATED", second["id"]: "OUTDATED"}
    assert len(scenario.runs(head, "plankeeper/plan")) == 3
