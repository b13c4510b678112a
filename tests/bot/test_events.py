"""bot/events.py: every published webhook fixture replayed, malformed payloads, fuzzing."""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.events import (
    Ignored,
    MalformedEvent,
    source_for,
    parse_github,
    parse_gitlab,
)
from bot.models import (
    CheckRunEvent,
    CommentEvent,
    PullRequestEvent,
    ReviewEvent,
    event_from_dict,
    event_to_dict,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GITHUB = FIXTURES / "github"
GITLAB = FIXTURES / "gitlab"
GITLAB_EVENTS = {"merge_request": "Merge Request Hook", "note": "Note Hook", "push": "Push Hook"}
BOT = "plankeeper"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def github_event_name(path: Path) -> str:
    """SOURCE.md: for foo.bar.json the X-GitHub-Event is foo."""
    return path.name.split(".")[0]


def gh(name: str, payload: Any, *, allow_draft_prs: bool = False, **kw: Any) -> Any:
    return parse_github(name, payload, bot_login=BOT, allow_draft_prs=allow_draft_prs,
                        delivery_id="d-1", **kw)


def gl(name: str, payload: Any, *, allow_draft_prs: bool = False) -> Any:
    return parse_gitlab(GITLAB_EVENTS.get(name, name), payload, bot_login=BOT,
                        allow_draft_prs=allow_draft_prs, delivery_id="d-1")


def gh_fixture(name: str) -> Any:
    path = GITHUB / name
    return gh(github_event_name(path), load(path))


def gl_fixture(name: str) -> Any:
    path = GITLAB / name
    return gl(path.name.split(".")[0], load(path))


# ---------------------------------------------------------------- every fixture, exact outcome

GITHUB_OUTCOMES = {
    "check_run.created.json": Ignored("check_run action created not handled"),
    "check_run.rerequested.json": Ignored("check run 'randscape' is not one of the bot's"),
    "check_run.requested_action.json": Ignored("check run 'API Review' is not one of the bot's"),
    "check_suite.requested.json": Ignored("check_suite action requested not handled"),
    "check_suite.rerequested.json":
        Ignored("this server writes no check runs (github.checks: as a GitHub App only)"),
    "installation.created.json": Ignored("event installation not handled"),
    "issue_comment.created.json": Ignored("comment on an issue, not a pull request"),
    "issue_comment.created.with-installation.json":
        Ignored("comment on an issue, not a pull request"),
    "issue_comment.created.on-pull-request.json": CommentEvent,
    "ping.json": Ignored("ping"),
    "ping.with-app_id.json": Ignored("ping"),
    "pull_request.closed.json": PullRequestEvent,
    "pull_request.labeled.json": Ignored("pull_request action labeled not handled"),
    "pull_request.opened.json": PullRequestEvent,
    "pull_request.opened.with-null-body.json": PullRequestEvent,
    "pull_request.reopened.json": PullRequestEvent,
    "pull_request.synchronize.json": PullRequestEvent,
    "pull_request_review.submitted.approved.json": ReviewEvent,
    "pull_request_review.submitted.json": ReviewEvent,
    "push.json": Ignored("event push not handled"),
}
GITLAB_OUTCOMES = {
    "merge_request.approved.json": ReviewEvent,
    "merge_request.close.json": PullRequestEvent,
    "merge_request.merge.json": PullRequestEvent,
    "merge_request.open.json": PullRequestEvent,
    "merge_request.reopen.json": PullRequestEvent,
    "merge_request.update.json": PullRequestEvent,
    "merge_request.update.mark-as-ready.json": PullRequestEvent,
    "note.merge_request.gitlab-com.json": CommentEvent,
    "note.merge_request.json": CommentEvent,
    "push.json": Ignored("event Push Hook not handled"),
}


def test_every_fixture_has_an_expected_outcome() -> None:
    assert sorted(p.name for p in GITHUB.glob("*.json")) == sorted(GITHUB_OUTCOMES)
    assert sorted(p.name for p in GITLAB.glob("*.json")) == sorted(GITLAB_OUTCOMES)


@pytest.mark.parametrize("name", sorted(GITHUB_OUTCOMES))
def test_github_fixture_outcome(name: str) -> None:
    expected = GITHUB_OUTCOMES[name]
    result = gh_fixture(name)
    if isinstance(expected, Ignored):
        assert result == expected
    else:
        assert type(result) is expected
        assert result.delivery_id == "d-1"
        # What crosses the queue must survive the round trip.
        assert event_from_dict(json.loads(json.dumps(event_to_dict(result)))) == result
        assert event_to_dict(result)["data"] == dataclasses.asdict(result)  # the fast copy is asdict's


@pytest.mark.parametrize("name", sorted(GITLAB_OUTCOMES))
def test_gitlab_fixture_outcome(name: str) -> None:
    expected = GITLAB_OUTCOMES[name]
    result = gl_fixture(name)
    if isinstance(expected, Ignored):
        assert result == expected
    else:
        assert type(result) is expected
        assert event_from_dict(json.loads(json.dumps(event_to_dict(result)))) == result
        assert event_to_dict(result)["data"] == dataclasses.asdict(result)  # the fast copy is asdict's


# ---------------------------------------------------------------- GitHub key fields

HELLO_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


@pytest.mark.parametrize("name, action", [
    ("pull_request.opened.json", "opened"),
    ("pull_request.opened.with-null-body.json", "opened"),
    ("pull_request.reopened.json", "opened"),
    ("pull_request.synchronize.json", "updated"),
    ("pull_request.closed.json", "closed"),
])
def test_github_pull_request_fields(name: str, action: str) -> None:
    event = gh_fixture(name)
    assert event.action == action
    assert event.sender == "Codertocat"
    pull = event.pull
    assert (pull.number, pull.author, pull.head_sha, pull.head_ref) == (
        2, "Codertocat", HELLO_HEAD, "changes")
    assert (pull.base_ref, pull.base_sha) == (
        "master", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    assert pull.url == "https://github.com/Codertocat/Hello-World/pull/2"
    assert pull.title == "Update the README with new information."
    assert pull.head_clone_url == "https://github.com/Codertocat/Hello-World.git"
    assert not pull.is_fork and not pull.is_draft
    assert pull.state == ("closed" if action == "closed" else "open")
    assert pull.merge_sha is None
    repo = pull.repo
    assert (repo.forge, repo.host) == ("github", "github.com")
    assert repo.full_name == "Codertocat/Hello-World"
    assert repo.clone_url == "https://github.com/Codertocat/Hello-World.git"
    assert repo.default_branch == "master"
    assert repo.html_url == "https://github.com/Codertocat/Hello-World"
    assert repo.installation_id == 1 and repo.forge_id is None
    assert repo.id == "github.com/Codertocat/Hello-World"


def test_github_comment_on_pull_request_fields() -> None:
    event = gh_fixture("issue_comment.created.on-pull-request.json")
    assert (event.pull_number, event.comment_id, event.body, event.author) == (
        3, "546616131", "/build", "chhsia0")
    assert event.repo.full_name == "chhsia0/knative-route-demo"
    assert event.repo.clone_url == "https://github.com/chhsia0/knative-route-demo.git"
    assert event.repo.installation_id is None


def test_github_approved_review_from_a_fork() -> None:
    event = gh_fixture("pull_request_review.submitted.approved.json")
    assert (event.state, event.reviewer) == ("approved", "baxterthehacker")
    pull = event.pull
    assert (pull.number, pull.author) == (8, "skalnik")
    assert pull.head_sha == "b7a1f9c27caa4e03c14a88feb56e2d4f7500aa63"
    assert pull.is_fork and pull.head_clone_url == "https://github.com/skalnik/public-repo.git"
    assert pull.repo.clone_url == "https://github.com/baxterthehacker/public-repo.git"
    # merge_commit_sha is GitHub's test merge while open, not a merge.
    assert pull.state == "open" and pull.merge_sha is None


def test_github_commented_review_state_is_lowercase() -> None:
    payload = load(GITHUB / "pull_request_review.submitted.json")
    payload["review"]["state"] = "CHANGES_REQUESTED"
    assert gh("pull_request_review", payload).state == "changes_requested"
    assert gh_fixture("pull_request_review.submitted.json").state == "commented"


# ---------------------------------------------------------------- GitHub derived variants


def opened() -> dict:
    return load(GITHUB / "pull_request.opened.json")


def test_github_merged_close_is_merged_with_merge_sha() -> None:
    # Derived: the published closed example with merged=true (octokit has no merged example).
    payload = load(GITHUB / "pull_request.closed.json")
    payload["pull_request"]["merged"] = True
    payload["pull_request"]["merge_commit_sha"] = "a" * 40
    event = gh("pull_request", payload)
    assert event.action == "merged"
    assert event.pull.state == "merged" and event.pull.merge_sha == "a" * 40


def test_github_ready_for_review_is_an_update() -> None:
    payload = opened()
    payload["action"] = "ready_for_review"
    assert gh("pull_request", payload).action == "updated"


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened", "ready_for_review"])
def test_github_drafts_are_ignored_unless_allowed(action: str) -> None:
    payload = opened()
    payload["action"] = action
    payload["pull_request"]["draft"] = True
    assert gh("pull_request", payload) == Ignored("draft pull request")
    allowed = gh("pull_request", payload, allow_draft_prs=True)
    assert isinstance(allowed, PullRequestEvent) and allowed.pull.is_draft


@pytest.mark.parametrize("merged, action", [(False, "closed"), (True, "merged")])
def test_github_closing_a_draft_is_not_ignored(merged: bool, action: str) -> None:
    payload = load(GITHUB / "pull_request.closed.json")
    payload["pull_request"]["draft"] = True
    payload["pull_request"]["merged"] = merged
    assert gh("pull_request", payload).action == action


@pytest.mark.parametrize("action", ["edited", "assigned", "converted_to_draft", "unlabeled"])
def test_github_other_pull_request_actions_are_ignored_by_name(action: str) -> None:
    payload = opened()
    payload["action"] = action
    assert gh("pull_request", payload) == Ignored(f"pull_request action {action} not handled")


def test_github_enterprise_host_comes_from_html_url() -> None:
    payload = opened()
    payload["repository"]["html_url"] = "https://ghe.acme.internal:8443/Codertocat/Hello-World"
    repo = gh("pull_request", payload).pull.repo
    assert repo.host == "ghe.acme.internal:8443"
    assert repo.id == "ghe.acme.internal:8443/Codertocat/Hello-World"


def test_github_host_falls_back_to_api_host_without_html_url() -> None:
    payload = opened()
    del payload["repository"]["html_url"]
    assert gh("pull_request", payload, api_host="ghe.acme.io").pull.repo.host == "ghe.acme.io"


def test_github_deleted_fork_has_null_head_repo() -> None:
    payload = opened()
    payload["pull_request"]["head"]["repo"] = None
    pull = gh("pull_request", payload).pull
    assert pull.is_fork and pull.head_clone_url == ""


def test_github_installation_id_from_comment_with_installation() -> None:
    payload = load(GITHUB / "issue_comment.created.with-installation.json")
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/x"}
    event = gh("issue_comment", payload)
    assert isinstance(event, CommentEvent)
    assert event.repo.installation_id == payload["installation"]["id"]


def comment_on_pr() -> dict:
    return load(GITHUB / "issue_comment.created.on-pull-request.json")


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_github_edited_or_deleted_comments_are_ignored(action: str) -> None:
    payload = comment_on_pr()
    payload["action"] = action
    assert gh("issue_comment", payload) == Ignored(f"issue_comment action {action} not handled")


@pytest.mark.parametrize("login, kind", [
    ("plankeeper", "User"), ("PlanKeeper", "User"), ("plankeeper[bot]", "Bot"),
])
def test_github_comments_by_the_bot_are_ignored(login: str, kind: str) -> None:
    payload = comment_on_pr()
    payload["comment"]["user"].update(login=login, type=kind)
    assert gh("issue_comment", payload) == Ignored("comment by the bot itself")


def test_github_comments_by_other_bots_are_kept() -> None:
    payload = comment_on_pr()
    payload["comment"]["user"].update(login="renovate[bot]", type="Bot")
    assert isinstance(gh("issue_comment", payload), CommentEvent)


def test_github_without_bot_login_nothing_counts_as_self() -> None:
    payload = comment_on_pr()
    event = parse_github("issue_comment", payload, bot_login=None, allow_draft_prs=False)
    assert isinstance(event, CommentEvent) and event.delivery_id == ""


def test_github_dismissed_review_is_ignored() -> None:
    payload = load(GITHUB / "pull_request_review.submitted.json")
    payload["action"] = "dismissed"
    assert gh("pull_request_review", payload) == Ignored(
        "pull_request_review action dismissed not handled")


# ---------------------------------------------------------------- GitHub check run clicks

APP = 4242
ELECTRON_HEAD = "5bd5f196a46b8222fb7484f05faba41a73cf34bd"


def apply_click(**check: Any) -> dict:
    """Derived: check_run.requested_action.json as if on the bot's plan check run (our App, our name)."""
    payload = load(GITHUB / "check_run.requested_action.json")
    payload["check_run"].update(name="plankeeper/plan", **check)
    payload["check_run"]["app"]["id"] = APP
    payload["requested_action"]["identifier"] = "apply"
    return payload


def test_github_apply_button_is_an_apply_by_whoever_clicked() -> None:
    event = gh("check_run", apply_click(), app_id=APP)
    assert event == CheckRunEvent(
        delivery_id="d-1", repo=event.repo, pull_number=26764, head_sha=ELECTRON_HEAD, command="apply",
        sender="codebytere", check_id="check_run:1494503112")
    assert (event.repo.full_name, event.repo.installation_id, event.number) == ("electron/electron", 690857, 26764)
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event


def test_github_rerun_of_a_check_run_is_a_plan() -> None:
    payload = load(GITHUB / "check_run.rerequested.json")
    payload["check_run"].update(name="plankeeper/apply", external_id="pull:12")
    payload["check_run"]["app"]["id"] = APP
    event = gh("check_run", payload, app_id=APP)
    assert (event.command, event.pull_number, event.sender, event.check_id) == ("plan", 12, "octocat", "check_run:4")
    assert event.head_sha == "d6fde92930d4715a2b49857d24b940956b26d2d3"


def test_github_rerun_of_the_check_suite_is_a_plan() -> None:
    payload = load(GITHUB / "check_suite.rerequested.json")
    event = gh("check_suite", payload, app_id=payload["check_suite"]["app"]["id"])
    assert isinstance(event, CheckRunEvent)
    assert (event.command, event.pull_number, event.head_sha, event.check_id) == (
        "plan", 2, HELLO_HEAD, "check_suite:118578147")
    assert event.sender == "octocoders-linter[bot]"
    assert gh("check_suite", payload, app_id=APP) == Ignored("check_suite of another GitHub App")


def test_github_external_id_names_the_pull_request_even_from_a_fork() -> None:
    # a fork's pull request is not in pull_requests; the bot's external_id still names it
    assert gh("check_run", apply_click(external_id="pull:9", pull_requests=[]), app_id=APP).pull_number == 9
    assert gh("check_run", apply_click(external_id="pull:0x1", pull_requests=[]), app_id=APP) == Ignored(
        "check_run is on no pull request of this repository")


def test_github_check_run_on_several_pull_requests_is_ignored() -> None:
    payload = apply_click()
    second = copy.deepcopy(payload["check_run"]["pull_requests"][0])
    second["number"] = 26800
    payload["check_run"]["pull_requests"].append(second)
    assert gh("check_run", payload, app_id=APP) == Ignored(
        "check_run is on several pull requests (#26764, #26800): comment the command instead")


@pytest.mark.parametrize("change, kw, reason", [
    (lambda p: p["requested_action"].update(identifier="lgtm|26764"), {"app_id": APP},
     "requested action 'lgtm|26764' not handled"),
    (lambda p: p["check_run"]["app"].update(id=29310), {"app_id": APP}, "check_run of another GitHub App"),
    (lambda p: None, {}, "this server writes no check runs (github.checks: as a GitHub App only)"),
    (lambda p: None, {"app_id": APP, "check_prefix": "atlantis/"}, "check run 'plankeeper/plan' is not one of the bot's"),
    (lambda p: p.update(action="completed"), {"app_id": APP}, "check_run action completed not handled"),
])
def test_github_clicks_the_bot_does_not_act_on(change: Any, kw: dict, reason: str) -> None:
    payload = apply_click()
    change(payload)
    assert gh("check_run", payload, **kw) == Ignored(reason)


@pytest.mark.parametrize("change, field", [
    (lambda p: p["check_run"].pop("head_sha"), "check_run.head_sha: missing"),
    (lambda p: p["check_run"].update(pull_requests=None), "check_run.pull_requests: expected a list"),
    (lambda p: p["check_run"]["pull_requests"][0].update(number="1"), "check_run.pull_requests[].number"),
    (lambda p: p.pop("requested_action"), "requested_action: missing"),
    (lambda p: p["sender"].pop("login"), "sender.login: missing"),
    (lambda p: p["check_run"].pop("app"), "check_run.app: missing"),
])
def test_github_malformed_clicks_name_the_field(change: Any, field: str) -> None:
    payload = apply_click()
    change(payload)
    with pytest.raises(MalformedEvent, match=re.escape(field)):
        gh("check_run", payload, app_id=APP)


# ---------------------------------------------------------------- GitHub malformed


def test_github_missing_pull_request_names_the_field() -> None:
    payload = opened()
    del payload["pull_request"]
    with pytest.raises(MalformedEvent, match="pull_request: missing"):
        gh("pull_request", payload)


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p["pull_request"]["head"].pop("sha"), "pull_request.head.sha: missing"),
    (lambda p: p["pull_request"].update(number="2"), "pull_request.number: expected an integer"),
    (lambda p: p["pull_request"].update(number=True), "pull_request.number: expected an integer"),
    (lambda p: p["pull_request"].update(head=[]), "pull_request.head: expected an object"),
    (lambda p: p["pull_request"]["user"].update(login=7), "pull_request.user.login"),
    (lambda p: p.update(repository="x"), "repository: expected an object"),
    (lambda p: p["repository"].pop("clone_url"), "repository.clone_url: missing"),
    (lambda p: p.update(installation={"id": "1"}), "installation.id"),
    (lambda p: p.update(action=None), "action: missing"),
    (lambda p: p["pull_request"].update(draft="yes"), "pull_request.draft: expected a boolean"),
    (lambda p: p["repository"].update(html_url="http://[::1"), "repository.html_url"),
])
def test_github_wrong_fields_raise_malformed_naming_them(mutate: Any, field: str) -> None:
    payload = opened()
    mutate(payload)
    with pytest.raises(MalformedEvent) as info:
        gh("pull_request", payload)
    assert field in str(info.value)


@pytest.mark.parametrize("payload", [[], [1, 2], "text", 3, None, True])
def test_non_object_payloads_are_malformed(payload: Any) -> None:
    with pytest.raises(MalformedEvent, match="expected a JSON object"):
        gh("pull_request", payload)
    with pytest.raises(MalformedEvent, match="expected a JSON object"):
        gl("merge_request", payload)


def test_github_comment_with_non_object_comment_is_malformed() -> None:
    payload = comment_on_pr()
    payload["comment"] = "hello"
    with pytest.raises(MalformedEvent, match="comment: expected an object"):
        gh("issue_comment", payload)


# ---------------------------------------------------------------- GitLab key fields


def test_gitlab_open_fields() -> None:
    event = gl_fixture("merge_request.open.json")
    assert (event.action, event.sender) == ("opened", "root")
    pull = event.pull
    assert (pull.number, pull.author, pull.head_ref, pull.base_ref) == (
        1, "root", "ms-viewport", "master")
    assert pull.head_sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert pull.head_clone_url == "http://example.com/awesome_space/awesome_project.git"
    assert not pull.is_fork and not pull.is_draft and pull.state == "open"
    repo = pull.repo
    assert (repo.forge, repo.host, repo.full_name, repo.forge_id) == (
        "gitlab", "example.com", "gitlabhq/gitlab-test", 1)
    assert repo.clone_url == "http://example.com/gitlabhq/gitlab-test.git"
    assert repo.installation_id is None


def test_gitlab_merge_has_merge_sha() -> None:
    event = gl_fixture("merge_request.merge.json")
    assert event.action == "merged" and event.pull.state == "merged"
    assert event.pull.merge_sha == "78a76ee6b4992a6baf64c59fc4c44c7323d60438"
    assert event.pull.repo.id == "gitlab.com/gitlab-org/hello-world"
    assert event.pull.repo.forge_id == 4861503


def test_gitlab_close_reopen_update() -> None:
    assert gl_fixture("merge_request.close.json").action == "closed"
    assert gl_fixture("merge_request.close.json").pull.state == "closed"
    assert gl_fixture("merge_request.reopen.json").action == "opened"
    update = gl_fixture("merge_request.update.json")
    assert update.action == "updated"
    assert update.pull.head_sha == "5ff66a1f7404deee915b50998c340e96d995f048"
    assert (update.pull.number, update.pull.repo.full_name) == (3, "quan.hoang/atlantis-example")


def test_gitlab_mark_as_ready_is_an_update() -> None:
    # No oldrev, but the title lost its "Draft:" prefix: plan it now that it is ready.
    event = gl_fixture("merge_request.update.mark-as-ready.json")
    assert event.action == "updated"
    assert event.pull.repo.host == "gitlab.lan"


def test_gitlab_update_without_new_commits_is_ignored() -> None:
    payload = load(GITLAB / "merge_request.update.json")
    del payload["object_attributes"]["oldrev"]
    assert gl("merge_request", payload) == Ignored("merge request updated without new commits")


def test_gitlab_draft_flag_turned_off_is_an_update() -> None:
    payload = load(GITLAB / "merge_request.update.json")
    del payload["object_attributes"]["oldrev"]
    payload["changes"]["draft"] = {"previous": True, "current": False}
    assert gl("merge_request", payload).action == "updated"


def test_gitlab_approved_is_a_review() -> None:
    event = gl_fixture("merge_request.approved.json")
    assert (event.state, event.reviewer) == ("approved", "eeshangargtest")
    assert event.pull.head_sha == "b1b2824f280e73c5f57c78da5f8eb3cd19990867"
    assert event.pull.repo.default_branch == "feature"


@pytest.mark.parametrize("action", ["unapproved", "unapproval"])
def test_gitlab_withdrawn_approval_is_ignored(action: str) -> None:
    payload = load(GITLAB / "merge_request.approved.json")
    payload["object_attributes"]["action"] = action
    result = gl("merge_request", payload)
    assert isinstance(result, Ignored) and action in result.reason


@pytest.mark.parametrize("flag", ["draft", "work_in_progress"])
def test_gitlab_drafts_ignored_unless_allowed(flag: str) -> None:
    payload = load(GITLAB / "merge_request.reopen.json")
    payload["object_attributes"][flag] = True
    assert gl("merge_request", payload) == Ignored("draft pull request")
    assert gl("merge_request", payload, allow_draft_prs=True).pull.is_draft


def test_gitlab_closing_a_draft_is_not_ignored() -> None:
    payload = load(GITLAB / "merge_request.close.json")
    payload["object_attributes"]["draft"] = True
    assert gl("merge_request", payload).action == "closed"


def test_gitlab_fork_merge_request() -> None:
    payload = load(GITLAB / "merge_request.open.json")
    payload["object_attributes"]["source_project_id"] = 99
    pull = gl("merge_request", payload).pull
    assert pull.is_fork
    assert pull.head_clone_url == "http://example.com/awesome_space/awesome_project.git"


def test_gitlab_note_fields() -> None:
    event = gl_fixture("note.merge_request.gitlab-com.json")
    assert (event.pull_number, event.comment_id, event.body, event.author) == (
        1, "50772616", "lgtm", "sytses")
    assert event.repo.forge_id == 4861503 and event.delivery_id == "d-1"
    doc = gl_fixture("note.merge_request.json")
    assert (doc.pull_number, doc.comment_id, doc.body) == (1, "1244", "This MR needs work.")


@pytest.mark.parametrize("noteable", ["Commit", "Issue", "Snippet"])
def test_gitlab_notes_elsewhere_are_ignored(noteable: str) -> None:
    payload = load(GITLAB / "note.merge_request.json")
    payload["object_attributes"]["noteable_type"] = noteable
    assert gl("note", payload) == Ignored(f"comment on {noteable} not handled")


def test_gitlab_notes_by_the_bot_edited_or_system_are_ignored() -> None:
    payload = load(GITLAB / "note.merge_request.json")
    payload["user"]["username"] = BOT
    assert gl("note", payload) == Ignored("comment by the bot itself")
    payload = load(GITLAB / "note.merge_request.json")
    payload["object_attributes"]["action"] = "update"
    assert gl("note", payload) == Ignored("note action update not handled")
    payload = load(GITLAB / "note.merge_request.json")
    payload["object_attributes"]["system"] = True
    assert gl("note", payload) == Ignored("system note")


def test_gitlab_malformed_fields_are_named() -> None:
    payload = load(GITLAB / "merge_request.open.json")
    del payload["object_attributes"]["last_commit"]
    with pytest.raises(MalformedEvent, match="object_attributes.last_commit: missing"):
        gl("merge_request", payload)
    payload = load(GITLAB / "note.merge_request.json")
    payload["merge_request"] = None
    with pytest.raises(MalformedEvent, match="merge_request: missing"):
        gl("note", payload)
    payload = load(GITLAB / "merge_request.open.json")
    payload["project"]["id"] = "1"
    with pytest.raises(MalformedEvent, match="project.id: expected an integer"):
        gl("merge_request", payload)


def test_gitlab_object_kind_must_match_header() -> None:
    with pytest.raises(MalformedEvent, match="object_kind"):
        gl("note", load(GITLAB / "merge_request.open.json"))


# ---------------------------------------------------------------- headers


def _forge(headers: dict) -> str | None:
    source = source_for(headers)
    return source.forge if source else None


def _delivery(headers: dict) -> str | None:
    source = source_for(headers)
    assert source is not None
    return source.delivery_id(headers)


def test_the_forge_and_delivery_id_come_from_the_headers() -> None:
    assert _forge({"X-GitHub-Event": "ping"}) == "github"
    assert _forge({"x-github-event": "ping"}) == "github"
    assert _forge({"X-Gitlab-Event": "Note Hook"}) == "gitlab"
    assert _forge({"Content-Type": "application/json"}) is None
    assert _delivery({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "72d3162e"}) == "72d3162e"
    assert _delivery({"X-Gitlab-Event": "Note Hook", "X-Gitlab-Event-UUID": "u-1", "Idempotency-Key": "k"}) == "u-1"
    assert _delivery({"X-Gitlab-Event": "Note Hook", "idempotency-key": "k-2"}) == "k-2"
    assert _delivery({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "  "}) is None
    assert _delivery({"X-GitHub-Event": "ping"}) is None


# ---------------------------------------------------------------- fuzzing

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
GITHUB_NAMES = st.sampled_from(["pull_request", "issue_comment", "pull_request_review", "ping",
                                "push"])
GITLAB_NAMES = st.sampled_from(["Merge Request Hook", "Note Hook", "Push Hook"])
KEYS = st.sampled_from(["action", "pull_request", "issue", "comment", "review", "repository",
                        "installation", "object_kind", "object_attributes", "project", "user",
                        "merge_request", "changes", "sender"])


def parse_or_malformed(parse: Any, name: str, payload: Any) -> None:
    try:
        result = parse(name, payload, bot_login=BOT, allow_draft_prs=False)
    except MalformedEvent as exc:
        assert str(exc)
        return
    assert isinstance(result, (Ignored, PullRequestEvent, CommentEvent, ReviewEvent))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=GITHUB_NAMES | GITLAB_NAMES, payload=JSON | st.dictionaries(KEYS, JSON))
def test_arbitrary_json_raises_only_malformed(name: str, payload: Any) -> None:
    parse_or_malformed(parse_github, name, payload)
    parse_or_malformed(parse_gitlab, name, payload)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a JSON document (dict keys and list indexes)."""
    found: list[tuple] = []
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        found.append(prefix + (key,))
        found.extend(paths(child, prefix + (key,)))
    return found


def mutate(document: Any, path: tuple, replacement: Any, delete: bool) -> None:
    parent = document
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed or replaced this branch
    try:
        if delete and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = replacement
    except (IndexError, TypeError, KeyError):
        return


FIXTURE_CASES = [(parse_github, github_event_name(p), load(p))
                 for p in sorted(GITHUB.glob("*.json"))]
FIXTURE_CASES += [(parse_gitlab, GITLAB_EVENTS[p.name.split(".")[0]], load(p))
                  for p in sorted(GITLAB.glob("*.json"))]
FIXTURE_PATHS = [paths(doc) for _, _, doc in FIXTURE_CASES]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_fixtures_raise_only_malformed(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(FIXTURE_CASES) - 1))
    parse, name, original = FIXTURE_CASES[index]
    document = copy.deepcopy(original)
    targets = data.draw(st.lists(st.sampled_from(FIXTURE_PATHS[index]), min_size=1, max_size=6))
    for path in targets:
        mutate(document, path, data.draw(JSON), data.draw(st.booleans()))
    parse_or_malformed(parse, name, document)
