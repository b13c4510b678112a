"""FakeGitHub's Checks API and GraphQL endpoint, driven through PyGithub as the bot drives them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from github import Auth, Github, GithubException, GithubIntegration, UnknownObjectException

from tests.fakes.github import FakeGitHub
from tests.support import fixture
from tests.support_app import APP_ID, INSTALLATION_ID, app_github, app_keys

FULL, HEAD, TOKEN = "acme/infra", "a" * 40, "ghp-plain-token"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with app_github(token=TOKEN) as server:
        server.add_repo(FULL, "https://github.com/acme/infra.git")
        server.add_pull(FULL, 7, HEAD, "feature", "main", "alice")
        yield server


def installation_client(fake: FakeGitHub) -> Github:
    app = GithubIntegration(base_url=fake.api_url, auth=Auth.AppAuth(str(APP_ID), app_keys()[0]))
    token = app.get_access_token(INSTALLATION_ID).token
    return Github(base_url=fake.api_url, auth=Auth.Token(token), retry=None, lazy=True)


def token_client(fake: FakeGitHub) -> Github:
    return Github(base_url=fake.api_url, auth=Auth.Token(TOKEN), retry=None, lazy=True)


def test_an_app_creates_updates_and_lists_check_runs(fake: FakeGitHub) -> None:
    repo = installation_client(fake).get_repo(FULL)
    run = repo.create_check_run(name="plankeeper/plan", head_sha=HEAD, status="in_progress",
                                external_id="pull:7", details_url="http://bot/jobs/1",
                                output={"title": "1 project", "summary": "queued"})
    assert (run.status, run.conclusion, run.external_id) == ("in_progress", None, "pull:7")
    assert [p.number for p in run.pull_requests] == [7]
    repo.get_check_run(run.id).edit(conclusion="success", output={"title": "1 project: 1 with changes",
                                                                   "summary": "| table |", "text": "Plan: 1"},
                                    actions=[{"label": "Apply", "identifier": "apply", "description": "Apply it"}])
    again = repo.get_check_run(run.id)
    assert (again.status, again.conclusion) == ("completed", "success")  # a conclusion completes it
    assert (again.output.title, again.output.summary, again.output.text) == (
        "1 project: 1 with changes", "| table |", "Plan: 1")
    assert again.app.id == APP_ID and again.app.name == "plankeeper"
    [stored] = fake.check_runs(FULL, HEAD)
    assert stored["actions"] == [{"label": "Apply", "identifier": "apply", "description": "Apply it"}]


def test_listing_keeps_the_latest_run_per_name_unless_filter_all(fake: FakeGitHub) -> None:
    repo = installation_client(fake).get_repo(FULL)
    first = repo.create_check_run(name="plankeeper/plan", head_sha=HEAD, conclusion="failure",
                                  output={"title": "t", "summary": "s"})
    second = repo.create_check_run(name="plankeeper/plan", head_sha=HEAD, status="in_progress")
    fake.add_check_run(FULL, HEAD, "lint", conclusion="success")
    commit = repo.get_commit(HEAD)
    latest = {(r.name, r.id) for r in commit.get_check_runs()}
    assert ("plankeeper/plan", second.id) in latest and ("plankeeper/plan", first.id) not in latest
    assert {r.id for r in commit.get_check_runs(filter="all")} >= {first.id, second.id}
    assert [r.name for r in commit.get_check_runs(check_name="lint")] == ["lint"]


def test_a_check_run_has_the_shape_of_the_published_payload(fake: FakeGitHub) -> None:
    repo = installation_client(fake).get_repo(FULL)
    run = repo.create_check_run(name="plankeeper/plan", head_sha=HEAD)
    template = fixture("github", "check_run.created")["check_run"]
    body = requests.get(f"{fake.api_url}/repos/{FULL}/check-runs/{run.id}",
                        headers={"Authorization": f"token {TOKEN}"}, timeout=5).json()
    assert set(body) == set(template)
    assert set(body["output"]) == set(template["output"]) and set(body["app"]) == set(template["app"])
    assert set(body["pull_requests"][0]) == set(template["pull_requests"][0])


def test_a_plain_token_cannot_write_check_runs(fake: FakeGitHub) -> None:
    repo = token_client(fake).get_repo(FULL)
    with pytest.raises(GithubException) as info:
        repo.create_check_run(name="plankeeper/plan", head_sha=HEAD)
    assert info.value.status == 403 and info.value.data["message"] == "You must authenticate via a GitHub App."
    run = installation_client(fake).get_repo(FULL).create_check_run(name="x", head_sha=HEAD)
    with pytest.raises(GithubException) as info:
        repo.get_check_run(run.id).edit(conclusion="success")
    assert info.value.status == 403
    assert repo.get_check_run(run.id).name == "x"  # reading is open to any token


@pytest.mark.parametrize("fields", [
    {"status": "completed"},  # without a conclusion
    {"conclusion": "great"},
    {"output": {"title": "t"}},  # no summary
    {"output": {"title": "t", "summary": "s", "text": "x" * 65536}},
    {"output": {"title": "t", "summary": "s" * 65536}},
    {"actions": [{"label": "Apply now please thanks", "identifier": "apply", "description": "d"}]},
    {"actions": [{"label": "Apply", "identifier": "apply", "description": "d" * 41}]},
    {"actions": [{"label": f"a{i}", "identifier": f"a{i}", "description": "d"} for i in range(4)]},
])
def test_bodies_github_rejects_get_422(fake: FakeGitHub, fields: dict) -> None:
    repo = installation_client(fake).get_repo(FULL)
    with pytest.raises(GithubException) as info:
        repo.create_check_run(name="plankeeper/plan", head_sha=HEAD, **fields)
    assert info.value.status == 422
    assert fake.check_runs(FULL, HEAD) == []


def test_minimize_comment_through_pygithubs_graphql(fake: FakeGitHub) -> None:
    client = installation_client(fake)
    comment = client.get_repo(FULL).get_issue(7).create_comment("old plan")
    _, result = client.requester.graphql_named_mutation(
        "minimizeComment", {"subjectId": comment.node_id, "classifier": "OUTDATED"},
        "minimizedComment { isMinimized minimizedReason }")
    assert result == {"minimizedComment": {"isMinimized": True, "minimizedReason": "outdated"}}
    assert fake.minimized(FULL, 7) == {comment.id: "OUTDATED"}
    assert fake.graphql_calls[-1]["variables"]["input"] == {"subjectId": comment.node_id, "classifier": "OUTDATED"}
    assert fake.comments(FULL, 7)[0]["body"] == "old plan"


def test_graphql_errors_as_github_answers_them(fake: FakeGitHub) -> None:
    requester = installation_client(fake).requester
    with pytest.raises(UnknownObjectException):
        requester.graphql_named_mutation("minimizeComment", {"subjectId": "IC_999999", "classifier": "OUTDATED"},
                                         "minimizedComment { isMinimized }")
    comment_id = fake.add_comment(FULL, 7, "x", "alice")
    with pytest.raises(GithubException) as info:
        requester.graphql_named_mutation("minimizeComment", {"subjectId": f"IC_{comment_id}", "classifier": "OLD"},
                                         "minimizedComment { isMinimized }")
    assert "classifier" in str(info.value)
    with pytest.raises(GithubException, match="doesn't exist"):
        requester.graphql_named_mutation("deleteIssue", {"issueId": "I_1"}, "clientMutationId")
    assert fake.minimized(FULL, 7) == {}
    answer = requests.post(fake.api_url.removesuffix("/v3") + "/graphql", json={"query": "{ viewer { login } }"},
                           timeout=5)
    assert answer.status_code == 401
