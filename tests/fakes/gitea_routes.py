"""The REST handlers of FakeGitea (tests/fakes/gitea.py) and Gitea's wire habits: errors as
{"message", "url"}, `page`/`limit` pagination (limit capped at 50) with X-Total-Count and a Link
header, 201 for what a POST or an issue PATCH creates or changes."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Response, request

from tests.fakes import gitea_json as shapes
from tests.fakes.git_remote import branch_diff

MAX_LIMIT, DEFAULT_LIMIT = 50, 30
MERGE_STYLES = ("merge", "rebase", "rebase-merge", "squash", "fast-forward-only")
REACTIONS = ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes")
STATUS_STATES = ("pending", "success", "error", "failure", "warning")
Route = tuple[str, re.Pattern, Callable[..., Response]]


class Abort(Exception):
    """Answer with this status and Gitea's {"message": ..., "url": ...} body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class GiteaRoutes:
    """Mixin: the API's routes over FakeGitea's state."""

    bot: str
    url: str
    _lock: Any
    _next_id: Callable[[], int]
    _repo: Callable[..., Any]
    _users: dict[str, dict]
    _orgs: dict[str, list[dict]]
    add_pull: Callable[..., dict]

    def _route_table(self) -> list[Route]:
        r = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
        p = r + r"/pulls/(?P<index>\d+)"
        c = r + r"/issues/comments/(?P<cid>\d+)"
        table = [
            ("GET", "/user", lambda **_: json_response(self._users[self.bot])),
            ("GET", r + "/pulls", self._list_pulls),
            ("POST", r + "/pulls", self._create_pull),
            ("GET", p, lambda owner, name, index, **_: json_response(self._pull_json(owner, name, int(index)))),
            ("GET", p + "/files", self._files),
            ("GET", p + "/reviews", self._reviews),
            ("POST", p + "/merge", self._merge),
            ("GET", r + r"/issues/(?P<index>\d+)/comments", self._list_comments),
            ("POST", r + r"/issues/(?P<index>\d+)/comments", self._create_comment),
            ("GET", c, lambda owner, name, cid, **_: json_response(self._comment_json(owner, name, int(cid)))),
            ("PATCH", c, self._edit_comment),
            ("POST", c + "/reactions", self._react),
            ("POST", r + r"/statuses/(?P<sha>[0-9a-fA-F]+)", self._create_status),
            ("GET", r + r"/commits/(?P<ref>[^/]+)/statuses", self._list_statuses),
            ("GET", r + r"/collaborators/(?P<login>[^/]+)/permission", self._permission),
            ("GET", r + "/branch_protections", self._protections),
            ("POST", r + "/issues", self._create_issue),
            ("GET", r + r"/issues/(?P<index>\d+)", lambda owner, name, index, **_: json_response(
                self._issue_json(owner, name, int(index)))),
            ("PATCH", r + r"/issues/(?P<index>\d+)", self._edit_issue),
            ("GET", r"/orgs/(?P<org>[^/]+)/teams", self._teams),
            ("GET", r"/teams/(?P<tid>\d+)/members/(?P<login>[^/]+)", self._team_member),
        ]
        return [(m, re.compile(pattern), h) for m, pattern, h in table]

    # ---- pull requests -------------------------------------------------------------
    def _pull(self, owner: str, name: str, index: int) -> dict:
        pull = self._repo(owner, name).pulls.get(index)
        if pull is None:
            raise Abort(404, "The target couldn't be found.")
        return pull

    def _pull_json(self, owner: str, name: str, index: int) -> dict:
        repo, pull = self._repo(owner, name), self._pull(owner, name, index)
        head_repo = None if pull["fork_deleted"] else (pull["head_repo"] or repo.data)
        return shapes.pull_json(pull, repo.data, head_repo, self._users, repo.branch_head(pull["base_ref"])
                                or pull["merge_base"])

    def _list_pulls(self, owner: str, name: str, **_: Any) -> Response:
        """state: open (default), closed, all; sort: oldest, recentupdate, leastupdate (else newest first)."""
        state = request.args.get("state", "open")
        pulls = [p for p in self._repo(owner, name).pulls.values()
                 if state == "all" or (state == "closed") == p["closed"]]
        sort = request.args.get("sort", "")
        if sort in ("recentupdate", "leastupdate"):
            pulls.sort(key=lambda p: (_time(p["updated_at"]), p["id"]), reverse=sort == "recentupdate")
        else:
            pulls.sort(key=lambda p: p["id"], reverse=sort != "oldest")
        return paginate([self._pull_json(owner, name, p["number"]) for p in pulls])

    def _create_pull(self, owner: str, name: str, body: dict, **_: Any) -> Response:
        repo = self._repo(owner, name)
        for key in ("head", "base", "title"):
            if not body.get(key):
                raise Abort(422, f"[{key.title()}]: Required")
        head, base = str(body["head"]), str(body["base"])
        if head == base:
            raise Abort(422, "Invalid PullRequest: There are no changes between the head and the base")
        taken = [p for p in repo.pulls.values()
                 if p["head_ref"] == head and p["base_ref"] == base and not p["closed"]]
        if taken:
            raise Abort(409, f"pull request already exists for these targets [id: {taken[0]['id']}, "
                             f"issue_id: {taken[0]['number']}, head_branch: {head}, base_branch: {base}]")
        diff = branch_diff(repo.git_dir, base, head)
        if diff is None:
            raise Abort(404, "The target couldn't be found.")
        files = [f["filename"] if "previous_filename" not in f else (f["previous_filename"], f["filename"])
                 for f in diff.files]
        pull = self.add_pull(repo.data["full_name"], None, diff.head_sha, head, base, self.bot,
                             files=files, base_sha=diff.merge_base, title=str(body["title"]),
                             body=str(body.get("body") or ""))
        return json_response(self._pull_json(owner, name, pull["number"]), 201)

    def _files(self, owner: str, name: str, index: str, **_: Any) -> Response:
        repo, pull = self._repo(owner, name), self._pull(owner, name, int(index))
        return paginate([shapes.changed_file_json(f, repo.data, pull["head_sha"]) for f in pull["files"]])

    def _reviews(self, owner: str, name: str, index: str, **_: Any) -> Response:
        repo, pull = self._repo(owner, name), self._pull(owner, name, int(index))
        html = f"{repo.data['html_url']}/pulls/{index}"
        return paginate([shapes.review_json(r, self._users, html, pull["head_sha"]) for r in pull["reviews"]])

    def _merge(self, owner: str, name: str, index: str, body: dict, **_: Any) -> Response:
        repo, pull = self._repo(owner, name), self._pull(owner, name, int(index))
        if pull["closed"] and not pull["merged"]:
            raise Abort(404, "The target couldn't be found.")
        if pull["merged"]:
            raise Abort(405, "PR already merged")
        if shapes.is_wip(pull["title"]):
            raise Abort(405, "Work in progress PRs cannot be merged")
        if not pull["mergeable"]:
            raise Abort(405, "Please try again later")
        style = body.get("Do") or "merge"
        if style not in MERGE_STYLES or style not in repo.merge_styles:
            raise Abort(405, f"{style} is not allowed an allowed merge style for this repository")
        if body.get("head_commit_id") and body["head_commit_id"] != pull["head_sha"]:
            raise Abort(409, "head out of date")
        pull.update(merged=True, closed=True, merged_by=self.bot, merged_at=shapes.now_iso(),
                    closed_at=shapes.now_iso(), updated_at=shapes.now_iso(), merge_style=style,
                    merge_commit_sha=shapes.stable_sha("merge", pull["head_sha"], style))
        if body.get("delete_branch_after_merge") in (True, "true"):
            repo.deleted_branches.append(pull["head_ref"])
        return Response(status=200)

    # ---- comments and reactions ----------------------------------------------------
    def _issue(self, owner: str, name: str, index: int) -> dict:
        issue = self._repo(owner, name).issues.get(index)
        if issue is None:
            raise Abort(404, "The target couldn't be found.")
        return issue

    def _comment(self, owner: str, name: str, cid: int) -> dict:
        repo = self._repo(owner, name)
        found = next((c for i in repo.issues.values() for c in i["comments"] if c["id"] == cid), None)
        if found is None:
            raise Abort(404, "The target couldn't be found.")
        return found

    def _comment_json(self, owner: str, name: str, cid: int) -> dict:
        repo, comment = self._repo(owner, name), self._comment(owner, name, cid)
        return shapes.comment_json(comment, repo.data, self._users, comment["issue"] in repo.pulls)

    def _list_comments(self, owner: str, name: str, index: str, **_: Any) -> Response:
        """All comments of the issue, oldest first; `since` filters by update time (not paginated)."""
        since = request.args.get("since")
        comments = [c for c in self._issue(owner, name, int(index))["comments"]
                    if not since or _time(c["updated_at"]) >= _time(since)]
        response = json_response([self._comment_json(owner, name, c["id"]) for c in comments])
        response.headers["X-Total-Count"] = str(len(comments))
        return response

    def _create_comment(self, owner: str, name: str, index: str, body: dict, **_: Any) -> Response:
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise Abort(422, "[Body]: Required")
        comment = self.add_comment(self._repo(owner, name).data["full_name"], int(index), body["body"], self.bot)
        return json_response(self._comment_json(owner, name, comment), 201)

    def _edit_comment(self, owner: str, name: str, cid: str, body: dict, **_: Any) -> Response:
        comment = self._comment(owner, name, int(cid))
        if comment["author"] != self.bot:
            raise Abort(403, "user should have permission to edit comment")
        comment.update(body=str(body.get("body") or ""), updated_at=shapes.now_iso())
        return json_response(self._comment_json(owner, name, int(cid)))

    def _react(self, owner: str, name: str, cid: str, body: dict, **_: Any) -> Response:
        comment, content = self._comment(owner, name, int(cid)), body.get("content")
        if content not in REACTIONS:
            raise Abort(403, f"'{content}' is not an allowed reaction")
        reaction = {"user": self._users[self.bot], "content": content, "created_at": shapes.now_iso()}
        if (self.bot, content) in comment["reactions"]:
            return json_response(reaction, 200)
        comment["reactions"].append((self.bot, content))
        return json_response(reaction, 201)

    # ---- statuses ------------------------------------------------------------------
    def _create_status(self, owner: str, name: str, sha: str, body: dict, **_: Any) -> Response:
        if body.get("state") not in STATUS_STATES:
            raise Abort(422, "[State]: Required")
        status = self.add_status(self._repo(owner, name).data["full_name"], sha, str(body.get("context") or ""),
                                 body["state"], str(body.get("description") or ""),
                                 str(body.get("target_url") or ""), self.bot)
        return json_response(shapes.status_json(status, self._users, self._repo(owner, name).data), 201)

    def _list_statuses(self, owner: str, name: str, ref: str, **_: Any) -> Response:
        """Every status of the commit, newest first (Gitea's default sort)."""
        repo = self._repo(owner, name)
        history = sorted(repo.statuses.get(ref, []), key=lambda s: s["id"], reverse=True)
        return paginate([shapes.status_json(s, self._users, repo.data) for s in history])

    # ---- permissions, teams --------------------------------------------------------
    def _permission(self, owner: str, name: str, login: str, **_: Any) -> Response:
        repo = self._repo(owner, name)
        if repo.permission(self.bot) not in ("admin", "owner") and login.lower() != self.bot.lower():
            raise Abort(403, "Only admins can query all permissions, repo admins can query all repo "
                             "permissions, collaborators can query only their own")
        if login not in self._users:
            raise Abort(404, f"user does not exist [uid: 0, name: {login}]")
        permission = repo.permission(login)
        return json_response({"permission": permission, "role_name": permission, "user": self._users[login]})

    def _protections(self, owner: str, name: str, **_: Any) -> Response:
        """Every rule, in one answer (not paginated); repository admins only (reqAdmin)."""
        repo = self._repo(owner, name)
        if repo.permission(self.bot) not in ("admin", "owner"):
            raise Abort(403, "user should be an owner or a collaborator with admin write of a repository")
        return json_response(repo.protections)

    def _teams(self, org: str, **_: Any) -> Response:
        if org not in self._orgs:
            raise Abort(404, "The target couldn't be found.")
        owner = self._users.get(org) or {"id": 0, "login": org}
        return paginate([shapes.team_json(t, owner) for t in self._orgs[org]])

    def _team_member(self, tid: str, login: str, **_: Any) -> Response:
        team = next((t for teams in self._orgs.values() for t in teams if t["id"] == int(tid)), None)
        if team is None or login not in team["members"]:
            raise Abort(404, "The target couldn't be found.")
        return json_response(self._users[login])

    # ---- issues --------------------------------------------------------------------
    def _issue_json(self, owner: str, name: str, index: int) -> dict:
        repo = self._repo(owner, name)
        return shapes.issue_json(self._issue(owner, name, index), repo.data, self._users, repo.pulls.get(index))

    def _create_issue(self, owner: str, name: str, body: dict, **_: Any) -> Response:
        if not body.get("title"):
            raise Abort(422, "[Title]: Required")
        issue = self.add_issue(self._repo(owner, name).data["full_name"], str(body["title"]),
                               str(body.get("body") or ""), self.bot)
        return json_response(self._issue_json(owner, name, issue["number"]), 201)

    def _edit_issue(self, owner: str, name: str, index: str, body: dict, **_: Any) -> Response:
        issue = self._issue(owner, name, int(index))
        for key in ("title", "body"):
            if isinstance(body.get(key), str):
                issue[key] = body[key]
        if body.get("state") in ("open", "closed"):
            issue.update(state=body["state"], closed_at=shapes.now_iso() if body["state"] == "closed" else None)
        issue["updated_at"] = shapes.now_iso()
        return json_response(self._issue_json(owner, name, int(index)), 201)

    add_comment: Callable[..., int]
    add_status: Callable[..., dict]
    add_issue: Callable[..., dict]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def error_response(status: int, message: str, base_url: str) -> Response:
    return json_response({"message": message, "url": f"{base_url}/api/swagger"}, status)


def paginate(items: list) -> Response:
    """One page (`page` from 1, `limit` default 30, at most 50) with X-Total-Count and Link, as
    Gitea's ctx.SetLinkHeader writes them (absolute URLs, joined by commas)."""
    limit = min(max(_int_arg("limit", DEFAULT_LIMIT), 1), MAX_LIMIT)
    page = max(_int_arg("page", 1), 1)
    last = max(1, -(-len(items) // limit))
    response = json_response(items[(page - 1) * limit: page * limit])
    base = request.base_url

    def link(number: int, rel: str) -> str:
        query = [(k, v) for k, v in parse_qsl(request.query_string.decode()) if k != "page"]
        return f'<{base}?{urlencode([*query, ("page", str(number))])}>; rel="{rel}"'

    links = []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    response.headers["X-Total-Count"] = str(len(items))
    if links:
        response.headers["Link"] = ",".join(links)
    return response


def _int_arg(name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError:
        return default
