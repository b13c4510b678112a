"""Gitea webhook deliveries for tests: the published payloads in tests/fixtures/gitea, deep-copied,
their keys kept, with the fake's own `pull_request`, `issue`, `comment`, `repository` and `sender`
objects put in (a webhook carries the REST API's objects), and the headers Gitea's
addDefaultHeaders sends (Gitea's, Gogs', GitHub's; Forgejo's too when asked)."""
from __future__ import annotations

import uuid
from typing import Any

from bot.signatures import sign_gitea
from tests.fakes import gitea_json as shapes
from tests.fakes.gitea import FakeGitea

_PR_FIXTURES = {"opened": "pull_request.opened", "reopened": "pull_request.opened",
                "edited": "pull_request.opened", "synchronized": "pull_request.synchronized",
                "closed": "pull_request.closed"}
# review kind -> (fixture, X-Gitea-Event, X-Gitea-Event-Type, the API's review state)
REVIEWS = {
    "approved": ("pull_request_review.approved", "pull_request_approved", "pull_request_review_approved",
                 "APPROVED"),
    "rejected": ("pull_request_review.rejected", "pull_request_rejected", "pull_request_review_rejected",
                 "REQUEST_CHANGES"),
    "comment": ("pull_request_review.comment", "pull_request_comment", "pull_request_review_comment", "COMMENT"),
}


def gitea_headers(event: str, event_type: str, body: bytes, secret: str | None, *, delivery: str = "",
                  forgejo: bool = False) -> dict[str, str]:
    """Every header a Gitea (or, with forgejo, a Forgejo) delivery carries; an empty signature
    when the webhook has no secret, as Gitea sends it."""
    delivery = delivery or str(uuid.uuid4())
    signature = sign_gitea(secret, body) if secret else ""
    headers = {"Content-Type": "application/json"}
    for vendor in (["Forgejo"] if forgejo else []) + ["Gitea", "Gogs"]:
        headers.update({f"X-{vendor}-Delivery": delivery, f"X-{vendor}-Event": event,
                        f"X-{vendor}-Event-Type": event_type, f"X-{vendor}-Signature": signature})
    headers.update({"X-Hub-Signature": "sha1=", "X-Hub-Signature-256": f"sha256={signature}",
                    "X-GitHub-Delivery": delivery, "X-GitHub-Event": event, "X-GitHub-Event-Type": event_type})
    return headers


def pr_payload(fake: FakeGitea, full_name: str, number: int, action: str, sender: str = "alice",
               changes: dict | None = None) -> dict:
    """A `pull_request` delivery (`action`: opened, reopened, edited, synchronized, closed) for the
    fake's pull request as it is now; `changes` for an edit ({"title": {"from": ...}})."""
    pull = fake.pull(full_name, number)
    name = "pull_request.closed.merged" if action == "closed" and pull["merged"] else _PR_FIXTURES[action]
    payload = shapes.template(name)
    _point(payload, fake, full_name, sender)
    payload.update(action=action, number=number, pull_request=_pull(fake, full_name, number))
    if changes is not None:
        payload["changes"] = changes
    return payload


def pr_event_type(action: str) -> str:
    return "pull_request_sync" if action == "synchronized" else "pull_request"


def comment_payload(fake: FakeGitea, full_name: str, number: int, body: str, author: str) -> dict:
    """An `issue_comment` delivery for a new comment by author; the comment is made in the fake."""
    comment_id = fake.add_comment(full_name, number, body, author)
    owner, _, name = full_name.partition("/")
    payload = shapes.template("issue_comment.pull_request")
    _point(payload, fake, full_name, author)
    payload.update(action="created", is_pull=number in fake.repo(full_name).pulls,
                   issue=fake._issue_json(owner, name, number),
                   comment=fake._comment_json(owner, name, comment_id))
    return payload


def review_payload(fake: FakeGitea, full_name: str, number: int, reviewer: str, kind: str = "approved",
                   commit_id: str | None = None) -> dict:
    """A review delivery (`kind`: approved, rejected, comment); the review is made in the fake."""
    fixture, _, event_type, state = REVIEWS[kind]
    fake.review(full_name, number, reviewer, state, commit_id=commit_id)
    payload = shapes.template(fixture)
    _point(payload, fake, full_name, reviewer)
    payload.update(action="reviewed", number=number, pull_request=_pull(fake, full_name, number))
    payload["review"] = {"type": event_type, "content": ""}
    return payload


def _pull(fake: FakeGitea, full_name: str, number: int) -> dict:
    owner, _, name = full_name.partition("/")
    return fake._pull_json(owner, name, number)


def _point(payload: dict[str, Any], fake: FakeGitea, full_name: str, sender: str) -> None:
    payload["repository"] = fake.repo(full_name).data
    payload["sender"] = fake.user(sender)
