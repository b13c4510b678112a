"""POST /api/plan and /api/apply (Atlantis' API): plan or apply a ref without a pull request.
A real Flask app on a JobBench: the view queues the job, the job runs in this process while the
view waits (its sleep runs the queued jobs), real Terraform plans and applies."""
from __future__ import annotations

import pytest

from bot import api_runs
from bot.app import create_app
from bot.settings import UISettings
from bot.state import audit, deployments, locks
from bot.state.repos import remember_repo
from bot.ui import runs_api

TOKEN = "ci-token-789"
PROJECTS = [{"dir": "infra/app", "workspace": "default"}]


@pytest.fixture
def bench(bench_factory):
    bench = bench_factory(ui=UISettings(api_token=TOKEN))
    remember_repo(bench.redis, bench.repo)
    return bench


@pytest.fixture
def client(bench, monkeypatch):
    monkeypatch.setattr(runs_api.time, "sleep", lambda seconds: bench.work())  # the worker runs while the view waits
    app = create_app(bench.settings, bench.rt)
    app.testing = True
    return app.test_client()


def _bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_token_is_required(client):
    body = {"repo": "acme/infra", "ref": "feature", "projects": PROJECTS}
    assert client.post("/api/plan", json=body).status_code == 401
    assert client.post("/api/plan", json=body, headers=_bearer("wrong")).status_code == 403
    assert client.post("/api/apply", json=body, headers={"X-Atlantis-Token": "wrong"}).status_code == 403


def test_a_bad_body_is_refused_with_what_is_wrong(client):
    answer = client.post("/api/plan", json={"repo": "acme/infra", "projects": PROJECTS}, headers=_bearer())
    assert answer.status_code == 400 and "`ref`" in answer.get_json()["error"]
    answer = client.post("/api/plan", data="nope", headers=_bearer())
    assert answer.status_code == 400 and "JSON object" in answer.get_json()["error"]
    answer = client.post("/api/plan", json={"repo": "acme/infra", "ref": "main", "projects": [{"dir": "../x"}]},
                         headers=_bearer())
    assert answer.status_code == 400 and "leaves the repository" in answer.get_json()["error"]
    answer = client.post("/api/plan", json={"Repository": "acme/infra", "Ref": "main", "Paths": []}, headers=_bearer())
    assert answer.status_code == 400 and "`Paths`" in answer.get_json()["error"]


def test_an_unknown_repository_is_404(client):
    answer = client.post("/api/plan", json={"repo": "acme/other", "ref": "main", "projects": PROJECTS},
                         headers=_bearer())
    assert answer.status_code == 404 and "unknown repository" in answer.get_json()["error"]


def test_the_default_answer_is_202_with_the_job(client, bench):
    answer = client.post("/api/plan", json={"repo": "github.com/acme/infra", "ref": "feature",
                                                   "projects": PROJECTS}, headers=_bearer())
    assert answer.status_code == 202 and answer.get_json()["job_id"].startswith("api-plan-")


def test_a_plan_of_a_branch_answers_its_summary_atlantis_shape_too(client, bench):
    body = {"Repository": "acme/infra", "Ref": "feature", "Type": "Github", "PR": 2,
            "Paths": [{"Directory": "infra/app", "Workspace": "default"}]}
    answer = client.post("/api/plan?wait=60", json=body, headers={"X-Atlantis-Token": TOKEN})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    got = answer.get_json()
    assert got["commit"] == bench.head and got["error"] == ""
    [project] = got["projects"]
    assert "1 to add" in project["summary"] and project["has_changes"] and not project["applied"]
    [result] = got["ProjectResults"]
    assert result["RepoRelDir"] == "infra/app" and "terraform_data.x" in result["PlanSuccess"]["TerraformOutput"]
    assert deployments.history(bench.redis, bench.repo.id) == []
    assert locks.all_locks(bench.redis) == []  # a plan takes no lock


def test_apply_plans_applies_and_records_a_deployment_via_api(client, bench):
    answer = client.post("/api/apply?wait=60", json={"repo": "acme/infra", "ref": bench.head, "projects": PROJECTS},
                         headers=_bearer())
    assert answer.status_code == 200, answer.get_data(as_text=True)
    [project] = answer.get_json()["projects"]
    assert project["applied"] and "Apply complete!" in project["apply_summary"]
    [deployment] = deployments.history(bench.redis, bench.repo.id)
    assert (deployment.via, deployment.pull, deployment.commit, deployment.result) == ("api", 0, bench.head, "success")
    [entry] = audit.entries(bench.redis, filters={"action": "apply"})
    assert entry["user"] == "api" and entry["result"] == "success (api)"
    assert locks.all_locks(bench.redis) == []  # its own lock is released


def test_apply_is_refused_while_a_pull_request_holds_the_lock(client, bench):
    locks.try_lock(bench.redis, locks.new_lock(bench.repo.id, "infra/app::default", 7, "https://x/pull/7", "alice"))
    answer = client.post("/api/apply?wait=60", json={"repo": "acme/infra", "ref": "feature", "projects": PROJECTS},
                         headers=_bearer())
    assert answer.status_code == 500
    [project] = answer.get_json()["projects"]
    assert not project["applied"] and "#7 holds the project's lock" in project["error"]
    assert locks.get_lock(bench.redis, bench.repo.id, "infra/app::default").pull_number == 7


def test_an_unknown_branch_is_an_error_not_a_crash(client):
    answer = client.post("/api/plan?wait=60", json={"repo": "acme/infra", "ref": "nope", "projects": PROJECTS},
                         headers=_bearer())
    assert answer.status_code == 500 and "could not check out 'nope'" in answer.get_json()["error"]


def test_parse_body_defaults():
    wanted = api_runs.parse_body({"repo": "acme/infra", "ref": "main", "projects": [{"dir": "./"}]})
    assert wanted["projects"] == [{"dir": ".", "workspace": "default"}]


def test_atlantis_projects_by_name_are_looked_up_in_the_repo_config(client):
    assert api_runs.parse_body({"Repository": "acme/infra", "Ref": "main", "Type": "Github",
                                "Projects": ["app"]})["projects"] == [{"name": "app"}]
    answer = client.post("/api/plan?wait=60", json={"Repository": "acme/infra", "Ref": "feature", "Type": "Github",
                                            "Projects": ["app"]}, headers={"X-Atlantis-Token": TOKEN})
    assert answer.status_code == 500
    [project] = answer.get_json()["projects"]
    assert project["error"] == "no project named 'app' in the repo config"


def test_a_named_project_of_the_repo_config_is_planned(client, bench):
    bench.git.commit({"atlantis.yaml": "version: 3\nprojects:\n- name: app\n  dir: infra/app\n"}, "config",
                     branch="feature")
    answer = client.post("/api/plan?wait=60", json={"repo": "acme/infra", "ref": "feature", "projects": [{"name": "app"}]},
                         headers=_bearer())
    assert answer.status_code == 200, answer.get_data(as_text=True)
    [project] = answer.get_json()["projects"]
    assert (project["name"], project["dir"], project["has_changes"]) == ("app", "infra/app", True)
    assert answer.get_json()["ProjectResults"][0]["ProjectName"] == "app"
