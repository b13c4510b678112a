"""BitbucketCloudForge through the real atlassian-python-api client against FakeBitbucketCloud
(real HTTP): every Forge method, Bitbucket's paging, retries on 5xx and 429, permission checks."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.errors import ForgeError, IssuesUnavailable
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.bitbucket import BitbucketCloudForge, bitbucket_forge
from bot.forges.bitbucket_dc import BitbucketDataCenterForge
from bot.forges.retry import ForgeRequestFailed
from bot.models import PullRequest, Repo
from bot.settings import BitbucketSettings
from tests.fakes.bitbucket import FakeBitbucketCloud
from tests.support import GitRepo

FULL = "acme/infra"
HEAD, BASE = "a1" * 20, "b2" * 20
USERNAME, TOKEN = "plankeeper-bot", "bb-app-password-for-tests"


@pytest.fixture
def fake() -> Iterator[FakeBitbucketCloud]:
    with FakeBitbucketCloud(username=USERNAME, token=TOKEN) as server:
        server.add_repo(FULL)
        server.add_pull(FULL, 7, HEAD, "feature", "main", "alice", ["stacks/a/main.tf"], BASE, title="Add bucket")
        yield server


@pytest.fixture
def repo() -> Repo:
    return Repo("bitbucket", "bitbucket.org", FULL, "https://bitbucket.org/acme/infra.git",
                html_url="https://bitbucket.org/acme/infra")


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def forge(fake: FakeBitbucketCloud, sleeps: list[float]) -> BitbucketCloudForge:
    return BitbucketCloudForge(fake.api_url, USERNAME, TOKEN, sleep=sleeps.append)


@pytest.fixture
def pull(forge: BitbucketCloudForge, repo: Repo) -> PullRequest:
    return forge.pull_request(repo, 7)


# ---------------------------------------------------------------------------- pull requests


def test_pull_request_reads_bitbuckets_pull_request(pull: PullRequest, repo: Repo, fake: FakeBitbucketCloud) -> None:
    assert (pull.number, pull.title, pull.head_ref, pull.base_ref) == (7, "Add bucket", "feature", "main")
    assert (pull.head_sha, pull.base_sha) == (HEAD[:12], BASE[:12])  # as Bitbucket Cloud writes commits
    assert pull.author == fake.account_id("alice")
    assert (pull.state, pull.is_fork, pull.is_draft, pull.merge_sha) == ("open", False, False, None)
    assert pull.url == "https://bitbucket.org/acme/infra/pull-requests/7"
    assert pull.head_clone_url == repo.clone_url and pull.repo == repo and pull.updated_at > 0


def test_a_fork_is_cloned_from_the_fork(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo) -> None:
    fake.add_fork("mallory/infra", of=FULL)
    fake.add_pull(FULL, 8, HEAD, "evil", "main", "mallory", ["x.tf"], BASE, source="mallory/infra", draft=True)
    pull = forge.pull_request(repo, 8)
    assert pull.is_fork and pull.is_draft and pull.head_clone_url == "https://bitbucket.org/mallory/infra.git"


@pytest.mark.parametrize("bitbucket_state, state", [("OPEN", "open"), ("MERGED", "merged"), ("DECLINED", "closed"),
                                                    ("SUPERSEDED", "closed")])
def test_states(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo, bitbucket_state: str,
                state: str) -> None:
    fake.set_state(FULL, 7, bitbucket_state)
    assert forge.pull_request(repo, 7).state == state


def test_a_merged_pull_request_has_its_merge_commit(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                    repo: Repo) -> None:
    fake.mark_merged(FULL, 7, "c3" * 20)
    assert forge.pull_request(repo, 7).merge_sha == "c3" * 6


def test_unknown_pull_request_is_a_forge_error(forge: BitbucketCloudForge, repo: Repo) -> None:
    with pytest.raises(ForgeRequestFailed) as raised:
        forge.pull_request(repo, 404)
    assert raised.value.status == 404 and "acme/infra PR #404" in str(raised.value)


def test_changed_files_reads_every_page_and_both_sides_of_a_rename(fake: FakeBitbucketCloud,
                                                                    forge: BitbucketCloudForge, pull: PullRequest) -> None:
    fake.push(FULL, 7, HEAD, [f"stacks/s{i}/main.tf" for i in range(23)] + [("old/main.tf", "new/main.tf")])
    files = forge.changed_files(pull)
    assert len(files) == 25 and files[-2:] == ["old/main.tf", "new/main.tf"]
    assert len(fake.requests_to(r"/pullrequests/7/diffstat$")) == 3  # 10 a page, as Bitbucket pages


def test_create_pull_request_reads_the_branches_from_git(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    git = GitRepo(tmp_path / "acme", "infra")
    git.commit({"main.tf": "# one\n"}, "one")
    head = git.commit({"main.tf": "# two\n"}, "revert", branch="revert-7")
    with FakeBitbucketCloud(username=USERNAME, token=TOKEN) as fake:
        fake.add_repo(FULL, git_path=git.bare)
        forge = BitbucketCloudForge(fake.api_url, USERNAME, TOKEN, sleep=lambda s: None)
        repo = Repo("bitbucket", "bitbucket.org", FULL, "https://bitbucket.org/acme/infra.git")
        created = forge.create_pull_request(repo, "revert-7", "main", "Revert PR #7", "Reverts PR #7")
        assert (created.number, created.head_sha, created.head_ref, created.title) == (1, head[:12], "revert-7", "Revert PR #7")
        assert fake.pull(FULL, 1)["close_source_branch"] is True
        assert forge.changed_files(created) == ["main.tf"]


# ---------------------------------------------------------------------------- comments


def test_comments_are_created_edited_and_read_back(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                   pull: PullRequest) -> None:
    made = forge.create_comment(pull, "**Plan**: 1 to add")
    assert made.url.endswith(f"/pull-requests/7/_/diff#comment-{made.id}")
    forge.update_comment(pull, made.id, "~~outdated~~ plan")
    found = forge.comment(pull, made.id)
    assert found is not None and (found.body, found.author) == ("~~outdated~~ plan", fake.account_id(USERNAME))
    assert fake.comments(FULL, 7)[-1]["body"] == "~~outdated~~ plan"


def test_a_deleted_or_unknown_comment_is_none(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                              pull: PullRequest) -> None:
    comment_id = fake.add_comment(FULL, 7, "/apply", "alice")
    fake.delete_comment(FULL, 7, comment_id)
    assert forge.comment(pull, str(comment_id)) is None
    assert forge.comment(pull, "999999") is None


def test_reactions_do_nothing(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, pull: PullRequest) -> None:
    comment_id = fake.add_comment(FULL, 7, "/plan", "alice")
    before = len(fake.requests)
    forge.add_reaction(pull, str(comment_id), "eyes")
    assert len(fake.requests) == before


def test_comments_since_leave_out_deleted_and_older_ones(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                        pull: PullRequest) -> None:
    ids = [fake.add_comment(FULL, 7, f"comment {i}", "alice") for i in range(12)]
    fake.delete_comment(FULL, 7, ids[3])
    since = forge.comments_since(pull, 0)
    assert [c.id for c in since] == [str(i) for i in ids if i != ids[3]]
    assert since[0].author == fake.account_id("alice")
    assert forge.comments_since(pull, 4_000_000_000) == []


# ---------------------------------------------------------------------------- statuses


def test_build_statuses_are_keyed_by_context(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo,
                                             pull: PullRequest) -> None:
    forge.set_status(repo, pull.head_sha, "plankeeper/plan", PENDING, "planning", "http://pk/jobs/1")
    forge.set_status(repo, pull.head_sha, "plankeeper/plan", SUCCESS, "x" * 400)
    forge.set_status(repo, pull.head_sha, "plankeeper/apply", FAILURE, "apply failed")
    posted = fake.statuses(FULL, HEAD)
    assert [(s["key"], s["state"]) for s in posted] == [
        ("plankeeper/plan", "INPROGRESS"), ("plankeeper/plan", "SUCCESSFUL"), ("plankeeper/apply", "FAILED")]
    assert posted[0]["url"] == "http://pk/jobs/1" and posted[1]["url"] == repo.html_url  # Bitbucket wants a link
    assert len(posted[1]["description"]) == 255 and posted[1]["description"].endswith("…")
    assert forge.statuses(repo, pull.head_sha) == {"plankeeper/plan": SUCCESS, "plankeeper/apply": FAILURE}


def test_others_statuses_in_bitbuckets_words(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo) -> None:
    fake.set_status(FULL, HEAD, "ci/build", "STOPPED")
    fake.set_status(FULL, HEAD, "ci/lint", "INPROGRESS")
    assert forge.statuses(repo, HEAD) == {"ci/build": FAILURE, "ci/lint": PENDING}


def test_an_unknown_state_is_refused_before_any_request(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                        repo: Repo) -> None:
    before = len(fake.requests)
    with pytest.raises(ValueError, match="unknown commit status state 'error'"):
        forge.set_status(repo, HEAD, "plankeeper/plan", "error", "x")
    assert len(fake.requests) == before


# ---------------------------------------------------------------------------- approvals, mergeability


def test_approvals_are_participants_who_approve(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                pull: PullRequest) -> None:
    assert forge.approvals(pull) == ([], 1)
    fake.approve(FULL, 7, "bob")
    fake.approve(FULL, 7, "carol", approved=False)
    assert forge.approvals(pull) == ([fake.account_id("bob")], 0)


def test_mergeability(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, pull: PullRequest) -> None:
    assert forge.mergeability(pull).mergeable
    fake.set_conflicted(FULL, 7, "stacks/a/main.tf")
    blocked = forge.mergeability(pull)
    assert not blocked.mergeable and "merge conflict" in blocked.reason
    fake.set_state(FULL, 7, "DECLINED")
    assert forge.mergeability(pull).reason == "it is closed"


def test_a_draft_is_not_mergeable(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo) -> None:
    fake.add_pull(FULL, 9, HEAD, "wip", "main", "alice", ["a.tf"], BASE, draft=True)
    assert "draft" in forge.mergeability(forge.pull_request(repo, 9)).reason


# ---------------------------------------------------------------------------- permissions


def test_write_permission_is_write_or_admin_by_account_id(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                          repo: Repo) -> None:
    for i in range(15):  # more users than a page holds
        fake.set_permission(FULL, f"reader{i}", "read")
    fake.set_permission(FULL, "bob", "write")
    fake.set_permission(FULL, "carol", "admin")
    assert forge.has_write_permission(repo, fake.account_id("bob"))
    assert forge.has_write_permission(repo, fake.account_id("carol"))
    assert not forge.has_write_permission(repo, fake.account_id("reader14"))
    assert not forge.has_write_permission(repo, fake.account_id("mallory"))
    assert not forge.has_write_permission(repo, "bob")  # a nickname is not an identity


def test_a_bot_that_is_not_admin_cannot_tell_and_says_so(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                        repo: Repo) -> None:
    fake.set_permission(FULL, USERNAME, "write")
    with pytest.raises(ForgeRequestFailed) as raised:
        forge.has_write_permission(repo, fake.account_id("bob"))
    assert raised.value.status == 403 and TOKEN not in str(raised.value)


def test_groups_are_never_matched(forge: BitbucketCloudForge, repo: Repo, fake: FakeBitbucketCloud) -> None:
    before = len(fake.requests)
    assert not forge.in_group(repo, fake.account_id("bob"), "group:acme/ops")
    assert len(fake.requests) == before


# ---------------------------------------------------------------------------- merging


@pytest.mark.parametrize("method, strategy", [("merge", "merge_commit"), ("squash", "squash"),
                                              ("rebase", "fast_forward")])
def test_merge_strategies(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, pull: PullRequest, method: str,
                          strategy: str) -> None:
    forge.merge(pull, delete_source_branch=True, method=method)
    assert fake.merges(FULL) == [(7, strategy, True)] and fake.pull(FULL, 7)["state"] == "MERGED"


def test_merge_refuses_an_unknown_method_and_a_moved_head(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                          pull: PullRequest) -> None:
    with pytest.raises(ForgeError, match="cannot merge with 'octopus'"):
        forge.merge(pull, method="octopus")
    fake.push(FULL, 7, "d4" * 20, ["x.tf"])
    with pytest.raises(ForgeError, match="has new commits"):
        forge.merge(pull)
    assert fake.merges(FULL) == []


def test_bitbuckets_refusal_is_a_forge_error(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                             pull: PullRequest) -> None:
    fake.set_conflicted(FULL, 7, "a.tf")
    with pytest.raises(ForgeRequestFailed) as raised:
        forge.merge(pull)
    assert raised.value.status == 409


# ---------------------------------------------------------------------------- issues


def test_drift_issue_is_opened_updated_and_resolved(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                    repo: Repo) -> None:
    issue_id = forge.create_or_update_issue(repo, "Drift detected in infra/app", "plan 1", None)
    assert forge.create_or_update_issue(repo, "Drift detected in infra/app", "plan 2", issue_id) == issue_id
    (issue,) = fake.issues(FULL)
    assert (issue["content"]["raw"], issue["state"], issue["kind"]) == ("plan 2", "open", "task")
    forge.close_issue(repo, issue_id, "Drift cleared")
    assert fake.issues(FULL)[0]["state"] == "resolved"
    assert forge.create_or_update_issue(repo, "Drift again", "plan 3", "404") == "2"  # gone: a new one


def test_a_repository_without_issue_tracker_says_so(fake: FakeBitbucketCloud, forge: BitbucketCloudForge) -> None:
    fake.add_repo("acme/no-issues", has_issues=False)
    repo = Repo("bitbucket", "bitbucket.org", "acme/no-issues", "https://bitbucket.org/acme/no-issues.git")
    with pytest.raises(IssuesUnavailable, match="no issue tracker"):
        forge.create_or_update_issue(repo, "Drift", "body", None)


# ---------------------------------------------------------------------------- listing


def test_open_and_recently_closed_pull_requests(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                repo: Repo) -> None:
    for number in range(20, 32):
        fake.add_pull(FULL, number, HEAD, f"f{number}", "main", "alice", ["a.tf"], BASE)
    fake.mark_merged(FULL, 20, "e5" * 20)
    fake.set_state(FULL, 21, "DECLINED")
    opened = forge.open_pull_requests(repo)
    assert sorted(p.number for p in opened) == [7, *range(22, 32)] and all(p.updated_at for p in opened)
    closed = forge.recently_closed_pull_requests(repo, 0)
    assert [(p.number, p.state) for p in closed] == [(21, "closed"), (20, "merged")]
    assert closed[1].merge_sha == "e5" * 6
    assert forge.recently_closed_pull_requests(repo, 4_000_000_000) == []


# ---------------------------------------------------------------------------- identity, git, settings


def test_bot_login_is_the_tokens_account_id(fake: FakeBitbucketCloud, forge: BitbucketCloudForge) -> None:
    assert forge.bot_login == fake.account_id(USERNAME)
    configured = BitbucketCloudForge(fake.api_url, USERNAME, TOKEN, bot_login="557058:bot")
    assert configured.bot_login == "557058:bot"


def test_git_credentials(forge: BitbucketCloudForge, repo: Repo, pull: PullRequest) -> None:
    assert forge.clone_auth(repo) == (USERNAME, TOKEN)
    assert BitbucketCloudForge("https://api.bitbucket.org/2.0", None, "access-token").clone_auth(repo) == (
        "x-token-auth", "access-token")
    assert forge.pull_refs(pull) == []  # no refs/pull/N/head: the source branch comes with every branch


def test_an_access_token_without_a_user_authenticates_as_bearer(fake: FakeBitbucketCloud, repo: Repo) -> None:
    forge = BitbucketCloudForge(fake.api_url, None, TOKEN)
    assert forge.pull_request(repo, 7).number == 7
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_wrong_credentials_are_refused_without_echoing_them(fake: FakeBitbucketCloud, repo: Repo) -> None:
    forge = BitbucketCloudForge(fake.api_url, USERNAME, "wrong-password-value", sleep=lambda s: None)
    with pytest.raises(ForgeRequestFailed) as raised:
        forge.pull_request(repo, 7)
    assert raised.value.status == 401 and "wrong-password-value" not in str(raised.value)


def test_settings_pick_the_flavour() -> None:
    cloud = bitbucket_forge(BitbucketSettings(token="t", username="u"))
    server = bitbucket_forge(BitbucketSettings(url="https://bitbucket.acme.io/", token="t"))
    assert isinstance(cloud, BitbucketCloudForge) and isinstance(server, BitbucketDataCenterForge)
    assert cloud.comment_limit == server.comment_limit == 32_768


# ---------------------------------------------------------------------------- retries


def test_server_errors_are_retried_with_backoff(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo,
                                                sleeps: list[float]) -> None:
    fake.inject_failures(r"/pullrequests/7$", (500, 502))
    assert forge.pull_request(repo, 7).number == 7
    assert sleeps == [0.5, 1.0]


def test_rate_limits_honour_retry_after_and_the_library_does_not_sleep_itself(
        fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo, sleeps: list[float]) -> None:
    fake.inject_failures(r"/pullrequests/7$", (429,), retry_after=7)
    assert forge.pull_request(repo, 7).number == 7
    assert sleeps == [7.0]
    assert len(fake.requests_to(r"/pullrequests/7$")) == 2  # one refused, one answered: no hidden retry


def test_giving_up_names_the_action_and_the_status(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                   repo: Repo, sleeps: list[float]) -> None:
    fake.inject_failures(r"/pullrequests/7$", (503, 503, 503, 503))
    with pytest.raises(ForgeRequestFailed, match=r"Bitbucket Cloud: read acme/infra PR #7 failed: HTTP 503 after 4 attempts"):
        forge.pull_request(repo, 7)
    assert len(sleeps) == 3


def test_client_errors_are_not_retried(fake: FakeBitbucketCloud, forge: BitbucketCloudForge, repo: Repo,
                                       sleeps: list[float]) -> None:
    fake.inject_failures(r"/pullrequests/7$", (400,))
    with pytest.raises(ForgeRequestFailed):
        forge.pull_request(repo, 7)
    assert sleeps == []


def test_an_answer_that_is_not_bitbuckets_json_is_a_forge_error(fake: FakeBitbucketCloud, forge: BitbucketCloudForge,
                                                                 repo: Repo) -> None:
    fake.pull(FULL, 7)["source"].pop("branch")
    with pytest.raises(ForgeError, match=r"read acme/infra PR #7 failed: unexpected answer \(KeyError\)"):
        forge.pull_request(repo, 7)
