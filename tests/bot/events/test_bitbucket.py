"""bot/events/bitbucket.py: every published Bitbucket Cloud and Data Center payload in
tests/fixtures/bitbucket read into events; the flavour the server does not talk to, unknown keys,
drafts and the bot's own comments ignored; malformed payloads name their field; signatures
checked in constant time; and the receiver (POST /events) answering as SPEC §5 says."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bot import events
from bot.app import create_app
from bot.events.base import Ignored, MalformedEvent
from bot.events.bitbucket import SOURCE, parse_bitbucket
from bot.models import CommentEvent, PullRequestEvent, ReviewEvent
from bot.settings import BitbucketSettings, Settings
from bot.signatures import sign_github

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bitbucket"
DC_URL = "https://server.bitbucket.local"
SECRET = "bitbucket-webhook-secret"
LUKE = "557058:dc3817de-68b5-45cd-b81c-5c39d2560090"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name.removesuffix('.json')}.json").read_text())


def cloud(key: str, payload: Any, **kw: Any) -> Any:
    return parse_bitbucket(key, payload, bot_login=kw.pop("bot_login", None),
                           allow_draft_prs=kw.pop("allow_draft_prs", False), delivery_id="d-1", **kw)


def dc(key: str, payload: Any, **kw: Any) -> Any:
    return cloud(key, payload, cloud=False, server_url=DC_URL, **kw)


# (event key, fixture) -> what it reads as: (event type, action or state, pull request number)
CLOUD_OUTCOMES = {
    "pullrequest.created.json": ("pullrequest:created", PullRequestEvent, "opened", 16),
    "pullrequest.created.same-repo.json": ("pullrequest:created", PullRequestEvent, "opened", 1),
    "pullrequest.updated.json": ("pullrequest:updated", PullRequestEvent, "updated", 1),
    "pullrequest.fulfilled.json": ("pullrequest:fulfilled", PullRequestEvent, "merged", 16),
    "pullrequest.rejected.json": ("pullrequest:rejected", PullRequestEvent, "closed", 13),
    "pullrequest.approved.json": ("pullrequest:approved", ReviewEvent, "approved", 1),
    "pullrequest.comment_created.json": ("pullrequest:comment_created", CommentEvent, None, 1),
    "pullrequest.comment_created.2018.json": ("pullrequest:comment_created", CommentEvent, None, 2),
}
DC_OUTCOMES = {
    "dc.pr.opened.json": ("pr:opened", PullRequestEvent, "opened", 5),
    "dc.pr.from_ref_updated.json": ("pr:from_ref_updated", PullRequestEvent, "updated", 2),
    "dc.pr.merged.json": ("pr:merged", PullRequestEvent, "merged", 5),
    "dc.pr.declined.json": ("pr:declined", PullRequestEvent, "closed", 2),
    "dc.pr.reviewer.approved.json": ("pr:reviewer:approved", ReviewEvent, "approved", 5),
    "dc.pr.comment.added.json": ("pr:comment:added", CommentEvent, None, 2),
}
REST_ANSWERS = {"rest.pullrequest.approved.json", "rest.pullrequest.comments.json", "rest.user.json"}


def test_every_fixture_has_an_expected_outcome() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == set(CLOUD_OUTCOMES) | set(DC_OUTCOMES) | REST_ANSWERS


@pytest.mark.parametrize("name", sorted(CLOUD_OUTCOMES))
def test_every_cloud_payload_reads(name: str) -> None:
    key, kind, action, number = CLOUD_OUTCOMES[name]
    event = cloud(key, load(name))
    assert isinstance(event, kind) and event.number == number and event.delivery_id == "d-1"
    assert event.repo.forge == "bitbucket"
    if action is not None:
        assert (event.action if kind is PullRequestEvent else event.state) == action


@pytest.mark.parametrize("name", sorted(DC_OUTCOMES))
def test_every_data_center_payload_reads(name: str) -> None:
    key, kind, action, number = DC_OUTCOMES[name]
    event = dc(key, load(name))
    assert isinstance(event, kind) and event.number == number
    assert event.repo.host == "server.bitbucket.local" and event.repo.forge == "bitbucket"
    if action is not None:
        assert (event.action if kind is PullRequestEvent else event.state) == action


def test_cloud_fork_pull_request_is_read_in_full() -> None:
    event = cloud("pullrequest:created", load("pullrequest.created"))
    pull = event.pull
    assert pull.repo.id == "bitbucket.org/lkysow/atlantis-example"
    assert pull.repo.clone_url == "https://bitbucket.org/lkysow/atlantis-example.git"
    assert pull.repo.default_branch == "master"  # no mainbranch in the payload: the destination
    assert (pull.head_sha, pull.head_ref, pull.base_ref) == ("1e69a602caef", "Luke/maintf-edited-online-with-bitbucket-1560433073473", "master")
    assert pull.is_fork and pull.head_clone_url == "https://bitbucket.org/lkysow-fork/atlantis-example.git"
    assert pull.author == LUKE and event.sender == LUKE  # account ids: nicknames are neither unique nor fixed
    assert pull.url == "https://bitbucket.org/lkysow/atlantis-example/pull-requests/16"
    assert pull.ref == "PR #16"


def test_cloud_merge_and_comment_details() -> None:
    merged = cloud("pullrequest:fulfilled", load("pullrequest.fulfilled"))
    assert merged.pull.state == "merged" and merged.pull.merge_sha == "981c4a02003b"
    comment = cloud("pullrequest:comment_created", load("pullrequest.comment_created"))
    assert (comment.comment_id, comment.body, comment.author) == ("311512047", "test comment", "624de6f6fd5e450070486936")
    assert comment.repo.id == "bitbucket.org/rutvijmehta-harness/spring-cloud-alibaba"


def test_a_cloud_account_without_an_account_id_is_known_by_its_uuid() -> None:
    payload = load("pullrequest.fulfilled")
    del payload["pullrequest"]["author"]["account_id"]
    assert cloud("pullrequest:fulfilled", payload).pull.author == "{bf34a99b-8a11-452c-8fbc-bdffc340e584}"
    del payload["pullrequest"]["author"]["uuid"]
    with pytest.raises(MalformedEvent, match="pullrequest.author.account_id: missing"):
        cloud("pullrequest:fulfilled", payload)


def test_cloud_approval_stands_for_the_head_it_was_sent_with() -> None:
    review = cloud("pullrequest:approved", load("pullrequest.approved"))
    assert review.reviewer == "udfy9suggmzpswxc7n200y3c" and review.commit_sha == "d3022fc0ca3d"
    assert review.review_id == "udfy9suggmzpswxc7n200y3c@d3022fc0ca3d"


def test_data_center_pull_request_is_read_in_full() -> None:
    pull = dc("pr:opened", load("dc.pr.opened")).pull
    assert pull.repo.id == "server.bitbucket.local/~gopher/webhook-test"
    assert pull.repo.clone_url == "https://server.bitbucket.local/scm/~gopher/webhook-test.git"
    assert pull.repo.html_url == "https://server.bitbucket.local/users/gopher/repos/webhook-test"
    assert (pull.head_sha, pull.head_ref, pull.base_ref) == ("32a0b8a740c2963c6f56bd8baf3dc05683d299e0", "feature/wip", "master")
    assert (pull.author, pull.is_fork, pull.state) == ("gopher", False, "open")
    assert pull.url == "https://server.bitbucket.local/users/gopher/repos/webhook-test/pull-requests/5"
    merged = dc("pr:merged", load("dc.pr.merged")).pull
    assert merged.merge_sha == "cbf26be7bfc8394906abbd571498fb8d28888b58"


def test_data_center_push_approval_and_comment() -> None:
    pushed = dc("pr:from_ref_updated", load("dc.pr.from_ref_updated"))
    assert pushed.pull.head_sha == "aab847db240ccae221f8036605b00f777eba95d2" and pushed.sender == "admin"
    assert pushed.repo.clone_url == "http://localhost:7990/bitbucket/scm/git/dvcs.git"
    review = dc("pr:reviewer:approved", load("dc.pr.reviewer.approved"))
    assert (review.reviewer, review.commit_sha) == ("tux", "32a0b8a740c2963c6f56bd8baf3dc05683d299e0")
    comment = dc("pr:comment:added", load("dc.pr.comment.added"))
    assert (comment.comment_id, comment.body, comment.author) == ("167", "test", "gopher")


def test_data_center_fork_clones_from_the_fork() -> None:
    payload = load("dc.pr.opened")
    source = payload["pullRequest"]["fromRef"]["repository"]
    source["project"]["key"], source["slug"] = "~mallory", "webhook-test"
    source["links"]["clone"][1]["href"] = "https://server.bitbucket.local/scm/~mallory/webhook-test.git"
    pull = dc("pr:opened", payload).pull
    assert pull.is_fork and pull.head_clone_url.endswith("/~mallory/webhook-test.git")
    assert pull.repo.full_name == "~gopher/webhook-test"


def test_data_center_links_are_optional_as_in_atlassians_examples() -> None:
    payload = load("dc.pr.opened")
    for ref in ("fromRef", "toRef"):
        del payload["pullRequest"][ref]["repository"]["links"]
    payload["pullRequest"]["links"] = {"self": [None]}
    pull = dc("pr:opened", payload).pull
    assert pull.repo.clone_url == f"{DC_URL}/scm/~gopher/webhook-test.git" and pull.url == ""


@pytest.mark.parametrize("key, payload", [
    ("diagnostics:ping", {"test": True}), ("repo:push", {}), ("pr:modified", {}), ("pr:reviewer:unapproved", {}),
    ("pullrequest:changes_request_created", {}),
])
def test_other_events_are_ignored(key: str, payload: dict) -> None:
    assert isinstance(dc(key, payload), Ignored) and isinstance(cloud(key, payload), Ignored)


def test_unapproval_is_ignored() -> None:
    assert cloud("pullrequest:unapproved", load("pullrequest.approved")) == Ignored(
        "approval withdrawn (pullrequest:unapproved)")


def test_the_other_flavour_is_ignored_with_the_setting_named() -> None:
    dc_on_cloud = cloud("pr:opened", load("dc.pr.opened"))
    cloud_on_dc = dc("pullrequest:created", load("pullrequest.created"))
    assert isinstance(dc_on_cloud, Ignored) and "bitbucket.url" in dc_on_cloud.reason
    assert isinstance(cloud_on_dc, Ignored) and "bitbucket.url" in cloud_on_dc.reason


def test_drafts_wait_unless_allowed() -> None:
    payload = load("pullrequest.created.same-repo")
    payload["pullrequest"]["draft"] = True
    assert cloud("pullrequest:created", payload) == Ignored("draft pull request")
    assert cloud("pullrequest:created", payload, allow_draft_prs=True).pull.is_draft
    dc_payload = load("dc.pr.opened")
    dc_payload["pullRequest"]["draft"] = True
    assert dc("pr:opened", dc_payload) == Ignored("draft pull request")


def test_the_bots_own_comments_are_not_commands() -> None:
    assert cloud("pullrequest:comment_created", load("pullrequest.comment_created"),
                 bot_login="624de6f6fd5e450070486936") == Ignored("comment by the bot itself")
    assert dc("pr:comment:added", load("dc.pr.comment.added"), bot_login="GOPHER") == Ignored("comment by the bot itself")


def _without(payload: dict, path: str) -> dict:
    changed = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = changed
    for part in parents:
        node = node[part]
    del node[last]
    return changed


@pytest.mark.parametrize("key, name, path, message", [
    ("pullrequest:created", "pullrequest.created", "pullrequest.source.commit", "pullrequest.source.commit: missing"),
    ("pullrequest:created", "pullrequest.created", "repository.links", "repository.links: missing"),
    ("pullrequest:fulfilled", "pullrequest.fulfilled", "pullrequest.author", "pullrequest.author: missing"),
    ("pullrequest:approved", "pullrequest.approved", "approval", "approval: missing"),
    ("pullrequest:comment_created", "pullrequest.comment_created", "comment.id", "comment.id: missing"),
    ("pr:opened", "dc.pr.opened", "pullRequest.fromRef.latestCommit", "pullRequest.fromRef.latestCommit: missing"),
    ("pr:opened", "dc.pr.opened", "pullRequest.toRef.repository.project", "pullRequest.toRef.repository.project: missing"),
    ("pr:reviewer:approved", "dc.pr.reviewer.approved", "participant.user", "participant.user: missing"),
    ("pr:comment:added", "dc.pr.comment.added", "comment.author", "comment.author: missing"),
])
def test_missing_fields_are_named(key: str, name: str, path: str, message: str) -> None:
    payload = _without(load(name), path)
    with pytest.raises(MalformedEvent, match=f"^{message.replace('.', '[.]')}$"):
        (cloud if key.startswith("pullrequest") else dc)(key, payload)


def test_mistyped_fields_are_named() -> None:
    payload = load("pullrequest.created")
    payload["pullrequest"]["id"] = "16"
    with pytest.raises(MalformedEvent, match="pullrequest.id: expected an integer, got str"):
        cloud("pullrequest:created", payload)
    dc_payload = load("dc.pr.comment.added")
    dc_payload["comment"]["text"] = ["rm -rf"]
    with pytest.raises(MalformedEvent, match="comment.text: expected a string, got list"):
        dc("pr:comment:added", dc_payload)
    with pytest.raises(MalformedEvent, match="payload: expected a JSON object, got list"):
        cloud("pullrequest:created", [])


# ---------------------------------------------------------------------------- signatures and delivery ids

SIGNED = BitbucketSettings(token="t", webhook_secret=SECRET)


def test_signature_is_sha256_hmac_of_the_body() -> None:
    body = b'{"eventKey": "pr:opened"}'
    assert SOURCE.authenticate(SIGNED, {"X-Hub-Signature": sign_github(SECRET, body)}, body) is None
    assert SOURCE.authenticate(SIGNED, {"x-hub-signature": sign_github(SECRET, body)}, body) is None


@pytest.mark.parametrize("headers", [
    {}, {"X-Hub-Signature": "sha256=" + "0" * 64}, {"X-Hub-Signature": sign_github("other", b"{}")},
    {"X-Hub-Signature": "sha1=" + "0" * 40}, {"X-Hub-Signature-256": sign_github(SECRET, b"{}")},
])
def test_forged_or_unsigned_deliveries_are_refused(headers: dict) -> None:
    assert SOURCE.authenticate(SIGNED, headers, b"{}") == "missing or wrong X-Hub-Signature"


def test_a_server_without_the_secret_refuses_every_delivery() -> None:
    body = b"{}"
    problem = SOURCE.authenticate(BitbucketSettings(), {"X-Hub-Signature": sign_github("", body)}, body)
    assert problem and "bitbucket.webhook_secret" in problem


def test_recognised_by_event_key_with_either_flavours_delivery_id() -> None:
    assert events.source_for({"X-Event-Key": "pr:opened"}) is SOURCE
    assert SOURCE.delivery_id({"X-Request-UUID": "cloud-1"}) == "cloud-1"
    assert SOURCE.delivery_id({"X-Request-Id": "dc-1"}) == "dc-1"
    assert SOURCE.delivery_id({}) is None


# ---------------------------------------------------------------------------- POST /events


@pytest.fixture
def client(redis_db):
    settings = Settings(redis_url=f"unix://{redis_db.socket_file}",
                        bitbucket=BitbucketSettings(token="t", webhook_secret=SECRET))
    app = create_app(settings)
    app.testing = True
    return app.test_client()


def _post(client, key: str, body: bytes, signature: str | None, delivery: str = "u-1"):
    headers = {"X-Event-Key": key, "X-Request-UUID": delivery, "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature"] = signature
    return client.post("/events", data=body, headers=headers)


def test_receiver_queues_a_signed_delivery_once_and_refuses_a_forged_one(client) -> None:
    body = json.dumps(load("pullrequest.created")).encode()
    forged = _post(client, "pullrequest:created", body, sign_github("guess", body))
    assert forged.status_code == 401 and "X-Hub-Signature" in forged.get_json()["error"]
    assert _post(client, "pullrequest:created", body, None).status_code == 401
    queued = _post(client, "pullrequest:created", body, sign_github(SECRET, body))
    assert queued.status_code == 202 and queued.get_json()["outcome"] == "queued"
    again = _post(client, "pullrequest:created", body, sign_github(SECRET, body))
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"


def test_receiver_ignores_a_ping_and_names_a_malformed_field(client) -> None:
    ping = b'{"test": true}'
    assert _post(client, "diagnostics:ping", ping, sign_github(SECRET, ping), "p").get_json()["outcome"] == "ignored"
    broken = json.dumps(_without(load("pullrequest.created"), "pullrequest.source.branch")).encode()
    answer = _post(client, "pullrequest:created", broken, sign_github(SECRET, broken), "m")
    assert answer.status_code == 400 and answer.get_json()["error"] == "pullrequest.source.branch: missing"
