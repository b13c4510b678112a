"""POST /api/deployments/<id>/revert (the Deployments page's "Roll back"): queues the job that opens
the revert pull request; the UI credentials (token, or basic auth with the page's CSRF token)."""
from __future__ import annotations

import base64

from rq import Queue
from rq.serializers import JSONSerializer

from bot.models import Repo
from bot.settings import UISettings
from bot.state import audit, deployments, joblog
from bot.state.repos import remember_repo
from tests.bot.ui.conftest import PASSWORD, TOKEN, USER, csrf_from

REPO = Repo("github", "github.com", "acme/infra", "https://github.com/acme/infra.git")
PROJECT = "infra/app::default"


def _deployment(r, pull=7, result="success", via="merge") -> deployments.Deployment:
    return deployments.record(r, deployments.Deployment(
        repo=REPO.id, project=PROJECT, commit="c0ffee" * 6 + "abcd", pull=pull, user="alice", result=result,
        plan_sha256="ab" * 32, via=via, pull_url=f"https://github.com/acme/infra/pull/{pull}" if pull else ""))


def _bearer(token=TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _basic() -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def _queued(r) -> list:
    return Queue("plankeeper", connection=r, serializer=JSONSerializer).get_jobs()


def test_the_api_token_queues_the_revert_of_the_deployments_pull_request(client, redis_server):
    remember_repo(redis_server, REPO)
    deployment = _deployment(redis_server)
    answer = client.post(f"/api/deployments/{deployment.id}/revert", headers=_bearer())
    assert answer.status_code == 202, answer.get_data(as_text=True)
    body = answer.get_json()
    assert (body["deployment"], body["repo"], body["pull"]) == (deployment.id, REPO.id, 7)
    assert body["job_url"] == f"http://ui.test/jobs/{body['job_id']}"
    [job] = _queued(redis_server)
    assert job.id == body["job_id"] and job.func_name == "bot.jobs.revert_deployment"
    assert job.args[0] == {"repo": dict(REPO.__dict__), "pull": 7, "actor": "api", "deployment": deployment.id}
    record = joblog.get_job(redis_server, job.id)
    assert (record["state"], record["repo"], record["pull"], record["event"]) == ("queued", REPO.id, "7", "revert")
    [entry] = audit.entries(redis_server, filters={"action": "revert"})
    assert (entry["user"], entry["pull"], entry["result"], entry["job_id"]) == ("api-token", "7", "queued", job.id)


def test_what_cannot_be_rolled_back_is_refused(client, redis_server):
    remember_repo(redis_server, REPO)
    assert client.post("/api/deployments/nope/revert", headers=_bearer()).status_code == 404
    drift = _deployment(redis_server, pull=0, via="drift")
    answer = client.post(f"/api/deployments/{drift.id}/revert", headers=_bearer())
    assert answer.status_code == 409 and "not made from a pull request" in answer.get_json()["error"]
    failed = _deployment(redis_server, result="failed: apply")
    answer = client.post(f"/api/deployments/{failed.id}/revert", headers=_bearer())
    assert answer.status_code == 409 and "did not succeed" in answer.get_json()["error"]
    redis_server.delete("pk:repos")
    unknown = _deployment(redis_server)
    answer = client.post(f"/api/deployments/{unknown.id}/revert", headers=_bearer())
    assert answer.status_code == 409 and "no record of github.com/acme/infra" in answer.get_json()["error"]
    assert _queued(redis_server) == []


def test_writing_needs_the_ui_credentials(make_client, client, redis_server):
    remember_repo(redis_server, REPO)
    deployment = _deployment(redis_server)
    assert client.post(f"/api/deployments/{deployment.id}/revert").status_code == 401
    assert client.post(f"/api/deployments/{deployment.id}/revert", headers=_bearer("wrong")).status_code == 401
    assert client.post(f"/api/deployments/{deployment.id}/revert", headers=_basic()).status_code == 403  # no CSRF
    read_only = make_client(UISettings())
    assert read_only.post(f"/api/deployments/{deployment.id}/revert", headers=_bearer()).status_code == 403
    assert _queued(redis_server) == []


def test_the_deployments_page_has_a_roll_back_button_for_successful_merges(make_client, client, redis_server):
    remember_repo(redis_server, REPO)
    good = _deployment(redis_server)
    failed = _deployment(redis_server, pull=8, result="failed: apply")
    drift = _deployment(redis_server, pull=0, via="drift")
    page = client.get("/deployments", headers=_basic()).get_data(as_text=True)
    assert f'action="/api/deployments/{good.id}/revert"' in page
    assert f"/api/deployments/{failed.id}/revert" not in page and f"/api/deployments/{drift.id}/revert" not in page
    done = client.post(f"/api/deployments/{good.id}/revert", headers=_basic(),
                       data={"csrf_token": csrf_from(page), "next": "/deployments"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/deployments?notice=revert_queued")
    assert "Roll back queued" in client.get("/deployments?notice=revert_queued", headers=_basic()).get_data(as_text=True)
    assert [j.args[0]["actor"] for j in _queued(redis_server)] == [USER]
    read_only = make_client(UISettings()).get("/deployments").get_data(as_text=True)
    assert "Roll back" not in read_only
