"""A real `plankeeper serve` against what a hostile client sends it: many live-log streams,
huge event-name headers; the UI on a port of its own behind ui.read_auth; a private data_dir."""
from __future__ import annotations

import base64
import os
import stat
import time
from pathlib import Path

import pytest
import requests

from bot.embedded_redis import EmbeddedRedis
from bot.state import joblog
from bot.ui.api import MAX_STREAMS
from tests.conftest import WEBHOOK_SECRET
from tests.support import answers, fixture, free_port, wait_for

pytestmark = pytest.mark.e2e
USER, PASSWORD, TOKEN = "admin", "ui-secret-pass", "ui-api-token-123"


def _deliver_opened(server):
    started = time.monotonic()
    answer = server.deliver_github("pull_request", fixture("github", "pull_request.opened"), WEBHOOK_SECRET)
    return answer, time.monotonic() - started


def test_live_log_streams_are_capped_and_webhooks_still_answered(serve_factory):
    server = serve_factory({"workers": 0})
    r = server.redis()
    for job in ("d-1", "d-2"):
        joblog.record_job(r, job, state="running", created_at=time.time())
    streams = [requests.get(f"{server.url}/api/jobs/d-1/events", stream=True, timeout=10) for _ in range(17)]
    try:
        statuses = [s.status_code for s in streams]
        assert statuses == [200] * MAX_STREAMS + [503] * (17 - MAX_STREAMS)
        assert "Too many live logs are open" in streams[-1].json()["error"]
        assert streams[-1].headers["Retry-After"] == "10"
        answer, seconds = _deliver_opened(server)
        assert answer.status_code == 202 and seconds < 2, (answer.text, seconds)
        assert requests.get(f"{server.url}/api/jobs", timeout=5).status_code == 200
    finally:
        for stream in streams:
            stream.close()
    joblog.record_job(r, "d-1", state="succeeded")  # the open streams end, and give their slots back

    def a_stream_opens() -> requests.Response | None:
        answer = requests.get(f"{server.url}/api/jobs/d-2/events", stream=True, timeout=10)
        if answer.status_code == 200:
            return answer
        answer.close()  # 503 while the ended job's streams still hold every slot
        return None

    wait_for(a_stream_opens, timeout=10, what="the ended job's live logs to give their slots back").close()


def test_unknown_event_names_add_no_metric_labels(serve_factory):
    server = serve_factory({"workers": 0})
    for _ in range(30):
        answer = requests.post(f"{server.url}/events", data=b"{}", timeout=10,
                               headers={"X-GitHub-Event": "x" * 100_000, "X-GitHub-Delivery": "d"})
        assert answer.status_code == 401
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert len(metrics) < 10_000 and "xxxx" not in metrics
    assert 'plankeeper_webhooks_total{event="other",outcome="unauthorized"} 30.0' in metrics


def _basic() -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def test_ui_port_with_read_auth_apart_from_events_and_a_private_data_dir(serve_factory):
    ui_port = free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    server = serve_factory({"workers": 0, "public_url": ui, "ui": {"username": USER, "password": PASSWORD, "api_token": TOKEN,
                                                 "read_auth": True, "port": ui_port}})

    # the events port answers /events and /healthz only
    answer, _ = _deliver_opened(server)
    assert answer.status_code == 202 and answer.json()["job_url"].startswith(f"{ui}/jobs/")
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 503  # no worker, but answered
    for path in ("/", "/jobs", "/api/jobs", "/api/locks", "/api/drift", "/api/audit", "/metrics"):
        assert requests.get(f"{server.url}{path}", headers=_basic(), timeout=5).status_code == 404, path

    # the UI port (a web server of its own, up soon after the events port) answers everything
    # else, to the UI credentials only
    wait_for(lambda: answers(f"{ui}/healthz"), timeout=30, what="the UI port to answer")
    assert requests.post(f"{ui}/events", data=b"{}", headers=_basic(), timeout=5).status_code == 404
    for path in ("/", "/api/jobs", "/api/audit?format=jsonl", "/metrics"):
        assert requests.get(f"{ui}{path}", timeout=5).status_code == 401, path
        assert requests.get(f"{ui}{path}", headers=_basic(), timeout=5).status_code == 200, path
        assert requests.get(f"{ui}{path}", headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=5).status_code == 200, path
    assert requests.get(f"{ui}/healthz", timeout=5).status_code == 503

    data = Path(server.config["data_dir"])
    redis_dir = data / "redis"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    socket = EmbeddedRedis(data).socket
    assert socket.parent == redis_dir and socket.is_socket() and socket.stat().st_uid == os.getuid()
    for name in ("appendonly.aof", "redis.rdb"):
        if (redis_dir / name).exists() or name == "appendonly.aof":
            assert stat.S_IMODE((redis_dir / name).stat().st_mode) == 0o600, name
