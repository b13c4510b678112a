"""The HTTP side of FakeGitHub: a Flask app with GitHub's REST routes and wire format.

Answers follow docs.github.com/rest: status codes, `{"message": ...}` error bodies,
`Link` pagination headers, 422 on bodies GitHub rejects (comment > 65536 characters,
status description > 140 characters).
"""

from __future__ import annotations

import datetime
import math
import secrets
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlencode

import jwt
from flask import Blueprint, Flask, Response, abort, g, jsonify, request

from tests.fakes import github_payloads as payloads
from tests.fakes.git_remote import branch_diff
from tests.fakes.github_checks import register_check_routes, register_graphql

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub, FakePull, FakeRepo

JWT_ONLY = ("/app", "/app/installations/", "/installation")
REACTIONS = {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
WRITE_ROLES = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}


def _invalid(*errors: dict) -> Response:
    """GitHub's 422: {"message": "Validation Failed", "errors": [{resource, code, field|message}]}."""
    response = jsonify({"message": "Validation Failed", "errors": list(errors),
                        "documentation_url": "https://docs.github.com/rest"})
    response.status_code = 422
    return response


def _error(status: int, message: str, headers: Optional[dict] = None) -> Response:
    response = jsonify({"message": message, "documentation_url": "https://docs.github.com/rest"})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def build_app(fake: "FakeGitHub", prefix: str) -> Flask:
    app = Flask("fake_github")
    api = Blueprint("api", "fake_github", url_prefix=prefix)

    def rel_path() -> str:
        return request.path[len(prefix) :] or "/"

    @api.before_request
    def gatekeeper() -> Optional[Response]:
        path = rel_path()
        with fake.lock:
            fake.requests.append((request.method, path))
        failure = fake.take_failure(path)
        if failure:
            return _failure_response(*failure)
        who = _identify(fake, request.headers.get("Authorization", ""))
        if who is None:
            return _error(401, "Bad credentials")
        g.kind, g.login = who
        jwt_route = path.startswith(JWT_ONLY[:2]) or path.endswith(JWT_ONLY[2])
        if jwt_route != (g.kind == "app"):
            return _error(
                401, "A JSON web token could not be decoded" if jwt_route else "Bad credentials"
            )
        fake.lock.acquire()  # one request at a time mutates the in-memory state
        g.locked = True
        return None

    @api.teardown_request
    def release(_exc: Any) -> None:
        if g.pop("locked", False):
            if request.method != "GET":
                fake.changed.notify_all()
            fake.lock.release()

    def repo_or_404(owner: str, name: str) -> "FakeRepo":
        repo = fake.repos.get(f"{owner}/{name}")
        if repo is None:
            abort(_error(404, "Not Found"))
        return repo

    def pull_or_404(owner: str, name: str, number: int) -> tuple["FakeRepo", "FakePull"]:
        repo = repo_or_404(owner, name)
        if number not in repo.pulls:
            abort(_error(404, "Not Found"))
        return repo, repo.pulls[number]

    def user(login: str) -> dict:
        return payloads.user_json(login, fake.api_url, fake.web_url)

    def repo_body(repo: "FakeRepo") -> dict:
        return payloads.repo_json(
            repo.full_name, repo.clone_url, repo.default_branch, fake.api_url, repo.web
        )

    def page(items: list) -> Response:
        per_page = max(1, min(int(request.args.get("per_page", 30)), 100))
        number = max(1, int(request.args.get("page", 1)))
        last = max(1, math.ceil(len(items) / per_page))
        response = jsonify(items[(number - 1) * per_page : number * per_page])
        links = []
        for rel, target in (
            ("next", number + 1),
            ("last", last),
            ("first", 1),
            ("prev", number - 1),
        ):
            if (rel in ("next", "last") and number < last) or (
                rel in ("first", "prev") and number > 1
            ):
                query = urlencode({**request.args.to_dict(), "page": target, "per_page": per_page})
                links.append(f'<{request.base_url}?{query}>; rel="{rel}"')
        if links:
            response.headers["Link"] = ", ".join(links)
        return response

    # -- users, apps, installations --------

    @api.get("/user")
    def get_user() -> Any:
        if g.kind != "user":
            return _error(403, "Resource not accessible by integration")
        return user(g.login)

    @api.get("/app")
    def get_app() -> Any:
        return {
            "id": fake.app_id,
            "slug": fake.app_slug,
            "name": fake.app_slug,
            "owner": user("acme"),
            "html_url": f"{fake.web_url}/apps/{fake.app_slug}",
        }

    @api.get("/repos/<owner>/<name>/installation")
    def get_installation(owner: str, name: str) -> Any:
        repo_or_404(owner, name)
        return {
            "id": fake.installation_id,
            "app_id": fake.app_id,
            "account": user(owner),
            "target_type": "Organization",
            "permissions": {},
            "events": [],
        }

    @api.post("/app/installations/<int:installation_id>/access_tokens")
    def create_token(installation_id: int) -> Any:
        if installation_id != fake.installation_id:
            return _error(404, "Not Found")
        token, expires = fake.issue_installation_token()
        expires_at = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc)
        return {
            "token": token,
            "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"pull_requests": "write"},
            "repository_selection": "all",
        }, 201

    # -- repositories and pull requests --------

    @api.get("/repos/<owner>/<name>")
    def get_repo(owner: str, name: str) -> Any:
        return repo_body(repo_or_404(owner, name))

    def pull_body(repo: "FakeRepo", pull: "FakePull") -> dict:
        base = repo_body(repo)
        head_repo: Optional[dict] = base
        if pull.head_repo_missing:
            head_repo = None
        elif pull.fork_full_name:
            fork_clone = repo.clone_url.replace(repo.full_name, pull.fork_full_name)
            head_repo = payloads.repo_json(
                pull.fork_full_name, fork_clone, repo.default_branch, fake.api_url, repo.web
            )
            head_repo["fork"] = True
        users = {pull.author: user(pull.author)}
        return payloads.pull_json(base, pull, head_repo, users)

    @api.get("/repos/<owner>/<name>/pulls")
    def list_pulls(owner: str, name: str) -> Any:
        """GET /pulls: state open (default), closed or all; sort created (default) or updated;
        direction asc or desc (default: desc for created, asc otherwise, as GitHub); paginated."""
        repo = repo_or_404(owner, name)
        state = request.args.get("state", "open")
        if state not in ("open", "closed", "all"):
            return _invalid({"resource": "PullRequest", "field": "state", "code": "invalid"})
        sort = request.args.get("sort", "created")
        key = "updated_at" if sort == "updated" else "number"
        chosen = [p for p in repo.pulls.values()
                  if state == "all" or (state == "closed") == (p.closed or p.merged)]
        direction = request.args.get("direction", "desc" if sort == "created" else "asc")
        chosen.sort(key=lambda p: (getattr(p, key), p.number), reverse=direction == "desc")
        return page([pull_body(repo, p) for p in chosen])

    @api.get("/repos/<owner>/<name>/pulls/<int:number>")
    def get_pull(owner: str, name: str, number: int) -> Any:
        repo, pull = pull_or_404(owner, name, number)
        body = pull_body(repo, pull)
        if pull.pending_polls > 0:
            pull.pending_polls -= 1
            body.update(mergeable=None, rebaseable=None, mergeable_state="unknown")
        return body

    @api.get("/repos/<owner>/<name>/pulls/<int:number>/files")
    def get_files(owner: str, name: str, number: int) -> Any:
        repo, pull = pull_or_404(owner, name, number)
        base = repo_body(repo)
        return page([payloads.file_json(base, pull.head_sha, f) for f in pull.files])

    @api.get("/repos/<owner>/<name>/pulls/<int:number>/reviews")
    def get_reviews(owner: str, name: str, number: int) -> Any:
        repo, pull = pull_or_404(owner, name, number)
        base = repo_body(repo)
        return page([payloads.review_json(base, number, r, user(r["user"])) for r in pull.reviews])

    @api.put("/repos/<owner>/<name>/pulls/<int:number>/merge")
    def merge_pull(owner: str, name: str, number: int) -> Any:
        _, pull = pull_or_404(owner, name, number)
        data = request.get_json(silent=True) or {}
        if pull.merged or pull.closed or not pull.mergeable or pull.draft:
            return _error(405, "Pull Request is not mergeable")
        if data.get("sha") and data["sha"] != pull.head_sha:
            return _error(409, "Head branch was modified. Review and try the merge again.")
        method = data.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            return _invalid({"resource": "PullRequest", "code": "invalid", "field": "merge_method"})
        fake.set_state(f"{owner}/{name}", number, closed=True, merged=True)
        pull.merge_method = method
        return {
            "sha": pull.merge_commit_sha,
            "merged": True,
            "message": "Pull Request successfully merged",
        }

    @api.post("/repos/<owner>/<name>/pulls")
    def create_pull(owner: str, name: str) -> Any:
        """Open a pull request from a branch of the repository itself (`head` may be `owner:branch`);
        its head, base and files are read from the repository when it is a local git repo."""
        repo = repo_or_404(owner, name)
        data = request.get_json(silent=True) or {}
        missing = [f for f in ("head", "base", "title") if not isinstance(data.get(f), str) or not data[f]]
        if missing:
            return _invalid(*({"resource": "PullRequest", "code": "missing_field", "field": f} for f in missing))
        head, base = data["head"].split(":", 1)[-1], data["base"]
        if any(p.head_ref == head and p.base_ref == base and not p.closed and not p.fork_full_name
               for p in repo.pulls.values()):
            return _invalid({"resource": "PullRequest", "code": "custom",
                             "message": f"A pull request already exists for {owner}:{head}."})
        diff = branch_diff(repo.clone_url, base, head)
        if diff is None and not {head, base} <= repo.branches:
            return _invalid({"resource": "PullRequest", "field": "head" if head not in repo.branches else "base",
                             "code": "invalid"})
        if diff is not None and diff.head_sha == diff.merge_base:
            return _invalid({"resource": "PullRequest", "code": "custom",
                             "message": f"No commits between {base} and {head}"})
        number = max([0, *repo.pulls, *repo.issues]) + 1
        head_sha = diff.head_sha if diff else payloads.stable_sha("branch", repo.full_name, head)
        base_sha = diff.base_sha if diff else payloads.stable_sha("branch", repo.full_name, base)
        pull = fake.add_pull(repo.full_name, number, head_sha, head, base, g.login, diff.files if diff else [],
                             base_sha=base_sha, draft=bool(data.get("draft")), title=data["title"])
        pull.body = data.get("body")
        return pull_body(repo, pull), 201

    @api.delete("/repos/<owner>/<name>/git/refs/heads/<path:branch>")
    def delete_ref(owner: str, name: str, branch: str) -> Any:
        repo = repo_or_404(owner, name)
        if branch not in repo.branches:
            return _error(422, "Reference does not exist")
        repo.branches.discard(branch)
        return "", 204

    # -- comments and reactions --------

    def comment_or_404(owner: str, name: str, comment_id: int) -> dict:
        comment = fake.all_comments.get(comment_id)
        if comment is None or comment["repo"] != f"{owner}/{name}":
            abort(_error(404, "Not Found"))
        return comment

    def comment_body(owner: str, name: str, comment: dict) -> dict:
        return payloads.comment_json(
            repo_body(repo_or_404(owner, name)), comment, user(comment["user"])
        )

    @api.get("/repos/<owner>/<name>/issues/<int:number>/comments")
    def list_comments(owner: str, name: str, number: int) -> Any:
        repo_or_404(owner, name)
        since = request.args.get("since", "")  # ISO 8601: comments updated at or after it
        own = [
            c
            for c in fake.all_comments.values()
            if c["repo"] == f"{owner}/{name}" and c["issue_number"] == number and c["updated_at"] >= since
        ]
        return page([comment_body(owner, name, c) for c in own])

    @api.post("/repos/<owner>/<name>/issues/<int:number>/comments")
    def create_comment(owner: str, name: str, number: int) -> Any:
        repo = repo_or_404(owner, name)
        if number not in repo.pulls and number not in repo.issues:
            return _error(404, "Not Found")
        body = (request.get_json(silent=True) or {}).get("body")
        if not isinstance(body, str) or len(body) > 65536:
            return _error(422, "Validation Failed: body is too long (maximum is 65536 characters)")
        comment = fake.record_comment(f"{owner}/{name}", number, body, g.login)
        return comment_body(owner, name, comment), 201

    @api.get("/repos/<owner>/<name>/issues/comments/<int:comment_id>")
    def get_comment(owner: str, name: str, comment_id: int) -> Any:
        return comment_body(owner, name, comment_or_404(owner, name, comment_id))

    @api.patch("/repos/<owner>/<name>/issues/comments/<int:comment_id>")
    def edit_comment(owner: str, name: str, comment_id: int) -> Any:
        comment = comment_or_404(owner, name, comment_id)
        body = (request.get_json(silent=True) or {}).get("body")
        if not isinstance(body, str) or len(body) > 65536:
            return _error(422, "Validation Failed: body is too long (maximum is 65536 characters)")
        if comment["user"] != g.login:
            return _error(403, "Must have admin rights to Repository.")
        comment.update(body=body, updated_at=payloads.now_iso())
        return comment_body(owner, name, comment)

    @api.post("/repos/<owner>/<name>/issues/comments/<int:comment_id>/reactions")
    def create_reaction(owner: str, name: str, comment_id: int) -> Any:
        comment = comment_or_404(owner, name, comment_id)
        content = (request.get_json(silent=True) or {}).get("content")
        if content not in REACTIONS:
            return _error(422, "Validation Failed")
        for reaction in comment["reactions"]:
            if reaction["content"] == content and reaction["user"] == g.login:
                return payloads.reaction_json(reaction, user(g.login)), 200
        reaction = {
            "id": fake.next_id(),
            "content": content,
            "user": g.login,
            "created_at": payloads.now_iso(),
        }
        comment["reactions"].append(reaction)
        return payloads.reaction_json(reaction, user(g.login)), 201

    # -- statuses, checks --------

    @api.post("/repos/<owner>/<name>/statuses/<sha>")
    def create_status(owner: str, name: str, sha: str) -> Any:
        repo = repo_or_404(owner, name)
        data = request.get_json(silent=True) or {}
        if data.get("state") not in ("error", "failure", "pending", "success"):
            return _error(422, "Validation Failed: state is not included in the list")
        if len(data.get("description") or "") > 140:
            return _error(
                422, "Validation Failed: description is too long (maximum is 140 characters)"
            )
        status = fake.record_status(repo.full_name, sha, g.login, data)
        return payloads.status_json(repo_body(repo), sha, status, user(g.login)), 201

    @api.get("/repos/<owner>/<name>/commits/<sha>/status")
    def combined_status(owner: str, name: str, sha: str) -> Any:
        repo = repo_or_404(owner, name)
        base, latest, seen = repo_body(repo), [], set()
        for status in reversed(repo.statuses.get(sha, [])):
            if status["context"] not in seen:
                seen.add(status["context"])
                latest.append(payloads.status_json(base, sha, status, user(status["creator"])))
        return payloads.combined_status_json(base, sha, latest)

    register_check_routes(api, fake, repo_or_404, repo_body, _error, _invalid)

    # -- permissions, teams --------

    @api.get("/repos/<owner>/<name>/collaborators/<login>/permission")
    def permission(owner: str, name: str, login: str) -> Any:
        role = repo_or_404(owner, name).permissions.get(login, "none")
        return {"permission": WRITE_ROLES.get(role, "none"), "role_name": role, "user": user(login)}

    @api.get("/orgs/<org>/teams/<slug>/memberships/<login>")
    def membership(org: str, slug: str, login: str) -> Any:
        if login not in fake.teams.get((org, slug), set()):
            return _error(404, "Not Found")
        return {
            "url": f"{fake.api_url}/orgs/{org}/teams/{slug}/memberships/{login}",
            "role": "member",
            "state": "active",
        }

    # -- issues --------

    def issue_or_404(repo: "FakeRepo", number: int) -> dict:
        if number not in repo.issues:
            abort(_error(404, "Not Found"))
        return repo.issues[number]

    def issue_body(repo: "FakeRepo", issue: dict) -> dict:
        return payloads.issue_json(repo_body(repo), issue, user(issue["user"]))

    @api.post("/repos/<owner>/<name>/issues")
    def create_issue(owner: str, name: str) -> Any:
        repo = repo_or_404(owner, name)
        data = request.get_json(silent=True) or {}
        if not data.get("title"):
            return _error(422, "Validation Failed: title is missing")
        number = max([0, *repo.pulls, *repo.issues]) + 1
        now = payloads.now_iso()
        repo.issues[number] = {
            "number": number,
            "title": data["title"],
            "body": data.get("body"),
            "state": "open",
            "user": g.login,
            "created_at": now,
            "updated_at": now,
        }
        return issue_body(repo, repo.issues[number]), 201

    @api.get("/repos/<owner>/<name>/issues/<int:number>")
    def get_issue(owner: str, name: str, number: int) -> Any:
        repo = repo_or_404(owner, name)
        return issue_body(repo, issue_or_404(repo, number))

    @api.patch("/repos/<owner>/<name>/issues/<int:number>")
    def edit_issue(owner: str, name: str, number: int) -> Any:
        repo = repo_or_404(owner, name)
        issue = issue_or_404(repo, number)
        data = request.get_json(silent=True) or {}
        issue.update(
            {k: data[k] for k in ("title", "body", "state") if k in data},
            updated_at=payloads.now_iso(),
        )
        issue["closed_at"] = payloads.now_iso() if issue["state"] == "closed" else None
        return issue_body(repo, issue)

    app.register_blueprint(api)
    # PyGithub's GraphQL URL: /api/graphql next to a GitHub Enterprise /api/v3, /graphql on github.com
    register_graphql(app, fake, prefix.removesuffix("/v3") + "/graphql", lambda header: _identify(fake, header))
    return app


def _failure_response(status: int, retry_after: Optional[int]) -> Response:
    headers: dict[str, str] = {}
    message = "Server Error"
    if status in (403, 429):
        message = "API rate limit exceeded"
        headers["x-ratelimit-remaining"] = "0"
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
    return _error(status, message, headers)


def _identify(fake: "FakeGitHub", header: str) -> Optional[tuple[str, Optional[str]]]:
    """(kind, login) for an Authorization header: user token, installation token or App JWT."""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not credential:
        return None
    if fake.token is not None and secrets.compare_digest(credential, fake.token):
        return "user", fake.login
    expiry = fake.installation_tokens.get(credential)
    if expiry is not None:
        return (
            ("installation", f"{fake.app_slug}[bot]")
            if expiry > datetime.datetime.now().timestamp()
            else None
        )
    if fake.app_id is None or fake.app_public_key is None:
        return None
    try:
        jwt.decode(
            credential,
            fake.app_public_key,
            algorithms=["RS256"],
            issuer=str(fake.app_id),
            options={"require": ["iat", "exp", "iss"]},
        )
    except jwt.PyJWTError:
        return None
    return "app", None
