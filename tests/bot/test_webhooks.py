"""bot/webhooks.py: POST /events on a real Redis — a delivery queued once, claimed with the sweep's
id of its event and counted in one round trip; a Redis that refuses writes leaves nothing claimed,
so the forge's redelivery is accepted."""
from __future__ import annotations

import json

import pytest
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from bot import queueing
from bot import webhooks
from bot.app import create_app
from bot.metrics import delivery_counters
from bot.models import PullRequestEvent, event_from_dict
from bot.settings import GitHubSettings, Settings
from bot.signatures import sign_github
from bot.state import joblog, keys
from tests.support import fixture

SECRET = "s3cret"


@pytest.fixture
def client(redis_db):
    app = create_app(Settings(redis_url=f"unix://{redis_db.socket_file}", github=GitHubSettings(webhook_secret=SECRET)),
                     serves="events")
    return app.test_client()


def deliver(client, delivery: str, body: bytes | None = None):
    body = body if body is not None else json.dumps(fixture("github", "pull_request.synchronize")).encode()
    return client.post("/events", data=body, headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
        "X-Hub-Signature-256": sign_github(SECRET, body)})


def queued_ids(r) -> list[str]:
    return Queue(queueing.QUEUE_NAME, connection=r, serializer=JSONSerializer).get_job_ids()


def counted(r, outcome: str) -> int:
    return int(r.hget(keys.METRICS_WEBHOOKS, getattr(delivery_counters("pull_request"), outcome)) or 0)


def test_a_delivery_is_queued_once_with_its_record_claims_and_counters(client, redis_db) -> None:
    first = deliver(client, "delivery-1")
    assert first.status_code == 202, first.get_json()
    assert first.get_json()["job_id"] == "d-delivery-1"
    again = deliver(client, "delivery-1")
    assert (again.status_code, again.get_json()["outcome"]) == (200, "duplicate")

    assert queued_ids(redis_db) == ["d-delivery-1"]
    job = Job.fetch("d-delivery-1", connection=redis_db, serializer=JSONSerializer)
    event = event_from_dict(job.args[0])
    assert isinstance(event, PullRequestEvent) and event.delivery_id == "delivery-1"
    assert (job.func_name, job.get_status()) == (queueing.HANDLE_EVENT, "queued")
    record = joblog.get_job(redis_db, "d-delivery-1")
    assert record["state"] == "queued" and record["delivery"] == "delivery-1" and record["event"] == "pull_request"
    assert redis_db.exists(keys.DELIVERY.format("delivery-1"))
    assert redis_db.exists(keys.DELIVERY.format(queueing.sweep_delivery_id(event)))  # the sweep never repeats it
    assert (counted(redis_db, "queued"), counted(redis_db, "duplicate")) == (1, 1)


def test_the_same_head_again_in_another_delivery_is_queued_too(client, redis_db) -> None:
    assert deliver(client, "delivery-1").status_code == 202
    assert deliver(client, "delivery-2").status_code == 202  # the sweep's claim is not a refusal
    assert queued_ids(redis_db) == ["d-delivery-1", "d-delivery-2"]


def test_a_redis_refusing_writes_leaves_nothing_claimed_and_the_redelivery_is_queued(client, redis_db, caplog) -> None:
    redis_db.config_set("maxmemory-policy", "noeviction")
    redis_db.config_set("maxmemory", "1")  # every write is refused: OOM
    try:
        refused = deliver(client, "delivery-1")
    finally:
        redis_db.config_set("maxmemory", "0")
    assert refused.status_code == 500  # not acknowledged: the forge redelivers
    assert refused.get_json()["outcome"] == "error" and "redelivery will be accepted" in refused.get_json()["error"]
    # Redis' own words (its address, its state) reach the log, never the forge's delivery log
    assert "OOM" not in refused.get_data(as_text=True) and "OOM" in caplog.text
    assert redis_db.keys(f"{keys.DELIVERY.format('*')}") == []
    assert queued_ids(redis_db) == [] and joblog.get_job(redis_db, "d-delivery-1") is None

    again = deliver(client, "delivery-1")
    assert again.status_code == 202, again.get_json()
    assert queued_ids(redis_db) == ["d-delivery-1"]


def test_a_connection_redis_dropped_is_made_again_and_the_delivery_queued(client, redis_db) -> None:
    assert deliver(client, "before").status_code == 202  # this thread's client keeps its connection
    assert redis_db.client_kill_filter(_type="normal", skipme=True) >= 1  # as a Redis restart drops it
    answer = deliver(client, "after")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert queued_ids(redis_db) == [queueing.job_id_for("before"), queueing.job_id_for("after")]


def test_a_body_that_is_not_json_is_malformed(client) -> None:
    answer = deliver(client, "delivery-1", body=b"{not json")
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith("body is not valid JSON")



def test_another_method_is_405_with_allow_and_other_paths_stay_flasks(client) -> None:
    answer = client.get("/events")
    assert (answer.status_code, answer.headers["Allow"], answer.get_json()["outcome"]) == (405, "POST", "malformed")
    assert client.get("/healthz").status_code in (200, 503)  # Flask's view, behind the mount
    assert client.post("/events/").status_code == 404  # only the exact path is the endpoint


def test_the_ui_only_listener_does_not_take_webhooks(redis_db) -> None:
    app = create_app(Settings(redis_url=f"unix://{redis_db.socket_file}", github=GitHubSettings(webhook_secret=SECRET)),
                     serves="ui")
    assert app.test_client().post("/events", data=b"{}").status_code == 404


def test_an_unexpected_error_is_a_json_500_logged_with_its_traceback(client, monkeypatch, caplog) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(queueing, "accept_event", broken)
    answer = deliver(client, "delivery-1")
    assert (answer.status_code, answer.get_json()["outcome"]) == (500, "error")
    assert "boom" not in answer.get_json()["error"]  # the traceback is the log's, not the forge's
    logged = [r for r in caplog.records if r.name == "bot.webhooks" and r.levelname == "ERROR"]
    assert logged and logged[0].exc_info and "boom" in str(logged[0].exc_info[1])


def test_a_body_declared_or_sent_over_the_limit_is_413(client, monkeypatch) -> None:
    monkeypatch.setattr(webhooks, "MAX_BODY_BYTES", 100)
    declared = client.post("/events", data=b"{}", headers={"X-GitHub-Event": "ping"},
                           environ_overrides={"CONTENT_LENGTH": "101"})  # refused before the body is read
    assert (declared.status_code, declared.get_json()["outcome"]) == (413, "too_large")
    sent = deliver(client, "delivery-1", body=b"{" + b" " * 120 + b"}")
    assert sent.status_code == 413


def test_headers_are_named_as_werkzeug_names_them() -> None:
    environ = {"HTTP_X_GITHUB_EVENT": "push", "HTTP_X_HUB_SIGNATURE_256": "sha256=ab", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": "2", "PATH_INFO": "/events"}
    assert webhooks.wsgi_headers(environ) == {"X-Github-Event": "push", "X-Hub-Signature-256": "sha256=ab",
                                              "Content-Type": "application/json", "Content-Length": "2"}
