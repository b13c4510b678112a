"""Azure DevOps through a real `plankeeper serve`: what forged, hostile and repeated service hook
deliveries get. The forge flow every forge passes is tests/e2e/test_forge_flow.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.bot.drift.test_check import state_value
from tests.e2e.drivers import Delivery
from tests.e2e.drivers.azuredevops import BOT, HOOK_USER, AzureDevOpsDriver
from tests.e2e.test_forge_flow import Flow
from tests.fakes.azuredevops_payloads import (
    UPDATED,
    as_body,
    basic_auth,
    comment_event,
    pull_request_event,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def driver():
    made = AzureDevOpsDriver()
    yield made
    made.close()


def summaries(flow: Flow) -> list[str]:
    return [job.get("summary", "") for job in requests.get(f"{flow.server.url}/api/jobs?limit=200", timeout=5).json()]


def test_forged_hostile_and_repeated_deliveries(driver: AzureDevOpsDriver, tmp_path: Path) -> None:
    flow = Flow(driver, tmp_path)
    try:
        flow.open(1, "one")
        replies = len(driver.bot_comments(1))

        delivery = driver.comment(1, "/apply", "alice")
        flow.send(Delivery({**delivery.headers, "Authorization": basic_auth(HOOK_USER, "guess")}, delivery.body, 401))
        assert len(driver.bot_comments(1)) == replies  # the forged one did nothing
        flow.send(delivery)
        flow.send(Delivery(delivery.headers, delivery.body, 200))  # Azure DevOps' retry: the same id
        assert "Apply refused" in flow.last_comment(1) and len(driver.bot_comments(1)) == replies + 1

        flow.say(1, "/apply", author="mallory")  # no Contribute permission on the repository
        assert "needs write permission" in flow.last_comment(1) and not flow.state.exists()

        # the bot's own comment, with no bot_login configured: the token's identity says it is the bot's
        own = driver.fake.add_comment(driver.project, driver.name, 1, "/apply", BOT)
        flow.send(Delivery(delivery.headers, as_body(comment_event(driver.fake, driver.project, driver.name, 1, own))))
        assert "ignored: the bot's own comment" in summaries(flow) and not flow.state.exists()

        # completion announced twice (status update and merge attempted): deployed once
        flow.send(driver.approve(1, "bob"))
        flow.merge(1)
        completed = pull_request_event(driver.fake, UPDATED, driver.project, driver.name, 1,
                                       "Alice marked the pull request as completed")
        flow.send(Delivery(delivery.headers, as_body(completed)))
        assert state_value(flow.state) == "one", flow.server.log()
        assert sum("Apply complete!" in body for body in driver.bot_comments(1)) == 1
    finally:
        flow.stop()
