"""BitbucketDataCenterForge through the real atlassian-python-api client against
FakeBitbucketDataCenter (real HTTP): every Forge method, Data Center's paging (isLastPage,
nextPageStart), versions on edits and merges, repository/project/group permissions, retries."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.errors import ForgeError, IssuesUnavailable
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.bitbucket_dc import BitbucketDataCenterForge
from bot.forges.retry import ForgeRequestFailed
from bot.models import PullRequest, Repo
from tests.fakes.bitbucket_dc import FakeBitbucketDataCenter
from tests.support import GitRepo

FULL = "ACME/infra"
HEAD, BASE = "a1" * 20, "b2" * 20
USERNAME, TOKEN = "plankeeper-bot", "bbdc-http-access-token-for-tests"


@pytest.fixture
def fake() -> Iterator[FakeBitbucketDataCenter]:
    with FakeBitbucketDataCenter(username=USERNAME, token=TOKEN) as server:
        server.add_repo(FULL)
        server.add_pull(FULL, 7, HEAD, "feature", "main", "alice", ["stacks/a/main.tf"], BASE, title="Add bucket")
        yield server


@pytest.fixture
def repo(fake: FakeBitbucketDataCenter) -> Repo:
    return Repo("bitbucket", "bitbucket.acme.io", FULL, f"{fake.url}/scm/acme/infra.git",
                html_url=f"{fake.url}/projects/ACME/repos/infra")


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def forge(fake: FakeBitbucketDataCenter, sleeps: list[float]) -> BitbucketDataCenterForge:
    return BitbucketDataCenterForge(fake.url, USERNAME, TOKEN, sleep=sleeps.append)


@pytest.fixture
def pull(forge: BitbucketDataCenterForge, repo: Repo) -> PullRequest:
    return forge.pull_request(repo, 7)


def test_pull_request(pull: PullRequest, repo: Repo, fake: FakeBitbucketDataCenter) -> None:
    assert (pull.number, pull.title, pull.author, pull.head_sha, pull.base_sha) == (7, "Add bucket", "alice", HEAD, BASE)
    assert (pull.head_ref, pull.base_ref, pull.state, pull.is_fork) == ("feature", "main", "open", False)
    assert pull.url == f"{fake.url}/projects/ACME/repos/infra/pull-requests/7" and pull.head_clone_url == repo.clone_url


def test_a_fork_is_cloned_from_the_fork(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge,
                                        repo: Repo) -> None:
    fake.add_repo("~MALLORY/infra")
    fake.add_pull(FULL, 8, HEAD, "evil", "main", "mallory", ["x.tf"], BASE, source="~MALLORY/infra")
    pull = forge.pull_request(repo, 8)
    assert pull.is_fork and pull.head_clone_url == f"{fake.url}/scm/~mallory/infra.git"


def test_changed_files_over_every_page(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge,
                                       pull: PullRequest) -> None:
    fake.push(FULL, 7, HEAD, [f"s{i}/main.tf" for i in range(600)] + [("old/main.tf", "new/main.tf")])
    files = forge.changed_files(pull)
    assert len(files) == 602 and files[-2:] == ["old/main.tf", "new/main.tf"]
    assert len(fake.requests_to(r"/pull-requests/7/changes$")) == 2  # 500 a page, nextPageStart followed


def test_comments_edit_at_the_current_version(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge,
                                              pull: PullRequest) -> None:
    made = forge.create_comment(pull, "plan")
    forge.update_comment(pull, made.id, "plan, edited")
    forge.update_comment(pull, made.id, "plan, outdated")
    assert made.url.endswith(f"/pull-requests/7/overview?commentId={made.id}")
    found = forge.comment(pull, made.id)
    assert found is not None and (found.author, found.body) == (USERNAME, "plan, outdated")
    assert fake.comments(FULL, 7)[-1]["version"] == 2
    assert forge.comment(pull, "99999") is None


def test_comments_since_come_from_the_activity_stream(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge,
                                                      pull: PullRequest) -> None:
    first = fake.add_comment(FULL, 7, "/plan", "alice")
    fake.approve(FULL, 7, "bob")
    mine = forge.create_comment(pull, "planning")
    forge.update_comment(pull, mine.id, "planned")
    found = forge.comments_since(pull, 0)
    assert [(c.id, c.author, c.body) for c in found] == [(str(first), "alice", "/plan"), (mine.id, USERNAME, "planned")]
    assert forge.comments_since(pull, 4_000_000_000) == []


def test_build_statuses(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge, repo: Repo) -> None:
    forge.set_status(repo, HEAD, "plankeeper/plan", PENDING, "planning", "http://pk/jobs/1")
    forge.set_status(repo, HEAD, "plankeeper/plan", SUCCESS, "planned")
    fake.set_status(FULL, HEAD, "ci/build", "FAILED")
    posted = fake.statuses(FULL, HEAD)
    assert [(s["key"], s["state"]) for s in posted[:2]] == [("plankeeper/plan", "INPROGRESS"), ("plankeeper/plan", "SUCCESSFUL")]
    assert posted[1]["url"] == repo.html_url
    assert forge.statuses(repo, HEAD) == {"plankeeper/plan": SUCCESS, "ci/build": FAILURE}


def test_approvals_count_for_the_reviewed_head(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge,
                                               repo: Repo, pull: PullRequest) -> None:
    assert forge.approvals(pull) == ([], 1)
    fake.approve(FULL, 7, "bob")
    assert forge.approvals(pull) == (["bob"], 0)
    fake.push(FULL, 7, "c3" * 20, ["x.tf"])  # bob approved the previous head
    assert forge.approvals(forge.pull_request(repo, 7)) == ([], 1)


def test_mergeability_in_data_centers_words(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge,
                                            pull: PullRequest) -> None:
    assert forge.mergeability(pull).mergeable
    fake.set_vetoes(FULL, 7, "Requires 2 approvals", "Requires a successful build")
    assert forge.mergeability(pull).reason == "Requires 2 approvals; Requires a successful build"
    fake.set_vetoes(FULL, 7, conflicted=True)
    assert "merge conflict" in forge.mergeability(pull).reason


def test_write_permission_from_repository_project_or_group(fake: FakeBitbucketDataCenter,
                                                           forge: BitbucketDataCenterForge, repo: Repo) -> None:
    fake.set_permission(FULL, "bob", "REPO_WRITE")
    fake.set_permission(FULL, "bobby", "REPO_READ")
    fake.set_project_permission("ACME", "carol", "PROJECT_ADMIN")
    fake.set_project_permission("ACME", "ops", "PROJECT_WRITE", group=True)
    fake.add_group_member("ops", "dave")
    assert [forge.has_write_permission(repo, u) for u in ("bob", "carol", "dave")] == [True, True, True]
    assert not forge.has_write_permission(repo, "bobby")  # the filter matches "bob" too: names are compared
    assert not forge.has_write_permission(repo, "mallory")


def test_personal_repositories_belong_to_their_owner(forge: BitbucketDataCenterForge) -> None:
    personal = Repo("bitbucket", "bitbucket.acme.io", "~ALICE/sandbox", "https://bitbucket.acme.io/scm/~alice/sandbox.git")
    assert forge.has_write_permission(personal, "alice") and not forge.has_write_permission(personal, "bob")


def test_a_bot_that_is_not_admin_cannot_read_permissions(fake: FakeBitbucketDataCenter,
                                                         forge: BitbucketDataCenterForge, repo: Repo) -> None:
    fake.set_permission(FULL, USERNAME, "REPO_WRITE")
    with pytest.raises(ForgeRequestFailed) as raised:
        forge.has_write_permission(repo, "bob")
    assert raised.value.status == 401


def test_groups(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge, repo: Repo) -> None:
    fake.add_group_member("platform", "dave")
    assert forge.in_group(repo, "dave", "group:platform")
    assert not forge.in_group(repo, "eve", "group:platform")
    assert not forge.in_group(repo, "dave", "group:unknown")
    assert not forge.in_group(repo, "dave", "team:acme/platform")


@pytest.mark.parametrize("method, strategy", [("merge", "no-ff"), ("squash", "squash"), ("rebase", "rebase-no-ff")])
def test_merge_at_the_current_version(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge,
                                      pull: PullRequest, method: str, strategy: str) -> None:
    fake.approve(FULL, 7, "bob")  # the version moves on
    forge.merge(pull, delete_source_branch=True, method=method)
    assert fake.merges(FULL) == [(7, strategy)] and fake.deleted_branches(FULL) == ["feature"]


def test_merge_refusals(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge, repo: Repo,
                        pull: PullRequest) -> None:
    with pytest.raises(ForgeError, match="cannot merge with 'octopus'"):
        forge.merge(pull, method="octopus")
    fake.set_vetoes(FULL, 7, "Requires 2 approvals")
    with pytest.raises(ForgeRequestFailed) as raised:
        forge.merge(pull)
    assert raised.value.status == 409
    fake.set_vetoes(FULL, 7)
    fake.push(FULL, 7, "c3" * 20, ["x.tf"])
    with pytest.raises(ForgeError, match="has new commits"):
        forge.merge(pull)
    assert fake.merges(FULL) == []


def test_no_issue_tracker(forge: BitbucketDataCenterForge, repo: Repo) -> None:
    with pytest.raises(IssuesUnavailable):
        forge.create_or_update_issue(repo, "Drift", "body", None)
    with pytest.raises(IssuesUnavailable):
        forge.close_issue(repo, "1", "cleared")


def test_listing(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge, repo: Repo) -> None:
    for number in range(20, 50):
        fake.add_pull(FULL, number, HEAD, f"f{number}", "main", "alice", ["a.tf"], BASE)
    fake.mark_merged(FULL, 20, "e5" * 20)
    fake.set_state(FULL, 21, "DECLINED")
    assert sorted(p.number for p in forge.open_pull_requests(repo)) == [7, *range(22, 50)]
    closed = forge.recently_closed_pull_requests(repo, 0)
    assert [(p.number, p.state, p.merge_sha) for p in closed] == [(20, "merged", "e5" * 20), (21, "closed", None)]
    assert forge.recently_closed_pull_requests(repo, 4_000_000_000) == []


def test_create_pull_request_from_git(tmp_path: Path) -> None:
    (tmp_path / "ACME").mkdir()
    git = GitRepo(tmp_path / "ACME", "infra")
    git.commit({"main.tf": "# one\n"}, "one")
    head = git.commit({"main.tf": "# two\n"}, "revert", branch="revert-7")
    with FakeBitbucketDataCenter(username=USERNAME, token=TOKEN) as fake:
        fake.add_repo(FULL, git_path=git.bare)
        forge = BitbucketDataCenterForge(fake.url, USERNAME, TOKEN)
        repo = Repo("bitbucket", "bitbucket.acme.io", FULL, f"{fake.url}/scm/acme/infra.git")
        created = forge.create_pull_request(repo, "revert-7", "main", "Revert PR #7", "Reverts it")
        assert (created.number, created.head_sha, created.author) == (1, head, USERNAME)


def test_identity_and_git(fake: FakeBitbucketDataCenter, repo: Repo, pull: PullRequest) -> None:
    assert BitbucketDataCenterForge(fake.url, None, TOKEN).bot_login == USERNAME  # X-AUSERNAME
    assert BitbucketDataCenterForge(fake.url, "svc-pk", TOKEN).bot_login == "svc-pk"
    token_only = BitbucketDataCenterForge(fake.url, None, TOKEN)
    assert token_only.clone_auth(repo) == ("x-token-auth", TOKEN) and token_only.pull_refs(pull) == []
    assert fake.requests_to("application-properties")[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_retries(fake: FakeBitbucketDataCenter, forge: BitbucketDataCenterForge, repo: Repo,
                 sleeps: list[float]) -> None:
    fake.inject_failures(r"/pull-requests/7$", (503,))
    fake.inject_failures(r"/pull-requests/7/changes$", (429,), retry_after=3)
    pull = forge.pull_request(repo, 7)
    assert forge.changed_files(pull) == ["stacks/a/main.tf"]
    assert sleeps == [0.5, 3.0]
