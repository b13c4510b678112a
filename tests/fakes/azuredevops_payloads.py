"""Service hook notifications as Azure DevOps would POST them about FakeAzureDevOps' live state,
built from the published samples in tests/fixtures/azuredevops (their keys and their order kept;
a fresh notification `id`, the message, the pull request or comment as the fake has it now).

Message texts: "created a new pull request", "has created a pull request merge commit", "marked
the pull request as completed" and "has edited a pull request comment" are the samples';
"updated the source branch of pull request N (title)", "approved pull request N (title)" and
"has commented on a pull request" are as real deliveries word them (no Microsoft sample)."""
from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

from tests.fakes.azuredevops import FakeAzureDevOps
from tests.fakes.azuredevops_routes import fixture, now_iso, public

CREATED, UPDATED, MERGED = "git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged"
COMMENTED = "ms.vss-code.git-pullrequest-comment-event"
_SAMPLES = {name: fixture(f"{name}.json") for name in (CREATED, UPDATED, MERGED, COMMENTED)}


def pull_request_event(fake: FakeAzureDevOps, event_type: str, project: str, repo: str, number: int,
                       message: str) -> dict:
    """A git.pullrequest.* notification; `message` follows the actor's display name."""
    payload = _envelope(fake, event_type, message)
    payload["resource"] = _as_sample(_SAMPLES[event_type]["resource"], _pull(fake, project, repo, number))
    return payload


def comment_event(fake: FakeAzureDevOps, project: str, repo: str, number: int, comment: dict,
                  message: str = "has commented on a pull request") -> dict:
    payload = _envelope(fake, COMMENTED, message)
    sample = _SAMPLES[COMMENTED]["resource"]
    payload["resource"] = {"comment": _as_sample(sample["comment"], copy.deepcopy(comment)),
                           "pullRequest": _as_sample(sample["pullRequest"], _pull(fake, project, repo, number))}
    payload["message"] = {k: f"{comment['author']['displayName']} {message}" for k in payload["message"]}
    return payload


def approval_text(pr: dict) -> str:
    return f"approved pull request {pr['pullRequestId']} ({pr['title']})"


def push_text(pr: dict) -> str:
    return f"updated the source branch of pull request {pr['pullRequestId']} ({pr['title']})"


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def delivery_headers(username: str, password: str) -> dict[str, str]:
    """What a Web Hooks subscription with basic authentication sends along (no event header)."""
    return {"Authorization": basic_auth(username, password), "Content-Type": "application/json; charset=utf-8"}


def as_body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def _envelope(fake: FakeAzureDevOps, event_type: str, message: str) -> dict:
    payload = copy.deepcopy(_SAMPLES[event_type])
    payload["id"] = str(uuid.uuid4())
    for key in ("message", "detailedMessage"):
        payload[key] = {kind: message for kind in payload[key]}
    base = fake.org_url + "/"
    payload["resourceContainers"] = {name: {"id": container["id"], "baseUrl": base}
                                     for name, container in payload["resourceContainers"].items()}
    payload["createdDate"] = now_iso()
    return payload


def _pull(fake: FakeAzureDevOps, project: str, repo: str, number: int) -> dict:
    pr = public(fake.pull(project, repo, number))
    web = f"{fake.org_url}/{project}/_git/{repo}/pullrequest/{number}"
    pr["_links"] = {"web": {"href": web}, "statuses": {"href": f"{pr['url']}/statuses"}}
    pr["commits"] = [pr["lastMergeCommit"]]
    return pr


def _as_sample(sample: dict, live: dict[str, Any]) -> dict:
    """The live object's values under the sample's keys, in the sample's order (keys the sample
    lacks, e.g. isDraft, after them); sample keys the live object has no value for are dropped."""
    ordered = {key: live[key] for key in sample if key in live}
    ordered.update({key: value for key, value in live.items() if key not in ordered})
    return ordered
