"""Forge.create_pull_request on GitHub (PyGithub) and GitLab (python-gitlab), against the fakes
whose repositories are real local git repos."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ForgeError
from bot.forges.github import GitHubForge
from bot.forges.gitlab import GitLabForge
from bot.models import Repo
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab
from tests.support import GitRepo

TOKEN = "ghp_secret-token-value"


@pytest.fixture
def git(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path, "infra")
    repo.commit({"README.md": "x\n"})
    repo.commit({"infra/app/main.tf": "# revert\n"}, "revert it", branch="plankeeper/revert-7-abc1234")
    repo.checkout("main")
    return repo


def test_github_opens_a_pull_request_from_a_branch(git: GitRepo) -> None:
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_repo("acme/infra", git.clone_url)
        forge = GitHubForge(fake.api_url, token=TOKEN, write_interval=0, sleep=lambda s: None)
        repo = Repo("github", "github.com", "acme/infra", git.clone_url)
        pull = forge.create_pull_request(repo, "plankeeper/revert-7-abc1234", "main", "Revert #7: Add app",
                                         "Reverts #7")
        assert (pull.number, pull.state, pull.head_ref, pull.base_ref) == (1, "open", "plankeeper/revert-7-abc1234",
                                                                           "main")
        assert pull.head_sha == git.git("rev-parse", "plankeeper/revert-7-abc1234")
        assert pull.base_sha == git.git("rev-parse", "main")
        assert (pull.title, pull.author, pull.is_fork) == ("Revert #7: Add app", "plankeeper-bot", False)
        assert pull.url.endswith("/acme/infra/pull/1")
        assert ("POST", "/repos/acme/infra/pulls") in fake.requests
        assert fake.pull("acme/infra", 1).body == "Reverts #7"
        assert forge.changed_files(pull) == ["infra/app/main.tf"]
        assert forge.pull_request(repo, 1) == pull


def test_github_refusal_is_a_forge_error(git: GitRepo) -> None:
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_repo("acme/infra", git.clone_url)
        forge = GitHubForge(fake.api_url, token=TOKEN, write_interval=0, sleep=lambda s: None)
        repo = Repo("github", "github.com", "acme/infra", git.clone_url)
        forge.create_pull_request(repo, "plankeeper/revert-7-abc1234", "main", "Revert", "")
        with pytest.raises(ForgeError, match="422"):  # one is open already
            forge.create_pull_request(repo, "plankeeper/revert-7-abc1234", "main", "Revert", "")
        with pytest.raises(ForgeError, match="422"):
            forge.create_pull_request(repo, "no-such-branch", "main", "Revert", "")


def test_gitlab_opens_a_merge_request_that_removes_its_branch(git: GitRepo) -> None:
    with FakeGitLab() as fake:
        pid = fake.add_project("acme/infra", git.clone_url)
        forge = GitLabForge(fake.url, fake.token, sleep=lambda s: None)
        repo = Repo("gitlab", "gitlab.example.com", "acme/infra", git.clone_url, forge_id=pid)
        pull = forge.create_pull_request(repo, "plankeeper/revert-7-abc1234", "main", "Revert !7: Add app",
                                         "Reverts !7")
        assert (pull.number, pull.state, pull.head_ref, pull.base_ref) == (1, "open", "plankeeper/revert-7-abc1234",
                                                                           "main")
        assert pull.head_sha == git.git("rev-parse", "plankeeper/revert-7-abc1234")
        assert (pull.title, pull.author) == ("Revert !7: Add app", "plankeeper-bot")
        [sent] = fake.requests_to(r"/merge_requests$", "POST")
        assert sent.body == {"source_branch": "plankeeper/revert-7-abc1234", "target_branch": "main",
                             "title": "Revert !7: Add app", "description": "Reverts !7", "remove_source_branch": True}
        assert fake.mr(pid, 1)["description"] == "Reverts !7"
        assert forge.changed_files(pull) == ["infra/app/main.tf"]
        with pytest.raises(ForgeError, match="409"):  # one is open already
            forge.create_pull_request(repo, "plankeeper/revert-7-abc1234", "main", "Revert", "")
        with pytest.raises(ForgeError, match="422"):
            forge.create_pull_request(repo, "no-such-branch", "main", "Revert", "")
