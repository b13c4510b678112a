"""bot/events/gitea.py: every published Gitea payload replayed, malformed and ignored deliveries,
signatures, and a Gitea (or Forgejo) delivery never read as GitHub's, up to the receiver's answer."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import create_app
from bot.events import Ignored, MalformedEvent, source_for
from bot.events.gitea import SOURCE, is_draft_title, parse_gitea
from bot.models import CommentEvent, PullRequestEvent, ReviewEvent
from bot.settings import GiteaSettings, GitHubSettings, Settings
from bot.signatures import sign_gitea, sign_github, verify_gitea
from tests.bot.test_events import JSON, mutate, parse_or_malformed, paths
from tests.support_gitea import gitea_headers

GITEA = Path(__file__).resolve().parents[2] / "fixtures" / "gitea"
BOT, SECRET = "plankeeper-bot", "gitea-hook-secret"
# fixture -> X-Gitea-Event (SOURCE.md's table)
EVENTS = {
    "pull_request.opened.json": "pull_request", "pull_request.synchronized.json": "pull_request",
    "pull_request.closed.json": "pull_request", "pull_request.closed.merged.json": "pull_request",
    "issue_comment.pull_request.json": "issue_comment",
    "pull_request_review.approved.json": "pull_request_approved",
    "pull_request_review.rejected.json": "pull_request_rejected",
    "pull_request_review.comment.json": "pull_request_comment",
}


def load(name: str) -> dict:
    return json.loads((GITEA / name).read_text())


def parse(event: str, payload: Any, *, allow_draft_prs: bool = False) -> Any:
    return parse_gitea(event, payload, bot_login=BOT, allow_draft_prs=allow_draft_prs, delivery_id="d-1")


def replay(name: str) -> Any:
    return parse(EVENTS[name], load(name))


# ---------------------------------------------------------------- every published payload


def test_every_fixture_has_an_expected_outcome() -> None:
    assert sorted(p.name for p in GITEA.glob("*.json")) == sorted(EVENTS)


def test_fixtures_are_the_published_bytes() -> None:
    """Each file's git blob hash is the one SOURCE.md gives for it: copies, never edited."""
    rows = (GITEA / "SOURCE.md").read_text().splitlines()
    for path in GITEA.glob("*.json"):
        data = path.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        row = next(line for line in rows if line.startswith(f"| `{path.name}`"))
        assert f"`{blob}`" in row, path.name


def test_opened_from_a_fork() -> None:
    event = replay("pull_request.opened.json")
    assert isinstance(event, PullRequestEvent) and (event.action, event.sender) == ("opened", "example2")
    pull = event.pull
    assert (pull.number, pull.author, pull.head_ref, pull.base_ref) == (2, "example2", "master", "master")
    assert pull.head_sha == "48e773f892a831faa47c0a160d1b7f0cd369ae2a"
    assert pull.base_sha == "67b56589a45103f891bdee7c0546e5d40bc02001"  # merge_base: where the diff starts
    assert pull.is_fork and pull.head_clone_url == "http://localhost:3000/example2/example.git"
    assert pull.repo.forge == "gitea" and pull.repo.id == "localhost:3000/example/example"
    assert pull.repo.clone_url == "http://localhost:3000/example/example.git"
    assert pull.repo.default_branch == "master"
    assert pull.url == "http://localhost:3000/example/example/pulls/2" and pull.ref == "#2"


def test_synchronized_is_an_update_and_same_repository_heads_clone_from_the_base() -> None:
    event = replay("pull_request.synchronized.json")
    assert isinstance(event, PullRequestEvent) and event.action == "updated"
    assert event.pull.head_sha == "788ed8d02d3b7fcfcf6386dbcbca696aa1d4dc25" and not event.pull.is_fork
    assert event.pull.head_clone_url == event.pull.repo.clone_url  # this capture's head carries no repo


def test_closed_and_merged() -> None:
    closed, merged = replay("pull_request.closed.json"), replay("pull_request.closed.merged.json")
    assert (closed.action, closed.pull.state, closed.pull.merge_sha) == ("closed", "closed", None)
    assert (merged.action, merged.pull.state) == ("merged", "merged")
    assert merged.pull.merge_sha == "f2440f050054df0f8ecabcace648f1683509064c"
    assert merged.pull.repo.id == "gitea.com/anbraten/test-repo"


def test_comment_on_a_pull_request() -> None:
    event = replay("issue_comment.pull_request.json")
    assert isinstance(event, CommentEvent)
    assert (event.pull_number, event.comment_id, event.body, event.author) == (2, "6", "example", "example")
    assert event.repo.id == "localhost:3000/example/example"


@pytest.mark.parametrize("name, state", [("pull_request_review.approved.json", "approved"),
                                         ("pull_request_review.rejected.json", "changes_requested"),
                                         ("pull_request_review.comment.json", "commented")])
def test_reviews_name_the_reviewer_and_the_head_they_saw(name: str, state: str) -> None:
    event = replay(name)
    payload = load(name)
    assert isinstance(event, ReviewEvent) and event.state == state
    assert event.reviewer == payload["sender"]["login"]
    assert event.commit_sha == payload["pull_request"]["head"]["sha"] == event.pull.head_sha


def test_an_approval_whose_type_contradicts_the_header_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="review.type"):
        parse("pull_request_approved", load("pull_request_review.rejected.json"))


# ---------------------------------------------------------------- drafts (work in progress)


@pytest.mark.parametrize("title, draft", [("WIP: bucket", True), ("[wip] bucket", True), ("Draft: x", True),
                                          ("(Draft) x", True), ("bucket WIP:", False), ("bucket", False)])
def test_work_in_progress_titles(title: str, draft: bool) -> None:
    assert is_draft_title(title) is draft


def test_a_work_in_progress_pull_request_is_ignored_unless_drafts_are_allowed() -> None:
    payload = load("pull_request.synchronized.json")
    payload["pull_request"]["title"] = "WIP: New Pull"
    assert parse("pull_request", payload) == Ignored("draft pull request")
    assert parse("pull_request", payload, allow_draft_prs=True).pull.is_draft


def test_newer_gitea_s_draft_flag_wins_over_the_title() -> None:
    payload = load("pull_request_review.rejected.json")  # a 2025 capture: it has `draft`
    payload["pull_request"]["draft"] = True
    assert parse("pull_request_rejected", payload).pull.is_draft
    payload["pull_request"].update(draft=False, title="WIP: a server with other prefixes")
    assert not parse("pull_request_rejected", payload).pull.is_draft


def test_an_edit_that_takes_the_prefix_off_is_an_update() -> None:
    payload = load("pull_request.opened.json")
    payload["action"] = "edited"
    payload["changes"] = {"title": {"from": "WIP: update"}}
    event = parse("pull_request", payload)
    assert isinstance(event, PullRequestEvent) and event.action == "updated"


@pytest.mark.parametrize("changes, title", [
    ({"title": {"from": "update, typo"}}, "update"),  # a plain rename
    ({"body": {"from": "old text"}}, "update"),  # the description
    ({"title": {"from": "WIP: update"}}, "[WIP] update"),  # still a work in progress
    (None, "update"),
])
def test_other_edits_are_ignored(changes: dict | None, title: str) -> None:
    payload = load("pull_request.opened.json")
    payload.update(action="edited", changes=changes)
    payload["pull_request"]["title"] = title
    assert isinstance(parse("pull_request", payload), Ignored)


# ---------------------------------------------------------------- ignored and malformed


@pytest.mark.parametrize("event, name, change, reason", [
    ("push", "pull_request.opened.json", {}, "event push not handled"),
    ("issues", "pull_request.opened.json", {}, "event issues not handled"),
    ("", "pull_request.opened.json", {}, "event (none) not handled"),
    ("pull_request", "pull_request.opened.json", {"action": "label_updated"},
     "pull_request action label_updated"),
    ("pull_request", "pull_request.opened.json", {"action": "assigned"}, "pull_request action assigned"),
    ("issue_comment", "issue_comment.pull_request.json", {"action": "edited"}, "issue_comment action edited"),
    ("issue_comment", "issue_comment.pull_request.json", {"action": "deleted"}, "issue_comment action deleted"),
    ("pull_request_approved", "pull_request_review.approved.json", {"action": "review_requested"},
     "pull_request_approved action review_requested"),
])
def test_ignored_deliveries_say_why(event: str, name: str, change: dict, reason: str) -> None:
    payload = {**load(name), **change}
    result = parse(event, payload)
    assert isinstance(result, Ignored) and reason in result.reason


def test_a_comment_on_an_issue_is_ignored() -> None:
    payload = load("issue_comment.pull_request.json")
    payload["is_pull"] = False
    payload["issue"]["pull_request"] = None
    assert parse("issue_comment", payload) == Ignored("comment on an issue, not a pull request")


def test_the_bot_s_own_comments_are_not_commands() -> None:
    payload = load("issue_comment.pull_request.json")
    payload["comment"]["user"]["login"] = "PlanKeeper-Bot"
    payload["comment"]["body"] = "/apply"
    assert parse("issue_comment", payload) == Ignored("comment by the bot itself")


@pytest.mark.parametrize("event, name, path, value, message", [
    ("pull_request", "pull_request.opened.json", ("pull_request", "head", "sha"), None,
     "pull_request.head.sha: missing"),
    ("pull_request", "pull_request.opened.json", ("pull_request", "number"), "2",
     "pull_request.number: expected an integer"),
    ("pull_request", "pull_request.opened.json", ("repository", "html_url"), "not a url",
     "repository.html_url: not a URL"),
    ("pull_request", "pull_request.opened.json", ("pull_request", "head", "repo_id"), "2",
     "pull_request.head.repo_id: expected an integer"),
    ("pull_request", "pull_request.closed.merged.json", ("pull_request", "merged"), "yes",
     "pull_request.merged: expected a boolean"),
    ("issue_comment", "issue_comment.pull_request.json", ("comment", "id"), "6",
     "comment.id: expected an integer"),
    ("issue_comment", "issue_comment.pull_request.json", ("comment", "user"), None, "comment.user: missing"),
    ("issue_comment", "issue_comment.pull_request.json", ("is_pull",), "true", "is_pull: expected a boolean"),
    ("pull_request_approved", "pull_request_review.approved.json", ("sender",), None, "sender: missing"),
    ("pull_request_approved", "pull_request_review.approved.json", ("review",), [], "review: expected an object"),
])
def test_malformed_payloads_name_the_field(event: str, name: str, path: tuple, value: Any, message: str) -> None:
    payload = load(name)
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(MalformedEvent, match=message.replace(".", r"\.")):
        parse(event, payload)


def test_a_payload_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="expected a JSON object"):
        parse("pull_request", [load("pull_request.opened.json")])


FIXTURE_CASES = [(EVENTS[p.name], load(p.name)) for p in sorted(GITEA.glob("*.json"))]
FIXTURE_PATHS = [paths(doc) for _, doc in FIXTURE_CASES]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_fixtures_raise_only_malformed(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(FIXTURE_CASES) - 1))
    name, original = FIXTURE_CASES[index]
    document = copy.deepcopy(original)
    for path in data.draw(st.lists(st.sampled_from(FIXTURE_PATHS[index]), min_size=1, max_size=6)):
        mutate(document, path, data.draw(JSON), data.draw(st.booleans()))
    parse_or_malformed(parse_gitea, name, document)


# ---------------------------------------------------------------- signatures and headers


def test_the_signature_is_the_bare_hex_hmac_of_the_body() -> None:
    body = b'{"action": "opened"}'
    signature = sign_gitea(SECRET, body)
    assert len(signature) == 64 and sign_github(SECRET, body) == f"sha256={signature}"
    assert verify_gitea(SECRET, body, signature) and verify_gitea(SECRET, body, signature.upper())
    assert not verify_gitea(SECRET, body + b" ", signature)
    assert not verify_gitea("other-secret", body, signature)
    for forged in ("", None, f"sha256={signature}", signature[:-1], "z" * 64):
        assert not verify_gitea(SECRET, body, forged)
    assert not verify_gitea("", body, sign_gitea("", body))


def _authenticate(headers: dict, body: bytes, secret: str | None = SECRET) -> str | None:
    return SOURCE.authenticate(GiteaSettings(url="https://gitea.example.com", token="t", webhook_secret=secret),
                               headers, body)


def test_deliveries_are_authenticated_by_either_vendor_s_signature() -> None:
    body = b"{}"
    assert _authenticate(gitea_headers("push", "push", body, SECRET), body) is None
    forgejo_only = {k: v for k, v in gitea_headers("push", "push", body, SECRET, forgejo=True).items()
                    if k.startswith("X-Forgejo")}
    assert _authenticate(forgejo_only, body) is None


@pytest.mark.parametrize("secret, signed_with, problem", [
    (SECRET, "wrong-secret", "missing or wrong X-Gitea-Signature"),
    (SECRET, None, "missing or wrong X-Gitea-Signature"),  # a webhook without a secret signs with ""
    (None, SECRET, "gitea.webhook_secret is not configured"),
])
def test_refused_signatures(secret: str | None, signed_with: str | None, problem: str) -> None:
    body = b"{}"
    answer = _authenticate(gitea_headers("pull_request", "pull_request", body, signed_with), body, secret)
    assert answer is not None and problem in answer


def test_a_github_signature_alone_does_not_authenticate_a_gitea_delivery() -> None:
    body = b"{}"
    headers = {"X-Gitea-Event": "pull_request", "X-Hub-Signature-256": sign_github(SECRET, body)}
    assert "X-Gitea-Signature" in str(_authenticate(headers, body))


def test_gitea_and_forgejo_deliveries_are_never_read_as_github_s() -> None:
    body = b"{}"
    gitea = gitea_headers("pull_request", "pull_request", body, SECRET, delivery="gitea-1")
    assert "X-GitHub-Event" in gitea and "X-Hub-Signature-256" in gitea  # Gitea sends both
    source = source_for(gitea)
    assert source is not None and source.forge == "gitea"
    assert (source.event_name(gitea), source.delivery_id(gitea)) == ("pull_request", "gitea-1")
    forgejo = {k: v for k, v in gitea_headers("issue_comment", "pull_request_comment", body, SECRET,
                                              delivery="fj-2", forgejo=True).items()
               if not k.startswith("X-Gitea")}
    source = source_for(forgejo)
    assert source is not None and source.forge == "gitea"
    assert (source.event_name(forgejo), source.delivery_id(forgejo)) == ("issue_comment", "fj-2")
    github = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "gh-3"}
    assert source_for(github).forge == "github"  # type: ignore[union-attr]


# ---------------------------------------------------------------- through the receiver


@pytest.fixture
def client(redis_db):
    settings = Settings(redis_url=f"unix://{redis_db.socket_file}",
                        github=GitHubSettings(token="ghp-x", webhook_secret=SECRET),
                        gitea=GiteaSettings(url="http://localhost:3000", token="gitea-token",
                                            webhook_secret=SECRET, bot_login=BOT))
    app = create_app(settings)
    app.testing = True
    return app.test_client()


def _post(client, body: bytes, headers: dict):
    return client.post("/events", data=body, headers=headers)


def test_the_receiver_queues_a_signed_delivery_and_refuses_a_forged_one(client) -> None:
    body = json.dumps(load("pull_request.opened.json"), indent=2).encode()
    answer = _post(client, body, gitea_headers("pull_request", "pull_request", body, SECRET))
    assert answer.status_code == 202, answer.get_json()
    forged = gitea_headers("pull_request", "pull_request", body, "guessed-secret")
    forged["X-Hub-Signature-256"] = sign_github(SECRET, body)  # even with GitHub's signature right
    answer = _post(client, body, forged)
    assert answer.status_code == 401 and "X-Gitea-Signature" in answer.get_json()["error"]
    unsigned = {k: v for k, v in forged.items() if "Signature" not in k}
    assert _post(client, body, unsigned).status_code == 401


def test_the_receiver_deduplicates_by_the_gitea_delivery_id(client) -> None:
    body = json.dumps(load("issue_comment.pull_request.json")).encode()
    headers = gitea_headers("issue_comment", "pull_request_comment", body, SECRET, delivery="same-uuid")
    assert _post(client, body, headers).status_code == 202
    again = _post(client, body, headers)
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"


def test_the_receiver_ignores_the_bot_s_own_comment_and_names_a_bad_field(client) -> None:
    payload = load("issue_comment.pull_request.json")
    payload["comment"]["user"]["login"] = BOT
    body = json.dumps(payload).encode()
    answer = _post(client, body, gitea_headers("issue_comment", "pull_request_comment", body, SECRET))
    assert answer.status_code == 200 and answer.get_json()["reason"] == "comment by the bot itself"
    del payload["repository"]
    payload["comment"]["user"]["login"] = "alice"
    body = json.dumps(payload).encode()
    answer = _post(client, body, gitea_headers("issue_comment", "pull_request_comment", body, SECRET))
    assert answer.status_code == 400 and answer.get_json()["error"] == "repository: missing"
