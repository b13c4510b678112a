"""Bitbucket Cloud end to end (a real `plankeeper serve` against FakeBitbucketCloud), against
what a hostile user sends: a forged delivery, `/apply` from a user without write permission, a
command in the bot's own comment, a pull request from a fork."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from bot.signatures import sign_github
from tests.e2e.drivers import Delivery
from tests.e2e.drivers.bitbucket import BitbucketCloudDriver
from tests.e2e.test_forge_flow import PROJECT, Flow
from tests.fakes.bitbucket_payloads import cloud_headers, cloud_payload, encode

pytestmark = pytest.mark.e2e


@pytest.fixture
def flow(tmp_path: Path):
    driver = BitbucketCloudDriver()
    made = Flow(driver, tmp_path)
    yield made
    made.stop()
    driver.close()


def test_forgeries_readers_and_the_bots_own_comments_change_nothing(flow: Flow) -> None:
    driver: BitbucketCloudDriver = flow.driver  # type: ignore[assignment]
    flow.open(1, "one")
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in flow.last_comment(1), flow.server.log()
    planned = len(driver.bot_comments(1))

    genuine = driver.comment(1, "/apply", "alice")
    forged = Delivery({**genuine.headers, "X-Hub-Signature": sign_github("guessed-secret", genuine.body)},
                      genuine.body, expect=401)
    flow.send(forged)
    flow.send(Delivery({k: v for k, v in genuine.headers.items() if k != "X-Hub-Signature"}, genuine.body, expect=401))
    assert len(driver.bot_comments(1)) == planned

    flow.say(1, "/apply", author="mallory")  # may comment, may not write
    refusal = flow.last_comment(1)
    assert "needs write permission" in refusal and driver.fake.account_id("mallory") in refusal
    assert not flow.state.exists()

    own = driver.fake.add_comment("acme/infra", 1, "/apply", "plankeeper-bot")
    body = encode(cloud_payload(driver.fake, "pullrequest:comment_created", "acme/infra", 1, "plankeeper-bot", own))
    answer = requests.post(f"{flow.server.url}/events", data=body, timeout=10,
                           headers=cloud_headers("pullrequest:comment_created", body, "bitbucket-driver-secret"))
    assert answer.status_code == 200 and answer.json()["reason"] == "comment by the bot itself"
    assert not flow.state.exists()


def test_a_fork_is_not_planned_with_the_servers_credentials(flow: Flow) -> None:
    driver: BitbucketCloudDriver = flow.driver  # type: ignore[assignment]
    fake = driver.fake
    fake.add_fork("mallory/infra", of="acme/infra")
    head = flow.repo.commit({PROJECT: 'resource "terraform_data" "x" {}\n'}, "evil", branch="evil")
    flow.repo.checkout("main")
    fake.add_pull("acme/infra", 5, head, "evil", "main", "mallory", [PROJECT], base_sha=flow.base, source="mallory/infra")
    body = encode(cloud_payload(fake, "pullrequest:created", "acme/infra", 5, "mallory"))
    flow.send(Delivery(cloud_headers("pullrequest:created", body, "bitbucket-driver-secret"), body))
    assert "fork" in flow.last_comment(5).lower() and "Plan:" not in flow.last_comment(5)
    assert driver.statuses(head) == {}
