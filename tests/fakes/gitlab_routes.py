"""The REST handlers of FakeGitLab (tests/fakes/gitlab.py) and GitLab's wire helpers:
JSON errors as GitLab words them, and offset pagination headers (X-Page, X-Next-Page,
X-Total-Pages, X-Per-Page, Link) that python-gitlab follows.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlencode

from flask import Response, request

from tests.fakes.git_remote import branch_diff


class Abort(Exception):
    """Answer the request with this status and GitLab's {"message": ...} body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class GitLabRoutes:
    """Mixin: the API's routes over FakeGitLab's state (projects, users, groups)."""

    bot: dict
    _users: dict[str, dict]
    _groups: dict[str, dict]
    _ids: Iterator[int]
    _project: Callable[..., Any]
    _group: Callable[..., dict]
    mr: Callable[..., dict]
    _new_note: Callable[..., dict]
    _add_status: Callable[..., dict]
    add_mr: Callable[..., dict]

    def _route_table(self) -> list[tuple[str, re.Pattern, Callable[..., Response]]]:
        p, mr = r"/projects/(?P<pid>[^/]+)", r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)"
        table = [
            ("GET", "/user", lambda **_: json_response(self.bot)),
            ("GET", "/users", self._users_search),
            ("GET", p, lambda pid, **_: json_response(self._project(pid).data)),
            ("GET", mr, lambda pid, iid, **_: json_response(public(self.mr(pid, int(iid))))),
            ("GET", mr + "/diffs", lambda pid, iid, raw, **_: paginate(
                self.mr(pid, int(iid))["_files"], raw)),
            ("GET", mr + "/notes", lambda pid, iid, body, raw, **_: paginate(
                ordered([public(n) for n in self.mr(pid, int(iid))["_notes"]], body), raw)),
            ("POST", mr + "/notes", lambda pid, iid, body, **_: json_response(public(self._new_note(
                self.mr(pid, int(iid)), body["body"], self.bot)), 201)),
            ("GET", mr + r"/notes/(?P<nid>\d+)", lambda pid, iid, nid, **_: json_response(
                public(self._note(pid, iid, nid)))),
            ("PUT", mr + r"/notes/(?P<nid>\d+)", self._edit_note),
            ("POST", mr + r"/notes/(?P<nid>\d+)/award_emoji", self._award),
            ("GET", mr + "/approvals", self._approvals),
            ("PUT", mr + "/merge", self._merge),
            ("POST", p + "/merge_requests", self._create_mr),
            ("GET", p + "/merge_requests", self._list_mrs),
            ("POST", p + r"/statuses/(?P<sha>[0-9a-f]+)", lambda pid, sha, body, **_: json_response(
                self._add_status(self._project(pid), sha, body), 201)),
            ("GET", p + r"/repository/commits/(?P<sha>[0-9a-f]+)/statuses", self._list_statuses),
            ("GET", p + "/members/all", self._project_members),
            ("GET", p + r"/members/all/(?P<uid>\d+)", self._project_member),
            ("GET", r"/groups/(?P<gid>[^/]+)/members/all", self._group_members),
            ("GET", r"/groups/(?P<gid>[^/]+)/members/all/(?P<uid>\d+)", self._group_member),
            ("POST", p + "/issues", self._create_issue),
            ("GET", p + "/issues", lambda pid, raw, **_: paginate(
                [public(i) for i in self._project(pid).issues.values()], raw)),
            ("GET", p + r"/issues/(?P<iid>\d+)", lambda pid, iid, **_: json_response(
                public(self._project(pid).issues[int(iid)]))),
            ("PUT", p + r"/issues/(?P<iid>\d+)", self._update_issue),
            ("POST", p + r"/issues/(?P<iid>\d+)/notes", self._issue_note),
        ]
        return [(m, re.compile(pattern), h) for m, pattern, h in table]

    def _users_search(self, body: dict, raw: str, **_: Any) -> Response:
        user = self._users.get(body.get("username", ""))
        return paginate([user] if user else [], raw)

    def _note(self, pid: str, iid: str, nid: str) -> dict:
        return only(n for n in self.mr(pid, int(iid))["_notes"] if n["id"] == int(nid))

    def _edit_note(self, pid: str, iid: str, nid: str, body: dict, **_: Any) -> Response:
        note = self._note(pid, iid, nid)
        if note["author"]["id"] != self.bot["id"]:
            raise Abort(403, "403 Forbidden")
        note["body"] = body["body"]
        return json_response(public(note))

    def _award(self, pid: str, iid: str, nid: str, body: dict, **_: Any) -> Response:
        note = self._note(pid, iid, nid)
        if any(a["name"] == body["name"] and a["user"]["id"] == self.bot["id"]
               for a in note["_awards"]):
            raise Abort(404, "404 Award Emoji Name has already been taken")
        award = {"id": next(self._ids), "name": body["name"], "user": self.bot,
                 "awardable_id": note["id"], "awardable_type": "Note"}
        note["_awards"].append(award)
        return json_response(award, 201)

    def _approvals(self, pid: str, iid: str, **_: Any) -> Response:
        mr = self.mr(pid, int(iid))
        required, approved = mr["_approvals_required"], mr["_approved_by"]
        return json_response({"id": mr["id"], "iid": mr["iid"], "project_id": mr["project_id"],
                      "title": mr["title"], "state": mr["state"], "merge_status": mr["merge_status"],
                      "approved": len(approved) >= required, "approvals_required": required,
                      "approvals_left": max(0, required - len(approved)),
                      "approved_by": [{"user": u} for u in approved]})

    def _merge(self, pid: str, iid: str, body: dict, **_: Any) -> Response:
        proj, mr = self._project(pid), self.mr(pid, int(iid))
        if mr["state"] != "opened" or mr["detailed_merge_status"] != "mergeable":
            raise Abort(405, "405 Method Not Allowed")
        if body.get("sha") and body["sha"] != mr["sha"]:
            raise Abort(409, "SHA does not match HEAD of source branch")
        remove = body.get("should_remove_source_branch") in (True, "true", "True", "1")
        squash = body.get("squash") in (True, "true", "True", "1")
        mr.update(state="merged", should_remove_source_branch=remove, squash=squash, merged_at=now_iso(),
                  updated_at=now_iso(),
                  merge_commit_sha=hashlib.sha1(mr["sha"].encode()).hexdigest())
        if remove:
            proj.deleted_branches.append(mr["source_branch"])
        return json_response(public(mr))

    def _create_mr(self, pid: str, body: dict, **_: Any) -> Response:
        """Open a merge request within the project; head, base and diffs are read from its repository
        when that is a local git repo (a branch missing there answers as GitLab does)."""
        proj = self._project(pid)
        for key in ("source_branch", "target_branch", "title"):
            if not body.get(key):
                raise Abort(400, f"{key} is missing")
        source, target = str(body["source_branch"]), str(body["target_branch"])
        taken = [m["iid"] for m in proj.mrs.values() if m["source_branch"] == source and m["state"] == "opened"]
        if taken:
            message = f"Another open merge request already exists for this source branch: !{taken[0]}"
            return json_response({"message": [message]}, 409)
        diff = branch_diff(proj.data["http_url_to_repo"], target, source)
        if diff is None:
            return json_response({"message": {"source_branch": ["does not exist"]}}, 422)
        iid = max([0, *proj.mrs]) + 1
        mr = self.add_mr(proj.data["id"], iid, diff.head_sha, source, target, self.bot["username"],
                         [f["filename"] if "previous_filename" not in f else (f["previous_filename"], f["filename"])
                          for f in diff.files], diff.merge_base, title=str(body["title"]))
        remove = body.get("remove_source_branch") in (True, "true", "True", "1")
        mr.update(description=body.get("description") or "", force_remove_source_branch=remove,
                  should_remove_source_branch=remove or None)
        return json_response(public(mr), 201)

    def _list_mrs(self, pid: str, body: dict, raw: str, **_: Any) -> Response:
        """GET /merge_requests: state (opened, closed, merged, locked, all), updated_after,
        order_by (created_at, updated_at), sort (desc by default)."""
        state, after = body.get("state", "all"), body.get("updated_after")
        mrs = [public(m) for m in self._project(pid).mrs.values() if state in ("all", m["state"])
               and (not after or _time(m["updated_at"]) >= _time(after))]
        return paginate(ordered(mrs, body), raw)

    def _list_statuses(self, pid: str, sha: str, body: dict, raw: str, **_: Any) -> Response:
        history = self._project(pid).statuses.get(sha, [])
        if body.get("all") not in ("true", True):
            latest = {s["name"]: s for s in history}
            history = [s for s in history if latest[s["name"]] is s]
        return paginate(list(reversed(history)), raw)

    def _member_levels(self, proj: Any) -> dict[int, int]:
        levels: dict[int, int] = {}
        namespace = proj.data["namespace"]["full_path"]
        for path, group in self._groups.items():
            if namespace == path or namespace.startswith(path + "/"):
                for uid, level in group["members"].items():
                    levels[uid] = max(level, levels.get(uid, 0))
        levels.update(proj.members)
        return levels

    def _memberjson_response(self, levels: dict[int, int]) -> list[dict]:
        return [{**u, "access_level": levels[u["id"]], "expires_at": None,
                 "membership_state": "active"} for u in self._users.values() if u["id"] in levels]

    def _project_members(self, pid: str, body: dict, raw: str, **_: Any) -> Response:
        members = self._memberjson_response(self._member_levels(self._project(pid)))
        return paginate(_query(members, body.get("query", "")), raw)

    def _project_member(self, pid: str, uid: str, **_: Any) -> Response:
        members = self._memberjson_response(self._member_levels(self._project(pid)))
        return json_response(only(m for m in members if m["id"] == int(uid)))

    def _group_levels(self, gid: str) -> dict[int, int]:
        group, levels = self._group(gid), {}
        for path, other in self._groups.items():
            if group["path"] == path or group["path"].startswith(path + "/"):
                for uid, level in other["members"].items():
                    levels[uid] = max(level, levels.get(uid, 0))
        return levels

    def _group_members(self, gid: str, body: dict, raw: str, **_: Any) -> Response:
        return paginate(_query(self._memberjson_response(self._group_levels(gid)),
                                body.get("query", "")), raw)

    def _group_member(self, gid: str, uid: str, **_: Any) -> Response:
        members = self._memberjson_response(self._group_levels(gid))
        return json_response(only(m for m in members if m["id"] == int(uid)))

    def _create_issue(self, pid: str, body: dict, **_: Any) -> Response:
        proj = self._project(pid)
        iid = len(proj.issues) + 1
        issue = {"id": next(self._ids), "iid": iid, "project_id": proj.data["id"],
                 "title": body["title"], "description": body.get("description", ""),
                 "state": "opened", "author": self.bot, "labels": [], "_notes": [],
                 "web_url": f"{proj.data['web_url']}/-/issues/{iid}"}
        proj.issues[iid] = issue
        return json_response(public(issue), 201)

    def _update_issue(self, pid: str, iid: str, body: dict, **_: Any) -> Response:
        issue = self._project(pid).issues[int(iid)]
        for key in ("title", "description"):
            issue[key] = body.get(key, issue[key])
        event = body.get("state_event")
        issue["state"] = {"close": "closed", "reopen": "opened"}.get(event, issue["state"])
        return json_response(public(issue))

    def _issue_note(self, pid: str, iid: str, body: dict, **_: Any) -> Response:
        issue = self._project(pid).issues[int(iid)]
        note = {"id": next(self._ids), "body": body["body"], "author": self.bot}
        issue["_notes"].append(note)
        return json_response(note, 201)


def now_iso() -> str:
    """A time as GitLab's API writes it: 2024-01-31T12:00:00.123Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ordered(items: list[dict], query: dict) -> list[dict]:
    """Items in the order asked (order_by created_at or updated_at, sort desc by default, as
    GitLab); in the order they were added when neither is asked."""
    field = query.get("order_by", "created_at")
    if not ("order_by" in query or "sort" in query) or not all(field in item for item in items):
        return items
    return sorted(items, key=lambda item: (_time(item[field]), item.get("id", 0)),
                  reverse=query.get("sort", "desc") != "asc")


def diff_entry(entry: Any) -> dict:
    if isinstance(entry, dict):
        return entry
    old, new = (entry, entry) if isinstance(entry, str) else entry
    return {"old_path": old, "new_path": new, "a_mode": "100644", "b_mode": "100644",
            "new_file": False, "renamed_file": old != new, "deleted_file": False,
            "generated_file": False, "diff": "@@ -1 +1 @@\n-a\n+b\n"}


def public(obj: dict) -> dict:
    out = {k: v for k, v in obj.items() if not k.startswith("_")}
    if "_awards" in obj:
        out["award_emoji"] = obj["_awards"]
    return out


def _query(members: list[dict], text: str) -> list[dict]:
    text = text.lower()
    return [m for m in members if text in m["username"].lower() or text in m["name"].lower()]


def only(items: Any) -> dict:
    found = list(items)
    return found[0] if found else _raise(404, "404 Not found")


def _raise(status: int, message: str) -> Any:
    raise Abort(status, message)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def paginate(items: list, raw_path: str) -> Response:
    """One page of items with GitLab's offset-pagination headers."""
    per_page = min(max(int(request.args.get("per_page", 20)), 1), 100)
    page = max(int(request.args.get("page", 1)), 1)
    total_pages = max(1, -(-len(items) // per_page))
    response = json_response(items[(page - 1) * per_page: page * per_page])
    base = request.host_url.rstrip("/") + raw_path

    def link(number: int) -> str:
        query = [(k, v) for k, v in parse_qsl(request.query_string.decode()) if k != "page"]
        return f"{base}?{urlencode(query + [('page', str(number))])}"

    links = [f'<{link(1)}>; rel="first"', f'<{link(total_pages)}>; rel="last"']
    headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
               "X-Total-Pages": str(total_pages), "X-Next-Page": "", "X-Prev-Page": ""}
    if page < total_pages:
        headers["X-Next-Page"] = str(page + 1)
        links.insert(0, f'<{link(page + 1)}>; rel="next"')
    if page > 1:
        headers["X-Prev-Page"] = str(page - 1)
        links.insert(0, f'<{link(page - 1)}>; rel="prev"')
    response.headers.update(headers)
    response.headers["Link"] = ", ".join(links)
    return response
