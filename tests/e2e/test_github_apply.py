"""End to end through `plankeeper serve`: locks, reviewed-plan integrity, /apply, apply on
approval, merge-to-deploy. Real Terraform with a local state outside the job's work dir."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.support import github_comment_payload, github_pr_payload, github_review_payload, runs_under, wait_for

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
NO_APPROVAL = {"defaults": {"apply_requirements": []}}


def root_module(state: Path, value: str = "hello", sleep: int = 0, name: str = "x") -> str:
    provisioner = (f'  provisioner "local-exec" {{\n    command = "sleep {sleep}"\n  }}\n' if sleep else "")
    return (f'terraform {{\n  backend "local" {{\n    path = "{state}"\n  }}\n}}\n'
            f'resource "terraform_data" "{name}" {{\n  input = "{value}"\n{provisioner}}}\n')


class Scenario:
    """One repo on the fake GitHub with pull requests changing infra/app."""

    def __init__(self, fake, repo, tmp_path: Path):
        self.fake, self.repo = fake, repo
        self.state = tmp_path / "state" / "app.tfstate"
        self.state.parent.mkdir()
        self.base = repo.commit({"README.md": "infra\n"}, "initial")
        fake.add_repo(REPO, repo.clone_url)

    def open_pull(self, number: int, value: str = "hello", author: str = "alice", sleep: int = 0) -> str:
        branch = f"feature-{number}"
        self.repo.checkout("main")
        head = self.repo.commit({"infra/app/main.tf": root_module(self.state, value, sleep)}, f"pr {number}",
                                branch=branch)
        self.repo.checkout("main")
        self.fake.add_pull(REPO, number, head, branch, "main", author, files=["infra/app/main.tf"], base_sha=self.base)
        self.fake.set_permission(REPO, author, "write")
        return head

    def merge(self, number: int) -> str:
        pull = self.fake.pull(REPO, number)
        self.repo.checkout("main")
        self.repo.git("merge", "-q", "--no-ff", "-m", f"Merge #{number}", pull.head_ref)
        sha = self.repo.git("rev-parse", "HEAD")
        self.repo.git("push", "-q", "origin", "main")
        self.fake.set_state(REPO, number, closed=True, merged=True)
        pull.merge_commit_sha = sha
        return sha

    def comments(self, number: int, prefix: str = "") -> list[str]:
        return [c["body"] for c in self.fake.comments(REPO, number) if c["body"].startswith(prefix)]

    def state_values(self) -> list[str]:
        if not self.state.exists():
            return []
        data = json.loads(self.state.read_text())
        return [i["attributes"]["input"]["value"] if isinstance(i["attributes"]["input"], dict)
                else i["attributes"]["input"] for r in data["resources"] for i in r["instances"]]


@pytest.fixture
def scenario(fake_github, git_repo, tmp_path):
    return Scenario(fake_github, git_repo, tmp_path)


def opened(server, fake, number):
    answer = server.deliver_github("pull_request", github_pr_payload("opened", fake, REPO, number), WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text


def comment(server, fake, number, body, user="alice"):
    answer = server.deliver_github("issue_comment", github_comment_payload(fake, REPO, number, body, user),
                                   WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    return answer


def test_plan_approve_apply_then_state_holds_resource(scenario, fake_github, serve_factory):
    head = scenario.open_pull(7)
    server = serve_factory()
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    fake_github.set_permission(REPO, "bob", "write")
    fake_github.add_review(REPO, 7, "bob", "APPROVED")
    comment(server, fake_github, 7, "/apply")
    server.wait_jobs_idle()
    applies = scenario.comments(7, "**Plankeeper apply**")
    assert len(applies) == 1, server.log()
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in applies[0]
    assert scenario.state_values() == ["hello"]
    assert [s["state"] for s in fake_github.statuses(REPO, head) if s["context"] == "plankeeper/apply"] == [
        "pending", "success"]
    audit = requests.get(f"{server.url}/api/audit?action=apply", timeout=5).json()
    assert audit[0]["user"] == "alice" and audit[0]["result"] == "success" and audit[0]["plan_sha256"]
    [deployment] = requests.get(f"{server.url}/api/deployments?repo={REPO}&dir=infra/app", timeout=5).json()
    assert (deployment["via"], deployment["result"], deployment["commit"], deployment["pull"]) == (
        "comment", "success", head, 7)
    assert deployment["plan_sha256"] == audit[0]["plan_sha256"]
    page = requests.get(f"{server.url}/deployments?repo=github.com/{REPO}", timeout=5).text
    assert f'title="{head}">{head[:7]}</span>' in page  # the live commit


def test_apply_without_approval_is_refused_with_the_reason(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory()
    opened(server, fake_github, 7)
    comment(server, fake_github, 7, "/apply")  # behind the plan: one pull request's jobs go in arrival order
    server.wait_jobs_idle()
    refusal = scenario.comments(7, "**Apply refused**")
    assert refusal and "needs 1 approval, has 0" in refusal[0], scenario.comments(7)
    assert scenario.state_values() == []


def test_apply_of_a_plan_for_an_older_commit_is_refused(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory(NO_APPROVAL)
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    old_head = fake_github.pull(REPO, 7).head_sha
    scenario.repo.checkout("feature-7")
    new_head = scenario.repo.commit({"infra/app/main.tf": root_module(scenario.state, "newer")}, "push",
                                    branch="feature-7")
    fake_github.push(REPO, 7, new_head)
    comment(server, fake_github, 7, "/apply")  # the push's webhook has not arrived yet
    server.wait_jobs_idle()
    refusal = scenario.comments(7, "**Apply refused**")
    assert refusal and f"plan is for {old_head[:7]}, head is {new_head[:7]}: comment `/plan`" in refusal[0]
    assert scenario.state_values() == []


def test_user_without_write_permission_cannot_apply(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory(NO_APPROVAL)
    opened(server, fake_github, 7)
    fake_github.set_permission(REPO, "mallory", "read")
    comment(server, fake_github, 7, "/apply", user="mallory")
    server.wait_jobs_idle()
    refusal = scenario.comments(7, "**apply refused**")
    assert refusal and "needs write permission" in refusal[0]
    assert scenario.state_values() == []


def test_second_pull_request_is_told_who_holds_the_lock_then_plans_after_merge(scenario, fake_github,
                                                                               serve_factory):
    scenario.open_pull(7)
    scenario.open_pull(8, value="other", author="carol")
    server = serve_factory(NO_APPROVAL)
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    opened(server, fake_github, 8)
    server.wait_jobs_idle()
    blocked = scenario.comments(8, "**Plankeeper plan**")[0]
    assert "locked by [#7]" in blocked and "0 with changes, 0 without, 1 failed" in blocked
    locks = requests.get(f"{server.url}/api/locks", timeout=5).json()
    assert [(lock["pull_number"], lock["project_key"]) for lock in locks] == [(7, "infra/app::default")]
    merge_sha = scenario.merge(7)
    assert merge_sha
    server.deliver_github("pull_request", github_pr_payload("closed", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    assert requests.get(f"{server.url}/api/locks", timeout=5).json() == []
    comment(server, fake_github, 8, "/plan", user="carol")
    server.wait_jobs_idle()
    assert "1 with changes" in scenario.comments(8, "**Plankeeper plan**")[-1]


def test_apply_with_queue_waits_for_the_lock(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    scenario.open_pull(8, value="other", author="carol")
    server = serve_factory(NO_APPROVAL)
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    # PR 8 planned before 7 locked? No: plan 8 with 7 holding the lock fails; take the lock away by
    # unlocking 7, plan 8, then let 7 re-lock and 8 wait with --queue.
    comment(server, fake_github, 7, "/unlock")
    server.wait_jobs_idle()
    comment(server, fake_github, 8, "/plan", user="carol")
    server.wait_jobs_idle()
    comment(server, fake_github, 7, "/plan")
    server.wait_jobs_idle()
    assert "locked by [#8]" in scenario.comments(7, "**Plankeeper plan**")[-1]
    # 8 holds the lock and has a plan; 7 re-plans after 8 unlocks, and --queue on 7 waits for 8.
    comment(server, fake_github, 8, "/apply --queue", user="carol")
    server.wait_jobs_idle()
    assert "Apply complete!" in scenario.comments(8, "**Plankeeper apply**")[-1]
    assert scenario.state_values() == ["other"]


def test_apply_on_approval(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory({"defaults": {"apply_on_approval": True, "apply_requirements": ["approved"]}})
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    fake_github.set_permission(REPO, "bob", "write")
    fake_github.add_review(REPO, 7, "bob", "APPROVED")
    answer = server.deliver_github("pull_request_review", github_review_payload(fake_github, REPO, 7, "bob"),
                                   WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()
    assert "Apply complete! Resources: 1 added" in scenario.comments(7, "**Plankeeper apply**")[-1]
    assert scenario.state_values() == ["hello"]
    [deployment] = requests.get(f"{server.url}/api/deployments", timeout=5).json()
    assert (deployment["via"], deployment["user"], deployment["result"]) == ("approval", "bob", "success")


def test_merge_to_deploy_applies_on_merge(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory({"defaults": {"apply_on_merge": True}})  # requirements: approved (at the merge)
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    fake_github.set_permission(REPO, "bob", "write")
    fake_github.add_review(REPO, 7, "bob", "APPROVED")
    merge_sha = scenario.merge(7)
    server.deliver_github("pull_request", github_pr_payload("closed", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    assert "Apply complete! Resources: 1 added" in scenario.comments(7, "**Plankeeper apply**")[-1], server.log()
    assert scenario.state_values() == ["hello"]
    assert fake_github.statuses(REPO, merge_sha)[-1]["state"] == "success"
    assert requests.get(f"{server.url}/api/locks", timeout=5).json() == []
    [deployment] = requests.get(f"{server.url}/api/deployments", timeout=5).json()
    assert (deployment["via"], deployment["commit"], deployment["result"]) == ("merge", merge_sha, "success")


def test_merge_to_deploy_refuses_when_the_base_changed_the_plan(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory({"defaults": {"apply_on_merge": True, "apply_requirements": []}})
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    # Meanwhile the base branch adds another resource to the same project.
    scenario.repo.checkout("main")
    scenario.repo.commit({"infra/app/extra.tf": 'resource "terraform_data" "extra" {\n  input = "x"\n}\n'},
                         "extra on main")
    scenario.merge(7)
    server.deliver_github("pull_request", github_pr_payload("closed", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    body = scenario.comments(7, "**Plankeeper apply**")[-1]
    assert "differs from the reviewed plan" in body and "terraform_data.extra" in body
    assert scenario.state_values() == []


def merged_and_refused(server, scenario, fake_github) -> str:
    """Merge #7, deliver the merge; the apply comment of the refused merge-to-deploy."""
    scenario.merge(7)
    server.deliver_github("pull_request", github_pr_payload("closed", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    body = scenario.comments(7, "**Plankeeper apply**")[-1]
    assert "nothing was applied" in body, server.log()
    assert scenario.state_values() == []
    assert requests.get(f"{server.url}/api/deployments", timeout=5).json() == []  # not a deployment...
    refused = requests.get(f"{server.url}/api/audit?action=apply_refused", timeout=5).json()
    assert len(refused) == 1 and refused[0]["pull"] == "7"  # ...but an audit entry
    return body


def test_merge_to_deploy_refuses_a_plan_that_differs_only_in_a_value(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory({"defaults": {"apply_on_merge": True, "apply_requirements": []}})
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    # Meanwhile the base branch overrides the attribute: the same resource, the same action.
    scenario.repo.checkout("main")
    scenario.repo.commit({"infra/app/override.tf": 'resource "terraform_data" "x" {\n  input = "other"\n}\n'},
                         "override on main")
    body = merged_and_refused(server, scenario, fake_github)
    assert "differs from the reviewed plan" in body
    assert '- `terraform_data.x`: input: "hello" → "other"' in body


def test_merge_to_deploy_refuses_a_pull_request_merged_without_approval(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory({"defaults": {"apply_on_merge": True, "apply_requirements": ["approved"]}})
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    body = merged_and_refused(server, scenario, fake_github)
    assert "did not meet its apply requirements when it was merged" in body
    assert "- needs 1 approval, has 0" in body and "open a pull request that changes this project" in body


def test_two_apply_comments_at_once_run_exactly_one_apply(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory(NO_APPROVAL)
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    payloads = [github_comment_payload(fake_github, REPO, 7, "/apply", "alice") for _ in range(2)]
    threads = [threading.Thread(target=server.deliver_github, args=("issue_comment", p, WEBHOOK_SECRET))
               for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.wait_jobs_idle()
    audit = requests.get(f"{server.url}/api/audit?action=apply", timeout=5).json()
    assert len(audit) == 1, audit
    assert scenario.state_values() == ["hello"]


def test_worker_killed_during_apply_reports_failure_and_keeps_the_lock(scenario, fake_github, serve_factory):
    head = scenario.open_pull(7, sleep=30)
    server = serve_factory(NO_APPROVAL)
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    comment(server, fake_github, 7, "/apply")
    wait_for(lambda: any("🔄 running" in b for b in scenario.comments(7, "**Plankeeper apply**")), timeout=60,
             what="a running apply")
    horse = _running_job_pid(server)
    os.kill(horse, signal.SIGKILL)
    wait_for(lambda: any("worker died" in b or "internal error" in b.lower() for b in scenario.comments(7)),
             timeout=120, what="a failure comment")
    def apply_states():
        return [s["state"] for s in fake_github.statuses(REPO, head) if s["context"] == "plankeeper/apply"]

    wait_for(lambda: apply_states()[-1] == "failure", timeout=60, what=f"a failed apply status ({apply_states()})")
    assert "worker process was killed" in scenario.comments(7, "**Plankeeper apply**")[-1]
    locks = requests.get(f"{server.url}/api/locks", timeout=5).json()
    assert [lock["pull_number"] for lock in locks] == [7]


def _running_job_pid(server) -> int:
    """The one work-horse running jobs (an event's job and the project it runs in place share it)."""
    jobs = requests.get(f"{server.url}/api/jobs", timeout=5).json()
    pids = {int(j["pid"]) for j in jobs if j.get("state") == "running" and j.get("pid")}
    assert len(pids) == 1, [(j["id"], j.get("state"), j.get("pid"), j.get("summary")) for j in jobs]
    return pids.pop()


def test_cancel_stops_a_long_running_plan_within_the_grace_period(scenario, fake_github, serve_factory):
    scenario.open_pull(7, sleep=60)
    server = serve_factory({**NO_APPROVAL})
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    comment(server, fake_github, 7, "/apply")
    wait_for(lambda: any("running" in b for b in scenario.comments(7, "**Plankeeper apply**")), timeout=60)
    wait_for(lambda: runs_under(_running_job_pid(server), "sleep 60"), timeout=60,
             what="the apply inside its provisioner's `sleep 60`")
    started = time.time()
    comment(server, fake_github, 7, "/cancel")
    server.wait_jobs_idle(timeout=60)
    assert time.time() - started < 30
    body = scenario.comments(7, "**Plankeeper apply**")[-1]
    assert "cancelled" in body


def test_a_replayed_apply_comment_does_not_apply_a_newer_head(scenario, fake_github, serve_factory):
    """The same signed `/apply` body re-sent with a new delivery id (not covered by the signature)."""
    scenario.open_pull(7)
    server = serve_factory(NO_APPROVAL)
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    payload = github_comment_payload(fake_github, REPO, 7, "/apply", "alice")
    assert server.deliver_github("issue_comment", payload, WEBHOOK_SECRET).status_code == 202
    server.wait_jobs_idle()
    assert scenario.state_values() == ["hello"], scenario.comments(7)
    scenario.repo.checkout("feature-7")  # an unreviewed push, planned by autoplan
    new_head = scenario.repo.commit({"infra/app/main.tf": root_module(scenario.state, "unreviewed")}, "push",
                                    branch="feature-7")
    fake_github.push(REPO, 7, new_head)
    server.deliver_github("pull_request", github_pr_payload("synchronize", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    replay = server.deliver_github("issue_comment", payload, WEBHOOK_SECRET)  # a fresh delivery id
    assert replay.status_code == 202, replay.text
    server.wait_jobs_idle()
    assert scenario.state_values() == ["hello"]
    assert len(scenario.comments(7, "**Plankeeper apply**")) == 1
    ignored = requests.get(f"{server.url}/api/audit?action=command_ignored", timeout=5).json()
    assert ignored and "already acted on" in ignored[0]["result"]


def test_an_approval_by_a_reader_applies_nothing(scenario, fake_github, serve_factory):
    scenario.open_pull(7)
    server = serve_factory({"defaults": {"apply_on_approval": True, "apply_requirements": ["approved"]}})
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    fake_github.set_permission(REPO, "reader", "read")
    fake_github.add_review(REPO, 7, "reader", "APPROVED")
    answer = server.deliver_github("pull_request_review", github_review_payload(fake_github, REPO, 7, "reader"),
                                   WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()
    assert scenario.comments(7, "**Plankeeper apply**") == [] and scenario.state_values() == []
