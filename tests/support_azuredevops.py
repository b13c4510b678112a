"""Fixtures for AzureDevOpsForge tests: a FakeAzureDevOps hosting a real git repository
(project acme, repository infra) with pull request 7 open, and the forge client against it.
Test modules import the fixtures they use by name."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.forges.azuredevops import AzureDevOpsForge
from bot.models import PullRequest, Repo
from tests.fakes.azuredevops import ORG, FakeAzureDevOps
from tests.support import GitRepo

PROJECT, NAME = "acme", "infra"
FULL_NAME = f"{ORG}/{PROJECT}/{NAME}"
ALICE, BOB = "alice@fabrikam.example", "bob@fabrikam.example"


@pytest.fixture
def git(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path)
    repo.commit({"README.md": "infra\n"}, "initial")
    repo.commit({"stacks/a/main.tf": "# a\n"}, "change a", branch="feature")
    repo.checkout("main")
    return repo


@pytest.fixture
def fake(git: GitRepo) -> Iterator[FakeAzureDevOps]:
    with FakeAzureDevOps() as server:
        server.add_repo(PROJECT, NAME, git.bare)
        head = git.git("rev-parse", "feature")
        server.add_pull(PROJECT, NAME, 7, head, "feature", "main", ALICE, ["stacks/a/main.tf"], title="Add a")
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def forge(fake: FakeAzureDevOps, sleeps: list[float]) -> AzureDevOpsForge:
    return AzureDevOpsForge(fake.org_url, fake.token, sleep=sleeps.append)


@pytest.fixture
def repo(fake: FakeAzureDevOps) -> Repo:
    remote = fake.repository(PROJECT, NAME)["remoteUrl"]  # the clone URL webhooks carry
    return Repo("azuredevops", fake.url.removeprefix("http://"), FULL_NAME, remote)


@pytest.fixture
def pull(forge: AzureDevOpsForge, repo: Repo) -> PullRequest:
    return forge.pull_request(repo, 7)
