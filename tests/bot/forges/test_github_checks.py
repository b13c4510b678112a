"""GitHubForge as a GitHub App: check runs and minimized outdated comments, through PyGithub
against FakeGitHub; with a token it writes statuses and edits comments as before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.errors import ForgeError
from bot.forges.base import FAILURE, NEUTRAL, PENDING, SUCCESS, has_checks, hides_outdated_comments
from bot.forges.github import GitHubForge
from bot.forges.github_checks import CHECK_OUTPUT_LIMIT, check_run_fields
from bot.models import CheckAction, CheckReport, PullRequest, Repo
from tests.fakes.github import FakeGitHub
from tests.support_app import APP_ID, APP_LOGIN, app_github, app_keys

FULL, HEAD, TOKEN = "acme/infra", "c" * 40, "ghp-plain-token"
APPLY = CheckAction("Apply", "apply", "Apply these plans, as /apply does")


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with app_github(token=TOKEN) as server:
        server.add_repo(FULL, "https://github.com/acme/infra.git")
        server.add_pull(FULL, 3, HEAD, "feature", "main", "alice")
        yield server


def app_forge(fake: FakeGitHub, checks: str = "auto") -> GitHubForge:
    return GitHubForge(fake.api_url, app_id=APP_ID, private_key=app_keys()[0], write_interval=0,
                       checks=checks, sleep=lambda s: None)


@pytest.fixture
def forge(fake: FakeGitHub) -> GitHubForge:
    return app_forge(fake)


@pytest.fixture
def repo() -> Repo:
    return Repo("github", "github.com", FULL, "https://github.com/acme/infra.git")


@pytest.fixture
def pull(forge: GitHubForge, repo: Repo) -> PullRequest:
    return forge.pull_request(repo, 3)


def report(state: str, **fields: object) -> CheckReport:
    values: dict = {"name": "plankeeper/plan", "state": state, "title": "1 project: 1 with changes, 0 without, 0 failed",
                    "summary": "| table |", "text": "Plan: 1 to add", "details_url": "http://bot/jobs/j1",
                    "external_id": "pull:3"}
    values.update(fields)
    return CheckReport(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("checks, as_app, writes_checks, hides", [
    ("auto", True, True, True), ("on", True, True, True), ("off", True, False, True),
    ("auto", False, False, False), ("off", False, False, False),
])
def test_checks_and_minimizing_only_as_an_app(fake: FakeGitHub, checks: str, as_app: bool, writes_checks: bool,
                                              hides: bool) -> None:
    forge = app_forge(fake, checks) if as_app else GitHubForge(fake.api_url, token=TOKEN, checks=checks)
    assert (has_checks(forge), hides_outdated_comments(forge)) == (writes_checks, hides)


def test_a_check_run_is_created_in_progress_then_completed(forge: GitHubForge, fake: FakeGitHub,
                                                           repo: Repo) -> None:
    check_id = forge.report_check(repo, HEAD, report(PENDING, text=""))
    [run] = fake.check_runs(FULL, HEAD)
    assert (str(run["id"]), run["status"], run["conclusion"], run["app_id"]) == (
        check_id, "in_progress", None, APP_ID)
    assert forge.statuses(repo, HEAD) == {"plankeeper/plan": "pending"}  # what the sweep for missed webhooks reads
    assert forge.report_check(repo, HEAD, report(SUCCESS, actions=(APPLY,)), check_id) == check_id
    [run] = fake.check_runs(FULL, HEAD)
    assert (run["status"], run["conclusion"], run["details_url"], run["external_id"]) == (
        "completed", "success", "http://bot/jobs/j1", "pull:3")
    assert run["output"] == {"title": "1 project: 1 with changes, 0 without, 0 failed", "summary": "| table |",
                             "text": "Plan: 1 to add"}
    assert run["actions"] == [{"label": "Apply", "identifier": "apply",
                               "description": "Apply these plans, as /apply does"}]
    assert forge.statuses(repo, HEAD) == {"plankeeper/plan": "success"}
    assert fake.statuses(FULL, HEAD) == []  # check runs instead of commit statuses


@pytest.mark.parametrize("state, seen", [(FAILURE, "failure"), (NEUTRAL, "success")])
def test_a_completed_check_run_in_one_call(forge: GitHubForge, fake: FakeGitHub, repo: Repo, state: str,
                                           seen: str) -> None:
    forge.report_check(repo, HEAD, report(state))
    [run] = fake.check_runs(FULL, HEAD)
    assert (run["status"], run["conclusion"]) == ("completed", state)
    assert forge.statuses(repo, HEAD) == {"plankeeper/plan": seen}


def test_a_token_cannot_write_check_runs(fake: FakeGitHub, repo: Repo) -> None:
    forge = GitHubForge(fake.api_url, token=TOKEN, write_interval=0, sleep=lambda s: None)
    with pytest.raises(ForgeError, match="create check run plankeeper/plan on acme/infra@cccccccccccc failed: HTTP 403"):
        forge.report_check(repo, HEAD, report(PENDING))


def test_fields_within_githubs_limits() -> None:
    fields = check_run_fields(report(SUCCESS, summary="s" * 70000, text="t" * 70000))
    assert len(fields["output"]["summary"]) == len(fields["output"]["text"]) == CHECK_OUTPUT_LIMIT
    assert fields["output"]["text"].endswith("cut at GitHub's limit.")
    pending = check_run_fields(report(PENDING, text="", summary=""))
    assert pending["status"] == "in_progress" and "conclusion" not in pending
    assert pending["output"] == {"title": "1 project: 1 with changes, 0 without, 0 failed",
                                 "summary": "1 project: 1 with changes, 0 without, 0 failed"}
    with pytest.raises(ValueError, match="unknown check run state 'skipped'"):
        check_run_fields(report("skipped"))


def test_an_outdated_comment_is_minimized_not_edited(forge: GitHubForge, fake: FakeGitHub,
                                                     pull: PullRequest) -> None:
    ref = forge.create_comment(pull, "**Plankeeper plan** old")
    forge.hide_outdated_comment(pull, ref.id)
    assert fake.minimized(FULL, 3) == {int(ref.id): "OUTDATED"}
    assert fake.comments(FULL, 3)[0]["body"] == "**Plankeeper plan** old"
    assert fake.comments(FULL, 3)[0]["user"] == APP_LOGIN
    [call] = fake.graphql_calls
    assert "minimizeComment(input: $input)" in call["query"] and call["viewer"] == APP_LOGIN


def test_minimizing_a_deleted_comment_is_skipped(forge: GitHubForge, fake: FakeGitHub, pull: PullRequest) -> None:
    forge.hide_outdated_comment(pull, "999999")
    assert fake.graphql_calls == [] and fake.minimized(FULL, 3) == {}


@pytest.mark.parametrize("state", [FAILURE, PENDING])
def test_own_apply_check_run_does_not_block_the_apply(forge: GitHubForge, fake: FakeGitHub, pull: PullRequest,
                                                      repo: Repo, state: str) -> None:
    fake.set_mergeable(FULL, 3, False, "blocked")
    forge.report_check(repo, HEAD, report(state, name="plankeeper/apply"))
    fake.add_check_run(FULL, HEAD, "lint", conclusion="success")
    assert forge.mergeability(pull).mergeable
    fake.add_check_run(FULL, HEAD, "tests", conclusion="failure")
    assert not forge.mergeability(pull).mergeable  # another App's failing check still blocks
