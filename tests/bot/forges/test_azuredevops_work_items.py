"""bot/forges/azuredevops_work_items.py through AzureDevOpsForge against FakeAzureDevOps: drift
reports as work items, (re)opened and closed by their states' categories."""
# ruff: noqa: F811 (the fixtures from tests.support_azuredevops are imported by name)
from __future__ import annotations

import pytest

from bot.errors import ForgeError
from bot.forges.azuredevops import AzureDevOpsForge
from bot.models import Repo
from tests.fakes.azuredevops import FakeAzureDevOps
from tests.support_azuredevops import fake, forge, git, repo, sleeps  # noqa: F401

REPORT = "**Drift** in `stacks/a`: <script>alert(1)</script>\n\n| resource | change |\n|---|---|\n"


def only_item(fake: FakeAzureDevOps) -> dict:
    items = fake.work_items()
    assert len(items) == 1
    return items[0]


def test_a_report_is_a_work_item_of_the_configured_type(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                        repo: Repo) -> None:
    item_id = forge.create_or_update_issue(repo, "Drift in stacks/a", REPORT, None)
    item = only_item(fake)
    assert str(item["id"]) == item_id and item["fields"]["System.WorkItemType"] == "Issue"
    assert item["fields"]["System.TeamProject"] == "acme" and item["fields"]["System.Title"] == "Drift in stacks/a"
    description = item["fields"]["System.Description"]
    assert description.startswith("<pre>") and "&lt;script&gt;" in description and "<script>" not in description
    bugs = AzureDevOpsForge(fake.org_url, fake.token, work_item_type="Bug", sleep=lambda s: None)
    bugs.create_or_update_issue(repo, "Drift", "x", None)
    assert fake.work_items()[-1]["fields"]["System.WorkItemType"] == "Bug"


def test_an_update_rewrites_and_reopens_it(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo) -> None:
    item_id = forge.create_or_update_issue(repo, "Drift", "first", None)
    forge.close_issue(repo, item_id, "In sync again.")
    assert only_item(fake)["fields"]["System.State"] == "Done"
    assert fake._work_items[int(item_id)]["_history"] == ["<pre>In sync again.</pre>"]
    assert forge.create_or_update_issue(repo, "Drift again", "second", item_id) == item_id
    item = only_item(fake)
    assert item["fields"]["System.State"] == "To Do" and item["fields"]["System.Title"] == "Drift again"
    assert item["fields"]["System.Description"] == "<pre>second</pre>"


def test_a_deleted_work_item_is_replaced(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo) -> None:
    assert forge.create_or_update_issue(repo, "Drift", "x", "404") == "1"
    assert forge.create_or_update_issue(repo, "Drift", "x", "not-a-number") == "2"


def test_a_type_the_process_lacks_is_reported(fake: FakeAzureDevOps, repo: Repo) -> None:
    forge = AzureDevOpsForge(fake.org_url, fake.token, work_item_type="Impediment", sleep=lambda s: None)
    with pytest.raises(ForgeError, match="HTTP 404"):
        forge.create_or_update_issue(repo, "Drift", "x", None)
