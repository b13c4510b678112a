"""End to end through `plankeeper serve`: scheduled and manual drift checks, the drift issue,
remediation held back by a pull request's lock, and the pull request plan's drift note.
Real Terraform with a local state outside every work dir; the fake GitHub."""
from __future__ import annotations

import pytest
import requests

from tests.bot.drift.test_check import FULL, KEY, REPO_ID, apply_default_branch, change_out_of_band, main_tf, state_value
from tests.conftest import WEBHOOK_SECRET
from tests.support import github_pr_payload, wait_for

pytestmark = pytest.mark.e2e
TOKEN = "drift-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _deliver(server, fake, action: str, number: int) -> None:
    answer = server.deliver_github("pull_request", github_pr_payload(action, fake, FULL, number), WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text


def _status(server) -> dict:
    found = [s for s in requests.get(f"{server.url}/api/drift", timeout=5).json() if s["project"] == KEY]
    return found[0] if found else {}


def _pull(fake, repo, number: int, files: dict, base: str) -> str:
    branch = f"feature-{number}"
    head = repo.commit(files, f"pr {number}", branch=branch)
    repo.checkout("main")
    fake.add_pull(FULL, number, head, branch, "main", "alice", files=list(files), base_sha=base)
    return head


def _merge(fake, repo, number: int) -> str:
    pull = fake.pull(FULL, number)
    repo.git("merge", "-q", "--no-ff", "-m", f"Merge #{number}", pull.head_ref)
    sha = repo.git("rev-parse", "HEAD")
    repo.git("push", "-q", "origin", "main")
    fake.set_state(FULL, number, closed=True, merged=True)
    pull.merge_commit_sha = sha
    return sha


def test_scheduled_check_of_a_live_server_reports_drift_and_opens_the_issue(fake_github, git_repo, serve_factory,
                                                                            tmp_path):
    state = tmp_path / "state" / "app.tfstate"
    state.parent.mkdir()
    base = git_repo.commit({"infra/app/main.tf": main_tf(state, "hello")}, "initial")
    fake_github.add_repo(FULL, git_repo.clone_url)
    apply_default_branch(git_repo, tmp_path)
    change_out_of_band(tmp_path, state, "rogue")
    _pull(fake_github, git_repo, 3, {"README.md": "docs\n"}, base)
    server = serve_factory({"drift": {"schedule": "* * * * *"}})
    _deliver(server, fake_github, "opened", 3)  # the server learns of the repository from its webhooks
    status = wait_for(lambda: _status(server).get("drifted") and _status(server), timeout=150,
                      what="a scheduled drift check")
    assert status["changes"] == [{"address": "terraform_data.x", "action": "update"}], server.log()
    jobs = [j for j in requests.get(f"{server.url}/api/jobs?limit=200", timeout=5).json() if j.get("event") == "drift"]
    assert jobs and all("schedule" in j["title"] for j in jobs)
    (issue,) = fake_github.issues(FULL)
    assert issue["state"] == "open" and "terraform_data.x" in issue["body"]
    assert str(issue["number"]) == status["issue_id"]
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert f'plankeeper_drift_detected{{project="{KEY}",repo="{REPO_ID}"}} 1.0' in metrics
    assert state_value(state) == "rogue"  # remediate is off


def test_manual_check_remediates_only_once_no_pull_request_holds_the_lock(fake_github, git_repo, serve_factory,
                                                                        tmp_path):
    state = tmp_path / "state" / "app.tfstate"
    state.parent.mkdir()
    base = git_repo.commit({"README.md": "infra\n"}, "initial")
    fake_github.add_repo(FULL, git_repo.clone_url)
    server = serve_factory({"drift": {"remediate": True}, "ui": {"api_token": TOKEN},
                            "defaults": {"apply_on_merge": True, "apply_requirements": []}})
    # the project is created through Plankeeper (merge-to-deploy), which records what it applied
    _pull(fake_github, git_repo, 5, {"infra/app/main.tf": main_tf(state, "hello")}, base)
    _deliver(server, fake_github, "opened", 5)
    server.wait_jobs_idle()
    _merge(fake_github, git_repo, 5)
    _deliver(server, fake_github, "closed", 5)
    server.wait_jobs_idle()
    assert state_value(state) == "hello", server.log()
    change_out_of_band(tmp_path, state, "rogue")

    # pull request 7 locks the project: drift is reported, not corrected
    extra = main_tf(state, "hello") + 'resource "terraform_data" "y" {\n  input = "new"\n}\n'
    _pull(fake_github, git_repo, 7, {"infra/app/main.tf": extra}, base)
    _deliver(server, fake_github, "opened", 7)
    server.wait_jobs_idle()
    assert requests.post(f"{server.url}/api/drift/{REPO_ID}", timeout=5).status_code == 401
    answer = requests.post(f"{server.url}/api/drift/{REPO_ID}/infra/app", headers=AUTH, timeout=5)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()
    status = _status(server)
    assert status["drifted"] and status["remediation"] == "waiting: pull request #7 holds the project's lock"
    assert state_value(state) == "rogue" and fake_github.issues(FULL)[0]["state"] == "open"

    # a new plan of pull request 7 says the base drifted (terraform_data.x), not its own change (y)
    fake_github.push(FULL, 7, fake_github.pull(FULL, 7).head_sha)
    _deliver(server, fake_github, "synchronize", 7)
    server.wait_jobs_idle()
    plan = [c["body"] for c in fake_github.comments(FULL, 7) if c["body"].startswith("**Plankeeper plan**")][-1]
    assert "base branch itself has drifted" in plan and "`terraform_data.x` (update)" in plan, plan
    assert "`terraform_data.y` (" not in plan

    # once pull request 7 is closed, the next check reverts the drift and closes the issue
    fake_github.set_state(FULL, 7, closed=True)
    _deliver(server, fake_github, "closed", 7)
    server.wait_jobs_idle()
    assert requests.post(f"{server.url}/api/drift/{REPO_ID}", headers=AUTH, timeout=5).status_code == 202
    server.wait_jobs_idle()
    status = _status(server)
    assert status["remediation"] == "applied" and not status["drifted"], server.log()
    assert state_value(state) == "hello"
    (issue,) = fake_github.issues(FULL)
    assert issue["state"] == "closed"
    audit = requests.get(f"{server.url}/api/audit?action=drift_remediate", timeout=5).json()
    assert [a["result"] for a in audit][:2] == ["success", "waiting: pull request #7 holds the project's lock"]
