"""Bitbucket webhook deliveries built from the published payloads in tests/fixtures/bitbucket: the
fixture named for the event key, deep-copied, with its entities (pull request, repository, actor,
approval, comment) replaced by the fake server's current ones, so that what a delivery says
agrees with what the fake's REST API answers. Headers as Bitbucket sends them (SOURCE.md)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from bot.signatures import sign_github
from tests.fakes.bitbucket_common import fixture, now_iso

CLOUD_FIXTURES = {
    "pullrequest:created": "pullrequest.created",
    "pullrequest:updated": "pullrequest.updated",
    "pullrequest:fulfilled": "pullrequest.fulfilled",
    "pullrequest:rejected": "pullrequest.rejected",
    "pullrequest:approved": "pullrequest.approved",
    "pullrequest:unapproved": "pullrequest.approved",  # the same shape (SOURCE.md)
    "pullrequest:comment_created": "pullrequest.comment_created",
}
DC_FIXTURES = {
    "pr:opened": "dc.pr.opened",
    "pr:from_ref_updated": "dc.pr.from_ref_updated",
    "pr:merged": "dc.pr.merged",
    "pr:declined": "dc.pr.declined",
    "pr:reviewer:approved": "dc.pr.reviewer.approved",
    "pr:comment:added": "dc.pr.comment.added",
}


def cloud_payload(fake: Any, event_key: str, full_name: str, number: int, actor: str,
                  comment_id: int | None = None) -> dict:
    """A Bitbucket Cloud delivery for the fake's pull request as it is now, sent by `actor` (a name)."""
    payload = fixture(CLOUD_FIXTURES[event_key])
    shape = payload["repository"]
    repository = fake.repository(full_name)
    payload["repository"] = {k: repository[k] for k in shape if k in repository}
    payload["repository"]["links"] = {k: repository["links"][k] for k in ("self", "html", "avatar")}
    payload["pullrequest"] = fake.pull_json(full_name, number)
    payload["actor"] = fake.user(actor)
    if "approval" in payload:
        payload["approval"] = {"date": now_iso(), "user": fake.user(actor)}
    if "comment" in payload:
        payload["comment"] = fake.comment_json(full_name, number, comment_id)
    return payload


def cloud_headers(event_key: str, body: bytes, secret: str | None, request_uuid: str = "") -> dict[str, str]:
    headers = {"X-Event-Key": event_key, "X-Request-UUID": request_uuid or str(uuid.uuid4()),
               "X-Hook-UUID": "0302255c-f4f0-4232-916b-bef521fbdd08", "X-Attempt-Number": "1",
               "User-Agent": "Bitbucket-Webhooks/2.0", "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature"] = sign_github(secret, body)
    return headers


def dc_payload(fake: Any, event_key: str, full_name: str, number: int, actor: str,
               comment_id: int | None = None, previous_head: str = "") -> dict:
    """A Bitbucket Data Center delivery for the fake's pull request as it is now, sent by `actor`."""
    payload = fixture(DC_FIXTURES[event_key])
    payload["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")
    payload["actor"] = fake.user(actor)
    payload["pullRequest"] = fake.pull_json(full_name, number)
    if "participant" in payload:
        payload["participant"] = fake.participant_json(full_name, number, actor)
    if "comment" in payload:
        payload["comment"] = fake.comment_json(full_name, number, comment_id)
        payload.pop("commentParentId", None)
    if "previousFromHash" in payload:
        payload["previousFromHash"] = previous_head
    return payload


def dc_headers(event_key: str, body: bytes, secret: str | None, request_id: str = "") -> dict[str, str]:
    headers = {"X-Event-Key": event_key, "X-Request-Id": request_id or str(uuid.uuid4()),
               "Content-Type": "application/json; charset=utf-8"}
    if secret is not None:
        headers["X-Hub-Signature"] = sign_github(secret, body)
    return headers


def encode(payload: dict) -> bytes:
    return json.dumps(payload).encode()
