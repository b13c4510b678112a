"""FakeAzureDevOps' organization services besides git: work items, security (access control
lists), identities, teams and branch policy evaluations."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from flask import Response

from tests.fakes.azuredevops_routes import (
    Abort,
    Handler,
    collection,
    json_response,
    now_iso,
    page,
    public,
)

GIT_REPOSITORIES_NAMESPACE = "2e9eb7ed-3c0a-47d4-87c1-0ffdd275fd87"
WORK_ITEM_TYPES = ("Issue", "Bug", "Task")
BASIC_STATES = (("To Do", "Proposed"), ("Doing", "InProgress"), ("Done", "Completed"))  # the Basic process


class OrganizationRoutes:
    """Mixin: the services' routes over FakeAzureDevOps' state."""

    # provided by FakeAzureDevOps
    bot: dict
    org_url: str
    _users: dict
    _groups: dict
    _projects: dict
    _work_items: dict
    _repos: dict
    _repo: Callable[..., Any]
    identity_ref: Callable[..., dict]

    def _organization_handlers(self) -> dict[tuple[str, str], Handler]:
        return {
            ("62d3d110-0047-428c-ad3c-4fe872c91c74", "POST"): self._create_work_item,
            ("72c7ddf8-2cdc-4f60-90cd-ab71c14a399b", "GET"): self._get_work_items,
            ("72c7ddf8-2cdc-4f60-90cd-ab71c14a399b", "PATCH"): self._update_work_item,
            ("7c9d7a76-4a09-43e8-b5df-bd792f4ac6aa", "GET"): self._work_item_states,
            ("18a2ad18-7571-46ae-bec7-0c7da1495885", "GET"): self._access_control_lists,
            ("294c494c-2600-4d7e-b76c-3dd50c3c95be", "GET"): self._team_members,
            ("c23ddff5-229c-4d04-a80b-0fdce9f360c8", "GET"): self._policy_evaluations,
            ("28010c54-d0c0-4c89-a5b0-1c9e188b9fb7", "GET"): self._identities,
        }

    # ---- work items ------------------------------------------------------------------------
    def _create_work_item(self, route: dict, query: dict, body: Any) -> Response:
        kind = route["type"]
        if kind not in WORK_ITEM_TYPES:
            raise Abort(404, f"VS402323: Work item type {kind} does not exist.", "WorkItemTypeNotFoundException")
        item_id = len(self._work_items) + 1
        item = {"id": item_id, "rev": 1, "_history": [],
                "fields": {"System.TeamProject": route["project"], "System.WorkItemType": kind,
                           "System.State": "To Do", "System.CreatedDate": now_iso(),
                           "System.CreatedBy": self.identity_ref(self.bot["properties"]["Account"]["$value"])},
                "url": f"{self.org_url}/{route['project']}/_apis/wit/workItems/{item_id}"}
        self._apply_patch(item, body)
        self._work_items[item_id] = item
        return json_response(public(item))

    def _update_work_item(self, route: dict, query: dict, body: Any) -> Response:
        item = self._work_items.get(int(route["id"]))
        if item is None:
            raise Abort(404, f"TF401232: Work item {route['id']} does not exist.", "WorkItemUnauthorizedAccessException")
        self._apply_patch(item, body)
        item["rev"] += 1
        return json_response(public(item))

    def _apply_patch(self, item: dict, operations: Any) -> None:
        if not isinstance(operations, list):
            raise Abort(400, "You must pass a valid patch document in the body of the request.")
        for op in operations:
            name = op.get("path", "").removeprefix("/fields/")
            if op.get("op") != "add" or not name or name == op.get("path"):
                raise Abort(400, f"Unsupported patch operation {op!r}")
            if name == "System.History":
                item["_history"].append(op["value"])
            elif name == "System.State" and op["value"] not in ("To Do", "Doing", "Done"):
                raise Abort(400, f"TF401320: Rule Error for field State: {op['value']} is not a valid state.")
            else:
                item["fields"][name] = op["value"]

    def _get_work_items(self, route: dict, query: dict, body: Any) -> Response:
        if "id" in route:
            ids = [int(route["id"])]
        else:
            ids = [int(i) for i in query.get("ids", "").split(",") if i]
        found = [public(self._work_items[i]) if i in self._work_items else None for i in ids]
        if None in found and query.get("errorPolicy", "").lower() != "omit":
            raise Abort(404, "TF401232: Work item does not exist.", "WorkItemUnauthorizedAccessException")
        return json_response(found[0]) if "id" in route else collection(found)

    def _work_item_states(self, route: dict, query: dict, body: Any) -> Response:
        if route["type"] not in WORK_ITEM_TYPES:
            raise Abort(404, f"VS402323: Work item type {route['type']} does not exist.")
        colors = ("b2b2b2", "007acc", "339933")
        return collection([{"name": n, "category": c, "color": colors[i]} for i, (n, c) in enumerate(BASIC_STATES)])

    # ---- security, identities, teams, policies --------------------------------------------
    def _access_control_lists(self, route: dict, query: dict, body: Any) -> Response:
        token, wanted = query.get("token", ""), [d for d in query.get("descriptors", "").split(",") if d]
        parts = token.split("/")
        if route.get("securityNamespaceId") != GIT_REPOSITORIES_NAMESPACE or len(parts) != 3:
            return collection([])
        repo = self._repo(parts[1], parts[2])
        project = next(p for p in self._projects.values() if p["id"] == parts[1])
        aces = {}
        for descriptor in wanted or list(repo.acl):
            allow, deny = self._effective(descriptor, [repo.acl, project.get("_acl", {})])
            aces[descriptor] = {"descriptor": descriptor, "allow": repo.acl.get(descriptor, (0, 0))[0],
                                "deny": repo.acl.get(descriptor, (0, 0))[1]}
            if query.get("includeExtendedInfo", "").lower() == "true":
                aces[descriptor]["extendedInfo"] = {"effectiveAllow": allow, "effectiveDeny": deny,
                                                    "inheritedAllow": 0, "inheritedDeny": 0}
        return collection([{"inheritPermissions": True, "token": token, "acesDictionary": aces,
                            "includeExtendedInfo": query.get("includeExtendedInfo", "").lower() == "true"}])

    def _effective(self, descriptor: str, acls: list[dict]) -> tuple[int, int]:
        """The user's own entries and those of every group they are in, on the token and its parent."""
        user = next((u for u, i in self._users.items() if i["descriptor"] == descriptor), None)
        descriptors = {descriptor} | {g["descriptor"] for g in self._groups.values()
                                      if user is not None and user.lower() in g["_members"]}
        allow = deny = 0
        for acl in acls:
            for d in descriptors:
                a, n = acl.get(d, (0, 0))
                allow, deny = allow | a, deny | n
        return allow & ~deny, deny

    def _identities(self, route: dict, query: dict, body: Any) -> Response:
        wanted = query.get("filterValue", "").lower()
        if query.get("searchFilter") not in ("General", "AccountName", "MailAddress", "DisplayName"):
            raise Abort(400, "searchFilter must be one of General, AccountName, MailAddress, DisplayName")
        found = [i for name, i in self._users.items()
                 if wanted in (name.lower(), i["providerDisplayName"].lower())]
        return collection(copy.deepcopy(found))

    def _team_members(self, route: dict, query: dict, body: Any) -> Response:
        project = next((p for p in self._projects.values()
                        if route["projectId"].lower() in (p["name"].lower(), p["id"])), None)
        team = (project or {}).get("_teams", {}).get(route["teamId"].lower())
        if team is None:
            raise Abort(404, f"TF400898: The team {route['teamId']} does not exist.", "TeamNotFoundException")
        members = [{"identity": self.identity_ref(u), "isTeamAdmin": False} for u in team]
        return collection(page(members, query))

    def _policy_evaluations(self, route: dict, query: dict, body: Any) -> Response:
        artifact = query.get("artifactId", "")
        prefix = "vstfs:///CodeReview/CodeReviewId/"
        if not artifact.startswith(prefix):
            raise Abort(400, "artifactId is required: vstfs:///CodeReview/CodeReviewId/{projectId}/{pullRequestId}")
        project_id, _, number = artifact[len(prefix):].partition("/")
        for repo in self._repos.values():
            if repo.data["project"]["id"] == project_id and int(number) in repo.pulls:
                evaluations = [dict(e, artifactId=artifact) for e in repo.pulls[int(number)]["_policies"]]
                return collection(page(copy.deepcopy(evaluations), query))
        return collection([])

