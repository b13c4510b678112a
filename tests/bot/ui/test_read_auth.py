"""ui.read_auth: every page, API read and /metrics needs the UI credentials (basic auth or the
bearer token); /events and /healthz stay open. A real app over a real Redis."""
from __future__ import annotations

import base64

import pytest

from bot.errors import SettingsError
from bot.settings import Settings, UISettings, validate_for_serve
from bot.state import joblog
from tests.bot.ui.conftest import PASSWORD, TOKEN, USER

READS = ["/", "/jobs", "/jobs/d-1", "/audit", "/login", "/api/jobs", "/api/jobs/d-1", "/api/jobs/d-1/log",
         "/api/jobs/d-1/events", "/api/audit", "/api/audit?format=jsonl", "/api/locks", "/api/drift", "/metrics",
         "/deployments", "/deployments?repo=github.com/acme/infra", "/api/deployments",
         "/locks/unlock?repo=github.com/acme/infra&project=a::default", "/no-such-page"]
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


@pytest.fixture
def guarded(make_client, redis_server):
    joblog.record_job(redis_server, "d-1", state="succeeded", created_at=1)
    joblog.JobLog(redis_server, "d-1", lambda s: s)("plan output")
    return make_client(UISettings(username=USER, password=PASSWORD, api_token=TOKEN, read_auth=True))


@pytest.mark.parametrize("path", READS)
def test_anonymous_reads_are_refused(guarded, path):
    answer = guarded.get(path)
    assert answer.status_code == 401, answer.get_data(as_text=True)[:200]
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert "plan output" not in answer.get_data(as_text=True)


TOKEN_HEADER = {"Authorization": f"Bearer {TOKEN}"}
# /login is the browser's basic sign-in: it asks for basic credentials whatever else is sent.
WITH_CREDENTIALS = [(p, BASIC) for p in READS] + [(p, TOKEN_HEADER) for p in READS if p != "/login"]


@pytest.mark.parametrize("path,headers", WITH_CREDENTIALS,
                         ids=[f"{'basic' if h is BASIC else 'token'}-{p}" for p, h in WITH_CREDENTIALS])
def test_reads_with_credentials_are_answered(guarded, path, headers):
    answer = guarded.get(path, headers=headers)
    assert answer.status_code != 401
    if path.startswith("/api/jobs/d-1/log") or path == "/jobs/d-1":
        assert "plan output" in answer.get_data(as_text=True)


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer wrong"}, {"Authorization": "Basic YWRtaW46bm8="}])
def test_wrong_credentials_are_refused(guarded, headers):
    assert guarded.get("/api/jobs/d-1/log", headers=headers).status_code == 401


def test_events_healthz_and_static_files_stay_open(guarded):
    assert guarded.get("/healthz").status_code == 503  # no worker registered: but answered, not 401
    assert guarded.get("/static/tail.js").status_code == 200  # the same in every installation: no data
    events = guarded.post("/events", data=b"{}", headers={"X-GitHub-Event": "ping"})
    assert events.get_json()["outcome"] == "unauthorized"  # the webhook's own check, not the UI's


def test_without_read_auth_reads_stay_open(client):
    assert client.get("/api/jobs").status_code == 200 and client.get("/metrics").status_code == 200


def test_read_auth_needs_credentials_to_check_against():
    with pytest.raises(SettingsError, match="ui.read_auth needs"):
        validate_for_serve(Settings(ui=UISettings(read_auth=True)))
    validate_for_serve(Settings(ui=UISettings(read_auth=True, api_token=TOKEN)))
