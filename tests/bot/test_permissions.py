"""Who may do what: bot.permissions on its own (GitHub teams, GitLab groups through the fakes
and the real forge clients), then each command path through bot.dispatch, and fork pull requests."""
from __future__ import annotations

import shutil

import pytest

from bot import dispatch, permissions
from bot.state import audit
from bot.errors import UserFacingError
from bot.forges.github import GitHubForge
from bot.forges.gitlab import GitLabForge
from bot.models import PullRequestEvent, Repo
from tests.fakes.gitlab import FakeGitLab
from tests.bot.conftest import JOB_BOT, JOB_TOKEN

FULL = "acme/infra"


@pytest.fixture
def github(fake) -> GitHubForge:
    return GitHubForge(fake.api_url, token=JOB_TOKEN, bot_login=JOB_BOT, write_interval=0, sleep=lambda s: None)


@pytest.fixture
def repo() -> Repo:
    return Repo("github", "github.com", FULL, "unused")


def refusal(forge, repo, login, command, configured) -> str:
    try:
        permissions.check(forge, repo, login, command, configured)
    except UserFacingError as exc:
        return exc.message
    return ""


def test_write_commands_need_write_permission(fake, github, repo) -> None:
    fake.add_repo(FULL, "unused")
    fake.set_permission(FULL, "reader", "read")
    fake.set_permission(FULL, "writer", "write")
    for command in ("apply", "unlock", "approve_policies", "cancel"):
        assert "needs write permission on acme/infra" in refusal(github, repo, "reader", command, {})
        assert refusal(github, repo, "writer", command, {}) == ""
    assert refusal(github, repo, "reader", "plan", {}) == ""  # open to anyone who can comment, unless configured
    with pytest.raises(UserFacingError, match="needs write permission"):  # but not with extra arguments
        permissions.check(github, repo, "reader", "plan", {}, needs_write=True)


def test_configured_users_and_github_teams(fake, github, repo) -> None:
    fake.add_repo(FULL, "unused")
    for user in ("alice", "bob", "carol"):
        fake.set_permission(FULL, user, "write")
    fake.add_team_member("acme", "platform", "bob")
    configured = {"apply": ("Alice", "team:acme/platform"), "plan": ("group:acme/ops",)}
    assert refusal(github, repo, "alice", "apply", configured) == ""  # user names ignore case
    assert refusal(github, repo, "bob", "apply", configured) == ""
    assert "only for Alice, team:acme/platform" in refusal(github, repo, "carol", "apply", configured)
    assert "only for group:acme/ops" in refusal(github, repo, "bob", "plan", configured)  # no groups on GitHub


def test_gitlab_groups() -> None:
    with FakeGitLab() as fake:
        project_id = fake.add_project("acme/infra", "unused")
        fake.set_access(project_id, "olga", 30)
        fake.set_access(project_id, "paul", 30)
        fake.add_group_member("acme/ops", "olga")
        forge = GitLabForge(fake.url, fake.token, sleep=lambda s: None)
        repo = Repo("gitlab", "gitlab.example.com", "acme/infra", "unused", forge_id=project_id)
        configured = {"unlock": ("group:acme/ops",), "cancel": ("team:acme/ops",)}
        assert refusal(forge, repo, "olga", "unlock", configured) == ""
        assert "only for group:acme/ops" in refusal(forge, repo, "paul", "unlock", configured)
        assert "only for team:acme/ops" in refusal(forge, repo, "olga", "cancel", configured)  # no teams on GitLab
        assert "needs write permission" in refusal(forge, repo, "nobody", "unlock", {})


# -- through the dispatcher: each command, then forks ---------------------------------------



def test_each_command_path_checks_permissions(fake, bench_factory) -> None:
    bench = bench_factory(permissions={"plan": ("alice",), "cancel": ("team:acme/platform",)})
    fake.add_pull(FULL, 7, bench.head, "feature", "main", "alice", files=["infra/app/main.tf"])
    fake.set_permission(FULL, "reader", "read")
    for command in ("apply", "unlock", "approve_policies"):
        assert bench.comment(f"/{command}", "reader") == f"refused: {command} refused"
        assert "needs write permission" in bench.last_comment()
    assert bench.comment("/plan", "reader") == "refused: plan refused"
    assert "only for alice" in bench.last_comment()
    assert bench.comment("/cancel", "reader") == "refused: cancel refused"
    fake.add_team_member("acme", "platform", "reader")
    assert bench.comment("/cancel", "reader") == "refused: cancel refused"  # the team, and write access
    assert "needs write permission" in bench.last_comment()
    fake.set_permission(FULL, "reader", "write")
    assert bench.comment("/cancel", "reader").startswith("cancelled ")
    assert bench.last_comment().startswith("**Plankeeper cancel**")


def test_the_audited_command_line_is_masked(fake, bench_factory) -> None:
    bench = bench_factory()
    fake.add_pull(FULL, 7, bench.head, "feature", "main", "alice", files=["infra/app/main.tf"])
    fake.set_permission(FULL, "reader", "read")
    token = "ghp_" + "L3ak" * 9
    assert bench.comment(f"/apply -p {token}", "reader") == "refused: apply refused"
    entry = audit.entries(bench.redis, filters={"action": "command"})[0]
    assert entry["detail"] == "/apply -p ***" and token not in bench.last_comment()


def test_fork_pull_requests_are_not_planned_by_default(fake, bench_factory) -> None:
    bench = bench_factory()
    fake.add_pull(FULL, 7, bench.head, "feature", "main", "eve", files=["infra/app/main.tf"],
                  fork_full_name="eve/infra")
    pull = bench.forge.pull_request(bench.repo, 7)
    assert pull.is_fork
    ctx = bench.context()
    assert dispatch.handle(ctx, PullRequestEvent("d", "opened", pull, "eve")).startswith("skipped: pull request "
                                                                                            "from a fork")
    assert "`allow_fork_prs` is off" in bench.last_comment()
    assert bench.comment("/plan", "eve") == "refused: Plan refused"
    assert "does not plan pull requests from forks" in bench.last_comment()


def test_fork_pull_requests_are_planned_with_allow_fork_prs(fake, bench_factory) -> None:
    bench = bench_factory(allow_fork_prs=True)
    fork = bench.tmp / "git" / "eve" / "infra.git"  # where the fake says the fork lives
    fork.parent.mkdir(parents=True)
    shutil.copytree(bench.git.bare, fork)
    fake.add_pull(FULL, 7, bench.head, "feature", "main", "eve", files=["infra/app/main.tf"],
                  fork_full_name="eve/infra")
    pull = bench.forge.pull_request(bench.repo, 7)
    assert pull.is_fork and pull.head_clone_url == str(fork)
    ctx = bench.context()
    summary = dispatch.handle(ctx, PullRequestEvent("d", "opened", pull, "eve"))
    ctx.cleanup()
    assert summary.startswith("planning 1 project(s)"), summary
    assert bench.last_comment().startswith("**Plankeeper plan**")
