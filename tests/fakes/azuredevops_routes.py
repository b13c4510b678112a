"""The git REST handlers of FakeAzureDevOps (tests/fakes/azuredevops.py), one per (location id,
method), and Azure DevOps' wire helpers: {"count", "value"} collections, $top/$skip paging,
errors. The organization's other services are in tests/fakes/azuredevops_org_routes.py."""
from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Response

from tests.fakes.azuredevops_git import branch_sha
from tests.fakes.azuredevops_locations import RESOURCE_AREAS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "azuredevops"
MERGE_STRATEGIES = ("noFastForward", "squash", "rebase", "rebaseMerge")
Handler = Callable[[dict, dict, Any], Response]


class Abort(Exception):
    """Answer with this status and Azure DevOps' error body."""

    def __init__(self, status: int, message: str, type_key: str = "InvalidArgumentValueException"):
        super().__init__(message)
        self.status, self.message, self.type_key = status, message, type_key


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


CREATED = fixture("git.pullrequest.created.json")
COMMENTED = fixture("ms.vss-code.git-pullrequest-comment-event.json")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def public(obj: dict) -> dict:
    """An object as the API shows it: the fake's own bookkeeping keys ("_...") left out."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_") or k == "_links"}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def collection(items: list) -> Response:
    return json_response({"count": len(items), "value": items})


def page(items: list, query: dict, default_top: int = 100) -> list:
    top, skip = int(query.get("$top", default_top)), int(query.get("$skip", 0))
    return items[skip:skip + top]


class AzureDevOpsRoutes:
    """Mixin: the API over FakeAzureDevOps' state."""

    # provided by FakeAzureDevOps
    bot: dict
    org_url: str
    vssps_url: str
    _users: dict
    _groups: dict
    _projects: dict
    _work_items: dict
    _repos: dict
    _repo: Callable[..., Any]
    add_pull: Callable[..., dict]
    _organization_handlers: Callable[[], dict[tuple[str, str], Handler]]
    pull: Callable[..., dict]
    identity_ref: Callable[..., dict]
    user: Callable[..., dict]

    def _handlers(self) -> dict[tuple[str, str], Handler]:
        return {
            ("e81700f7-3be2-46de-8624-2eb35882fcaa", "GET"): self._resource_areas,
            ("00d9565f-ed9c-4a06-9a50-00e7896ccab4", "GET"): self._connection_data,
            ("9946fd70-0d40-406e-b686-b4744cbbcc37", "GET"): self._get_pulls,
            ("9946fd70-0d40-406e-b686-b4744cbbcc37", "POST"): self._create_pull,
            ("9946fd70-0d40-406e-b686-b4744cbbcc37", "PATCH"): self._update_pull,
            ("d43911ee-6958-46b0-a42b-8445b8a0d004", "GET"): self._iterations,
            ("4216bdcf-b6b1-4d59-8b82-c34cc183fc8b", "GET"): self._iteration_changes,
            ("ab6e2e5d-a0b7-4153-b64a-a4efe0d49449", "GET"): self._get_threads,
            ("ab6e2e5d-a0b7-4153-b64a-a4efe0d49449", "POST"): self._create_thread,
            ("ab6e2e5d-a0b7-4153-b64a-a4efe0d49449", "PATCH"): self._update_thread,
            ("965a3ec7-5ed8-455a-bdcb-835a5ea7fe7b", "GET"): self._get_comment,
            ("965a3ec7-5ed8-455a-bdcb-835a5ea7fe7b", "PATCH"): self._edit_comment,
            ("5f2e2851-1389-425b-a00b-fb2adb3ef31b", "POST"): self._like,
            ("b5f6bb4f-8d1e-4d79-8d11-4c9172c99c35", "GET"): self._get_pull_statuses,
            ("b5f6bb4f-8d1e-4d79-8d11-4c9172c99c35", "POST"): self._create_pull_status,
            ("4b6702c7-aa35-4b89-9c96-b9abf6d3e540", "GET"): self._reviewers,
            ("225f7195-f9c7-4d14-ab28-a83f7ff77e1f", "GET"): self._repository,
            ("428dd4fb-fda5-4722-af02-9313b80305da", "GET"): self._get_commit_statuses,
            ("428dd4fb-fda5-4722-af02-9313b80305da", "POST"): self._create_commit_status,
            **self._organization_handlers(),
        }

    # ---- location service --------------------------------------------------------------
    def _resource_areas(self, route: dict, query: dict, body: Any) -> Response:
        urls = {"org": self.org_url + "/", "vssps": self.vssps_url + "/"}
        return collection([{"id": area_id, "name": name, "locationUrl": urls[host]}
                           for area_id, (name, host) in RESOURCE_AREAS.items()])

    def _connection_data(self, route: dict, query: dict, body: Any) -> Response:
        return json_response({"authenticatedUser": self.bot, "authorizedUser": self.bot,
                              "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.org_url)),
                              "deploymentId": str(uuid.uuid5(uuid.NAMESPACE_URL, "deployment")),
                              "deploymentType": "hosted",
                              "locationServiceData": {"defaultAccessMappingMoniker": "PublicAccessMapping",
                                                      "lastChangeId": 1, "lastChangeId64": 1}})

    # ---- pull requests -------------------------------------------------------------------
    def _get_pulls(self, route: dict, query: dict, body: Any) -> Response:
        repo = self._repo(route["project"], route["repositoryId"])
        if "pullRequestId" in route:
            return json_response(public(self._pull_of(repo, route)))
        status = query.get("searchCriteria.status", "active")
        listed = [p for p in sorted(repo.pulls.values(), key=lambda p: -p["pullRequestId"])
                  if status == "all" or p["status"] == status]
        return collection([public(p) for p in page(listed, query, 101)])

    def _create_pull(self, route: dict, query: dict, body: Any) -> Response:
        repo = self._repo(route["project"], route["repositoryId"])
        number = max(repo.pulls, default=0) + 1
        source = body["sourceRefName"].removeprefix("refs/heads/")
        head = branch_sha(repo.bare, body["sourceRefName"]) if repo.bare else ""
        if not head:
            raise Abort(400, f"TF401398: The pull request cannot be activated because the source and/or the "
                             f"target branch no longer exists, or the requested refs are not branches: {source}")
        pr = self.add_pull(route["project"], route["repositoryId"], number, head, source,
                           body["targetRefName"].removeprefix("refs/heads/"), self.bot["properties"]["Account"]["$value"],
                           files=[], title=body.get("title", ""))
        pr.update(description=body.get("description", ""), completionOptions=body.get("completionOptions"))
        return json_response(public(pr), 201)

    def _update_pull(self, route: dict, query: dict, body: Any) -> Response:
        repo = self._repo(route["project"], route["repositoryId"])
        pr = self._pull_of(repo, route)
        if body.get("status") == "completed":
            self._complete(pr, body)
        else:
            pr.update({k: v for k, v in body.items() if k in ("title", "description", "isDraft", "status")})
        return json_response(public(pr))

    def _complete(self, pr: dict, body: dict) -> None:
        if pr["status"] != "active":
            raise Abort(409, f"TF401181: The pull request cannot be edited because it is {pr['status']}.")
        wanted = (body.get("lastMergeSourceCommit") or {}).get("commitId")
        if wanted != pr["lastMergeSourceCommit"]["commitId"]:
            raise Abort(409, "TF401192: The source branch of the pull request was updated; the last merge "
                             "source commit given does not match it.", "GitPullRequestStaleException")
        options = body.get("completionOptions") or {}
        if options.get("mergeStrategy", "noFastForward") not in MERGE_STRATEGIES:
            raise Abort(400, f"Invalid merge strategy {options.get('mergeStrategy')!r}")
        if pr["mergeStatus"] != "succeeded" or any(p["status"] not in ("approved", "notApplicable")
                                                   and p["configuration"]["isBlocking"] for p in pr["_policies"]):
            raise Abort(409, "TF401027: The pull request cannot be completed: its merge or its policies fail.")
        pr.update(status="completed", closedDate=now_iso(), completionOptions=options,
                  closedBy=self.identity_ref(self.bot["properties"]["Account"]["$value"]))
        pr["_completion"] = options

    def _pull_of(self, repo: Any, route: dict) -> dict:
        number = int(route["pullRequestId"])
        if number not in repo.pulls:
            raise Abort(404, "TF401180: The requested pull request was not found.", "GitPullRequestNotFoundException")
        return repo.pulls[number]

    def _pr(self, route: dict) -> dict:
        return self._pull_of(self._repo(route["project"], route["repositoryId"]), route)

    def _iterations(self, route: dict, query: dict, body: Any) -> Response:
        iterations = [public(i) for i in self._pr(route)["_iterations"]]
        if "iterationId" in route:
            return json_response(_only(i for i in iterations if i["id"] == int(route["iterationId"])))
        return collection(iterations)

    def _iteration_changes(self, route: dict, query: dict, body: Any) -> Response:
        iteration = _only(i for i in self._pr(route)["_iterations"] if i["id"] == int(route["iterationId"]))
        top, skip = int(query.get("$top", 100)), int(query.get("$skip", 0))
        changes = iteration["_changes"]
        more = skip + top < len(changes)
        return json_response({"changeEntries": changes[skip:skip + top],
                              "nextSkip": skip + top if more else 0, "nextTop": top if more else 0})

    def _reviewers(self, route: dict, query: dict, body: Any) -> Response:
        return collection(copy.deepcopy(self._pr(route)["reviewers"]))

    # ---- threads and comments ------------------------------------------------------------
    def _new_thread(self, project: str, repo: str, number: int, content: str, author: str) -> dict:
        pr = self.pull(project, repo, number)
        thread_id = max((t["id"] for t in pr["_threads"]), default=0) + 1
        thread = {"id": thread_id, "publishedDate": now_iso(), "lastUpdatedDate": now_iso(), "comments": [],
                  "threadContext": None, "properties": {}, "identities": None, "isDeleted": False,
                  "_links": {"self": {"href": f"{pr['url']}/threads/{thread_id}"}}}
        pr["_threads"].append(thread)
        thread["comments"].append(self._new_comment(pr, thread, content, author))
        return thread

    def _new_comment(self, pr: dict, thread: dict, content: str, author: str) -> dict:
        comment = copy.deepcopy(COMMENTED["resource"]["comment"])
        comment_id = len(thread["comments"]) + 1
        threads = f"{pr['url']}/threads/{thread['id']}"
        comment.update(id=comment_id, parentCommentId=0 if comment_id == 1 else 1, author=self.identity_ref(author),
                       content=content, publishedDate=now_iso(), lastUpdatedDate=now_iso(),
                       lastContentUpdatedDate=now_iso(), commentType="text", usersLiked=[], isDeleted=False,
                       _links={"self": {"href": f"{threads}/comments/{comment_id}"},
                               "repository": {"href": pr["repository"]["url"]}, "threads": {"href": threads}})
        comment["lastContentUpdatedDate"] = comment["publishedDate"]
        return comment

    def _thread(self, route: dict) -> dict:
        pr = self._pr(route)
        return _only(t for t in pr["_threads"] if t["id"] == int(route["threadId"]))

    def _get_threads(self, route: dict, query: dict, body: Any) -> Response:
        if "threadId" in route:
            return json_response(public(self._thread(route)))
        return collection([public(t) for t in self._pr(route)["_threads"]])

    def _create_thread(self, route: dict, query: dict, body: Any) -> Response:
        comments = body.get("comments") or []
        if len(comments) != 1 or not comments[0].get("content"):
            raise Abort(400, "A new thread needs exactly one comment with content.")
        thread = self._new_thread(route["project"], route["repositoryId"], int(route["pullRequestId"]),
                                  comments[0]["content"], self.bot["properties"]["Account"]["$value"])
        if body.get("status"):
            thread["status"] = body["status"]
        return json_response(public(thread))

    def _update_thread(self, route: dict, query: dict, body: Any) -> Response:
        thread = self._thread(route)
        if body.get("status") not in (None, "active", "fixed", "wontFix", "closed", "byDesign", "pending"):
            raise Abort(400, f"Invalid thread status {body.get('status')!r}")
        thread.update({k: v for k, v in body.items() if k == "status"}, lastUpdatedDate=now_iso())
        return json_response(public(thread))

    def _comment(self, route: dict) -> dict:
        return _only(c for c in self._thread(route)["comments"] if c["id"] == int(route["commentId"]))

    def _get_comment(self, route: dict, query: dict, body: Any) -> Response:
        return json_response(self._comment(route))

    def _edit_comment(self, route: dict, query: dict, body: Any) -> Response:
        comment = self._comment(route)
        if comment["author"]["id"] != self.bot["id"]:
            raise Abort(403, "TF401181: Only the author of a comment may edit it.", "UnauthorizedAccessException")
        comment.update(content=body["content"], lastUpdatedDate=now_iso(), lastContentUpdatedDate=now_iso())
        return json_response(comment)

    def _like(self, route: dict, query: dict, body: Any) -> Response:
        liked = self._comment(route)["usersLiked"]
        if not any(u["id"] == self.bot["id"] for u in liked):
            liked.append(self.identity_ref(self.bot["properties"]["Account"]["$value"]))
        return Response("", 204)

    # ---- statuses ------------------------------------------------------------------------
    def _status(self, body: dict, status_id: int) -> dict:
        context = body.get("context") or {}
        if not context.get("name") or body.get("state") not in ("pending", "succeeded", "failed", "error",
                                                                 "notApplicable", "notSet"):
            raise Abort(400, "A status needs a context name and a valid state.")
        return {"id": status_id, "state": body["state"], "description": body.get("description", ""),
                "context": {"name": context["name"], "genre": context.get("genre")},
                "creationDate": now_iso(), "updatedDate": now_iso(),
                "createdBy": self.identity_ref(self.bot["properties"]["Account"]["$value"]),
                "targetUrl": body.get("targetUrl")}

    def _create_pull_status(self, route: dict, query: dict, body: Any) -> Response:
        pr = self._pr(route)
        status = self._status(body, len(pr["_statuses"]) + 1)
        iteration = body.get("iterationId")
        if iteration is not None and iteration not in {i["id"] for i in pr["_iterations"]}:
            raise Abort(400, f"The iteration {iteration} does not exist in pull request {pr['pullRequestId']}.")
        status["iterationId"] = iteration
        pr["_statuses"].append(status)
        return json_response(status)

    def _get_pull_statuses(self, route: dict, query: dict, body: Any) -> Response:
        return collection(copy.deepcopy(self._pr(route)["_statuses"]))

    def _create_commit_status(self, route: dict, query: dict, body: Any) -> Response:
        repo = self._repo(route["project"], route["repositoryId"])
        history = repo.statuses.setdefault(route["commitId"], [])
        status = self._status(body, sum(len(h) for h in repo.statuses.values()) + 1)
        history.append(status)
        return json_response(status, 201)

    def _get_commit_statuses(self, route: dict, query: dict, body: Any) -> Response:
        repo = self._repo(route["project"], route["repositoryId"])
        newest_first = list(reversed(repo.statuses.get(route["commitId"], [])))
        if query.get("latestOnly", "").lower() == "true":
            seen, latest = set(), []
            for status in newest_first:
                key = (status["context"]["genre"], status["context"]["name"])
                if key not in seen:
                    seen.add(key)
                    latest.append(status)
            newest_first = latest
        top, skip = int(query.get("top", 1000)), int(query.get("skip", 0))
        return collection(copy.deepcopy(newest_first[skip:skip + top]))

    def _repository(self, route: dict, query: dict, body: Any) -> Response:
        return json_response(copy.deepcopy(self._repo(route["project"], route["repositoryId"]).data))


def _only(items: Any) -> Any:
    found = list(items)
    if len(found) != 1:
        raise Abort(404, "The requested resource was not found.", "NotFound")
    return found[0]
