"""GitHubForge driven through PyGithub against FakeGitHub, a real HTTP server."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.errors import ForgeError, SettingsError
from bot.forges.github import GitHubForge
from bot.models import Comment, PullRequest, Repo
from tests.fakes.github import FakeGitHub

FULL = "acme/infra"
CLONE = "https://github.com/acme/infra.git"
HEAD, BASE = "a" * 40, "b" * 40
TOKEN = "ghp_secret-token-value"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=TOKEN) as server:
        server.add_repo(FULL, CLONE)
        server.add_pull(
            FULL,
            3,
            HEAD,
            "feature",
            "main",
            "alice",
            files=["stacks/a/main.tf"],
            base_sha=BASE,
            title="Add bucket",
        )
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def forge(fake: FakeGitHub, sleeps: list[float]) -> GitHubForge:
    return GitHubForge(fake.api_url, token=TOKEN, write_interval=0, sleep=sleeps.append)


@pytest.fixture
def repo() -> Repo:
    return Repo("github", "github.com", FULL, CLONE)


@pytest.fixture
def pull(forge: GitHubForge, repo: Repo) -> PullRequest:
    return forge.pull_request(repo, 3)


def _count(fake: FakeGitHub, method: str, path: str) -> int:
    return sum(1 for m, p in fake.requests if m == method and p == path)


# -- pull requests --------


def test_pull_request_reports_head_base_author_and_links(pull: PullRequest, repo: Repo) -> None:
    assert (pull.head_sha, pull.head_ref, pull.base_ref, pull.base_sha) == (
        HEAD,
        "feature",
        "main",
        BASE,
    )
    assert (pull.author, pull.title, pull.state, pull.merge_sha) == (
        "alice",
        "Add bucket",
        "open",
        None,
    )
    assert pull.url.endswith("/acme/infra/pull/3")
    assert pull.head_clone_url == CLONE
    assert not pull.is_fork and not pull.is_draft
    assert pull.repo == repo


def test_pull_request_from_a_fork_or_a_deleted_fork(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo
) -> None:
    fake.add_pull(
        FULL, 4, HEAD, "patch", "main", "mallory", fork_full_name="mallory/infra", draft=True
    )
    fake.add_pull(FULL, 5, HEAD, "gone", "main", "mallory", head_repo_missing=True)
    forked = forge.pull_request(repo, 4)
    assert forked.is_fork and forked.is_draft
    assert forked.head_clone_url == "https://github.com/mallory/infra.git"
    orphan = forge.pull_request(repo, 5)
    assert orphan.is_fork and orphan.head_clone_url == ""


def test_pull_request_states_closed_and_merged(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo
) -> None:
    fake.set_state(FULL, 3, closed=True)
    assert forge.pull_request(repo, 3).state == "closed"
    fake.set_state(FULL, 3, closed=True, merged=True)
    merged = forge.pull_request(repo, 3)
    assert merged.state == "merged"
    assert merged.merge_sha == fake.pull(FULL, 3).merge_commit_sha and merged.merge_sha


def test_changed_files_reads_every_page(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    paths = [f"stacks/s{i:03d}/main.tf" for i in range(250)]
    fake.set_files(FULL, 3, paths)
    assert forge.changed_files(pull) == paths
    assert _count(fake, "GET", f"/repos/{FULL}/pulls/3/files") == 3  # 100 + 100 + 50


def test_changed_files_lists_both_sides_of_a_rename(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    fake.set_files(
        FULL,
        3,
        ["a.tf", {"filename": "new/b.tf", "status": "renamed", "previous_filename": "old/b.tf"}],
    )
    assert forge.changed_files(pull) == ["a.tf", "new/b.tf", "old/b.tf"]


# -- comments and statuses --------


def test_comments_are_created_updated_read_and_reacted_to(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    ref = forge.create_comment(pull, "planning…")
    assert ref.url.endswith(f"#issuecomment-{ref.id}")
    forge.update_comment(pull, ref.id, "Plan: 1 to add")
    assert forge.comment(pull, ref.id).body == "Plan: 1 to add"
    command = fake.add_comment(FULL, 3, "/plan", "alice")
    forge.add_reaction(pull, str(command))
    assert fake.comments(FULL, 3) == [
        {"id": int(ref.id), "body": "Plan: 1 to add", "user": "plankeeper-bot", "reactions": []},
        {"id": command, "body": "/plan", "user": "alice", "reactions": ["eyes"]},
    ]


def test_bot_login_is_the_token_user_unless_given(fake: FakeGitHub) -> None:
    assert GitHubForge(fake.api_url, token=TOKEN).bot_login == "plankeeper-bot"
    assert GitHubForge(fake.api_url, token=TOKEN, bot_login="infra-bot").bot_login == "infra-bot"
    assert _count(fake, "GET", "/user") == 1


def test_set_status_truncates_description_to_githubs_limit(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo
) -> None:
    forge.set_status(repo, HEAD, "plankeeper/plan", "pending", "planning " * 40, "http://ci/job/1")
    forge.set_status(repo, HEAD, "plankeeper/plan", "success", "2 projects planned")
    first, second = fake.statuses(FULL, HEAD)
    assert len(first["description"]) == 140 and first["description"].startswith("planning planning")
    assert (first["context"], first["state"], first["target_url"]) == (
        "plankeeper/plan",
        "pending",
        "http://ci/job/1",
    )
    assert (second["state"], second["description"], second["target_url"]) == (
        "success",
        "2 projects planned",
        None,
    )
    with pytest.raises(ValueError):
        forge.set_status(repo, HEAD, "plankeeper/plan", "error", "x")


# -- reviews and mergeability --------


def test_approvals_count_only_each_reviewers_latest_review(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    assert forge.approvals(pull) == ([], 1)
    fake.add_review(FULL, 3, "alice", "APPROVED")
    fake.add_review(FULL, 3, "alice", "CHANGES_REQUESTED")
    fake.add_review(FULL, 3, "bob", "CHANGES_REQUESTED")
    fake.add_review(FULL, 3, "bob", "APPROVED")
    fake.add_review(FULL, 3, "carol", "APPROVED")
    fake.add_review(FULL, 3, "carol", "COMMENTED")  # a comment does not withdraw an approval
    fake.add_review(FULL, 3, "dave", "APPROVED")
    fake.add_review(FULL, 3, "dave", "DISMISSED")
    assert forge.approvals(pull) == (["bob", "carol"], 0)


def test_an_approval_of_an_older_commit_does_not_count(fake: FakeGitHub, forge: GitHubForge, pull: PullRequest) -> None:
    fake.add_review(FULL, 3, "alice", "APPROVED", commit_id="0" * 40)  # before the last push
    fake.add_review(FULL, 3, "bob", "APPROVED")
    assert forge.approvals(pull) == (["bob"], 0)


def test_a_deleted_comment_reads_as_none(fake: FakeGitHub, forge: GitHubForge, pull: PullRequest) -> None:
    comment_id = fake.add_comment(FULL, 3, "/apply", "alice")
    assert forge.comment(pull, str(comment_id)) == Comment(str(comment_id), "alice", "/apply")
    assert forge.comment(pull, "987654") is None


@pytest.mark.parametrize(
    "mergeable, state, expected",
    [
        (True, "clean", (True, "")),
        (True, "unstable", (True, "")),
        (True, "has_hooks", (True, "")),
        (False, "dirty", (False, "merge conflict")),
        (False, "blocked", (False, "blocked by branch protection (required reviews or checks)")),
        (False, "behind", (False, "head branch is behind the base branch")),
        (False, "draft", (False, "draft pull request")),
    ],
)
def test_mergeability_words(
    fake: FakeGitHub,
    forge: GitHubForge,
    pull: PullRequest,
    mergeable: bool,
    state: str,
    expected: tuple[bool, str],
) -> None:
    fake.set_mergeable(FULL, 3, mergeable, state)
    result = forge.mergeability(pull)
    assert (result.mergeable, result.reason) == expected


def test_mergeability_repolls_while_github_computes(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest, sleeps: list[float]
) -> None:
    fake.set_mergeable(FULL, 3, False, "dirty", pending_polls=2)
    assert forge.mergeability(pull).reason == "merge conflict"
    assert sleeps == [0.5, 1.0]
    fake.set_mergeable(FULL, 3, True, "clean", pending_polls=100)
    result = forge.mergeability(pull)
    assert (result.mergeable, result.reason) == (False, "GitHub has not computed mergeability yet")


def test_own_apply_status_does_not_block_the_apply(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    fake.set_mergeable(FULL, 3, False, "blocked")
    fake.add_status(FULL, HEAD, "ci/test", "success")
    fake.add_status(FULL, HEAD, "plankeeper/apply", "pending", creator="plankeeper-bot")
    fake.add_status(FULL, HEAD, "plankeeper/apply", "failure", creator="plankeeper-bot")
    fake.add_check_run(FULL, HEAD, "lint", conclusion="success")
    assert forge.mergeability(pull).mergeable


def test_own_apply_status_under_the_statuses_prefix_does_not_block(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    fake.set_mergeable(FULL, 3, False, "blocked")
    fake.add_status(FULL, HEAD, "atlantis/apply", "pending", creator="plankeeper-bot")
    assert not forge.mergeability(pull).mergeable  # not the bot's context while its prefix is plankeeper
    forge.status_prefix = "atlantis"
    assert forge.mergeability(pull).mergeable


@pytest.mark.parametrize("other", ["status", "check_run", "nothing"])
def test_other_blockers_still_block(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest, other: str
) -> None:
    fake.set_mergeable(FULL, 3, False, "blocked")
    if other != "nothing":
        fake.add_status(FULL, HEAD, "plankeeper/apply", "failure")
    if other == "status":
        fake.add_status(FULL, HEAD, "ci/test", "pending")
    if other == "check_run":
        fake.add_check_run(FULL, HEAD, "tests", conclusion="failure")
    assert not forge.mergeability(pull).mergeable


def test_closed_pull_request_is_not_mergeable(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    fake.set_state(FULL, 3, closed=True)
    assert forge.mergeability(pull).reason == "pull request is closed"


# -- permissions --------


@pytest.mark.parametrize(
    "role, allowed",
    [
        ("admin", True),
        ("maintain", True),
        ("write", True),
        ("triage", False),
        ("read", False),
        (None, False),
    ],
)
def test_write_permission(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo, role: str, allowed: bool
) -> None:
    if role:
        fake.set_permission(FULL, "alice", role)
    assert forge.has_write_permission(repo, "alice") is allowed


def test_in_group_checks_active_team_membership(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo
) -> None:
    fake.add_team_member("acme", "platform", "alice")
    assert forge.in_group(repo, "alice", "team:acme/platform")
    assert not forge.in_group(repo, "bob", "team:acme/platform")
    assert not forge.in_group(repo, "alice", "team:acme/other")
    assert not forge.in_group(repo, "alice", "group:acme/platform")


# -- merging, clone credentials, issues --------


def test_merge_deletes_the_head_branch_when_asked(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    forge.merge(pull, delete_source_branch=True)
    assert fake.pull(FULL, 3).merged
    assert "feature" not in fake.repos[FULL].branches
    assert ("DELETE", f"/repos/{FULL}/git/refs/heads/feature") in fake.requests


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_merge_uses_the_method_asked_for(fake: FakeGitHub, forge: GitHubForge, pull: PullRequest, method: str) -> None:
    forge.merge(pull, method=method)
    assert (fake.pull(FULL, 3).merged, fake.pull(FULL, 3).merge_method) == (True, method)


def test_merge_never_deletes_a_forks_branch(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo
) -> None:
    fake.add_pull(FULL, 4, HEAD, "feature", "main", "mallory", fork_full_name="mallory/infra")
    forge.merge(forge.pull_request(repo, 4), delete_source_branch=True)
    assert fake.pull(FULL, 4).merged
    assert not [p for m, p in fake.requests if m == "DELETE"]


def test_merge_refuses_when_the_head_moved(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest
) -> None:
    fake.push(FULL, 3, "c" * 40)
    with pytest.raises(ForgeError, match=r"merge acme/infra#3 \(merge\) failed: HTTP 409"):
        forge.merge(pull)
    assert not fake.pull(FULL, 3).merged


def test_clone_auth_uses_the_token(forge: GitHubForge, repo: Repo) -> None:
    assert forge.clone_auth(repo) == ("x-access-token", TOKEN)


def test_issues_are_opened_updated_and_closed(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo
) -> None:
    issue_id = forge.create_or_update_issue(repo, "Drift in stacks/a", "1 resource drifted", None)
    assert issue_id == "4"  # numbers are shared with pull requests
    assert (
        forge.create_or_update_issue(repo, "Drift in stacks/a", "2 resources drifted", issue_id)
        == "4"
    )
    forge.close_issue(repo, issue_id, "No drift any more.")
    (issue,) = fake.issues(FULL)
    assert (issue["title"], issue["body"], issue["state"]) == (
        "Drift in stacks/a",
        "2 resources drifted",
        "closed",
    )
    assert [c["body"] for c in fake.comments(FULL, 4)] == ["No drift any more."]


# -- retries and failures --------


def test_server_error_is_retried(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo, sleeps: list[float]
) -> None:
    fake.inject_failures(r"/pulls/3$", [502])
    assert forge.pull_request(repo, 3).head_sha == HEAD
    assert sleeps == [0.5]
    assert _count(fake, "GET", f"/repos/{FULL}/pulls/3") == 2


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_waits_for_retry_after(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest, sleeps: list[float], status: int
) -> None:
    fake.inject_failures(r"/issues/3/comments$", [status, status], retry_after=7)
    forge.create_comment(pull, "hello")
    assert sleeps == [7.0, 7.0]
    assert [c["body"] for c in fake.comments(FULL, 3)] == ["hello"]


def test_retry_after_is_capped(
    fake: FakeGitHub, forge: GitHubForge, pull: PullRequest, sleeps: list[float]
) -> None:
    fake.inject_failures(r"/statuses/", [403], retry_after=3600)
    forge.set_status(pull.repo, HEAD, "plankeeper/plan", "success", "ok")
    assert sleeps == [30.0]


def test_failure_after_the_last_attempt_names_the_action(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo, sleeps: list[float]
) -> None:
    fake.inject_failures(r"/pulls/3$", [500, 500, 500, 500])
    with pytest.raises(ForgeError) as info:
        forge.pull_request(repo, 3)
    assert (
        str(info.value)
        == "GitHub: read pull request acme/infra#3 failed: HTTP 500 after 4 attempts"
    )
    assert sleeps == [0.5, 1.0, 2.0]
    assert TOKEN not in str(info.value)


def test_client_errors_are_not_retried(
    fake: FakeGitHub, forge: GitHubForge, repo: Repo, sleeps: list[float]
) -> None:
    with pytest.raises(ForgeError, match="read pull request acme/infra#99 failed: HTTP 404$"):
        forge.pull_request(repo, 99)
    assert sleeps == []
    bad = GitHubForge(fake.api_url, token="wrong", write_interval=0, sleep=sleeps.append)
    with pytest.raises(ForgeError, match="HTTP 401"):
        bad.pull_request(repo, 3)


# -- construction and GitHub App auth --------


def test_from_settings_and_missing_credentials(fake: FakeGitHub, repo: Repo) -> None:
    settings = SimpleNamespace(
        api_url=fake.api_url + "/", token=TOKEN, app_id=None, private_key=None, webhook_secret="s"
    )
    forge = GitHubForge.from_settings(settings)
    assert forge.api_url == fake.api_url
    assert forge.pull_request(repo, 3).head_sha == HEAD
    with pytest.raises(SettingsError, match="github.token"):
        GitHubForge(fake.api_url)


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    return _rsa_pair()


@pytest.fixture
def app_fake(rsa_pair: tuple[str, str]) -> Iterator[FakeGitHub]:
    with FakeGitHub(
        token=None, app_id=4242, app_public_key=rsa_pair[1], installation_id=77
    ) as server:
        server.add_repo(FULL, CLONE)
        server.add_pull(FULL, 3, HEAD, "feature", "main", "alice")
        yield server


def test_app_auth_reuses_the_installation_token_until_near_expiry(
    app_fake: FakeGitHub, repo: Repo, rsa_pair: tuple[str, str]
) -> None:
    now = [time.time()]
    forge = GitHubForge(
        app_fake.api_url,
        app_id=4242,
        private_key=rsa_pair[0],
        installation_id=77,
        write_interval=0,
        clock=lambda: now[0],
    )
    pull = forge.pull_request(repo, 3)
    forge.create_comment(pull, "hello")
    user, token = forge.clone_auth(repo)  # type: ignore[misc]
    assert user == "x-access-token" and token in app_fake.installation_tokens
    assert forge.bot_login == "plankeeper[bot]"
    assert fake_token_requests(app_fake) == 1
    assert app_fake.comments(FULL, 3)[0]["user"] == "plankeeper[bot]"
    now[0] += app_fake.installation_token_ttl - 60  # inside the refresh margin
    forge.pull_request(repo, 3)
    assert fake_token_requests(app_fake) == 2
    assert forge.clone_auth(repo) != ("x-access-token", token)


def fake_token_requests(fake: FakeGitHub) -> int:
    return _count(fake, "POST", "/app/installations/77/access_tokens")


def test_app_auth_finds_the_installation_of_the_repo(
    app_fake: FakeGitHub, repo: Repo, rsa_pair: tuple[str, str]
) -> None:
    forge = GitHubForge(app_fake.api_url, app_id=4242, private_key=rsa_pair[0], write_interval=0)
    assert forge.pull_request(repo, 3).author == "alice"
    assert ("GET", f"/repos/{FULL}/installation") in app_fake.requests
    assert fake_token_requests(app_fake) == 1


def test_app_with_the_wrong_key_is_refused(app_fake: FakeGitHub, repo: Repo) -> None:
    forge = GitHubForge(
        app_fake.api_url,
        app_id=4242,
        private_key=_rsa_pair()[0],
        installation_id=77,
        write_interval=0,
    )
    with pytest.raises(ForgeError, match="installation token for installation 77 failed: HTTP 401"):
        forge.pull_request(repo, 3)



def test_make_forge_gives_the_forge_the_statuses_prefix() -> None:
    from bot.forges import make_forge
    from bot.models import Repo
    from bot.settings import GitHubSettings, Settings, StatusSettings
    settings = Settings(github=GitHubSettings(token="ghp_" + "x" * 36), statuses=StatusSettings(prefix="atlantis"))
    assert make_forge(Repo("github", "github.com", "acme/infra", ""), settings).status_prefix == "atlantis"
