"""Notifications posted to a real local HTTP server: Slack and plain bodies, event filtering,
retries, never raising, secrets masked."""
from __future__ import annotations

import json
import logging

import pytest

from bot import notify
from bot.models import ProjectOutcome, PullRequest, Repo
from bot.settings import GitHubSettings, Notification, Settings
from runners.models import ApplyResult, Project
from tests.support import WebhookReceiver

TOKEN = "ghp_" + "A" * 36


Receiver = WebhookReceiver


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def fast_retries():
    saved = notify.RETRY_DELAY_SECONDS
    notify.RETRY_DELAY_SECONDS = 0.01
    yield
    notify.RETRY_DELAY_SECONDS = saved


def settings_for(*targets: Notification) -> Settings:
    return Settings(github=GitHubSettings(token="github-token-value"), notifications=targets)


def test_http_notification_is_plain_json(receiver):
    settings = settings_for(Notification(kind="http", url=f"{receiver.base}/plain", events=("apply",)))
    sent = notify.notify(settings, "apply", "Apply succeeded", "infra/app: applied", "http://pk/jobs/1",
                         {"repository": "github.com/acme/infra", "pull request": 7})
    assert sent == 1
    [(path, body)] = receiver.received
    assert path == "/plain"
    assert {k: body[k] for k in ("event", "title", "text", "url", "fields")} == {
        "event": "apply", "title": "Apply succeeded", "text": "infra/app: applied", "url": "http://pk/jobs/1",
        "fields": {"repository": "github.com/acme/infra", "pull request": "7"}}
    assert body["time"].endswith("+00:00")


def test_slack_notification_has_text_and_blocks(receiver):
    settings = settings_for(Notification(kind="slack", url=f"{receiver.base}/slack", events=("failure",)))
    notify.notify(settings, "failure", "Job failed: <repo>", "Checkout & clone failed", "http://pk/jobs/2",
                  {"job": "d-2"})
    body = receiver.received[0][1]
    assert body["text"] == "Job failed: <repo>: Checkout & clone failed"
    section, fields, context = body["blocks"]
    assert section["text"]["text"] == "*<http://pk/jobs/2|Job failed: &lt;repo&gt;>*\nCheckout &amp; clone failed"
    assert fields["fields"] == [{"type": "mrkdwn", "text": "*job*\nd-2"}]
    assert context["type"] == "context"


def test_only_targets_subscribed_to_the_event_get_it(receiver):
    settings = settings_for(Notification(kind="http", url=f"{receiver.base}/a", events=("drift",)),
                            Notification(kind="http", url=f"{receiver.base}/b", events=("apply", "drift")))
    assert notify.notify(settings, "apply", "t", "x") == 1
    assert notify.notify(settings, "drift", "t", "x") == 2
    assert [path for path, _ in receiver.received] == ["/b", "/a", "/b"]
    assert notify.notify(settings_for(), "apply", "t", "x") == 0
    with pytest.raises(ValueError, match="apply, failure, drift"):
        notify.notify(settings, "deploy", "t", "x")


def test_server_errors_are_retried_twice_then_given_up_without_raising(caplog):
    flaky = Receiver(answers=[500, 502])
    down = Receiver(answers=[503, 503, 503, 503])
    refusing = Receiver(answers=[400])
    try:
        settings = settings_for(*(Notification(kind="http", url=f"{r.base}/hooks/SECRETPATH", events=("apply",))
                                  for r in (flaky, down, refusing)))
        with caplog.at_level(logging.WARNING, logger="bot.notify"):
            assert notify.notify(settings, "apply", "t", "x") == 1
        assert len(flaky.received) == 3  # 500, 502, then accepted
        assert len(down.received) == 3  # one try and two retries
        assert len(refusing.received) == 1  # a 4xx will not change on retry
    finally:
        for r in (flaky, down, refusing):
            r.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert any("HTTP 503" in w and "after 3 attempt(s)" in w for w in warnings)
    assert all("SECRETPATH" not in w for w in warnings)  # the URL is a secret (Slack's are)


def test_unreachable_receiver_is_logged_not_raised(caplog):
    settings = settings_for(Notification(kind="slack", url="http://127.0.0.1:9/hooks/T000/B000/XXXX",
                                         events=("failure",)))
    with caplog.at_level(logging.WARNING, logger="bot.notify"):
        assert notify.notify(settings, "failure", "t", "x") == 0
    assert "XXXX" not in caplog.text and "not delivered" in caplog.text


def test_secrets_are_masked_in_everything_sent(receiver):
    settings = settings_for(Notification(kind="http", url=f"{receiver.base}/h", events=("failure",)))
    notify.notify(settings, "failure", f"leak {TOKEN}", "token github-token-value here", "",
                  {"detail": f"x {TOKEN}"})
    sent = json.dumps(receiver.received[0][1])
    assert TOKEN not in sent and "github-token-value" not in sent and sent.count("***") == 3


def test_apply_finished_summarises_each_project(receiver):
    settings = settings_for(Notification(kind="http", url=f"{receiver.base}/h", events=("apply",)))
    repo = Repo("github", "github.com", "acme/infra", "/tmp/x")
    pull = PullRequest(repo, 7, "alice", "a" * 40, "feature", "main", url="https://github.com/acme/infra/pull/7")
    outcomes = [
        ProjectOutcome(Project("infra/app"), "applied",
                       apply=ApplyResult(ok=True, summary="Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")),
        ProjectOutcome(Project("infra/db", "staging"), "failed", apply=ApplyResult(ok=False, error="Error: boom\nmore")),
    ]
    assert notify.apply_finished(settings, pull, outcomes, "http://pk/jobs/3", "bob") == 1
    body = receiver.received[0][1]
    assert body["title"] == "Apply did not apply everything: github.com/acme/infra#7"
    assert body["text"] == ("infra/app: applied (Apply complete! Resources: 1 added, 0 changed, 0 destroyed.)\n"
                            "infra/db (staging): failed (Error: boom)")
    assert body["fields"] == {"repository": "github.com/acme/infra", "pull request": pull.url,
                              "commit": "a" * 12, "by": "bob"}


def test_job_failed_sends_a_failure_event(receiver):
    settings = settings_for(Notification(kind="http", url=f"{receiver.base}/h", events=("failure",)))
    assert notify.job_failed(settings, "d-9", "github.com/acme/infra", 7, "Checkout failed: nope", "http://pk/j") == 1
    body = receiver.received[0][1]
    assert body["event"] == "failure" and body["title"] == "Job failed: github.com/acme/infra#7"
    assert body["fields"]["job"] == "d-9" and body["text"] == "Checkout failed: nope"
