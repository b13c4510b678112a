"""GitLabForge through the real python-gitlab client against FakeGitLab (real HTTP)."""
from __future__ import annotations

from typing import Iterator

import pytest

from bot.errors import ForgeError
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.gitlab import GitLabForge
from bot.models import PullRequest, Repo
from tests.fakes.gitlab import FakeGitLab

HEAD, BASE = "a" * 40, "b" * 40
CLONE_URL = "https://gitlab.example.com/acme/infra.git"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


@pytest.fixture
def project_id(fake: FakeGitLab) -> int:
    pid = fake.add_project("acme/infra", CLONE_URL)
    fake.add_mr(pid, 7, HEAD, "feature", "main", "alice", ["stacks/a/main.tf"], BASE,
                title="Add bucket")
    return pid


@pytest.fixture
def repo(project_id: int) -> Repo:
    return Repo("gitlab", "gitlab.example.com", "acme/infra", CLONE_URL, forge_id=project_id)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def forge(fake: FakeGitLab, sleeps: list[float]) -> GitLabForge:
    return GitLabForge(fake.url, fake.token, sleep=sleeps.append)


@pytest.fixture
def pull(forge: GitLabForge, repo: Repo) -> PullRequest:
    return forge.pull_request(repo, 7)


def test_pull_request_reads_the_merge_request(pull: PullRequest, repo: Repo) -> None:
    assert (pull.number, pull.author, pull.head_sha, pull.base_sha) == (7, "alice", HEAD, BASE)
    assert (pull.head_ref, pull.base_ref, pull.title) == ("feature", "main", "Add bucket")
    assert pull.url == "https://gitlab.example.com/acme/infra/-/merge_requests/7"
    assert (pull.state, pull.is_fork, pull.is_draft, pull.merge_sha) == ("open", False, False, None)
    assert pull.head_clone_url == CLONE_URL and pull.repo == repo


def test_pull_request_falls_back_to_the_project_path(fake: FakeGitLab, forge: GitLabForge,
                                                     project_id: int) -> None:
    by_path = Repo("gitlab", "gitlab.example.com", "acme/infra", CLONE_URL)
    assert forge.pull_request(by_path, 7).head_sha == HEAD
    assert fake.requests_to(r"/projects/acme%2Finfra/merge_requests/7$")


def test_fork_and_draft(fake: FakeGitLab, forge: GitLabForge, repo: Repo, project_id: int) -> None:
    fork = fake.add_project("mallory/infra", "https://gitlab.example.com/mallory/infra.git")
    fake.add_mr(project_id, 8, HEAD, "evil", "main", "mallory", ["x.tf"], BASE, draft=True,
                source_project_id=fork)
    pull = forge.pull_request(repo, 8)
    assert pull.is_fork and pull.is_draft
    assert pull.head_clone_url == "https://gitlab.example.com/mallory/infra.git"


@pytest.mark.parametrize("gitlab_state, state", [("opened", "open"), ("closed", "closed"),
                                                 ("merged", "merged")])
def test_state_mapping(fake: FakeGitLab, forge: GitLabForge, repo: Repo, project_id: int,
                       gitlab_state: str, state: str) -> None:
    fake.set_state(project_id, 7, gitlab_state)
    assert forge.pull_request(repo, 7).state == state


def test_missing_merge_request_is_a_forge_error(forge: GitLabForge, repo: Repo) -> None:
    with pytest.raises(ForgeError, match="404"):
        forge.pull_request(repo, 99)


def test_bad_token_is_a_forge_error(fake: FakeGitLab, repo: Repo) -> None:
    with pytest.raises(ForgeError, match="401"):
        GitLabForge(fake.url, "wrong", "bot").pull_request(repo, 7)


def test_bot_login_from_the_user_endpoint(fake: FakeGitLab, forge: GitLabForge) -> None:
    assert forge.bot_login == "plankeeper-bot"
    assert GitLabForge(fake.url, fake.token, "configured").bot_login == "configured"


def test_changed_files_across_pages_with_renames(fake: FakeGitLab, forge: GitLabForge,
                                                 project_id: int, pull: PullRequest) -> None:
    files = [f"mods/m{i}/main.tf" for i in range(249)] + [("old/main.tf", "new/main.tf")]
    fake.push(project_id, 7, "c" * 40, files)
    changed = forge.changed_files(pull)
    assert len(changed) == 251
    assert changed[0] == "mods/m0/main.tf" and changed[-2:] == ["old/main.tf", "new/main.tf"]
    assert len(fake.requests_to(r"/merge_requests/7/diffs$")) == 3  # 100 + 100 + 50


def test_notes_create_edit_and_read(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                    pull: PullRequest) -> None:
    ref = forge.create_comment(pull, "Planning 2 projects...")
    assert ref.url == f"{pull.url}#note_{ref.id}"
    forge.update_comment(pull, ref.id, "2 projects: 1 with changes")
    assert forge.comment(pull, ref.id).body == "2 projects: 1 with changes"
    assert forge.comment(pull, ref.id).author == "plankeeper-bot"
    assert forge.comment(pull, "424242") is None  # deleted (or never there)
    assert fake.notes(project_id, 7) == [{"id": int(ref.id), "body": "2 projects: 1 with changes",
                                          "author": "plankeeper-bot", "award_emoji": []}]


def test_reaction_is_an_award_emoji_on_the_note(fake: FakeGitLab, forge: GitLabForge,
                                                project_id: int, pull: PullRequest) -> None:
    note_id = fake.add_note(project_id, 7, "/plan", "alice")
    forge.add_reaction(pull, str(note_id))
    forge.add_reaction(pull, str(note_id))  # already awarded: not an error
    forge.add_reaction(pull, str(note_id), "+1")
    assert fake.notes(project_id, 7)[0]["award_emoji"] == ["eyes", "thumbsup"]


def test_comment_limit() -> None:
    assert GitLabForge("http://127.0.0.1:1", None, "bot").comment_limit == 1_000_000


@pytest.mark.parametrize("state, gitlab_state", [(PENDING, "pending"), (SUCCESS, "success"),
                                                 (FAILURE, "failed")])
def test_status_mapping(fake: FakeGitLab, forge: GitLabForge, repo: Repo, project_id: int,
                        state: str, gitlab_state: str) -> None:
    forge.set_status(repo, HEAD, "plankeeper/plan", state, "1 to add", "http://pk/jobs/1")
    assert fake.statuses(project_id, HEAD) == [{"name": "plankeeper/plan", "status": gitlab_state,
                                                "description": "1 to add",
                                                "target_url": "http://pk/jobs/1"}]


def test_repeated_pending_status_is_accepted(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                             project_id: int) -> None:
    forge.set_status(repo, HEAD, "plankeeper/plan", PENDING, "planning")
    forge.set_status(repo, HEAD, "plankeeper/plan", PENDING, "planning")
    forge.set_status(repo, HEAD, "plankeeper/plan", SUCCESS, "done")
    assert [s["status"] for s in fake.statuses(project_id, HEAD)] == ["pending", "success"]


def test_unknown_status_state_is_refused(forge: GitLabForge, repo: Repo) -> None:
    with pytest.raises(ValueError):
        forge.set_status(repo, HEAD, "plankeeper/plan", "error", "x")


def test_approvals_and_approvals_left(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                      pull: PullRequest) -> None:
    fake.set_approvals_required(project_id, 7, 2)
    assert forge.approvals(pull) == ([], 2)
    fake.approve(project_id, 7, "bob")
    assert forge.approvals(pull) == (["bob"], 1)
    fake.approve(project_id, 7, "carol")
    assert forge.approvals(pull) == (["bob", "carol"], 0)


def test_mergeable(forge: GitLabForge, pull: PullRequest) -> None:
    assert forge.mergeability(pull).mergeable


@pytest.mark.parametrize("status, words", [
    ("broken_status", "broken"),
    ("checking", "GitLab is still checking"),
    ("unchecked", "GitLab is still checking"),
    ("ci_must_pass", "pipeline must succeed"),
    ("ci_still_running", "pipeline is still running"),
    ("conflict", "merge conflict"),
    ("discussions_not_resolved", "threads must be resolved"),
    ("draft_status", "draft"),
    ("external_status_checks", "external status checks"),
    ("need_rebase", "source branch is behind the target branch"),
    ("not_approved", "needs approval"),
    ("not_open", "not open"),
    ("requested_changes", "requested changes"),
    ("jira_association_missing", "Jira issue"),
    ("blocked_status", "blocked by another merge request"),
    ("approvals_syncing", "syncing its approvals"),
    ("some_future_status", "some_future_status"),
])
def test_blocking_merge_status_in_words(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                        pull: PullRequest, status: str, words: str) -> None:
    fake.set_merge_status(project_id, 7, status)
    result = forge.mergeability(pull)
    assert not result.mergeable
    assert words in result.reason


@pytest.mark.parametrize("status", ["ci_must_pass", "ci_still_running"])
def test_own_statuses_do_not_block(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                   project_id: int, pull: PullRequest, status: str) -> None:
    fake.set_merge_status(project_id, 7, status)
    fake.set_status(project_id, HEAD, "build", "success")
    forge.set_status(repo, HEAD, "plankeeper/plan", FAILURE, "1 failed")
    forge.set_status(repo, HEAD, "plankeeper/apply", PENDING, "applying")
    assert forge.mergeability(pull).mergeable


def test_own_statuses_under_the_statuses_prefix_do_not_block(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                                             project_id: int, pull: PullRequest) -> None:
    fake.set_merge_status(project_id, 7, "ci_must_pass")
    forge.set_status(repo, HEAD, "atlantis/apply", PENDING, "applying")
    assert not forge.mergeability(pull).mergeable
    forge.status_prefix = "atlantis"
    assert forge.mergeability(pull).mergeable


def test_other_failing_status_still_blocks(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                           project_id: int, pull: PullRequest) -> None:
    fake.set_merge_status(project_id, 7, "ci_must_pass")
    forge.set_status(repo, HEAD, "plankeeper/apply", PENDING, "applying")
    fake.set_status(project_id, HEAD, "unit-tests", "failed")
    result = forge.mergeability(pull)
    assert not result.mergeable and "pipeline must succeed" in result.reason


def test_ci_blocker_without_any_status_blocks(fake: FakeGitLab, forge: GitLabForge,
                                              project_id: int, pull: PullRequest) -> None:
    fake.set_merge_status(project_id, 7, "ci_still_running")
    assert not forge.mergeability(pull).mergeable


@pytest.mark.parametrize("level, allowed", [(10, False), (20, False), (30, True), (40, True),
                                            (50, True)])
def test_write_permission_by_access_level(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                          project_id: int, level: int, allowed: bool) -> None:
    fake.set_access(project_id, "dana", level)
    assert forge.has_write_permission(repo, "dana") is allowed


def test_write_permission_inherited_from_group(fake: FakeGitLab, forge: GitLabForge,
                                               repo: Repo) -> None:
    fake.add_group_member("acme", "erin", level=40)
    fake.add_group_member("other", "frank", level=50)
    assert forge.has_write_permission(repo, "erin")
    assert not forge.has_write_permission(repo, "frank")
    assert not forge.has_write_permission(repo, "nobody-at-all")


def test_group_membership(fake: FakeGitLab, forge: GitLabForge, repo: Repo) -> None:
    fake.add_group_member("acme/ops", "olga", level=10)
    fake.add_group_member("acme", "paul")  # members of a parent group are members of subgroups
    fake.add_group_member("acme/dev", "quinn")
    assert forge.in_group(repo, "olga", "group:acme/ops")
    assert forge.in_group(repo, "paul", "group:acme/ops")
    assert not forge.in_group(repo, "quinn", "group:acme/ops")
    assert not forge.in_group(repo, "olga", "group:missing/group")
    assert not forge.in_group(repo, "olga", "team:acme/ops")


def test_merge_deletes_the_source_branch(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                         project_id: int, pull: PullRequest) -> None:
    forge.merge(pull, delete_source_branch=True)
    assert fake.deleted_branches(project_id) == ["feature"]
    merged = forge.pull_request(repo, 7)
    assert merged.state == "merged" and merged.merge_sha


def test_merge_keeps_the_source_branch(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                       pull: PullRequest) -> None:
    forge.merge(pull)
    assert fake.mr(project_id, 7)["state"] == "merged"
    assert fake.deleted_branches(project_id) == []


def test_merge_squashes_when_asked(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                   pull: PullRequest) -> None:
    forge.merge(pull, method="squash")
    assert (fake.mr(project_id, 7)["state"], fake.mr(project_id, 7)["squash"]) == ("merged", True)


def test_merge_by_rebase_is_refused_saying_what_works(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                                      pull: PullRequest) -> None:
    with pytest.raises(ForgeError, match="use --auto-merge-method merge or squash"):
        forge.merge(pull, method="rebase")
    assert fake.mr(project_id, 7)["state"] == "opened"


def test_merge_refuses_a_moved_head(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                    pull: PullRequest) -> None:
    fake.push(project_id, 7, "d" * 40, ["stacks/a/main.tf"])
    with pytest.raises(ForgeError, match="409"):
        forge.merge(pull)
    assert fake.mr(project_id, 7)["state"] == "opened"


def test_merge_refused_by_gitlab(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                 pull: PullRequest) -> None:
    fake.set_merge_status(project_id, 7, "not_approved")
    with pytest.raises(ForgeError, match="405"):
        forge.merge(pull)


def test_clone_auth(fake: FakeGitLab, forge: GitLabForge, repo: Repo) -> None:
    assert forge.clone_auth(repo) == ("oauth2", fake.token)
    assert GitLabForge(fake.url, None, "bot").clone_auth(repo) is None


def test_issue_lifecycle(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                         project_id: int) -> None:
    issue_id = forge.create_or_update_issue(repo, "Drift in stacks/a", "1 resource", None)
    assert forge.create_or_update_issue(repo, "Drift in stacks/a", "2 resources", issue_id) \
        == issue_id
    assert [(i["title"], i["description"], i["state"]) for i in fake.issues(project_id)] == \
        [("Drift in stacks/a", "2 resources", "opened")]
    forge.close_issue(repo, issue_id, "Drift corrected.")
    assert fake.issues(project_id)[0]["state"] == "closed"
    assert fake.requests_to(rf"/issues/{issue_id}/notes$", "POST")[0].body["body"] == \
        "Drift corrected."


def test_update_of_a_deleted_issue_opens_a_new_one(fake: FakeGitLab, forge: GitLabForge,
                                                   repo: Repo, project_id: int) -> None:
    assert forge.create_or_update_issue(repo, "Drift", "body", "42") == "1"
    assert len(fake.issues(project_id)) == 1


def test_retries_a_502_then_succeeds(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                     sleeps: list[float]) -> None:
    fake.inject_failures(r"/merge_requests/7$", statuses=[502])
    assert forge.pull_request(repo, 7).head_sha == HEAD
    assert len(fake.requests_to(r"/merge_requests/7$")) == 2
    assert sleeps == [0.5]


def test_rate_limit_honours_retry_after(fake: FakeGitLab, forge: GitLabForge, project_id: int,
                                        pull: PullRequest, sleeps: list[float]) -> None:
    fake.inject_failures(r"/notes$", statuses=[429], retry_after=7)
    forge.create_comment(pull, "hello")
    assert sleeps == [7.0]
    assert [n["body"] for n in fake.notes(project_id, 7)] == ["hello"]


def test_gives_up_after_repeated_server_errors(fake: FakeGitLab, forge: GitLabForge,
                                               repo: Repo, sleeps: list[float]) -> None:
    fake.inject_failures(r"/merge_requests/7$", statuses=[500, 502, 503, 504])
    with pytest.raises(ForgeError, match="504"):
        forge.pull_request(repo, 7)
    assert len(sleeps) == 3


def test_client_errors_are_not_retried(fake: FakeGitLab, forge: GitLabForge, repo: Repo,
                                       sleeps: list[float]) -> None:
    fake.inject_failures(r"/merge_requests/7$", statuses=[403])
    with pytest.raises(ForgeError, match="403"):
        forge.pull_request(repo, 7)
    assert sleeps == []


def test_from_settings(fake: FakeGitLab) -> None:
    class GitLabSettings:
        url, token, webhook_secret, bot_login = fake.url, fake.token, "s", "pk-bot"

    forge = GitLabForge.from_settings(GitLabSettings())
    assert forge.bot_login == "pk-bot"
    assert forge.clone_auth(Repo("gitlab", "h", "a/b", "")) == ("oauth2", fake.token)
