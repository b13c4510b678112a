"""GiteaForge through its real REST client (requests) against FakeGitea (real HTTP), the fake's
repositories real git repos served over smart HTTP."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.engines import parent_environment
from bot.errors import ForgeError
from bot.forges import make_forge
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.gitea import AdminRequired, GiteaForge
from bot.models import PullRequest, Repo
from bot.settings import GiteaSettings, Settings, StatusSettings
from runners.git import GitError, RepoCache
from tests.fakes.gitea import FakeGitea
from tests.support import GitRepo

FULL, TOKEN, BOT = "acme/infra", "gitea-forge-token", "plankeeper-bot"
OLD = "0" * 40


@pytest.fixture
def git(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path, "infra")
    repo.commit({"README.md": "x\n"})
    repo.commit({"stacks/a/main.tf": "# a\n"}, "a", branch="feature")
    repo.checkout("main")
    return repo


@pytest.fixture
def fake(git: GitRepo) -> Iterator[FakeGitea]:
    with FakeGitea(token=TOKEN, bot_login=BOT) as server:
        server.add_repo(FULL, git.bare)
        server.add_pull(FULL, 7, git.git("rev-parse", "feature"), "feature", "main", "alice",
                        files=["stacks/a/main.tf"], base_sha=git.git("rev-parse", "main"), title="Add bucket")
        yield server


@pytest.fixture
def repo(fake: FakeGitea) -> Repo:
    data = fake.repo(FULL).data
    return Repo("gitea", fake.web_host, FULL, data["clone_url"], html_url=data["html_url"])


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def forge(fake: FakeGitea, sleeps: list[float]) -> GiteaForge:
    return GiteaForge(fake.url, TOKEN, sleep=sleeps.append)


@pytest.fixture
def pull(forge: GiteaForge, repo: Repo) -> PullRequest:
    return forge.pull_request(repo, 7)


def _head(fake: FakeGitea) -> str:
    return fake.pull(FULL, 7)["head_sha"]


# ---------------------------------------------------------------- pull requests


def test_pull_request_reads_the_pull_request(pull: PullRequest, repo: Repo, git: GitRepo,
                                             fake: FakeGitea) -> None:
    assert (pull.number, pull.author, pull.title, pull.ref) == (7, "alice", "Add bucket", "#7")
    assert (pull.head_sha, pull.base_sha) == (git.git("rev-parse", "feature"), git.git("rev-parse", "main"))
    assert (pull.head_ref, pull.base_ref, pull.state, pull.merge_sha) == ("feature", "main", "open", None)
    assert not pull.is_fork and not pull.is_draft and pull.head_clone_url == repo.clone_url
    assert pull.url == f"{fake.url}/{FULL}/pulls/7"
    request = fake.requests_to(r"/repos/acme/infra/pulls/7$")[0]
    assert request.headers["Authorization"] == f"token {TOKEN}"


def test_forks_drafts_and_deleted_forks(fake: FakeGitea, forge: GiteaForge, repo: Repo, git: GitRepo) -> None:
    fake.add_repo("mallory/infra", git.bare)
    fake.add_pull(FULL, 8, OLD, "evil", "main", "mallory", files=[], base_sha=OLD, title="WIP: evil",
                  head_repo="mallory/infra")
    pull = forge.pull_request(repo, 8)
    assert pull.is_fork and pull.is_draft and pull.head_clone_url == fake.repo("mallory/infra").data["clone_url"]
    fake.set_pull(FULL, 8, fork_deleted=True)
    gone = forge.pull_request(repo, 8)
    assert gone.is_fork and gone.head_clone_url == ""  # never the base repository's


def test_closed_and_merged_states(fake: FakeGitea, forge: GiteaForge, repo: Repo) -> None:
    fake.set_pull(FULL, 7, closed=True)
    assert forge.pull_request(repo, 7).state == "closed"
    fake.mark_merged(FULL, 7, "f" * 40)
    merged = forge.pull_request(repo, 7)
    assert (merged.state, merged.merge_sha) == ("merged", "f" * 40)


def test_missing_pull_request_and_bad_token_are_forge_errors(fake: FakeGitea, forge: GiteaForge,
                                                             repo: Repo) -> None:
    with pytest.raises(ForgeError, match=r"read pull request acme/infra#99 failed: HTTP 404"):
        forge.pull_request(repo, 99)
    with pytest.raises(ForgeError, match="HTTP 401"):
        GiteaForge(fake.url, "wrong-token").pull_request(repo, 7)


def test_bot_login_from_the_user_endpoint_once(fake: FakeGitea, forge: GiteaForge) -> None:
    assert forge.bot_login == BOT and forge.bot_login == BOT
    assert len(fake.requests_to(r"^/user$")) == 1
    assert GiteaForge(fake.url, TOKEN, "configured-bot").bot_login == "configured-bot"


def test_changed_files_on_every_page_with_renames(fake: FakeGitea, forge: GiteaForge, repo: Repo) -> None:
    files = [f"stacks/s{n}/main.tf" for n in range(120)] + [("old/main.tf", "new/main.tf")]
    fake.push(FULL, 7, _head(fake), files)
    changed = forge.changed_files(forge.pull_request(repo, 7))
    assert len(changed) == 122 and changed[-2:] == ["old/main.tf", "new/main.tf"]
    pages = fake.requests_to(r"/pulls/7/files$")
    assert [(r.query["page"], r.query["limit"]) for r in pages] == [("1", "50"), ("2", "50"), ("3", "50")]


def test_create_pull_request_from_a_branch(fake: FakeGitea, forge: GiteaForge, repo: Repo, git: GitRepo) -> None:
    git.commit({"stacks/b/main.tf": "# b\n"}, "revert it", branch="plankeeper/revert-7")
    git.checkout("main")
    made = forge.create_pull_request(repo, "plankeeper/revert-7", "main", "Revert #7", "Reverts #7")
    assert (made.number, made.author, made.head_ref, made.state) == (8, BOT, "plankeeper/revert-7", "open")
    assert made.head_sha == git.git("rev-parse", "plankeeper/revert-7")
    assert forge.changed_files(made) == ["stacks/b/main.tf"] and forge.pull_request(repo, 8) == made
    with pytest.raises(ForgeError, match="HTTP 409"):
        forge.create_pull_request(repo, "plankeeper/revert-7", "main", "Again", "")


# ---------------------------------------------------------------- comments and reactions


def test_comments_create_edit_read(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    ref = forge.create_comment(pull, "Plan: 1 to add")
    assert ref.url.endswith(f"/pulls/7#issuecomment-{ref.id}")
    forge.update_comment(pull, ref.id, "Plan: 2 to add")
    found = forge.comment(pull, ref.id)
    assert found is not None and (found.author, found.body) == (BOT, "Plan: 2 to add")
    assert fake.comments(FULL, 7)[-1]["body"] == "Plan: 2 to add"
    assert forge.comment_limit == 65_536


def test_a_deleted_comment_or_one_on_another_pull_request_is_none(fake: FakeGitea, forge: GiteaForge,
                                                                 pull: PullRequest) -> None:
    assert forge.comment(pull, "424242") is None
    fake.add_pull(FULL, 9, OLD, "other", "main", "mallory", files=[], base_sha=OLD)
    elsewhere = fake.add_comment(FULL, 9, "/apply", "mallory")
    assert forge.comment(pull, str(elsewhere)) is None  # Gitea reads comments by id repository-wide


def test_reaction_is_idempotent(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    comment = fake.add_comment(FULL, 7, "/plan", "alice")
    forge.add_reaction(pull, str(comment))
    forge.add_reaction(pull, str(comment))  # Gitea answers 200 for one already there
    assert fake.comments(FULL, 7)[-1]["reactions"] == ["eyes"]


# ---------------------------------------------------------------- statuses


@pytest.mark.parametrize("state, gitea_state", [(PENDING, "pending"), (SUCCESS, "success"),
                                                (FAILURE, "failure")])
def test_status_states(fake: FakeGitea, forge: GiteaForge, repo: Repo, state: str, gitea_state: str) -> None:
    forge.set_status(repo, _head(fake), "plankeeper/plan", state, "x" * 300, "http://plankeeper/jobs/1")
    status = fake.statuses(FULL, _head(fake))[-1]
    assert (status["state"], status["context"], status["target_url"]) == (gitea_state, "plankeeper/plan",
                                                                          "http://plankeeper/jobs/1")
    assert len(status["description"]) == 255 and status["description"].endswith("…")


def test_unknown_status_state_is_refused(forge: GiteaForge, repo: Repo) -> None:
    with pytest.raises(ValueError, match="unknown commit status state"):
        forge.set_status(repo, OLD, "plankeeper/plan", "error", "")


def test_statuses_latest_per_context_over_pages(fake: FakeGitea, forge: GiteaForge, repo: Repo) -> None:
    sha = _head(fake)
    for n in range(60):
        fake.add_status(FULL, sha, f"ci/job-{n % 3}", "pending")
    fake.add_status(FULL, sha, "ci/job-0", "success")
    fake.add_status(FULL, sha, "ci/job-1", "error")
    fake.add_status(FULL, sha, "ci/job-2", "warning")
    assert forge.statuses(repo, sha) == {"ci/job-0": SUCCESS, "ci/job-1": FAILURE, "ci/job-2": "warning"}
    assert len(fake.requests_to(rf"/commits/{sha}/statuses$")) == 2


# ---------------------------------------------------------------- approvals


def test_only_approvals_of_the_current_head_count(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    assert forge.approvals(pull) == ([], 1)
    fake.review(FULL, 7, "bob")
    fake.review(FULL, 7, "carol", commit_id=OLD)  # of an older head: stale
    fake.review(FULL, 7, "dave", dismissed=True)
    fake.review(FULL, 7, "erin")
    fake.review(FULL, 7, "erin", "REQUEST_CHANGES")  # her latest word
    fake.review(FULL, 7, "frank", "REQUEST_CHANGES")
    fake.review(FULL, 7, "frank")
    fake.review(FULL, 7, "frank", "COMMENT")  # a comment changes nobody's standing
    assert forge.approvals(pull) == (["bob", "frank"], 0)


def test_approvals_over_pages(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    for n in range(55):
        fake.review(FULL, 7, f"user{n}", "COMMENT")
    fake.review(FULL, 7, "bob")
    assert forge.approvals(pull) == (["bob"], 0)
    assert len(fake.requests_to(r"/pulls/7/reviews$")) == 2


# ---------------------------------------------------------------- mergeability


def test_mergeable(forge: GiteaForge, pull: PullRequest) -> None:
    assert forge.mergeability(pull).mergeable


@pytest.mark.parametrize("fields, words", [
    ({"closed": True}, "pull request is closed"),
    ({"merged": True, "closed": True}, "already merged"),
    ({"title": "WIP: Add bucket"}, "work in progress"),
])
def test_not_mergeable_in_words(fake: FakeGitea, forge: GiteaForge, pull: PullRequest, fields: dict,
                                words: str) -> None:
    fake.set_pull(FULL, 7, **fields)
    state = forge.mergeability(pull)
    assert not state.mergeable and words in state.reason


def test_a_conflict_is_read_again_while_gitea_checks(fake: FakeGitea, forge: GiteaForge, pull: PullRequest,
                                                    sleeps: list[float]) -> None:
    fake.set_pull(FULL, 7, mergeable=False)
    before = len(fake.requests_to(r"/pulls/7$"))
    state = forge.mergeability(pull)
    assert not state.mergeable and "conflicts with the base branch" in state.reason
    assert sleeps == [0.5, 1.0, 2.0] and len(fake.requests_to(r"/pulls/7$")) - before == 4


def test_a_head_behind_its_base_is_said_for_undiverged(fake: FakeGitea, forge: GiteaForge, pull: PullRequest,
                                                       git: GitRepo) -> None:
    git.commit({"other.txt": "later\n"}, "later on main")
    state = forge.mergeability(pull)
    assert state.mergeable and "behind" in state.reason
    fake.add_protection(FULL, "main", block_on_outdated_branch=True)
    blocked = forge.mergeability(pull)
    assert not blocked.mergeable and "requires it up to date" in blocked.reason


def test_required_status_checks_block_but_the_bot_s_own_apply_status_does_not(
        fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    fake.add_protection(FULL, "ma*", enable_status_check=True, status_check_contexts=["ci/*", "plankeeper/apply"])
    state = forge.mergeability(pull)
    assert not state.mergeable and "ci/* (no status yet)" in state.reason
    fake.add_status(FULL, _head(fake), "ci/test", "failure")
    assert "ci/* (failure)" in forge.mergeability(pull).reason
    fake.add_status(FULL, _head(fake), "ci/test", "success")
    fake.add_status(FULL, _head(fake), "plankeeper/apply", "pending")
    assert forge.mergeability(pull).mergeable


def test_protections_for_other_branches_do_not_apply(fake: FakeGitea, forge: GiteaForge,
                                                     pull: PullRequest) -> None:
    fake.add_protection(FULL, "release/*", enable_status_check=True, status_check_contexts=["ci/*"])
    assert forge.mergeability(pull).mergeable


# ---------------------------------------------------------------- permissions and teams


@pytest.mark.parametrize("permission, allowed", [("none", False), ("read", False), ("write", True),
                                                 ("admin", True), ("owner", True)])
def test_write_permission(fake: FakeGitea, forge: GiteaForge, repo: Repo, permission: str,
                          allowed: bool) -> None:
    fake.set_permission(FULL, "alice", permission)
    assert forge.has_write_permission(repo, "alice") is allowed


def test_an_unknown_user_has_no_permission(forge: GiteaForge, repo: Repo) -> None:
    assert forge.has_write_permission(repo, "nobody-at-all") is False


def test_a_bot_that_is_not_a_repository_admin_is_told_so(fake: FakeGitea, forge: GiteaForge, repo: Repo,
                                                         pull: PullRequest) -> None:
    fake.set_permission(FULL, BOT, "write")
    fake.set_permission(FULL, "alice", "write")
    with pytest.raises(AdminRequired, match="must be an administrator of acme/infra"):
        forge.has_write_permission(repo, "alice")
    with pytest.raises(AdminRequired, match="HTTP 403"):
        forge.mergeability(pull)  # branch protections are for admins too


def test_team_membership(fake: FakeGitea, forge: GiteaForge, repo: Repo) -> None:
    fake.add_team("acme", "Platform", ["alice"])
    fake.add_team("acme", "docs", ["bob"])
    assert forge.in_group(repo, "alice", "team:acme/platform")
    assert not forge.in_group(repo, "bob", "team:acme/platform")
    assert not forge.in_group(repo, "alice", "team:acme/missing")
    assert not forge.in_group(repo, "alice", "team:elsewhere/platform")
    assert not forge.in_group(repo, "alice", "group:acme/platform")


# ---------------------------------------------------------------- merging


def test_merge_exactly_the_head_with_the_method(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    forge.merge(pull, delete_source_branch=True, method="squash")
    body = fake.requests_to(r"/pulls/7/merge$")[0].body
    assert body == {"Do": "squash", "head_commit_id": pull.head_sha, "delete_branch_after_merge": True}
    assert fake.pull(FULL, 7)["merge_style"] == "squash" and fake.repo(FULL).deleted_branches == ["feature"]


def test_merge_keeps_the_branch_by_default(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    forge.merge(pull)
    assert fake.pull(FULL, 7)["merged"] and fake.repo(FULL).deleted_branches == []
    assert fake.requests_to(r"/pulls/7/merge$")[0].body["Do"] == "merge"


def test_merge_refusals_say_why(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    fake.push(FULL, 7, "e" * 40, [])
    with pytest.raises(ForgeError, match='head moved.*HTTP 409: Gitea says "head out of date"'):
        forge.merge(pull)
    fake.set_title(FULL, 7, "WIP: Add bucket")
    with pytest.raises(ForgeError, match="cannot be merged now.*HTTP 405"):
        forge.merge(forge.pull_request(pull.repo, 7))
    with pytest.raises(ValueError, match="unknown merge method 'octopus'"):
        forge.merge(pull, method="octopus")


# ---------------------------------------------------------------- git


def test_clone_auth_reads_the_repository_over_http(fake: FakeGitea, forge: GiteaForge, repo: Repo,
                                                   git: GitRepo, tmp_path: Path) -> None:
    assert forge.pull_refs(PullRequest(repo, 7, "alice", OLD, "feature", "main")) == ["refs/pull/7/head"]
    cache = RepoCache(tmp_path / "cache", parent_environment())
    with pytest.raises(GitError):
        cache.branch_head(repo.clone_url, "main")  # a private repository: no anonymous reads
    assert cache.branch_head(repo.clone_url, "main", auth=forge.clone_auth(repo)) == git.git("rev-parse", "main")
    assert ("plankeeper", 200) in {(r.username, r.status) for r in fake.git.requests}
    assert GiteaForge(fake.url, TOKEN, "bot").clone_auth(repo) == ("bot", TOKEN)
    assert GiteaForge(fake.url, None).clone_auth(repo) is None


# ---------------------------------------------------------------- issues


def test_issue_lifecycle(fake: FakeGitea, forge: GiteaForge, repo: Repo) -> None:
    number = forge.create_or_update_issue(repo, "Drift in infra/app", "1 change", None)
    assert number == "8"  # issues and pull requests share Gitea's index
    assert forge.create_or_update_issue(repo, "Drift in infra/app", "2 changes", number) == number
    forge.close_issue(repo, number, "In sync again.")
    issue = fake.issues(FULL)[0]
    assert (issue["body"], issue["state"]) == ("2 changes", "closed")
    assert issue["comments"][-1]["body"] == "In sync again."
    assert forge.create_or_update_issue(repo, "Drift again", "3", number) == number
    assert fake.issues(FULL)[0]["state"] == "open"  # reopened
    assert forge.create_or_update_issue(repo, "Drift", "gone", "999") == "9"  # deleted: a new one


# ---------------------------------------------------------------- listing, for the sweep


def test_open_and_recently_closed_pull_requests(fake: FakeGitea, forge: GiteaForge, repo: Repo) -> None:
    for number in range(8, 70):
        fake.add_pull(FULL, number, OLD, f"f{number}", "main", "alice", files=[], base_sha=OLD)
    opened = forge.open_pull_requests(repo)
    assert [p.number for p in opened] == list(range(7, 70)) and all(p.updated_at > 0 for p in opened)
    fake.set_pull(FULL, 8, updated_at="2000-01-01T00:00:00Z", closed=True, closed_at="2000-01-01T00:00:00Z")
    fake.mark_merged(FULL, 9, "9" * 40)
    fake.set_pull(FULL, 10, closed=True, closed_at="2099-01-01T00:00:00Z", updated_at="2099-01-01T00:00:00Z")
    closed = forge.recently_closed_pull_requests(repo, 1_700_000_000)
    assert [(p.number, p.state, p.merge_sha) for p in closed] == [(10, "closed", None), (9, "merged", "9" * 40)]


def test_comments_since(fake: FakeGitea, forge: GiteaForge, pull: PullRequest) -> None:
    first = fake.add_comment(FULL, 7, "/plan", "alice")
    second = fake.add_comment(FULL, 7, "/apply", "bob")
    found = forge.comments_since(pull, 0)
    assert [(c.id, c.author, c.body) for c in found] == [(str(first), "alice", "/plan"),
                                                         (str(second), "bob", "/apply")]
    assert forge.comments_since(pull, 4_000_000_000) == []
    assert fake.requests_to(r"/issues/7/comments$")[-1].query == {"since": "2096-10-02T07:06:40Z"}


# ---------------------------------------------------------------- retries


def test_retries_a_502_then_succeeds(fake: FakeGitea, forge: GiteaForge, repo: Repo,
                                     sleeps: list[float]) -> None:
    fake.inject_failures(r"/pulls/7$", (502, 503))
    assert forge.pull_request(repo, 7).number == 7
    assert sleeps == [0.5, 1.0]


def test_rate_limit_honours_retry_after(fake: FakeGitea, forge: GiteaForge, pull: PullRequest,
                                        sleeps: list[float]) -> None:
    fake.inject_failures(r"/comments$", (429,), retry_after=7)
    forge.create_comment(pull, "hello")
    assert sleeps == [7.0] and fake.comments(FULL, 7)[-1]["body"] == "hello"


def test_gives_up_after_repeated_server_errors(fake: FakeGitea, forge: GiteaForge, repo: Repo) -> None:
    fake.inject_failures(r"/pulls/7$", (500, 500, 500, 500))
    with pytest.raises(ForgeError, match="HTTP 500 after 4 attempts"):
        forge.pull_request(repo, 7)


def test_client_errors_are_not_retried(fake: FakeGitea, forge: GiteaForge, repo: Repo,
                                       sleeps: list[float]) -> None:
    fake.inject_failures(r"/pulls/7$", (422,))
    with pytest.raises(ForgeError, match="HTTP 422$"):
        forge.pull_request(repo, 7)
    assert sleeps == []


# ---------------------------------------------------------------- settings


def test_make_forge_builds_it_from_the_gitea_section(fake: FakeGitea, repo: Repo) -> None:
    settings = Settings(gitea=GiteaSettings(url=f"{fake.url}/api/v1", token=TOKEN, webhook_secret="s",
                                            bot_login="gitea-bot"), statuses=StatusSettings(prefix="atlantis"))
    forge = make_forge(repo, settings)
    assert isinstance(forge, GiteaForge) and forge.status_prefix == "atlantis" and forge.bot_login == "gitea-bot"
    assert forge.pull_request(repo, 7).number == 7  # a URL ending in /api/v1 works too
