"""The REST handlers of FakeBitbucketCloud (tests/fakes/bitbucket.py) and Bitbucket Cloud's wire
helpers: its error body (`{"type": "error", "error": {"message": ...}}`) and its paging (`pagelen`,
`page`, `size`, an absolute `next` link while more follow)."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Response, request

from tests.fakes.bitbucket_common import Abort, json_response, now_iso
from tests.fakes.git_remote import branch_diff

BUILD_STATES = ("INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED")
MERGE_STRATEGIES = ("merge_commit", "squash", "fast_forward")
_ISSUE_STATES = ("new", "open", "resolved", "on hold", "invalid", "duplicate", "wontfix", "closed")


class CloudRoutes:
    """Mixin: Bitbucket Cloud's routes over FakeBitbucketCloud's state."""

    api_url: str
    web_url: str
    bot_name: str
    _users: dict[str, dict]
    _repos: dict[str, Any]
    _repo: Callable[..., Any]
    user: Callable[..., dict]
    resolve: Callable[..., str]
    commit_ref: Callable[..., dict]
    repository_ref: Callable[..., dict]
    add_pull: Callable[..., dict]
    next_id: Callable[[], int]

    def route_table(self) -> list[tuple[str, str, Callable[..., Response]]]:
        r = r"/repositories/(?P<w>[^/]+)/(?P<s>[^/]+)"
        pr = r + r"/pullrequests/(?P<n>\d+)"
        return [
            ("GET", "/user", lambda **_: json_response(self.user(self.bot_name))),
            ("GET", r"/workspaces/(?P<w>[^/]+)", self._workspace),
            ("GET", r"/workspaces/(?P<w>[^/]+)/permissions/repositories/(?P<s>[^/]+)/?", self._permissions),
            ("GET", r, lambda w, s, **_: json_response(self._repo(f"{w}/{s}").data)),
            ("GET", r + "/pullrequests/?", self._list_pulls),
            ("POST", r + "/pullrequests/?", self._create_pull),
            ("GET", pr, lambda w, s, n, **_: json_response(self._rendered(f"{w}/{s}", int(n)))),
            ("GET", pr + "/diffstat", lambda w, s, n, **_: page(self._pull(w, s, n)["_files"])),
            ("GET", pr + "/comments", self._list_comments),
            ("POST", pr + "/comments", self._post_comment),
            ("GET", pr + r"/comments/(?P<c>\d+)", lambda w, s, n, c, **_: json_response(
                public(self.comment_of(self._pull(w, s, n), int(c))))),
            ("PUT", pr + r"/comments/(?P<c>\d+)", self._edit_comment),
            ("POST", pr + "/merge", self._merge),
            ("GET", r + r"/commit/(?P<sha>[0-9a-fA-F]+)", self._commit),
            ("POST", r + r"/commit/(?P<sha>[0-9a-fA-F]+)/statuses/build", self._post_status),
            ("GET", r + r"/commit/(?P<sha>[0-9a-fA-F]+)/statuses", self._list_statuses),
            ("GET", r + "/issues/?", lambda w, s, **_: page([public(i) for i in self._issues(w, s).values()])),
            ("POST", r + "/issues/?", self._create_issue),
            ("GET", r + r"/issues/(?P<i>\d+)", lambda w, s, i, **_: json_response(public(self._issues(w, s)[int(i)]))),
            ("PUT", r + r"/issues/(?P<i>\d+)", self._update_issue),
            ("POST", r + r"/issues/(?P<i>\d+)/comments", self._issue_comment),
        ]

    def error(self, status: int, message: str) -> Response:
        return json_response({"type": "error", "error": {"message": message}}, status)

    # ---- pull requests -------------------------------------------------------------
    def _pull(self, w: str, s: str, n: str) -> dict:
        try:
            return self._repo(f"{w}/{s}").pulls[int(n)]
        except KeyError:
            raise Abort(404, f"Pull request {n} not found") from None

    def _rendered(self, full_name: str, number: int) -> dict:
        """A pull request as the API answers: commits as 12 hex digits, the merge commit once merged."""
        pr = public(self._repo(full_name).pulls[number])
        raw = self._repo(full_name).pulls[number]
        pr["source"] = {**pr["source"], "commit": self.commit_ref(pr["source"]["repository"]["full_name"], raw["_head"])}
        if raw["_base"]:
            pr["destination"] = {**pr["destination"], "commit": self.commit_ref(full_name, raw["_base"])}
        pr["merge_commit"] = self.commit_ref(full_name, raw["_merge"]) if raw["_merge"] else None
        pr["comment_count"] = sum(1 for c in raw["_comments"] if not c["deleted"])
        return pr

    def _list_pulls(self, w: str, s: str, **_: Any) -> Response:
        """?state= (repeatable; OPEN by default) and ?sort= (a field, `-` for descending)."""
        states = request.args.getlist("state") or ["OPEN"]
        full_name = f"{w}/{s}"
        pulls = [self._rendered(full_name, n) for n, p in self._repo(full_name).pulls.items() if p["state"] in states]
        sort = request.args.get("sort", "")
        if sort:
            pulls.sort(key=lambda p: (p[sort.lstrip("-")], p["id"]), reverse=sort.startswith("-"))
        return page(pulls)

    def _create_pull(self, w: str, s: str, body: dict, **_: Any) -> Response:
        """Opens a pull request within the repository, reading both branches from its git."""
        repo = self._repo(f"{w}/{s}")
        source = ((body.get("source") or {}).get("branch") or {}).get("name")
        target = ((body.get("destination") or {}).get("branch") or {}).get("name") or repo.data["mainbranch"]["name"]
        if not body.get("title") or not source:
            raise Abort(400, "title and source.branch.name are required")
        diff = branch_diff(str(repo.git_path), target, source) if repo.git_path else None
        if diff is None:
            raise Abort(400, f"source branch {source} or destination {target} not found")
        number = max([0, *repo.pulls]) + 1
        files = [f["filename"] if "previous_filename" not in f else (f["previous_filename"], f["filename"])
                 for f in diff.files]
        pr = self.add_pull(f"{w}/{s}", number, diff.head_sha, source, target, self.bot_name, files,
                           base_sha=diff.merge_base, title=str(body["title"]))
        pr.update(description=body.get("description") or "", close_source_branch=bool(body.get("close_source_branch")))
        return json_response(self._rendered(f"{w}/{s}", number), 201)

    def _merge(self, w: str, s: str, n: str, body: dict, **_: Any) -> Response:
        repo, pr = self._repo(f"{w}/{s}"), self._pull(w, s, n)
        if pr["state"] != "OPEN":
            raise Abort(400, "You can't merge a pull request that isn't open.")
        strategy = body.get("merge_strategy") or "merge_commit"
        if strategy not in MERGE_STRATEGIES:
            raise Abort(400, f"merge_strategy must be one of {', '.join(MERGE_STRATEGIES)}")
        if any(f["status"] == "merge conflict" for f in pr["_files"]):
            raise Abort(409, "This pull request has conflicts.")
        pr.update(state="MERGED", _merge=hashlib.sha1(f"{pr['_head']}:{strategy}".encode()).hexdigest(),
                  updated_on=now_iso(), closed_by=self.user(self.bot_name),
                  close_source_branch=bool(body.get("close_source_branch")))
        repo.merges.append((int(n), strategy, bool(body.get("close_source_branch"))))
        return json_response(self._rendered(f"{w}/{s}", int(n)))

    # ---- comments ------------------------------------------------------------------
    def new_comment(self, pr: dict, body: str, author: dict) -> dict:
        number = pr["id"]
        api = f"{pr['links']['self']['href']}/comments"
        comment_id = self.next_id()
        comment = {"id": comment_id, "created_on": now_iso(), "updated_on": now_iso(),
                   "content": {"type": "rendered", "raw": body, "markup": "markdown", "html": f"<p>{body}</p>"},
                   "user": author, "deleted": False, "pending": False, "type": "pullrequest_comment",
                   "links": {"self": {"href": f"{api}/{comment_id}"},
                             "html": {"href": f"{pr['links']['html']['href']}/_/diff#comment-{comment_id}"}},
                   "pullrequest": {"type": "pullrequest", "id": number, "title": pr["title"],
                                   "links": {k: pr["links"][k] for k in ("self", "html")}}}
        pr["_comments"].append(comment)
        pr["updated_on"] = comment["updated_on"]
        return comment

    def comment_of(self, pr: dict, comment_id: int) -> dict:
        found = [c for c in pr["_comments"] if c["id"] == comment_id]
        if not found:
            raise Abort(404, f"Comment {comment_id} not found")
        return found[0]

    def _list_comments(self, w: str, s: str, n: str, **_: Any) -> Response:
        comments = [public(c) for c in self._pull(w, s, n)["_comments"]]
        sort = request.args.get("sort", "")
        if sort:
            comments.sort(key=lambda c: (c[sort.lstrip("-")], c["id"]), reverse=sort.startswith("-"))
        return page(comments)

    def _post_comment(self, w: str, s: str, n: str, body: dict, **_: Any) -> Response:
        raw = (body.get("content") or {}).get("raw")
        if not raw:
            raise Abort(400, "content.raw: This field is required.")
        return json_response(public(self.new_comment(self._pull(w, s, n), raw, self.user(self.bot_name))), 201)

    def _edit_comment(self, w: str, s: str, n: str, c: str, body: dict, **_: Any) -> Response:
        comment = self.comment_of(self._pull(w, s, n), int(c))
        if comment["user"]["account_id"] != self.user(self.bot_name)["account_id"]:
            raise Abort(403, "You can only edit your own comments.")
        raw = (body.get("content") or {}).get("raw")
        if raw is None:
            raise Abort(400, "content.raw: This field is required.")
        comment["content"].update(raw=raw, html=f"<p>{raw}</p>")
        comment["updated_on"] = now_iso()
        return json_response(public(comment))

    # ---- commits and build statuses ------------------------------------------------
    def _commit(self, w: str, s: str, sha: str, **_: Any) -> Response:
        full = self.resolve(self._repo(f"{w}/{s}"), sha)
        api = f"{self.api_url}/repositories/{w}/{s}/commit/{full}"
        return json_response({"type": "commit", "hash": full, "date": now_iso(), "message": "commit\n",
                              "author": {"type": "author", "raw": "Someone <someone@example.com>"}, "parents": [],
                              "links": {"self": {"href": api}, "statuses": {"href": f"{api}/statuses"},
                                        "html": {"href": f"{self.web_url}/{w}/{s}/commits/{full}"}}})

    def add_status(self, repo: Any, sha: str, body: dict) -> dict:
        state, key = body.get("state"), body.get("key")
        if state not in BUILD_STATES:
            raise Abort(400, f"state: {state!r} is not a valid choice.")
        if not key or not body.get("url"):
            raise Abort(400, "key and url are required.")
        full = self.resolve(repo, sha)
        full_name = repo.data["full_name"]
        status = {"type": "build", "key": key, "name": body.get("name") or key, "state": state,
                  "description": body.get("description") or "", "url": body["url"], "refname": body.get("refname"),
                  "created_on": now_iso(), "updated_on": now_iso(),
                  "commit": {"hash": full, "type": "commit"},
                  "links": {"self": {"href": f"{self.api_url}/repositories/{full_name}/commit/{full}/statuses/build/{key}"}}}
        repo.statuses.setdefault(full, []).append(status)
        return status

    def _post_status(self, w: str, s: str, sha: str, body: dict, **_: Any) -> Response:
        return json_response(self.add_status(self._repo(f"{w}/{s}"), sha, body), 201)

    def _list_statuses(self, w: str, s: str, sha: str, **_: Any) -> Response:
        """The latest status of each key (Bitbucket keeps one per key and commit)."""
        repo = self._repo(f"{w}/{s}")
        latest = {st["key"]: st for st in repo.statuses.get(self.resolve(repo, sha), [])}
        return page(list(latest.values()))

    # ---- workspaces and permissions ------------------------------------------------
    def _workspace(self, w: str, **_: Any) -> Response:
        api = f"{self.api_url}/workspaces/{w}"
        if not any(name.split("/")[0] == w for name in self._repos):
            raise Abort(404, f"Workspace {w} not found")
        return json_response({"type": "workspace", "slug": w, "name": w, "is_private": True,
                              "uuid": "{" + hashlib.md5(w.encode()).hexdigest() + "}",
                              "links": {"self": {"href": api}, "html": {"href": f"{self.web_url}/{w}/"},
                                        "members": {"href": f"{api}/members"}, "projects": {"href": f"{api}/projects"},
                                        "repositories": {"href": f"{self.api_url}/repositories/{w}"}}})

    def _permissions(self, w: str, s: str, **_: Any) -> Response:
        """Only an admin of the repository may read who has which permission on it."""
        repo = self._repo(f"{w}/{s}")
        if repo.permissions.get(self.bot_name) != "admin":
            raise Abort(403, "You must be an admin of this repository to view its permissions.")
        ref = self.repository_ref(f"{w}/{s}")
        return page([{"type": "repository_permission", "permission": permission, "user": self.user(name),
                      "repository": ref} for name, permission in repo.permissions.items()])

    # ---- issues --------------------------------------------------------------------
    def _issues(self, w: str, s: str) -> dict:
        repo = self._repo(f"{w}/{s}")
        if not repo.data.get("has_issues"):
            raise Abort(404, "Repository has no issue tracker.")
        return repo.issues

    def _create_issue(self, w: str, s: str, body: dict, **_: Any) -> Response:
        issues = self._issues(w, s)
        if not body.get("title"):
            raise Abort(400, "title: This field is required.")
        number = len(issues) + 1
        api = f"{self.api_url}/repositories/{w}/{s}/issues/{number}"
        raw = (body.get("content") or {}).get("raw") or ""
        issues[number] = {"type": "issue", "id": number, "title": body["title"], "state": "new",
                          "kind": body.get("kind") or "bug", "priority": body.get("priority") or "major",
                          "content": {"raw": raw, "markup": "markdown", "html": "", "type": "rendered"},
                          "reporter": self.user(self.bot_name), "repository": self.repository_ref(f"{w}/{s}"),
                          "created_on": now_iso(), "updated_on": now_iso(), "votes": 0, "_comments": [],
                          "links": {"self": {"href": api}, "html": {"href": f"{self.web_url}/{w}/{s}/issues/{number}"},
                                    "comments": {"href": f"{api}/comments"}}}
        return json_response(public(issues[number]), 201)

    def _update_issue(self, w: str, s: str, i: str, body: dict, **_: Any) -> Response:
        issue = self._issues(w, s)[int(i)]
        if body.get("state") is not None and body["state"] not in _ISSUE_STATES:
            raise Abort(400, f"state: {body['state']!r} is not a valid choice.")
        issue.update({k: body[k] for k in ("title", "state", "kind", "priority") if body.get(k) is not None})
        if body.get("content") is not None:
            issue["content"]["raw"] = body["content"].get("raw", "")
        issue["updated_on"] = now_iso()
        return json_response(public(issue))

    def _issue_comment(self, w: str, s: str, i: str, body: dict, **_: Any) -> Response:
        issue = self._issues(w, s)[int(i)]
        comment = {"type": "issue_comment", "id": self.next_id(), "content": body.get("content") or {},
                   "user": self.user(self.bot_name), "created_on": now_iso()}
        issue["_comments"].append(comment)
        return json_response(comment, 201)


def public(obj: dict) -> dict:
    """The object without the fake's own bookkeeping (keys starting with _)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def diffstat_entry(entry: Any) -> dict:
    """A diffstat value from a path, an (old, new) rename, or {path, status}."""
    if isinstance(entry, dict):
        old = new = entry["path"]
        status = entry.get("status", "modified")
    else:
        old, new = (entry, entry) if isinstance(entry, str) else entry
        status = "modified" if old == new else "renamed"

    def side(path: str) -> dict:
        return {"path": path, "type": "commit_file", "escaped_path": path, "links": {}}
    return {"type": "diffstat", "status": status, "lines_added": 1, "lines_removed": 1,
            "old": side(old), "new": side(new)}


def page(items: list, default_pagelen: int = 10) -> Response:
    """One page of a collection, as Bitbucket Cloud pages: ?page=, ?pagelen= (at most 100)."""
    pagelen = min(max(int(request.args.get("pagelen", default_pagelen)), 1), 100)
    number = max(int(request.args.get("page", 1)), 1)
    body: dict = {"pagelen": pagelen, "size": len(items), "page": number,
                  "values": items[(number - 1) * pagelen: number * pagelen]}
    if number * pagelen < len(items):
        query = [(k, v) for k, values in request.args.lists() if k != "page" for v in values]
        body["next"] = f"{request.base_url}?{urlencode(query + [('page', str(number + 1))])}"
    return json_response(body)
