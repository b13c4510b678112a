"""The REST handlers of FakeBitbucketDataCenter (tests/fakes/bitbucket_dc.py) and Data Center's
wire helpers: its error body (`{"errors": [{"message": ...}]}`) and its paging (`start`, `limit`,
`isLastPage`, `nextPageStart`)."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from flask import Response, request

from tests.fakes.bitbucket_common import Abort, json_response
from tests.fakes.bitbucket_routes import public
from tests.fakes.git_remote import branch_diff

API = "/rest/api/1.0"
REPO = API + r"/projects/(?P<p>[^/]+)/repos/(?P<r>[^/]+)"
PULL = REPO + r"/pull-requests/(?P<n>\d+)"
BUILD_STATES = ("INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN")
STRATEGIES = ("no-ff", "ff", "ff-only", "squash", "squash-ff-only", "rebase-no-ff", "rebase-ff-only")


def _millis() -> int:
    return int(time.time() * 1000)


class DataCenterRoutes:
    """Mixin: Data Center's routes over FakeBitbucketDataCenter's state."""

    url: str
    username: str
    bot_name: str
    bot_is_admin: bool
    _projects: dict[str, dict]
    _repos: dict[str, Any]
    _groups: dict[str, set]
    _repo: Callable[..., Any]
    pull: Callable[..., dict]
    user: Callable[..., dict]
    add_pull: Callable[..., dict]
    next_id: Callable[[], int]

    def route_table(self) -> list[tuple[str, str, Callable[..., Response]]]:
        return [
            ("GET", API + "/application-properties", lambda **_: json_response(
                {"version": "8.19.0", "buildNumber": "8019000", "buildDate": "1700000000000", "displayName": "Bitbucket"})),
            ("GET", REPO, lambda p, r, **_: json_response(self._repo(f"{p}/{r}").data)),
            ("GET", REPO + "/pull-requests", self._list_pulls),
            ("POST", REPO + "/pull-requests", self._create_pull),
            ("GET", PULL, lambda p, r, n, **_: json_response(public(self.pull(f"{p}/{r}", n)))),
            ("GET", PULL + "/changes", lambda p, r, n, **_: page(self.pull(f"{p}/{r}", n)["_changes"])),
            ("GET", PULL + "/activities", lambda p, r, n, **_: page(
                [self._activity(a) for a in reversed(self.pull(f"{p}/{r}", n)["_activities"])])),
            ("POST", PULL + "/comments", self._post_comment),
            ("GET", PULL + r"/comments/(?P<c>\d+)", lambda p, r, n, c, **_: json_response(
                public(self.comment_of(self.pull(f"{p}/{r}", n), int(c))))),
            ("PUT", PULL + r"/comments/(?P<c>\d+)", self._edit_comment),
            ("GET", PULL + "/merge", self._can_merge),
            ("POST", PULL + "/merge", self._merge),
            ("GET", REPO + "/permissions/users", self._repo_users),
            ("GET", REPO + "/permissions/groups", lambda p, r, **_: self._admin_page(
                f"{p}/{r}", [{"group": {"name": g}, "permission": perm} for g, perm in self._repo(f"{p}/{r}").groups.items()])),
            ("GET", API + r"/projects/(?P<p>[^/]+)/permissions/users", self._project_users),
            ("GET", API + r"/projects/(?P<p>[^/]+)/permissions/groups", lambda p, **_: page(
                [{"group": {"name": g}, "permission": perm} for g, perm in self._project(p)["groups"].items()])),
            ("GET", API + "/admin/groups/more-members", self._group_members),
            ("POST", r"/rest/build-status/1\.0/commits/(?P<sha>[0-9a-f]+)", self._post_status),
            ("GET", r"/rest/build-status/1\.0/commits/(?P<sha>[0-9a-f]+)", self._list_statuses),
            ("DELETE", r"/rest/branch-utils/1\.0/projects/(?P<p>[^/]+)/repos/(?P<r>[^/]+)/branches", self._delete_branch),
        ]

    def error(self, status: int, message: str) -> Response:
        return json_response({"errors": [{"context": None, "message": message, "exceptionName": None}]}, status)

    # ---- pull requests -------------------------------------------------------------
    def _list_pulls(self, p: str, r: str, **_: Any) -> Response:
        """?state= OPEN (default), DECLINED, MERGED or ALL; ?order= NEWEST (default) or OLDEST, by last update."""
        state = request.args.get("state", "OPEN").upper()
        pulls = [public(pr) for pr in self._repo(f"{p}/{r}").pulls.values() if state in ("ALL", pr["state"])]
        newest = request.args.get("order", "NEWEST").upper() != "OLDEST"
        pulls.sort(key=lambda pr: (pr["updatedDate"], pr["id"]), reverse=newest)
        return page(pulls)

    def _create_pull(self, p: str, r: str, body: dict, **_: Any) -> Response:
        repo = self._repo(f"{p}/{r}")
        source = str((body.get("fromRef") or {}).get("id") or "").removeprefix("refs/heads/")
        target = str((body.get("toRef") or {}).get("id") or "").removeprefix("refs/heads/")
        if not body.get("title") or not source or not target:
            raise Abort(400, "title, fromRef.id and toRef.id are required")
        diff = branch_diff(str(repo.git_path), target, source) if repo.git_path else None
        if diff is None:
            raise Abort(404, f"Repository {p}/{r} has no branch {source} or {target}")
        number = max([0, *repo.pulls]) + 1
        files = [f["filename"] if "previous_filename" not in f else (f["previous_filename"], f["filename"])
                 for f in diff.files]
        pr = self.add_pull(f"{p}/{r}", number, diff.head_sha, source, target, self.bot_name, files,
                           base_sha=diff.base_sha, title=str(body["title"]))
        pr["description"] = body.get("description") or ""
        return json_response(public(pr), 201)

    def _can_merge(self, p: str, r: str, n: str, **_: Any) -> Response:
        pr = self.pull(f"{p}/{r}", n)
        vetoes = [{"summaryMessage": v, "detailedMessage": v} for v in pr["_vetoes"]]
        if pr["state"] != "OPEN":
            vetoes.append({"summaryMessage": "The pull request is not open", "detailedMessage": ""})
        can = not vetoes and not pr["_conflicted"]
        return json_response({"canMerge": can, "conflicted": pr["_conflicted"],
                              "outcome": "CONFLICTED" if pr["_conflicted"] else "CLEAN", "vetoes": vetoes})

    def _merge(self, p: str, r: str, n: str, body: dict, **_: Any) -> Response:
        repo, pr = self._repo(f"{p}/{r}"), self.pull(f"{p}/{r}", n)
        if request.args.get("version") != str(pr["version"]):
            raise Abort(409, "You are attempting to modify a pull request based on out-of-date information.")
        strategy = body.get("strategyId") or "no-ff"
        if strategy not in STRATEGIES:
            raise Abort(400, f"{strategy} is not a merge strategy of this repository")
        if pr["state"] != "OPEN" or pr["_vetoes"] or pr["_conflicted"]:
            raise Abort(409, "; ".join(pr["_vetoes"]) or "The pull request cannot be merged")
        self.merged(pr, hashlib.sha1(f"{pr['fromRef']['latestCommit']}:{strategy}".encode()).hexdigest())
        repo.merges.append((int(n), strategy))
        return json_response(public(pr))

    def merged(self, pr: dict, merge_sha: str) -> None:
        pr.update(state="MERGED", open=False, closed=True, closedDate=_millis(), updatedDate=_millis(),
                  version=pr["version"] + 1, properties={"mergeCommit": {"displayId": merge_sha[:11], "id": merge_sha}})

    # ---- comments ------------------------------------------------------------------
    def new_comment(self, pr: dict, text: str, author: dict) -> dict:
        comment = {"properties": {"repositoryId": pr["toRef"]["repository"]["id"]}, "id": self.next_id(), "version": 0,
                   "text": text, "author": author, "createdDate": _millis(), "updatedDate": _millis(),
                   "comments": [], "tasks": [], "severity": "NORMAL", "state": "OPEN"}
        pr["_comments"].append(comment)
        pr["_activities"].append({"id": self.next_id(), "createdDate": comment["createdDate"], "user": author,
                                  "action": "COMMENTED", "commentAction": "ADDED", "_comment": comment})
        pr["updatedDate"] = comment["createdDate"]
        return comment

    def comment_of(self, pr: dict, comment_id: int) -> dict:
        found = [c for c in pr["_comments"] if c["id"] == comment_id]
        if not found:
            raise Abort(404, f"Comment {comment_id} does not exist.")
        return found[0]

    def _post_comment(self, p: str, r: str, n: str, body: dict, **_: Any) -> Response:
        if not body.get("text"):
            raise Abort(400, "A comment must have text")
        return json_response(public(self.new_comment(self.pull(f"{p}/{r}", n), body["text"], self.user(self.bot_name))), 201)

    def _edit_comment(self, p: str, r: str, n: str, c: str, body: dict, **_: Any) -> Response:
        pr = self.pull(f"{p}/{r}", n)
        comment = self.comment_of(pr, int(c))
        if comment["author"]["name"] != self.bot_name:
            raise Abort(403, "You are not permitted to edit this comment.")
        if body.get("version") != comment["version"]:
            raise Abort(409, "You are attempting to modify a comment based on out-of-date information.")
        comment.update(text=body.get("text") or "", version=comment["version"] + 1, updatedDate=_millis())
        pr["_activities"].append({"id": self.next_id(), "createdDate": comment["updatedDate"], "user": comment["author"],
                                  "action": "COMMENTED", "commentAction": "EDITED", "_comment": comment})
        return json_response(public(comment))

    @staticmethod
    def _activity(activity: dict) -> dict:
        shown = public(activity)
        if "_comment" in activity:
            shown["comment"] = public(activity["_comment"])
        return shown

    # ---- build statuses ------------------------------------------------------------
    def add_status(self, repo: Any, sha: str, body: dict) -> None:
        if body.get("state") not in BUILD_STATES:
            raise Abort(400, f"state must be one of {', '.join(BUILD_STATES)}")
        if not body.get("key") or not body.get("url"):
            raise Abort(400, "key and url are required")
        status = {k: body.get(k) for k in ("state", "key", "name", "url", "description")}
        repo.statuses.setdefault(sha, []).append({**status, "dateAdded": _millis()})

    def _post_status(self, sha: str, body: dict, **_: Any) -> Response:
        """The legacy endpoint names no repository: the status goes to each repository with the commit."""
        repos = [repo for repo in self._repos.values() if self._has_commit(repo, sha)] or list(self._repos.values())[:1]
        for repo in repos:
            self.add_status(repo, sha, body)
        return Response(status=204)

    def _list_statuses(self, sha: str, **_: Any) -> Response:
        latest: dict[str, dict] = {}
        for repo in self._repos.values():
            latest.update({s["key"]: s for s in repo.statuses.get(sha, [])})
        return page(list(latest.values()))

    @staticmethod
    def _has_commit(repo: Any, sha: str) -> bool:
        return any(sha in (p["fromRef"]["latestCommit"], p["toRef"]["latestCommit"]) for p in repo.pulls.values())

    # ---- permissions ---------------------------------------------------------------
    def _admin_page(self, full_name: str, items: list) -> Response:
        if self._repo(full_name).users.get(self.bot_name) != "REPO_ADMIN":
            raise Abort(401, "You are not permitted to access this resource")
        return page(items)

    def _repo_users(self, p: str, r: str, **_: Any) -> Response:
        wanted = request.args.get("filter", "").lower()
        users = [{"user": self.user(name), "permission": perm} for name, perm in self._repo(f"{p}/{r}").users.items()
                 if wanted in name.lower()]
        return self._admin_page(f"{p}/{r}", users)

    def _project(self, key: str) -> dict:
        if key not in self._projects:
            raise Abort(404, f"Project {key} does not exist.")
        return self._projects[key]

    def _project_users(self, p: str, **_: Any) -> Response:
        wanted = request.args.get("filter", "").lower()
        return page([{"user": self.user(name), "permission": perm} for name, perm in self._project(p)["users"].items()
                     if wanted in name.lower()])

    def _group_members(self, **_: Any) -> Response:
        if not self.bot_is_admin:
            raise Abort(401, "You are not permitted to access this resource")
        group = request.args.get("context", "")
        if group not in self._groups:
            raise Abort(404, f"Group {group} does not exist.")
        return page([self.user(name) for name in sorted(self._groups[group])])

    def _delete_branch(self, p: str, r: str, body: dict, **_: Any) -> Response:
        self._repo(f"{p}/{r}").deleted_branches.append(str(body.get("name", "")).removeprefix("refs/heads/"))
        return Response(status=204)


def change_entry(entry: Any) -> dict:
    """A pull request change from a path or an (old, new) rename."""
    old, new = (entry, entry) if isinstance(entry, str) else entry

    def path(text: str) -> dict:
        parts = text.split("/")
        return {"components": parts, "parent": "/".join(parts[:-1]), "name": parts[-1],
                "extension": parts[-1].rpartition(".")[2], "toString": text}
    change = {"contentId": hashlib.sha1(new.encode()).hexdigest(), "path": path(new), "executable": False,
              "percentUnchanged": -1, "type": "MODIFY" if old == new else "MOVE", "nodeType": "FILE",
              "properties": {"gitChangeType": "MODIFY" if old == new else "RENAME"}}
    if old != new:
        change["srcPath"] = path(old)
    return change


def page(items: list, default_limit: int = 25) -> Response:
    """One page as Data Center pages: ?start= and ?limit= (at most 1000)."""
    limit = min(max(int(request.args.get("limit", default_limit)), 1), 1000)
    start = max(int(request.args.get("start", 0)), 0)
    chunk = items[start:start + limit]
    body: dict = {"size": len(chunk), "limit": limit, "start": start, "values": chunk,
                  "isLastPage": start + limit >= len(items)}
    if not body["isLastPage"]:
        body["nextPageStart"] = start + limit
    return json_response(body)
