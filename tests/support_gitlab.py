"""GitLab webhook deliveries for end-to-end tests: the published payloads in
tests/fixtures/gitlab, deep-copied and pointed at a FakeGitLab project and merge request,
posted to a real `plankeeper serve` with GitLab's headers."""
from __future__ import annotations

import copy
import json
import uuid
from typing import Optional

import requests

from tests.support import Server, fixture

MR_HOOK = "Merge Request Hook"
NOTE_HOOK = "Note Hook"
_MR_FIXTURES = {"open": "merge_request.open", "reopen": "merge_request.reopen",
                "update": "merge_request.update", "merge": "merge_request.merge",
                "close": "merge_request.close", "approved": "merge_request.approved"}
_MR_STATE = {"open": "opened", "reopen": "opened", "update": "opened", "approved": "opened",
             "merge": "merged", "close": "closed"}


def deliver_gitlab(server: Server, event_name: str, payload: dict, token: Optional[str],
                   event_uuid: Optional[str] = None) -> requests.Response:
    """POST a delivery as GitLab sends it: X-Gitlab-Event, X-Gitlab-Token (unless None),
    X-Gitlab-Event-UUID (a fresh one unless given)."""
    headers = {"X-Gitlab-Event": event_name, "X-Gitlab-Event-UUID": event_uuid or str(uuid.uuid4()),
               "Content-Type": "application/json"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return requests.post(f"{server.url}/events", data=json.dumps(payload).encode(), headers=headers,
                         timeout=10)


def gitlab_mr_payload(action: str, fake, project: str, iid: int, user: str = "alice",
                      oldrev: Optional[str] = None, changes: Optional[dict] = None) -> dict:
    """A Merge Request Hook with object_attributes.action = action, for the fake's MR as it is now.

    `oldrev` marks an update that pushed commits (GitLab sends it only then); `changes`
    replaces the payload's changes block (e.g. {"labels": ...} for a label-only update).
    """
    payload = copy.deepcopy(fixture("gitlab", _MR_FIXTURES[action]))
    mr = fake.mr(project, iid)
    target = fake.project(project)
    source = fake.project(mr["source_project_id"])
    payload["object_kind"] = "merge_request"
    payload["user"]["username"] = user
    payload["project"] = _hook_project(payload["project"], target)
    attrs = payload["object_attributes"]
    attrs.update(
        id=mr["id"], iid=iid, title=mr["title"], source_branch=mr["source_branch"],
        target_branch=mr["target_branch"], source_project_id=mr["source_project_id"],
        target_project_id=mr["target_project_id"], state=_MR_STATE[action], action=action,
        draft=mr["draft"], work_in_progress=mr["draft"], url=mr["web_url"],
        merge_commit_sha=mr["merge_commit_sha"] if action == "merge" else None,
        source=_hook_project(attrs.get("source") or {}, source),
        target=_hook_project(attrs.get("target") or {}, target),
    )
    attrs["last_commit"]["id"] = mr["sha"]
    attrs.pop("oldrev", None)
    if oldrev:
        attrs["oldrev"] = oldrev
    if changes is not None:
        payload["changes"] = changes
    return payload


def gitlab_note_payload(fake, project: str, iid: int, body: str, user: str = "alice") -> dict:
    """A Note Hook for a new note by `user` on the MR; the note is created in the fake too."""
    payload = copy.deepcopy(fixture("gitlab", "note.merge_request"))
    mr = fake.mr(project, iid)
    target = fake.project(project)
    note_id = fake.add_note(project, iid, body, user)
    payload["user"]["username"] = user
    payload["project_id"] = target["id"]
    payload["project"] = _hook_project(payload["project"], target)
    payload["object_attributes"].update(id=note_id, note=body, noteable_type="MergeRequest",
                                        noteable_id=mr["id"], project_id=target["id"], system=False,
                                        action="create", url=f"{mr['web_url']}#note_{note_id}")
    payload["merge_request"].update(
        id=mr["id"], iid=iid, title=mr["title"], source_branch=mr["source_branch"],
        target_branch=mr["target_branch"], source_project_id=mr["source_project_id"],
        target_project_id=mr["target_project_id"], state=mr["state"])
    payload["merge_request"]["last_commit"]["id"] = mr["sha"]
    return payload


def _hook_project(hook: dict, api: dict) -> dict:
    """A webhook `project` block (git_http_url, ...) from the API's project (http_url_to_repo)."""
    clone_url = api["http_url_to_repo"]
    out = dict(hook)
    out.update(id=api["id"], name=api["name"], web_url=api["web_url"], homepage=api["web_url"],
               path_with_namespace=api["path_with_namespace"], default_branch=api["default_branch"],
               git_http_url=clone_url, http_url=clone_url, url=clone_url,
               git_ssh_url=api["ssh_url_to_repo"], ssh_url=api["ssh_url_to_repo"],
               namespace=api["namespace"]["name"])
    return out
