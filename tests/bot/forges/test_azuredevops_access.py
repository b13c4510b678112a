"""bot/forges/azuredevops_access.py through AzureDevOpsForge against FakeAzureDevOps: who the bot
is, votes as approvals, whether a pull request may be completed, write permission from the
repository's security ACL (groups and the project's entries included), team membership."""
# ruff: noqa: F811 (the fixtures from tests.support_azuredevops are imported by name)
from __future__ import annotations

import pytest

from bot.forges.azuredevops import AzureDevOpsForge
from bot.forges.azuredevops_access import STATUS_POLICY_TYPE
from bot.models import Mergeability, PullRequest, Repo
from tests.fakes.azuredevops import FakeAzureDevOps
from tests.support_azuredevops import (  # noqa: F401
    ALICE,
    BOB,
    NAME,
    PROJECT,
    fake,
    forge,
    git,
    pull,
    repo,
    sleeps,
)

CAROL = "carol@fabrikam.example"
CONTRIBUTORS = "[acme]\\Contributors"


def test_the_bot_is_the_tokens_identity_unless_configured(fake: FakeAzureDevOps, forge: AzureDevOpsForge) -> None:
    assert forge.bot_login == "plankeeper-bot@fabrikam.example"
    assert len(fake.requests_to(r"/_apis/ConnectionData$")) == 1
    assert forge.bot_login and len(fake.requests_to(r"/_apis/ConnectionData$")) == 1  # asked once
    configured = AzureDevOpsForge(fake.org_url, fake.token, bot_login="FABRIKAM\\plankeeper")
    assert configured.bot_login == "FABRIKAM\\plankeeper" and len(fake.requests_to(r"ConnectionData")) == 1


def test_approvals_are_votes_of_people(fake: FakeAzureDevOps, forge: AzureDevOpsForge, pull: PullRequest) -> None:
    assert forge.approvals(pull) == ([], 1)
    fake.vote(PROJECT, NAME, 7, BOB, 10)
    fake.vote(PROJECT, NAME, 7, CAROL, 5)  # approved with suggestions
    fake.vote(PROJECT, NAME, 7, "dave@fabrikam.example", -10)
    fake.vote(PROJECT, NAME, 7, "erin@fabrikam.example", 0)
    assert forge.approvals(pull) == ([BOB, CAROL], 0)
    fake.pull(PROJECT, NAME, 7)["reviewers"][0]["isContainer"] = True  # a group's vote names nobody
    assert forge.approvals(pull) == ([CAROL], 0)


def test_mergeable_when_the_merge_and_every_blocking_policy_pass(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                                 pull: PullRequest) -> None:
    assert forge.mergeability(pull) == Mergeability(True)
    fake.set_policy(PROJECT, NAME, 7, "Build", "running", blocking=False)
    fake.set_policy(PROJECT, NAME, 7, "Comment requirements", "approved")
    fake.set_policy(PROJECT, NAME, 7, "Status", "queued", type_id=STATUS_POLICY_TYPE,
                    settings={"statusGenre": "plankeeper", "statusName": "apply"})
    assert forge.mergeability(pull) == Mergeability(True)  # the bot's own apply status never blocks
    fake.set_policy(PROJECT, NAME, 7, "Minimum number of reviewers", "rejected")
    assert forge.mergeability(pull) == Mergeability(
        False, "branch policies are not met: Minimum number of reviewers is rejected")


@pytest.mark.parametrize("fields, reason", [
    ({"mergeStatus": "conflicts"}, "merge conflict"),
    ({"mergeStatus": "queued"}, "still computing"),
    ({"isDraft": True}, "draft"),
    ({"status": "abandoned"}, "abandoned"),
])
def test_not_mergeable(fake: FakeAzureDevOps, forge: AzureDevOpsForge, pull: PullRequest, fields: dict,
                       reason: str) -> None:
    fake.set_state(PROJECT, NAME, 7, **fields)
    state = forge.mergeability(pull)
    assert not state.mergeable and reason in state.reason


def test_write_permission_is_the_effective_contribute_permission(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                                 repo: Repo) -> None:
    fake.user(ALICE), fake.user(BOB), fake.user(CAROL)
    assert not forge.has_write_permission(repo, ALICE)  # no entry at all: fails closed
    fake.grant(PROJECT, NAME, ALICE)  # explicit on the repository
    fake.add_group(CONTRIBUTORS, (BOB, CAROL))
    fake.grant_project(PROJECT, CONTRIBUTORS)  # inherited from the project, through a group
    fake.grant(PROJECT, NAME, CAROL, allow=0, deny=4)  # an explicit deny wins
    assert forge.has_write_permission(repo, ALICE) and forge.has_write_permission(repo, BOB.upper())
    assert not forge.has_write_permission(repo, CAROL)
    assert not forge.has_write_permission(repo, "mallory@evil.example")  # unknown identity
    fake.grant(PROJECT, NAME, "reader@fabrikam.example", allow=2)  # Read only
    assert not forge.has_write_permission(repo, "reader@fabrikam.example")
    acl = fake.requests_to(r"/_apis/AccessControlLists/2e9eb7ed-3c0a-47d4-87c1-0ffdd275fd87$")[-1]
    repository = fake.repository(PROJECT, NAME)
    assert acl.query["token"] == f"repoV2/{repository['project']['id']}/{repository['id']}"
    assert acl.query["includeExtendedInfo"] == "true"
    assert fake.requests_to(r"^/vssps/fabrikam/_apis/Identities$")  # identities live on their own host


def test_team_membership(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo) -> None:
    for n in range(120):
        fake.add_team_member(PROJECT, "Platform Team", f"user{n}@fabrikam.example")
    fake.add_team_member(PROJECT, "Platform Team", ALICE)
    assert forge.in_group(repo, ALICE, "team:acme/Platform Team")  # on the second page
    assert len(fake.requests_to(r"/teams/Platform Team/members$")) == 2
    assert not forge.in_group(repo, BOB, "team:acme/Platform Team")
    assert not forge.in_group(repo, ALICE, "team:acme/No Such Team")  # 404: nobody
    assert not forge.in_group(repo, ALICE, "group:acme/platform") and not forge.in_group(repo, ALICE, "team:acme")
