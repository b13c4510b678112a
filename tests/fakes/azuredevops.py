"""A fake Azure DevOps Services organization: real HTTP on 127.0.0.1, driven through the
`azure-devops` SDK, its repositories served over git smart HTTP (tests/fakes/git_http.py).

It answers the SDK's route discovery for real (`_apis/ResourceAreas`, `OPTIONS .../_apis`, with
the identity service on a host of its own as vssps.dev.azure.com is) and routes every call by
the templates it published (tests/fakes/azuredevops_locations.py), checks the api-version and
the basic auth (any user name, the token as password; git checks the same), answers Azure
DevOps' JSON: collections as {"count", "value"}, errors as {"message", "typeKey", ...}, paging by
$top/$skip. Pull requests are built from the published service hook samples in
tests/fixtures/azuredevops (their `resource`, keys kept); other objects follow the REST reference.
Tests arrange state with the helpers (add_repo, add_pull, push, vote, ...) and read back what the
bot did (comments, pull request and commit statuses, work items, requests).
"""
from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes import azuredevops_locations as locations
from tests.fakes.azuredevops_git import branch_sha, publish_merge
from tests.fakes.azuredevops_org_routes import OrganizationRoutes
from tests.fakes.azuredevops_routes import (
    CREATED,
    Abort,
    AzureDevOpsRoutes,
    collection,
    now_iso,
    public,
)
from tests.fakes.git_http import GitHttpServer

ORG = "fabrikam"
NO_GIT_BASE = "0" * 40  # the target commit of a repository added without git


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    body: Any
    headers: dict


@dataclass
class _Repo:
    data: dict  # GitRepository
    bare: Path | None
    pulls: dict = field(default_factory=dict)  # id -> GitPullRequest (+ "_" keys)
    statuses: dict = field(default_factory=dict)  # sha -> [GitStatus] in posting order
    acl: dict = field(default_factory=dict)  # identity descriptor -> (allow, deny) on repoV2/P/R


class FakeAzureDevOps(AzureDevOpsRoutes, OrganizationRoutes):
    """One organization on an ephemeral port; use as a context manager or start()/stop()."""

    def __init__(self, token: str = "ado-pat-for-tests", bot: str = "plankeeper-bot@fabrikam.example"):
        self.token = token
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._users: dict[str, dict] = {}
        self._groups: dict[str, dict] = {}  # name -> group identity (+ "_members")
        self._projects: dict[str, dict] = {}  # name -> TeamProjectReference (+ "_teams", "_acl")
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._work_items: dict[int, dict] = {}
        self._failures: list[tuple[re.Pattern, list[int], int | None]] = []
        self._git_root = Path(tempfile.mkdtemp(prefix="fake-ado-git-"))
        self.git = GitHttpServer(self._git_root, authorize=lambda _user, password: password == self.token)
        self.bot = self.user(bot)
        self._server: Any = None
        self._serve_thread: threading.Thread | None = None
        self.url = ""

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def org_url(self) -> str:
        return f"{self.url}/{ORG}"

    @property
    def vssps_url(self) -> str:
        return f"{self.url}/vssps/{ORG}"

    def start(self) -> FakeAzureDevOps:
        app = Flask("fake_azuredevops")
        app.add_url_rule("/<path:_rest>", "api", self._dispatch, provide_automatic_options=False,
                         methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._serve_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._serve_thread.start()
        self.git.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._serve_thread.join(timeout=5)
            self._server = None
            self.git.stop()
        shutil.rmtree(self._git_root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- arranging state -------------------------------------------------------------
    def user(self, unique_name: str) -> dict:
        """The identity of a user (created on first use): its uniqueName is its login."""
        with self._lock:
            if unique_name not in self._users:
                identity_id = str(uuid.uuid4())
                self._users[unique_name] = {
                    "id": identity_id, "descriptor": f"Microsoft.IdentityModel.Claims.ClaimsIdentity;{unique_name}",
                    "subjectDescriptor": f"aad.{identity_id.replace('-', '')}",
                    "providerDisplayName": unique_name.partition("@")[0].title(), "isActive": True,
                    "isContainer": False, "members": [], "memberOf": [], "memberIds": [], "metaTypeId": 0,
                    "properties": {"Account": {"$type": "System.String", "$value": unique_name},
                                   "Mail": {"$type": "System.String", "$value": unique_name}},
                    "resourceVersion": 2,
                }
            return self._users[unique_name]

    def identity_ref(self, unique_name: str) -> dict:
        """The user as pull requests and comments name it (an IdentityRef, the samples' keys)."""
        ref = copy.deepcopy(CREATED["resource"]["createdBy"])
        identity = self.user(unique_name)
        ref.update(id=identity["id"], displayName=identity["providerDisplayName"], uniqueName=unique_name,
                   url=f"{self.vssps_url}/_apis/Identities/{identity['id']}",
                   imageUrl=f"{self.org_url}/_api/_common/identityImage?id={identity['id']}")
        ref["descriptor"] = identity["subjectDescriptor"]
        return ref

    def add_repo(self, project: str, name: str, bare: Path | None = None, default_branch: str = "main") -> dict:
        """Host a bare repository as PROJECT/_git/NAME (served over smart HTTP); without one, pull
        requests have no test merge and the files given to them."""
        if bare is not None:
            link = self._git_root / ORG / project / "_git" / f"{name}.git"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(bare).resolve())
        with self._lock:
            proj = self._projects.setdefault(project, {
                "id": str(uuid.uuid4()), "name": project, "url": f"{self.org_url}/_apis/projects/{project}",
                "state": "wellFormed", "revision": 1, "visibility": "private", "_teams": {}})
            repo_id = str(uuid.uuid4())
            data = copy.deepcopy(CREATED["resource"]["repository"])
            data.update(id=repo_id, name=name, url=f"{self.org_url}/{proj['id']}/_apis/git/repositories/{repo_id}",
                        project=public(proj), defaultBranch=f"refs/heads/{default_branch}",
                        remoteUrl=f"{self.git.url}/{ORG}/{project}/_git/{name}", size=0, isDisabled=False,
                        webUrl=f"{self.org_url}/{project}/_git/{name}")
            self._repos[(project.lower(), name.lower())] = _Repo(data, Path(bare) if bare else None)
            return data

    def add_pull(self, project: str, repo: str, number: int, head_sha: str, source: str, target: str,
                 author: str, files: list, draft: bool = False, title: str = "") -> dict:
        """Open a pull request (its first iteration); files: paths, or (old, new) for a rename."""
        r = self._repo(project, repo)
        pr = copy.deepcopy(CREATED["resource"])
        pr.update(repository=copy.deepcopy(r.data), pullRequestId=number, codeReviewId=number, status="active",
                  createdBy=self.identity_ref(author), creationDate=now_iso(), title=title or f"PR {number}",
                  description="", sourceRefName=f"refs/heads/{source}", targetRefName=f"refs/heads/{target}",
                  mergeStatus="succeeded", isDraft=draft, mergeId=str(uuid.uuid4()), reviewers=[],
                  url=f"{r.data['url']}/pullRequests/{number}", supportsIterations=True,
                  artifactId=f"vstfs:///Git/PullRequestId/{r.data['project']['id']}%2f{r.data['id']}%2f{number}",
                  _iterations=[], _threads=[], _statuses=[], _policies=[], _likes=[], _completion=None)
        with self._lock:
            r.pulls[number] = pr
        self.push(project, repo, number, head_sha, files)
        return pr

    def push(self, project: str, repo: str, number: int, head_sha: str, files: list) -> None:
        """New commits on the source branch: a new iteration, and the test merge computed again."""
        r, pr = self._repo(project, repo), self.pull(project, repo, number)
        base = (branch_sha(r.bare, pr["targetRefName"]) if r.bare else "") or NO_GIT_BASE
        merge = publish_merge(r.bare, number, base, head_sha) if r.bare else head_sha
        with self._lock:
            pr.update(lastMergeSourceCommit=self._commit_ref(r, head_sha), lastMergeTargetCommit=self._commit_ref(r, base),
                      lastMergeCommit=self._commit_ref(r, merge) if merge else None,
                      mergeStatus="succeeded" if merge else "conflicts")
            pr["_iterations"].append({
                "id": len(pr["_iterations"]) + 1, "description": pr["title"], "author": pr["createdBy"],
                "createdDate": now_iso(), "updatedDate": now_iso(), "hasMoreCommits": False,
                "reason": "create" if not pr["_iterations"] else "push",
                "sourceRefCommit": {"commitId": head_sha}, "targetRefCommit": {"commitId": base},
                "commonRefCommit": {"commitId": base}, "_changes": [_change(i + 1, f) for i, f in enumerate(files)]})

    def vote(self, project: str, repo: str, number: int, user: str, vote: int) -> None:
        """A reviewer's vote: 10 approved, 5 with suggestions, 0 none, -5 waiting, -10 rejected."""
        pr = self.pull(project, repo, number)
        with self._lock:
            reviewer = next((r for r in pr["reviewers"] if r["uniqueName"] == user), None)
            if reviewer is None:
                reviewer = dict(self.identity_ref(user), reviewerUrl=f"{pr['url']}/reviewers/{self.user(user)['id']}",
                                isRequired=False, isFlagged=False, hasDeclined=False)
                pr["reviewers"].append(reviewer)
            reviewer["vote"] = vote

    def add_comment(self, project: str, repo: str, number: int, body: str, author: str) -> dict:
        """A user's comment, in a thread of its own; the comment (with its _links)."""
        with self._lock:
            return self._new_thread(project, repo, number, body, author)["comments"][0]

    def grant(self, project: str, repo: str, principal: str, allow: int = 4, deny: int = 0) -> None:
        """An access control entry on the repository (4 = Contribute) for a user or group name."""
        with self._lock:
            self._repo(project, repo).acl[self._descriptor_of(principal)] = (allow, deny)

    def grant_project(self, project: str, principal: str, allow: int = 4, deny: int = 0) -> None:
        """An entry on every repository of the project (token repoV2/PROJECT), inherited by each."""
        with self._lock:
            self._projects[project].setdefault("_acl", {})[self._descriptor_of(principal)] = (allow, deny)

    def add_group(self, name: str, members: tuple[str, ...] = ()) -> None:
        """A security group (e.g. "[acme]\\Contributors"), with users as members."""
        with self._lock:
            group = self._groups.setdefault(name, {
                "descriptor": f"Microsoft.TeamFoundation.Identity;S-1-9-{len(self._groups) + 1}", "_members": []})
            group["_members"] += [m.lower() for m in members]

    def add_team_member(self, project: str, team: str, user: str) -> None:
        with self._lock:
            self._projects[project]["_teams"].setdefault(team.lower(), []).append(user)

    def set_policy(self, project: str, repo: str, number: int, display_name: str, status: str,
                   blocking: bool = True, type_id: str = "", settings: dict | None = None) -> None:
        """A branch policy evaluation on the pull request (status approved, rejected, running...)."""
        pr = self.pull(project, repo, number)
        with self._lock:
            pr["_policies"].append({"evaluationId": str(uuid.uuid4()), "status": status, "artifactId": pr["artifactId"],
                                    "configuration": {"id": len(pr["_policies"]) + 1, "isBlocking": blocking,
                                                      "isEnabled": True, "isDeleted": False,
                                                      "type": {"id": type_id or str(uuid.uuid4()),
                                                               "displayName": display_name},
                                                      "settings": settings or {}}})

    def set_state(self, project: str, repo: str, number: int, **fields: Any) -> None:
        """Change pull request fields (status, isDraft, mergeStatus, ...) as the web UI would."""
        with self._lock:
            self.pull(project, repo, number).update(fields)

    def mark_completed(self, project: str, repo: str, number: int, merge_sha: str) -> None:
        """Completed in the web UI into a real merge commit (already on the target branch)."""
        r = self._repo(project, repo)
        self.set_state(project, repo, number, status="completed", closedDate=now_iso(),
                       lastMergeCommit=self._commit_ref(r, merge_sha))

    def inject_failures(self, path_regex: str, statuses: tuple = (500,), retry_after: int | None = None) -> None:
        """The next len(statuses) requests whose path matches fail with these codes."""
        with self._lock:
            self._failures.append((re.compile(path_regex), list(statuses), retry_after))

    # ---- reading state ---------------------------------------------------------------
    def pull(self, project: str, repo: str, number: int) -> dict:
        return self._repo(project, repo).pulls[number]

    def repository(self, project: str, name: str) -> dict:
        """The repository as the API answers it (id, remoteUrl, project...)."""
        return copy.deepcopy(self._repo(project, name).data)

    def pull_numbers(self, project: str, repo: str) -> list[int]:
        return sorted(self._repo(project, repo).pulls)

    def comments(self, project: str, repo: str, number: int) -> list[dict]:
        """Every comment, thread by thread: {thread, id, author, content, thread_status, likes}."""
        pr = self.pull(project, repo, number)
        return [{"thread": t["id"], "id": c["id"], "author": c["author"]["uniqueName"], "content": c["content"],
                 "thread_status": t.get("status"), "likes": [u["uniqueName"] for u in c["usersLiked"]]}
                for t in pr["_threads"] for c in t["comments"]]

    def pull_statuses(self, project: str, repo: str, number: int) -> list[dict]:
        """Pull request statuses in posting order, each with the source commit of its iteration."""
        pr = self.pull(project, repo, number)
        commits = {i["id"]: i["sourceRefCommit"]["commitId"] for i in pr["_iterations"]}
        return [dict(public(s), commit=commits.get(s.get("iterationId"))) for s in pr["_statuses"]]

    def commit_statuses(self, project: str, repo: str, sha: str) -> list[dict]:
        return [public(s) for s in self._repo(project, repo).statuses.get(sha, [])]

    def work_items(self) -> list[dict]:
        return [public(w) for w in self._work_items.values()]

    def requests_to(self, pattern: str, method: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if re.search(pattern, r.path) and (not method or r.method == method)]

    # ---- internals -------------------------------------------------------------------
    def _repo(self, project: str, name: str) -> _Repo:
        for (p, n), repo in self._repos.items():
            if (project.lower() in (p, repo.data["project"]["id"])) and name.lower() in (n, repo.data["id"]):
                return repo
        raise Abort(404, f"TF401019: The Git repository with name or identifier {name} does not exist or you "
                         "do not have permissions for the operation you are attempting.",
                    "GitRepositoryNotFoundException")

    def _descriptor_of(self, principal: str) -> str:
        if principal.startswith("["):  # [project]\\group: add_group first
            return self._groups[principal]["descriptor"]
        return self.user(principal)["descriptor"]

    def _commit_ref(self, r: _Repo, sha: str) -> dict:
        return {"commitId": sha, "url": f"{r.data['url']}/commits/{sha}"}

    def _dispatch(self, _rest: str) -> Response:
        raw = request.path
        body: Any = request.get_json(silent=True, force=True) if request.data else None
        with self._lock:
            self.requests.append(RecordedRequest(request.method, raw, dict(request.args), body, dict(request.headers)))
            injected = self._injected_failure(raw)
        if injected is not None:
            return injected
        if _password(request.headers.get("Authorization", "")) != self.token:
            return Response("", 401, {"WWW-Authenticate": "Basic realm=\"https://dev.azure.com/\""})
        host, path = self._host_of(raw)
        if host is None:
            return _error(404, "The resource cannot be found.", "NotFound")
        if request.method == "OPTIONS" and path.rstrip("/").lower() == "/_apis":
            return collection(locations.published(host))
        found = locations.route(host, path, request.method, self._handlers())
        if found is None:
            return _error(404, f"API resource location not found for {request.method} {path}", "NotFound")
        problem = locations.api_version_problem(request.headers.get("Accept", ""))
        if problem:
            return _error(400, problem, "VssVersionOutOfRangeException")
        location_id, values = found
        try:
            with self._lock:
                return self._handlers()[(location_id, request.method)](values, dict(request.args), body)
        except Abort as err:
            return _error(err.status, err.message, err.type_key)

    def _host_of(self, raw: str) -> tuple[str | None, str]:
        for host, prefix in (("vssps", f"/vssps/{ORG}"), ("org", f"/{ORG}")):
            if raw.lower() == prefix or raw.lower().startswith(prefix + "/"):
                return host, raw[len(prefix):] or "/"
        return None, raw

    def _injected_failure(self, raw: str) -> Response | None:
        for pattern, statuses, retry_after in self._failures:
            if statuses and pattern.search(raw):
                response = _error(statuses[0], f"{statuses[0]} injected failure", "InjectedFailure")
                statuses.pop(0)
                if retry_after is not None:
                    response.headers["Retry-After"] = str(retry_after)
                return response
        return None


def _password(authorization: str) -> str:
    scheme, _, value = authorization.partition(" ")
    try:
        return base64.b64decode(value).decode().partition(":")[2] if scheme.lower() == "basic" else ""
    except (ValueError, UnicodeDecodeError):
        return ""


def _change(change_id: int, path: Any) -> dict:
    old, new = path if isinstance(path, tuple) else (None, path)
    entry = {"changeTrackingId": change_id, "changeId": change_id,
             "item": {"objectId": uuid.uuid4().hex, "path": f"/{new}"},
             "changeType": "rename" if old else "edit"}
    if old:
        entry["originalPath"] = f"/{old}"
    return entry


def _error(status: int, message: str, type_key: str) -> Response:
    body = {"$id": "1", "innerException": None, "message": message, "typeName": f"{type_key}, Fake",
            "typeKey": type_key, "errorCode": 0, "eventId": 3000}
    return Response(json.dumps(body), status, mimetype="application/json")
