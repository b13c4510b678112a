"""AzureDevOpsForge through Microsoft's azure-devops SDK against FakeAzureDevOps (real HTTP, real
route discovery): pull requests, changed files, comments, statuses, merging, listing, retries."""
# ruff: noqa: F811 (the fixtures from tests.support_azuredevops are imported by name)
from __future__ import annotations

import subprocess
import time

import pytest

from bot.errors import ForgeError
from bot.forges.azuredevops import AzureDevOpsForge
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.retry import ForgeRequestFailed
from bot.models import PullRequest, Repo
from bot.render import mark_outdated
from tests.fakes.azuredevops import FakeAzureDevOps
from tests.support import GitRepo
from tests.support_azuredevops import ALICE, NAME, PROJECT, fake, forge, git, pull, repo, sleeps  # noqa: F401

OLD = "2020-01-01T00:00:00.000Z"


def test_routes_are_found_on_the_server_first(fake: FakeAzureDevOps, pull: PullRequest) -> None:
    assert fake.requests_to(r"^/fabrikam/_apis/ResourceAreas$", "GET")
    assert fake.requests_to(r"^/fabrikam/_apis$", "OPTIONS")
    call = fake.requests_to(r"/pullRequests/7$", "GET")[-1]
    assert "api-version=7.0" in call.headers["Accept"] and call.headers["Authorization"].startswith("Basic ")


def test_pull_request_reads_the_pull_request(pull: PullRequest, repo: Repo, git: GitRepo,
                                             fake: FakeAzureDevOps) -> None:
    assert (pull.number, pull.author, pull.title) == (7, ALICE, "Add a")
    assert (pull.head_sha, pull.base_sha) == (git.git("rev-parse", "feature"), git.git("rev-parse", "main"))
    assert (pull.head_ref, pull.base_ref, pull.state, pull.is_draft, pull.is_fork) == ("feature", "main", "open",
                                                                                         False, False)
    assert pull.url == f"{fake.org_url}/acme/_git/infra/pullrequest/7" and pull.head_clone_url == repo.clone_url
    assert pull.merge_sha is None and pull.ref == "#7"


@pytest.mark.parametrize("status, state", [("completed", "merged"), ("abandoned", "closed")])
def test_a_closed_pull_request(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo, status: str,
                               state: str) -> None:
    fake.set_state(PROJECT, NAME, 7, status=status, isDraft=True)
    pull = forge.pull_request(repo, 7)
    assert (pull.state, pull.is_draft) == (state, True)
    assert (pull.merge_sha is not None) == (state == "merged")


def test_a_fork_is_cloned_from_the_fork(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo) -> None:
    fake.set_state(PROJECT, NAME, 7, forkSource={"name": "refs/heads/feature", "repository": {
        "name": "infra", "remoteUrl": "https://mallory@dev.azure.com/mallory/evil/_git/infra"}})
    pull = forge.pull_request(repo, 7)
    assert pull.is_fork and pull.head_clone_url == "https://dev.azure.com/mallory/evil/_git/infra"


def test_a_missing_pull_request_or_repository_fails_with_the_status(forge: AzureDevOpsForge, repo: Repo) -> None:
    with pytest.raises(ForgeRequestFailed) as missing:
        forge.pull_request(repo, 99)
    assert missing.value.status == 404 and "HTTP 404" in str(missing.value)
    with pytest.raises(ForgeError, match="not a repository of"):
        forge.pull_request(Repo("azuredevops", "dev.azure.com", "contoso/acme/infra", ""), 7)


def test_changed_files_read_every_page_and_both_sides_of_a_rename(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                                  pull: PullRequest) -> None:
    files = [f"stacks/s{n}/main.tf" for n in range(230)] + [("old/main.tf", "new/main.tf")]
    fake.push(PROJECT, NAME, 7, pull.head_sha, files)
    found = forge.changed_files(pull)
    assert found[:2] == ["stacks/s0/main.tf", "stacks/s1/main.tf"] and len(found) == 232
    assert {"old/main.tf", "new/main.tf"} <= set(found)
    assert len(fake.requests_to(r"/iterations/2/changes$")) == 3  # 100 + 100 + 31


def test_the_test_merge_is_published_for_the_head(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                  pull: PullRequest, git: GitRepo) -> None:
    assert forge.pull_refs(pull) == ["refs/pull/7/merge"]
    parent = subprocess.run(["git", "rev-parse", "refs/pull/7/merge^2"], cwd=git.bare, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert parent == pull.head_sha
    assert forge.clone_auth(pull.repo) == ("", fake.token)


# ---------------------------------------------------------------- comments


def test_comments_are_threads(fake: FakeAzureDevOps, forge: AzureDevOpsForge, pull: PullRequest) -> None:
    ref = forge.create_comment(pull, "plan output")
    thread = fake.comments(PROJECT, NAME, 7)[-1]
    assert ref.id == f"{thread['thread']}/{thread['id']}" and ref.url.endswith(f"?discussionId={thread['thread']}")
    assert forge.comment(pull, ref.id).body == "plan output"
    assert forge.comment(pull, ref.id).author == forge.bot_login == fake.bot["properties"]["Account"]["$value"]
    forge.update_comment(pull, ref.id, "newer output")
    assert fake.comments(PROJECT, NAME, 7)[-1]["content"] == "newer output"
    assert fake.comments(PROJECT, NAME, 7)[-1]["thread_status"] is None


def test_an_outdated_plan_is_edited_and_its_thread_closed(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                          pull: PullRequest) -> None:
    ref = forge.create_comment(pull, "old plan")
    forge.update_comment(pull, ref.id, mark_outdated("old plan", "https://example/new"))
    latest = fake.comments(PROJECT, NAME, 7)[-1]
    assert latest["content"].startswith("> ⚠️ **Outdated:**") and latest["thread_status"] == "closed"


def test_a_users_comment_is_read_back_and_liked_once(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                     pull: PullRequest) -> None:
    comment = fake.add_comment(PROJECT, NAME, 7, "/apply", ALICE)
    comment_id = f"{fake.comments(PROJECT, NAME, 7)[-1]['thread']}/{comment['id']}"
    assert forge.comment(pull, comment_id).author == ALICE
    forge.add_reaction(pull, comment_id)
    forge.add_reaction(pull, comment_id)
    assert fake.comments(PROJECT, NAME, 7)[-1]["likes"] == [forge.bot_login]
    assert forge.comment(pull, "99/1") is None
    with pytest.raises(ForgeError, match="not a comment id"):
        forge.comment(pull, "12")


def test_comments_since(fake: FakeAzureDevOps, forge: AzureDevOpsForge, pull: PullRequest) -> None:
    fake.add_comment(PROJECT, NAME, 7, "old", ALICE)
    for comment in fake.pull(PROJECT, NAME, 7)["_threads"][0]["comments"]:
        comment.update(publishedDate=OLD, lastUpdatedDate=OLD)
    start = time.time() - 5
    fake.add_comment(PROJECT, NAME, 7, "/plan", ALICE)
    system = fake.add_comment(PROJECT, NAME, 7, "Alice voted 10", ALICE)
    system["commentType"] = "system"
    forge.create_comment(pull, "bot")
    found = forge.comments_since(pull, start)
    assert [(c.body, c.author) for c in found] == [("/plan", ALICE), ("bot", forge.bot_login)]
    assert found[0].id == "2/1"


# ---------------------------------------------------------------- statuses


def test_a_status_goes_on_the_commit_and_on_the_pull_requests_iteration(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                                       pull: PullRequest) -> None:
    forge.set_status(pull.repo, pull.head_sha, "plankeeper/plan", PENDING, "planning", "https://ci/job")
    forge.set_status(pull.repo, pull.head_sha, "plankeeper/plan", SUCCESS, "1 to add" * 100)
    on_pull = fake.pull_statuses(PROJECT, NAME, 7)
    assert [(s["context"], s["state"], s["iterationId"]) for s in on_pull] == [
        ({"genre": "plankeeper", "name": "plan"}, "pending", 1), ({"genre": "plankeeper", "name": "plan"}, "succeeded", 1)]
    assert on_pull[0]["targetUrl"] == "https://ci/job" and len(on_pull[1]["description"]) <= 256
    assert [s["state"] for s in fake.commit_statuses(PROJECT, NAME, pull.head_sha)] == ["pending", "succeeded"]
    assert forge.statuses(pull.repo, pull.head_sha) == {"plankeeper/plan": SUCCESS}


def test_a_status_goes_to_the_iteration_of_its_commit(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                      pull: PullRequest, git: GitRepo) -> None:
    newer = git.commit({"stacks/a/main.tf": "# a2\n"}, "more", branch="feature")
    fake.push(PROJECT, NAME, 7, newer, ["stacks/a/main.tf"])
    forge.set_status(pull.repo, pull.head_sha, "plankeeper/plan", FAILURE, "superseded")
    forge.set_status(pull.repo, newer, "plankeeper/apply", SUCCESS, "applied")
    on_pull = [(s["iterationId"], s["commit"], s["state"]) for s in fake.pull_statuses(PROJECT, NAME, 7)]
    assert on_pull == [(1, pull.head_sha, "failed"), (2, newer, "succeeded")]
    assert forge.statuses(pull.repo, pull.head_sha) == {"plankeeper/plan": FAILURE}
    assert forge.statuses(pull.repo, newer) == {"plankeeper/apply": SUCCESS}


def test_a_commit_no_pull_request_is_at_gets_a_commit_status_only(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                                   repo: Repo) -> None:
    forge.set_status(repo, "c" * 40, "plankeeper/apply", SUCCESS, "deployed")
    assert fake.pull_statuses(PROJECT, NAME, 7) == []
    assert forge.statuses(repo, "c" * 40) == {"plankeeper/apply": SUCCESS}
    with pytest.raises(ValueError, match="unknown commit status state"):
        forge.set_status(repo, "c" * 40, "plankeeper/apply", "error", "x")


# ---------------------------------------------------------------- merging, opening


def test_merge_completes_at_the_head_with_the_strategy(fake: FakeAzureDevOps, forge: AzureDevOpsForge,
                                                       pull: PullRequest) -> None:
    forge.merge(pull, delete_source_branch=True, method="squash")
    pr = fake.pull(PROJECT, NAME, 7)
    assert pr["status"] == "completed"
    assert pr["_completion"] == {"mergeStrategy": "squash", "deleteSourceBranch": True}
    with pytest.raises(ValueError, match="unknown merge method"):
        forge.merge(pull, method="octopus")


@pytest.mark.parametrize("method, strategy", [("merge", "noFastForward"), ("rebase", "rebase")])
def test_merge_methods(fake: FakeAzureDevOps, forge: AzureDevOpsForge, pull: PullRequest, method: str,
                       strategy: str) -> None:
    forge.merge(pull, method=method)
    assert fake.pull(PROJECT, NAME, 7)["_completion"]["mergeStrategy"] == strategy


def test_merge_refuses_a_moved_head(fake: FakeAzureDevOps, forge: AzureDevOpsForge, pull: PullRequest,
                                    git: GitRepo) -> None:
    fake.push(PROJECT, NAME, 7, git.commit({"x.tf": "\n"}, "moved", branch="feature"), ["x.tf"])
    with pytest.raises(ForgeRequestFailed) as refused:
        forge.merge(pull)
    assert refused.value.status == 409 and fake.pull(PROJECT, NAME, 7)["status"] == "active"
    assert "TF401192" in str(refused.value)  # Azure DevOps' own words


def test_create_pull_request(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo, git: GitRepo) -> None:
    git.commit({"revert.tf": "\n"}, "revert", branch="revert-7")
    opened = forge.create_pull_request(repo, "revert-7", "main", "Revert #7", "x" * 5000)
    assert (opened.number, opened.head_ref, opened.base_ref, opened.state) == (8, "revert-7", "main", "open")
    pr = fake.pull(PROJECT, NAME, 8)
    assert len(pr["description"]) == 4000 and pr["completionOptions"] == {"deleteSourceBranch": True}


# ---------------------------------------------------------------- listing


def test_open_and_recently_closed_pull_requests_read_every_page(fake: FakeAzureDevOps) -> None:
    fake.add_repo("big", "repo")
    for number in range(1, 206):
        fake.add_pull("big", "repo", number, f"{number:040x}", f"b{number}", "main", ALICE, [])
    for number in (3, 150, 204):
        fake.set_state("big", "repo", number, status="completed", closedDate=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime()))
    fake.set_state("big", "repo", 5, status="abandoned", closedDate=OLD, creationDate=OLD)
    forge = AzureDevOpsForge(fake.org_url, fake.token, sleep=lambda s: None)
    big = Repo("azuredevops", "x", "fabrikam/big/repo", "")
    open_pulls = forge.open_pull_requests(big)
    assert len(open_pulls) == 201 and {p.number for p in open_pulls}.isdisjoint({3, 5, 150, 204})
    assert all(p.updated_at == 0.0 for p in open_pulls)  # Azure DevOps keeps no last-update time
    closed = forge.recently_closed_pull_requests(big, time.time() - 60)
    assert sorted(p.number for p in closed) == [3, 150, 204] and {p.state for p in closed} == {"merged"}


# ---------------------------------------------------------------- retries


def test_server_errors_and_throttling_are_retried(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo,
                                                  sleeps: list[float]) -> None:
    forge.pull_request(repo, 7)  # routes found
    fake.inject_failures(r"/pullRequests/7$", (500, 503))
    assert forge.pull_request(repo, 7).number == 7 and sleeps == [0.5, 1.0]
    fake.inject_failures(r"/pullRequests/7$", (429,), retry_after=7)
    assert forge.pull_request(repo, 7).number == 7 and sleeps[-1] == 7.0


def test_route_discovery_is_retried_too(fake: FakeAzureDevOps, repo: Repo, sleeps: list[float]) -> None:
    fake.inject_failures(r"/_apis/ResourceAreas$", (502,))
    forge = AzureDevOpsForge(fake.org_url, fake.token, sleep=sleeps.append)
    assert forge.pull_request(repo, 7).number == 7 and sleeps == [0.5]
    assert len(fake.requests_to(r"/_apis/ResourceAreas$")) == 2


def test_client_errors_are_not_retried(fake: FakeAzureDevOps, forge: AzureDevOpsForge, repo: Repo,
                                       sleeps: list[float]) -> None:
    forge.pull_request(repo, 7)
    fake.inject_failures(r"/pullRequests/7$", (400,))
    with pytest.raises(ForgeRequestFailed, match="HTTP 400: 400 injected failure$"):
        forge.pull_request(repo, 7)
    assert sleeps == []


def test_a_wrong_token_fails_at_once(fake: FakeAzureDevOps, repo: Repo, sleeps: list[float]) -> None:
    wrong = AzureDevOpsForge(fake.org_url, "not-the-token", sleep=sleeps.append)
    with pytest.raises(ForgeRequestFailed) as refused:
        wrong.pull_request(repo, 7)
    assert refused.value.status == 401 and sleeps == []


def test_an_unreachable_server_is_retried_then_reported(sleeps: list[float], repo: Repo) -> None:
    forge = AzureDevOpsForge("http://127.0.0.1:9/fabrikam", "pat", sleep=sleeps.append)
    with pytest.raises(ForgeRequestFailed, match="no answer from the server after 4 attempts"):
        forge.pull_request(repo, 7)
    assert sleeps == [0.5, 1.0, 2.0]
