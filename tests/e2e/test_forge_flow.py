"""The flow every forge passes, end to end through a real `plankeeper serve` against each
forge's fake: autoplan comment and status, `/plan`, `/apply` refused without approval, the lock
told to a second pull request, approval then `/apply`, merge releases the lock, merge-to-deploy
of the second, and a drift report. Real Terraform, local state outside the work dirs."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.bot.drift.test_check import change_out_of_band, main_tf, state_value
from tests.e2e.drivers import Delivery, ForgeDriver, PullSpec
from tests.e2e.drivers.azuredevops import AzureDevOpsDriver
from tests.e2e.drivers.bitbucket import BitbucketCloudDriver, BitbucketDataCenterDriver
from tests.e2e.drivers.gitea import GiteaDriver
from tests.e2e.drivers.github import GitHubDriver
from tests.e2e.drivers.gitlab import GitLabDriver
from tests.support import EMBEDDED_TERRAFORM, GitRepo, Server, wait_for

pytestmark = pytest.mark.e2e
DRIVERS = [GitHubDriver, GitLabDriver, BitbucketCloudDriver, BitbucketDataCenterDriver, GiteaDriver,
           AzureDevOpsDriver]
API_TOKEN = "forge-flow-api-token"
PROJECT = "infra/app/main.tf"


@pytest.fixture(params=DRIVERS, ids=lambda d: getattr(d, "name", d.forge))
def driver(request):
    made = request.param()
    yield made
    made.close()


class Flow:
    """One repository on the driver's forge and one `plankeeper serve` for it."""

    def __init__(self, driver: ForgeDriver, tmp_path: Path):
        self.driver, self.tmp = driver, tmp_path
        self.state = tmp_path / "state" / "app.tfstate"
        self.state.parent.mkdir()
        self.repo = GitRepo(tmp_path)
        self.base = self.repo.commit({"README.md": "infra\n"}, "initial")
        driver.add_repo(self.repo)
        for user in ("alice", "bob"):
            driver.grant_write(user)
        config = {
            "workers": 2, driver.forge: driver.config(),
            "terraform": {"binary": EMBEDDED_TERRAFORM, "timeout": 120},
            "sandbox_paths": [f"{self.state.parent}:rw"],
            "defaults": {"apply_requirements": ["approved"], "apply_on_merge": True},
            "ui": {"api_token": API_TOKEN},
            **getattr(driver, "server_config", dict)(),  # what a forge needs beyond its section
        }
        (tmp_path / "server").mkdir()
        self.server = Server(tmp_path / "server", config).start()

    def send(self, delivery: Delivery | None) -> None:
        if delivery is None:
            return
        answer = requests.post(f"{self.server.url}/events", data=delivery.body, headers=delivery.headers, timeout=10)
        assert answer.status_code == delivery.expect, answer.text
        self.server.wait_jobs_idle()

    def open(self, number: int, value: str) -> str:
        branch = f"feature-{number}"
        head = self.repo.commit({PROJECT: main_tf(self.state, value)}, f"pr {number}", branch=branch)
        self.repo.checkout("main")
        self.send(self.driver.open_pull(PullSpec(number, head, branch, self.base, "alice", [PROJECT])))
        return head

    def merge(self, number: int) -> str:
        """Merge the branch for real (its side wins a conflict) and tell the forge."""
        self.repo.checkout("main")
        self.repo.git("merge", "-q", "--no-ff", "-X", "theirs", "-m", f"Merge {number}", f"feature-{number}")
        sha = self.repo.git("rev-parse", "HEAD")
        self.repo.git("push", "-q", "origin", "main")
        self.send(self.driver.merge(number, sha))
        return sha

    def say(self, number: int, body: str, author: str = "alice") -> None:
        self.send(self.driver.comment(number, body, author))

    def last_comment(self, number: int) -> str:
        comments = self.driver.bot_comments(number)
        return comments[-1] if comments else ""

    def stop(self) -> None:
        code = self.server.stop()
        assert code == 0, f"serve exited with {code}:\n{self.server.log()}"


def test_plan_lock_apply_merge_deploy_and_drift(driver: ForgeDriver, tmp_path: Path) -> None:
    flow = Flow(driver, tmp_path)
    try:
        _walk_through(flow, driver)
    finally:
        flow.stop()


def _walk_through(flow: Flow, driver: ForgeDriver) -> None:
    head = flow.open(1, "one")
    plan = flow.last_comment(1)
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan, flow.server.log()
    assert driver.statuses(head)["plankeeper/plan"][-1] == "success"

    flow.say(1, "/plan -d infra/app")
    assert len(driver.bot_comments(1)) >= 2 and "Plan: 1 to add" in flow.last_comment(1)

    flow.say(1, "/apply")
    assert "Apply refused" in flow.last_comment(1) and not flow.state.exists()

    flow.open(2, "two")
    assert "locked" in flow.last_comment(2).lower(), driver.bot_comments(2)

    flow.send(driver.approve(1, "bob"))
    flow.say(1, "/apply")
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in flow.last_comment(1)
    assert state_value(flow.state) == "one"
    assert driver.statuses(head)["plankeeper/apply"][-1] == "success"

    flow.merge(1)  # releases the lock
    flow.say(2, "/plan")
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in flow.last_comment(2), driver.bot_comments(2)
    flow.send(driver.approve(2, "bob"))
    flow.merge(2)  # merge-to-deploy
    assert state_value(flow.state) == "two", flow.server.log()
    assert any("Apply complete!" in body for body in driver.bot_comments(2))

    change_out_of_band(flow.tmp, flow.state, "rogue")
    answer = requests.post(f"{flow.server.url}/api/drift/{driver.repo_id}/infra/app",
                           headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert answer.status_code == 202, answer.text
    flow.server.wait_jobs_idle()
    reports = wait_for(driver.drift_reports, timeout=30, what="a drift report")
    assert any("terraform_data.x" in report for report in reports), reports
