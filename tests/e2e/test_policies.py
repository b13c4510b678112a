"""End to end through `plankeeper serve` and the fake GitHub: Rego policy sets on each plan,
/apply blocked by a failed deny until a policy owner's /approve_policies, warnings that never
block, approvals cleared by a new plan, policies that do not compile."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.e2e.test_github_apply import REPO, Scenario
from tests.support import github_comment_payload, github_pr_payload

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parent.parent / "data" / "policies"


def config(*sets: dict) -> dict:
    return {"defaults": {"apply_requirements": []}, "policies": {"sets": list(sets)}}


DENY = {"name": "no-forbidden", "path": str(DATA / "deny"), "owners": ["carol"]}
WARN = {"name": "naming", "path": str(DATA / "warn")}
BROKEN = {"name": "broken", "path": str(DATA / "broken"), "owners": ["carol"]}


@pytest.fixture
def scenario(fake_github, git_repo, tmp_path):
    scenario = Scenario(fake_github, git_repo, tmp_path)
    fake_github.set_permission(REPO, "carol", "write")
    return scenario


def send(server, fake, number: int, body: str, user: str = "alice") -> None:
    answer = server.deliver_github("issue_comment", github_comment_payload(fake, REPO, number, body, user),
                                   WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()


def open_and_plan(server, scenario, number: int, value: str) -> None:
    scenario.open_pull(number, value=value)
    answer = server.deliver_github("pull_request", github_pr_payload("opened", scenario.fake, REPO, number),
                                   WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()


def test_a_failed_deny_blocks_apply_until_an_owner_approves(scenario, fake_github, serve_factory):
    server = serve_factory(config(DENY, WARN))
    open_and_plan(server, scenario, 7, "forbidden")
    plan = scenario.comments(7, "**Plankeeper plan**")[-1]
    assert "❌ policy failed" in plan and "1 blocked by policy" in plan, plan
    assert "- ❌ `no-forbidden` failed:\n  - terraform_data.x holds a forbidden value" in plan

    send(server, fake_github, 7, "/apply")
    refusal = scenario.comments(7, "**Apply refused**")[-1]
    assert "policy set no-forbidden failed: terraform_data.x holds a forbidden value" in refusal
    assert "A policy owner can comment `/approve_policies`" in refusal

    send(server, fake_github, 7, "/approve_policies", user="alice")
    assert "@alice is not an owner of: `no-forbidden`" in scenario.comments(7, "**Plankeeper approve_policies**")[-1]
    send(server, fake_github, 7, "/approve_policies", user="carol")
    assert "@carol approved" in scenario.comments(7, "**Plankeeper approve_policies**")[-1]

    send(server, fake_github, 7, "/plan")  # a new plan clears the approval
    send(server, fake_github, 7, "/apply")
    assert len(scenario.comments(7, "**Apply refused**")) == 2 and scenario.state_values() == []

    send(server, fake_github, 7, "/approve_policies", user="carol")
    send(server, fake_github, 7, "/apply")
    applied = scenario.comments(7, "**Plankeeper apply**")
    assert applied and "Apply complete! Resources: 1 added" in applied[-1], scenario.comments(7)
    assert scenario.state_values() == ["forbidden"]

    audit = requests.get(f"{server.url}/api/audit", timeout=5).json()
    actions = [entry["action"] for entry in audit]
    assert actions.count("policy_check") == 2 and actions.count("approve_policies") == 2
    assert any(e["action"] == "apply_refused" and "no-forbidden" in e["result"] for e in audit)
    approvals = [e for e in audit if e["action"] == "approve_policies"]
    assert {e["user"] for e in approvals} == {"carol"} and all(e["plan_sha256"] for e in approvals)


def test_a_warning_shows_but_does_not_block(scenario, fake_github, serve_factory):
    server = serve_factory(config(DENY, WARN))
    open_and_plan(server, scenario, 7, "hello")
    plan = scenario.comments(7, "**Plankeeper plan**")[-1]
    assert "- ✅ `naming` passed with warnings:\n  - ⚠️ terraform_data.x: give it a descriptive name" in plan
    assert "- ✅ `no-forbidden` passed" in plan and "policy failed" not in plan
    send(server, fake_github, 7, "/apply")
    assert "Apply complete! Resources: 1 added" in scenario.comments(7, "**Plankeeper apply**")[-1]


def test_a_policy_that_does_not_compile_fails_the_check_naming_the_file(scenario, fake_github, serve_factory):
    server = serve_factory(config(BROKEN))
    open_and_plan(server, scenario, 7, "hello")
    plan = scenario.comments(7, "**Plankeeper plan**")[-1]
    assert "- ❌ `broken` could not be evaluated:" in plan and f"{DATA / 'broken' / 'bad.rego'}:4:" in plan, plan
    send(server, fake_github, 7, "/apply")
    assert "policy set broken failed: policy " in scenario.comments(7, "**Apply refused**")[-1]
    assert scenario.state_values() == []


def test_a_merged_pull_request_whose_plan_fails_a_policy_is_not_deployed(scenario, fake_github, serve_factory):
    server = serve_factory({**config(DENY), "defaults": {"apply_requirements": [], "apply_on_merge": True}})
    open_and_plan(server, scenario, 7, "forbidden")
    scenario.merge(7)
    server.deliver_github("pull_request", github_pr_payload("closed", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    body = scenario.comments(7, "**Plankeeper apply**")[-1]
    assert "Policy checks failed on the plan of the merge commit" in body, server.log()
    assert "- policy set no-forbidden failed: terraform_data.x holds a forbidden value" in body
    assert scenario.state_values() == []
    assert requests.get(f"{server.url}/api/deployments", timeout=5).json() == []
    refused = requests.get(f"{server.url}/api/audit?action=apply_refused", timeout=5).json()
    assert "no-forbidden" in refused[0]["result"]

