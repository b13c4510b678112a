"""bot/events/azuredevops.py: Azure DevOps service hooks (basic auth, the event and the delivery
id in the body) read into events, from Microsoft's published samples (tests/fixtures/azuredevops)."""
from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import create_app
from bot.events import SOURCES, Ignored, MalformedEvent, source_for
from bot.events.azuredevops import SOURCE, parse_azuredevops
from bot.models import CommentEvent, PullRequestEvent, ReviewEvent
from bot.settings import AzureDevOpsSettings, Settings
from bot.signatures import verify_basic_auth
from tests.bot.test_events import JSON, mutate, paths

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "azuredevops"
ORG = AzureDevOpsSettings(org_url="https://dev.azure.com/fabrikam", token="pat", webhook_username="hooks",
                          webhook_password="s3cret")
BOT = "plankeeper-bot@fabrikam.example"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def parse(payload: dict, *, drafts: bool = False, section: AzureDevOpsSettings = ORG) -> Any:
    return parse_azuredevops(payload.get("eventType", ""), payload, section=section, bot_login=BOT,
                             allow_draft_prs=drafts, delivery_id=payload.get("id", ""))


def updated(text: str, status: str = "active", **resource: Any) -> dict:
    payload = load("git.pullrequest.updated")
    payload["message"]["text"] = text
    payload["resource"].update(status=status, **resource)
    return payload


# ---------------------------------------------------------------- the published samples


def test_every_published_sample_parses() -> None:
    outcomes = {p.stem: parse(load(p.stem)) for p in sorted(FIXTURES.glob("*.json"))}
    assert set(outcomes) == {"git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged",
                             "ms.vss-code.git-pullrequest-comment-event"}
    created = outcomes["git.pullrequest.created"]
    assert isinstance(created, PullRequestEvent) and created.action == "opened"
    assert created.delivery_id == "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1"
    pull = created.pull
    assert (pull.number, pull.author, pull.head_ref, pull.base_ref) == (1, "fabrikamfiber4@hotmail.com", "mytopic",
                                                                          "main")
    assert pull.head_sha == "4444eeee455ff5aaaaabb66ccccccccc7777cccc"
    assert pull.base_sha == "5555ffff566aa6bbbbbcc77ddddddd888888dddd"
    assert (pull.state, pull.merge_sha, pull.is_fork, pull.is_draft) == ("open", None, False, False)
    assert pull.repo.id == "dev.azure.com/fabrikam/Fabrikam/Fabrikam" and pull.repo.forge == "azuredevops"
    assert pull.repo.clone_url == "https://dev.azure.com/fabrikam/DefaultCollection/_git/Fabrikam"
    assert pull.ref == "#1"
    # the update sample is a completion ("marked the pull request as completed"); merged is "merge attempted"
    for name in ("git.pullrequest.updated", "git.pullrequest.merged"):
        merged = outcomes[name]
        assert isinstance(merged, PullRequestEvent) and merged.action == "merged", name
        assert merged.pull.merge_sha == "4444eeee455ff5aaaaabb66ccccccccc7777cccc"
    # the comment sample is an edit of a reply: a command runs when it is posted, never on an edit
    assert outcomes["ms.vss-code.git-pullrequest-comment-event"] == Ignored(
        "comment edited (a command runs when it is posted)")


def test_a_new_comment_names_its_thread() -> None:
    payload = load("ms.vss-code.git-pullrequest-comment-event")
    payload["message"]["text"] = "Jamal Hartnett has commented on a pull request"
    comment = payload["resource"]["comment"]
    comment["lastContentUpdatedDate"] = comment["publishedDate"]
    comment["content"] = "/plan -d stacks/a"
    event = parse(payload)
    assert isinstance(event, CommentEvent)
    assert (event.comment_id, event.pull_number, event.author) == ("5/2", 1, "fabrikamfiber4@hotmail.com")
    assert event.body == "/plan -d stacks/a"
    # the old fabrikam.visualstudio.com URLs are the same organization
    assert event.repo.id == "dev.azure.com/fabrikam/Fabrikam/Fabrikam"
    assert event.repo.clone_url == "https://fabrikam.visualstudio.com/DefaultCollection/_git/Fabrikam"


# ---------------------------------------------------------------- what an update was


def test_a_push_is_an_update() -> None:
    event = parse(updated("Jamal Hartnett updated the source branch of pull request 1 (my first pull request)"))
    assert isinstance(event, PullRequestEvent) and event.action == "updated"
    assert event.pull.head_sha == "5555ffff566aa6bbbbbcc77ddddddd888888dddd" and event.pull.merge_sha is None


def test_an_approval_is_a_review_by_the_reviewer_the_message_names() -> None:
    reviewers = [
        {"vote": 10, "displayName": "Norman Paulk", "uniqueName": "norman@fabrikam.example"},
        {"vote": 5, "displayName": "Jamal Hartnett", "uniqueName": "jamal@fabrikam.example"},
        {"vote": 10, "displayName": "[Mobile]\\Mobile Team", "uniqueName": "team", "isContainer": True},
        {"vote": -10, "displayName": "Chuck Reinhart", "uniqueName": "chuck@fabrikam.example"},
    ]
    event = parse(updated("Jamal Hartnett has approved and left suggestions on pull request 1", reviewers=reviewers))
    assert isinstance(event, ReviewEvent) and event.state == "approved"
    assert event.reviewer == "jamal@fabrikam.example"
    assert event.review_id == "jamal@fabrikam.example@5555ffff566aa6bbbbbcc77ddddddd888888dddd"
    assert event.commit_sha == ""  # a vote names no commit


def test_an_approval_nobody_can_be_named_for_is_ignored() -> None:
    reviewers = [{"vote": 10, "displayName": "A", "uniqueName": "a@x"}, {"vote": 10, "displayName": "B",
                                                                           "uniqueName": "b@x"}]
    event = parse(updated("Someone Else approved pull request 1 (t)", reviewers=reviewers))
    assert isinstance(event, Ignored) and "whose vote" in event.reason
    only = parse(updated("Someone Else approved pull request 1 (t)", reviewers=reviewers[:1]))
    assert isinstance(only, ReviewEvent) and only.reviewer == "a@x"


def test_the_title_cannot_pass_for_what_happened() -> None:
    reviewers = [{"vote": 10, "displayName": "Bob", "uniqueName": "bob@fabrikam.example"}]
    title = "updated the source branch"
    event = parse(updated(f"Bob approved pull request 1 ({title})", title=title, reviewers=reviewers))
    assert isinstance(event, ReviewEvent) and event.reviewer == "bob@fabrikam.example"
    title = "approved"
    assert isinstance(parse(updated(f"Bob changed the reviewer list of pull request 1 ({title})", title=title,
                                    reviewers=reviewers)), Ignored)


def test_a_comment_is_new_unless_its_content_changed_later() -> None:
    payload = load("ms.vss-code.git-pullrequest-comment-event")
    payload["message"]["text"] = "Jamal Hartnett has commented on a pull request"
    comment = payload["resource"]["comment"]
    comment.update(publishedDate="2024-06-17T11:22:33.1234567Z", lastContentUpdatedDate="2024-06-17T11:22:33.9Z")
    assert isinstance(parse(payload), CommentEvent)
    comment["lastContentUpdatedDate"] = "2024-06-17T11:25:00Z"
    assert isinstance(parse(payload), Ignored)


@pytest.mark.parametrize("status, text, action", [
    ("abandoned", "Jamal Hartnett abandoned the pull request", "closed"),
    ("active", "Jamal Hartnett reactivated the pull request", "opened"),
    ("active", "Jamal Hartnett published the pull request", "updated"),
    ("completed", "anything at all", "merged"),
])
def test_status_changes(status: str, text: str, action: str) -> None:
    event = parse(updated(text, status=status))
    assert isinstance(event, PullRequestEvent) and event.action == action


@pytest.mark.parametrize("text", ["Jamal Hartnett changed the reviewer list of pull request 1",
                                  "Jamal Hartnett rejected pull request 1 (t)", ""])
def test_other_updates_are_ignored(text: str) -> None:
    assert isinstance(parse(updated(text)), Ignored)


def test_merge_attempted_on_an_active_pull_request_is_not_a_merge() -> None:
    payload = load("git.pullrequest.merged")
    payload["resource"]["status"] = "active"
    assert parse(payload) == Ignored(
        "merge commit created for an active pull request (merge attempted, not completed)")


def test_drafts_wait_unless_allowed() -> None:
    payload = load("git.pullrequest.created")
    payload["resource"]["isDraft"] = True
    assert parse(payload) == Ignored("draft pull request")
    event = parse(payload, drafts=True)
    assert isinstance(event, PullRequestEvent) and event.pull.is_draft


def test_a_fork_is_cloned_from_the_fork() -> None:
    payload = load("git.pullrequest.created")
    payload["resource"]["forkSource"] = {"name": "refs/heads/mytopic", "repository": {
        "name": "Fabrikam", "remoteUrl": "https://mallory@dev.azure.com/mallory/Evil/_git/Fabrikam"}}
    pull = parse(payload).pull
    assert pull.is_fork and pull.head_clone_url == "https://dev.azure.com/mallory/Evil/_git/Fabrikam"


# ---------------------------------------------------------------- ignored


def test_the_bots_own_comment_and_system_or_deleted_comments_are_ignored() -> None:
    payload = load("ms.vss-code.git-pullrequest-comment-event")
    payload["message"]["text"] = "Plankeeper has commented on a pull request"
    comment = payload["resource"]["comment"]
    comment["lastContentUpdatedDate"] = comment["publishedDate"]
    comment["author"]["uniqueName"] = BOT.upper()
    assert parse(payload) == Ignored("comment by the bot itself")
    comment["commentType"] = "system"
    assert isinstance(parse(payload), Ignored)
    comment["isDeleted"] = True
    assert parse(payload) == Ignored("comment deleted")


def test_unknown_event_types_and_other_organizations_are_ignored() -> None:
    payload = load("git.pullrequest.created")
    assert isinstance(parse_azuredevops("build.complete", payload, section=ORG, bot_login=BOT,
                                        allow_draft_prs=False), Ignored)
    payload["resourceContainers"]["collection"]["baseUrl"] = "https://dev.azure.com/contoso/"
    assert "contoso" in parse(payload).reason
    payload["resourceContainers"]["collection"]["baseUrl"] = "https://FABRIKAM.visualstudio.com/"
    assert isinstance(parse(payload), PullRequestEvent)


def test_a_server_collection_names_repositories_by_its_path() -> None:
    server = AzureDevOpsSettings(org_url="https://tfs.example.com:8443/tfs/DefaultCollection")
    payload = load("git.pullrequest.created")
    payload["resourceContainers"]["collection"]["baseUrl"] = "https://tfs.example.com:8443/tfs/DefaultCollection/"
    event = parse(payload, section=server)
    assert event.pull.repo.id == "tfs.example.com:8443/tfs/DefaultCollection/Fabrikam/Fabrikam"
    assert Settings(azuredevops=server).forge_for(event.pull.repo.id) == "azuredevops"


# ---------------------------------------------------------------- malformed


@pytest.mark.parametrize("path, value, message", [
    (("resource", "pullRequestId"), None, "resource.pullRequestId: missing"),
    (("resource", "pullRequestId"), "1", "resource.pullRequestId: expected an integer"),
    (("resource", "lastMergeSourceCommit", "commitId"), 7, "resource.lastMergeSourceCommit.commitId: expected a string"),
    (("resource", "repository", "remoteUrl"), "ftp://x/y", "resource.repository.remoteUrl: not an http(s) URL"),
    (("resource", "reviewers"), {"a": 1}, "resource.reviewers: expected a list"),
    (("resource", "createdBy"), None, "resource.createdBy: missing"),
    (("resource", "repository", "name"), "../../etc", "resource.repository.name: not a project or repository name"),
    (("resource", "repository", "project", "name"), "..", "resource.repository.project.name: not a project"),
])
def test_a_malformed_pull_request_names_the_field(path: tuple, value: Any, message: str) -> None:
    payload = updated("Jamal Hartnett approved pull request 1 (t)")
    mutate(payload, path, value, delete=value is None)
    with pytest.raises(MalformedEvent, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(payload)


def test_a_comment_without_its_thread_names_the_field() -> None:
    payload = load("ms.vss-code.git-pullrequest-comment-event")
    payload["message"]["text"] = "x has commented on a pull request"
    comment = payload["resource"]["comment"]
    comment["lastContentUpdatedDate"] = comment["publishedDate"]
    comment["_links"]["threads"]["href"] = "https://dev.azure.com/fabrikam/_apis/somewhere/else"
    with pytest.raises(MalformedEvent, match="resource.comment._links.threads.href: not a pull request thread URL"):
        parse(payload)
    del comment["_links"]
    with pytest.raises(MalformedEvent, match="resource.comment._links: missing"):
        parse(payload)


CASES = [load(p.stem) for p in sorted(FIXTURES.glob("*.json"))]
CASE_PATHS = [paths(doc) for doc in CASES]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_samples_raise_only_malformed(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(CASES) - 1))
    document = copy.deepcopy(CASES[index])
    for path in data.draw(st.lists(st.sampled_from(CASE_PATHS[index]), min_size=1, max_size=6)):
        mutate(document, path, data.draw(JSON), data.draw(st.booleans()))
    try:
        result = SOURCE.read(SOURCE.event_name({}, document), document, "d-1", Settings(azuredevops=ORG))
    except MalformedEvent as exc:
        assert str(exc)
        return
    assert isinstance(result, (Ignored, PullRequestEvent, CommentEvent, ReviewEvent))


# ---------------------------------------------------------------- recognising and authenticating


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_a_delivery_is_recognised_by_basic_auth_and_no_other_forges_header() -> None:
    assert SOURCES[-1] is SOURCE  # it has no header of its own: it must be asked last
    assert source_for({"Authorization": basic("hooks", "s3cret")}) is SOURCE
    assert source_for({"authorization": "basic abc"}) is SOURCE
    assert source_for({"Authorization": basic("a", "b"), "X-GitHub-Event": "ping"}).forge == "github"
    assert source_for({"Authorization": basic("a", "b"), "X-Gitea-Event": "push"}) is not SOURCE
    assert source_for({"Authorization": "Bearer abc"}) is None
    assert source_for({}) is None


def test_the_event_and_delivery_id_come_from_the_body() -> None:
    payload = load("git.pullrequest.created")
    assert SOURCE.event_name({}, payload) == "git.pullrequest.created"
    assert SOURCE.delivery_id({}, payload) == "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1"
    assert SOURCE.delivery_id({}, {"id": "  "}) is None and SOURCE.delivery_id({}, None) is None
    assert SOURCE.event_name({}, {"eventType": 3}) == ""


def test_basic_auth_is_compared_whole_and_exactly() -> None:
    assert verify_basic_auth("hooks", "s3cret", basic("hooks", "s3cret"))
    assert verify_basic_auth("hooks", "pa:ss", basic("hooks", "pa:ss"))
    for header in (basic("hooks", "s3cret!"), basic("Hooks", "s3cret"), basic("hooks", ""), "Basic !!!",
                   "Bearer " + basic("hooks", "s3cret")[6:], "", None):
        assert not verify_basic_auth("hooks", "s3cret", header), header
    assert not verify_basic_auth("", "", basic("", ""))  # unset credentials never authenticate


@pytest.fixture
def client(redis_db: Any) -> Any:
    settings = Settings(redis_url=f"unix://{redis_db.socket_file}", azuredevops=AzureDevOpsSettings(
        org_url="https://dev.azure.com/fabrikam", token="pat", webhook_username="hooks", webhook_password="s3cret"))
    app = create_app(settings)
    app.testing = True
    return app.test_client()


def post(client: Any, payload: Any, auth: str | None) -> Any:
    headers = {"Content-Type": "application/json; charset=utf-8", **({"Authorization": auth} if auth else {})}
    return client.post("/events", data=json.dumps(payload), headers=headers)


def test_forged_deliveries_are_refused_and_redeliveries_are_duplicates(client: Any) -> None:
    payload = load("git.pullrequest.created")
    wrong = post(client, payload, basic("hooks", "guess"))
    assert wrong.status_code == 401 and "wrong basic auth" in wrong.get_json()["error"]
    assert post(client, payload, basic("hooks", "s3cret")).status_code == 202
    again = post(client, payload, basic("hooks", "s3cret"))  # Azure DevOps retries with the same id
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"


def test_what_is_not_a_delivery_is_told_why(client: Any) -> None:
    unknown = post(client, load("git.pullrequest.created"), None)
    assert unknown.status_code == 400
    assert "Authorization: Basic" in unknown.get_json()["error"] and "X-GitHub-Event" in unknown.get_json()["error"]
    no_id = {k: v for k, v in load("git.pullrequest.created").items() if k != "id"}
    missing = post(client, no_id, basic("hooks", "s3cret"))
    assert missing.status_code == 400 and "`id` in the body" in missing.get_json()["error"]
    no_type = {k: v for k, v in load("git.pullrequest.created").items() if k != "eventType"}
    assert post(client, no_type, basic("hooks", "s3cret")).get_json()["error"] == "eventType: missing"


def test_a_server_without_azure_devops_or_its_webhook_credentials_refuses_every_delivery(redis_db: Any) -> None:
    url = f"unix://{redis_db.socket_file}"
    unconfigured = create_app(Settings(redis_url=url)).test_client()
    answer = post(unconfigured, load("git.pullrequest.created"), basic("hooks", "s3cret"))
    assert answer.status_code == 401 and "set azuredevops.org_url and azuredevops.token" in answer.get_json()["error"]
    no_credentials = create_app(Settings(redis_url=url, azuredevops=AzureDevOpsSettings(
        org_url="https://dev.azure.com/fabrikam", token="pat"))).test_client()
    answer = post(no_credentials, load("git.pullrequest.created"), basic("", ""))
    assert answer.status_code == 401 and "webhook_username" in answer.get_json()["error"]
