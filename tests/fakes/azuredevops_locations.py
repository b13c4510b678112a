"""The route tables FakeAzureDevOps publishes and routes by, as Azure DevOps does.

The SDK asks `GET {org}/_apis/ResourceAreas` where each area lives, then `OPTIONS {area url}/_apis`
for the route templates by location id, fills a template with its route values (leaving out
the `{...}` segments it has no value for) and sends the api-version in the Accept header.
Location ids, areas, resource names and route parameter names are those of the `azure-devops`
SDK (azure/devops/v7_0 and v7_1 clients); the templates follow the REST API's documented URLs.
The fake routes each request by the same templates, so a wrong id or template fails as it
would against Azure DevOps.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_VERSION = 7.1


@dataclass(frozen=True)
class Location:
    id: str
    area: str
    resource: str
    template: str
    resource_version: int = 1
    host: str = "org"  # "org" (dev.azure.com/ORG) or "vssps" (vssps.dev.azure.com/ORG)

    def as_json(self) -> dict:
        return {"id": self.id, "area": self.area, "resourceName": self.resource, "routeTemplate": self.template,
                "resourceVersion": self.resource_version, "minVersion": 1.0, "maxVersion": MAX_VERSION,
                "releasedVersion": "7.1"}

    def pattern(self) -> re.Pattern:
        """The template as a regex: {area} and {resource} literal, every other {param} segment
        optional (the SDK drops the segments it has no value for)."""
        parts = []
        for segment in self.template.split("/"):
            literal = segment.replace("{area}", self.area).replace("{resource}", self.resource)
            param = re.fullmatch(r"\{(\w+)\}", literal)
            if param:
                parts.append(rf"(?:/(?P<{param.group(1)}>[^/]+))?")
            elif "{" in literal:  # e.g. ${type}
                prefix, name = re.fullmatch(r"([^{]*)\{(\w+)\}", literal).groups()
                parts.append(rf"/{re.escape(prefix)}(?P<{name}>[^/]+)")
            else:
                parts.append("/" + re.escape(literal))
        return re.compile("".join(parts) + "/?", re.IGNORECASE)


PULL = "{project}/_apis/{area}/repositories/{repositoryId}/pullRequests/{pullRequestId}"
LOCATIONS = (
    Location("e81700f7-3be2-46de-8624-2eb35882fcaa", "Location", "ResourceAreas", "_apis/{resource}/{areaId}"),
    Location("00d9565f-ed9c-4a06-9a50-00e7896ccab4", "Location", "ConnectionData", "_apis/{resource}"),
    Location("9946fd70-0d40-406e-b686-b4744cbbcc37", "git", "pullRequests",
             "{project}/_apis/{area}/repositories/{repositoryId}/{resource}/{pullRequestId}"),
    Location("d43911ee-6958-46b0-a42b-8445b8a0d004", "git", "pullRequestIterations",
             PULL + "/iterations/{iterationId}", 2),
    Location("4216bdcf-b6b1-4d59-8b82-c34cc183fc8b", "git", "pullRequestIterationChanges",
             PULL + "/iterations/{iterationId}/changes"),
    Location("ab6e2e5d-a0b7-4153-b64a-a4efe0d49449", "git", "pullRequestThreads", PULL + "/threads/{threadId}"),
    Location("965a3ec7-5ed8-455a-bdcb-835a5ea7fe7b", "git", "pullRequestThreadComments",
             PULL + "/threads/{threadId}/comments/{commentId}"),
    Location("5f2e2851-1389-425b-a00b-fb2adb3ef31b", "git", "pullRequestCommentLikes",
             PULL + "/threads/{threadId}/comments/{commentId}/likes"),
    Location("b5f6bb4f-8d1e-4d79-8d11-4c9172c99c35", "git", "pullRequestStatuses", PULL + "/statuses/{statusId}"),
    Location("4b6702c7-aa35-4b89-9c96-b9abf6d3e540", "git", "pullRequestReviewers", PULL + "/reviewers/{reviewerId}"),
    Location("225f7195-f9c7-4d14-ab28-a83f7ff77e1f", "git", "repositories",
             "{project}/_apis/{area}/{resource}/{repositoryId}"),
    Location("428dd4fb-fda5-4722-af02-9313b80305da", "git", "statuses",
             "{project}/_apis/{area}/repositories/{repositoryId}/commits/{commitId}/{resource}"),
    Location("62d3d110-0047-428c-ad3c-4fe872c91c74", "wit", "workItems", "{project}/_apis/{area}/workitems/${type}", 3),
    Location("72c7ddf8-2cdc-4f60-90cd-ab71c14a399b", "wit", "workItems", "{project}/_apis/{area}/{resource}/{id}", 3),
    Location("7c9d7a76-4a09-43e8-b5df-bd792f4ac6aa", "wit", "workItemTypeStates",
             "{project}/_apis/{area}/workitemtypes/{type}/states"),
    Location("18a2ad18-7571-46ae-bec7-0c7da1495885", "Security", "AccessControlLists",
             "_apis/{resource}/{securityNamespaceId}"),
    Location("294c494c-2600-4d7e-b76c-3dd50c3c95be", "core", "members",
             "_apis/projects/{projectId}/teams/{teamId}/{resource}", 2),
    Location("c23ddff5-229c-4d04-a80b-0fdce9f360c8", "policy", "evaluations", "{project}/_apis/{area}/{resource}"),
    Location("28010c54-d0c0-4c89-a5b0-1c9e188b9fb7", "IMS", "Identities", "_apis/{resource}/{identityId}",
             host="vssps"),
)
# Resource area id -> (name, host) for `_apis/ResourceAreas`: where each client's routes live.
RESOURCE_AREAS = {
    "4e080c62-fa21-4fbc-8fef-2a10a2b38049": ("git", "org"),
    "5264459e-e5e0-4bd8-b118-0985e68a4ec5": ("wit", "org"),
    "79134c72-4a58-4b42-976c-04e7115f32bf": ("core", "org"),
    "fb13a388-40dd-4a04-b530-013a739c72ef": ("policy", "org"),
    "8a3d49b8-91f0-46ef-b33d-dda338c25db3": ("ims", "vssps"),
}
_LOCATION_AREA = ("Location",)  # answered on every host, as Azure DevOps does
_PATTERNS = [(location, location.pattern()) for location in LOCATIONS]


def published(host: str) -> list[dict]:
    """The answer to `OPTIONS {host url}/_apis`."""
    return [loc.as_json() for loc in LOCATIONS if loc.host == host or loc.area in _LOCATION_AREA]


def route(host: str, path: str, method: str, handlers: dict) -> tuple[str, dict] | None:
    """(location id, route values) of the request, by the templates published on host; None for no
    route. A path matching several templates goes to the one with a handler for the method."""
    for location, pattern in _PATTERNS:
        if location.host != host and location.area not in _LOCATION_AREA:
            continue
        match = pattern.fullmatch(path)
        if match and (location.id, method) in handlers:
            return location.id, {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
    return None


def api_version_problem(accept: str) -> str | None:
    """Azure DevOps refuses a request without an api-version it serves (the SDK sends it in Accept)."""
    found = re.search(r"api-version=([0-9.]+)(-preview(\.\d+)?)?", accept or "")
    if not found:
        return "No api-version was supplied for the request. An api-version must be supplied."
    if not 1.0 <= float(found.group(1)) <= MAX_VERSION:
        return f"The requested REST API version of {found.group(1)} is out of range for this server."
    return None
