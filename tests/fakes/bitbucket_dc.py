"""A fake Bitbucket Data Center (REST API 1.0, build-status 1.0, branch-utils 1.0): real HTTP on
127.0.0.1, driven through atlassian-python-api's `Bitbucket` client.

Objects are built from the published deliveries in tests/fixtures/bitbucket (`dc.*.json`), whose
entities are the REST API's. Collections page as Data Center does (`start`, `limit`, `isLastPage`,
`nextPageStart`); every authenticated answer names its user in `X-AUSERNAME`; comments and pull
requests carry a `version` that an edit or a merge must quote. Tests arrange state with the
helpers and read back what the bot did.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.fakes.bitbucket_common import Abort, FakeBitbucketServer, fixture
from tests.fakes.bitbucket_dc_routes import DataCenterRoutes, change_entry
from tests.fakes.bitbucket_routes import public

_OPENED = fixture("dc.pr.opened")


def millis() -> int:
    return int(time.time() * 1000)


@dataclass
class _Repo:
    data: dict
    git_path: Path | None
    pulls: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)  # sha -> [status, ...] in posting order
    users: dict = field(default_factory=dict)  # name -> REPO_READ | REPO_WRITE | REPO_ADMIN
    groups: dict = field(default_factory=dict)  # group -> permission
    deleted_branches: list = field(default_factory=list)
    merges: list = field(default_factory=list)  # (number, strategyId)


class FakeBitbucketDataCenter(DataCenterRoutes, FakeBitbucketServer):
    """A Bitbucket Data Center server on an ephemeral port; `url` is what `bitbucket.url` is set to."""

    def __init__(self, username: str = "plankeeper-bot", token: str = "bbdc-http-access-token",
                 git_root: Path | None = None, bot_is_admin: bool = True):
        self._ids = itertools.count(100)
        self._users: dict[str, dict] = {}
        self._repos: dict[str, _Repo] = {}
        self._projects: dict[str, dict] = {}  # key -> {"users": {...}, "groups": {...}}
        self._groups: dict[str, set] = {}
        self.bot_name, self.bot_is_admin = username, bot_is_admin
        super().__init__(username, token, git_root)

    def authenticated_headers(self) -> dict:
        return {"X-AUSERNAME": self.bot_name}

    # ---- users and groups --------------------------------------------------------------
    def user(self, name: str) -> dict:
        if name not in self._users:
            user = {k: v for k, v in _OPENED["actor"].items()}
            user.update(name=name, slug=name, emailAddress=f"{name}@example.com", displayName=name.title(),
                        id=next(self._ids), links={"self": [{"href": f"{self.url}/users/{name}"}]})
            self._users[name] = user
        return self._users[name]

    def add_group_member(self, group: str, name: str) -> None:
        with self._lock:
            self._groups.setdefault(group, set()).add(name)

    # ---- arranging state ---------------------------------------------------------------
    def add_repo(self, full_name: str, git_path: Path | None = None) -> dict:
        """A repository KEY/slug; `git_path` its bare repository (served by the git server, if any)."""
        key, slug = full_name.split("/")
        data = fixture("dc.pr.opened")["pullRequest"]["toRef"]["repository"]
        clone = self.git.clone_url(full_name) if self.git else f"{self.url}/scm/{key.lower()}/{slug}.git"
        data.update(slug=slug, name=slug, id=next(self._ids), project={
            "key": key, "id": next(self._ids), "name": key.title(), "type": "NORMAL", "public": False,
            "links": {"self": [{"href": f"{self.url}/projects/{key}"}]}}, links={
            "clone": [{"href": f"ssh://git@127.0.0.1:7999/{key.lower()}/{slug}.git", "name": "ssh"},
                      {"href": clone, "name": "http"}],
            "self": [{"href": f"{self.url}/projects/{key}/repos/{slug}/browse"}]})
        with self._lock:
            self._repos[full_name] = _Repo(data, git_path)
            self._projects.setdefault(key, {"users": {}, "groups": {}})
            self.set_permission(full_name, self.bot_name, "REPO_ADMIN")
        return data

    def add_pull(self, full_name: str, number: int, head_sha: str, branch: str, base: str, author: str,
                 files: list, base_sha: str = "", draft: bool = False, source: str = "", title: str = "") -> dict:
        """Open pull request `number` from `branch` (of `source`, a fork, when given) into `base`."""
        repo = self._repo(full_name)
        key, slug = full_name.split("/")
        pr = fixture("dc.pr.opened")["pullRequest"]
        pr.update(id=number, version=0, title=title or f"PR {number}", description="", state="OPEN", open=True,
                  closed=False, draft=draft, createdDate=millis(), updatedDate=millis(), reviewers=[], participants=[],
                  author={"user": self.user(author), "role": "AUTHOR", "approved": False, "status": "UNAPPROVED"},
                  links={"self": [{"href": f"{self.url}/projects/{key}/repos/{slug}/pull-requests/{number}"}]},
                  _changes=[change_entry(f) for f in files], _comments=[], _activities=[], _vetoes=[],
                  _conflicted=False)
        pr["fromRef"] = {"id": f"refs/heads/{branch}", "displayId": branch, "latestCommit": head_sha,
                         "type": "BRANCH", "repository": self._repo(source or full_name).data}
        pr["toRef"] = {"id": f"refs/heads/{base}", "displayId": base, "latestCommit": base_sha or "0" * 40,
                       "type": "BRANCH", "repository": repo.data}
        with self._lock:
            repo.pulls[number] = pr
        return pr

    def push(self, full_name: str, number: int, head_sha: str, files: list) -> str:
        """New commits on the source branch; returns the previous head."""
        with self._lock:
            pr = self.pull(full_name, number)
            previous = pr["fromRef"]["latestCommit"]
            pr["fromRef"]["latestCommit"] = head_sha
            pr.update(_changes=[change_entry(f) for f in files], updatedDate=millis(), version=pr["version"] + 1)
            return previous

    def approve(self, full_name: str, number: int, name: str) -> None:
        with self._lock:
            pr = self.pull(full_name, number)
            pr["reviewers"] = [r for r in pr["reviewers"] if r["user"]["name"] != name]
            pr["reviewers"].append({"user": self.user(name), "lastReviewedCommit": pr["fromRef"]["latestCommit"],
                                    "role": "REVIEWER", "approved": True, "status": "APPROVED"})
            pr["_activities"].append({"id": next(self._ids), "createdDate": millis(), "user": self.user(name),
                                      "action": "APPROVED"})
            pr.update(updatedDate=millis(), version=pr["version"] + 1)

    def set_permission(self, full_name: str, name: str, permission: str) -> None:
        """REPO_READ, REPO_WRITE or REPO_ADMIN for a user on the repository."""
        with self._lock:
            self._repo(full_name).users[name] = permission

    def set_project_permission(self, key: str, name: str, permission: str, group: bool = False) -> None:
        """PROJECT_READ, PROJECT_WRITE or PROJECT_ADMIN for a user (or a group) on the project."""
        with self._lock:
            self._projects.setdefault(key, {"users": {}, "groups": {}})["groups" if group else "users"][name] = permission

    def set_group_permission(self, full_name: str, group: str, permission: str) -> None:
        with self._lock:
            self._repo(full_name).groups[group] = permission

    def set_vetoes(self, full_name: str, number: int, *messages: str, conflicted: bool = False) -> None:
        with self._lock:
            self.pull(full_name, number).update(_vetoes=list(messages), _conflicted=conflicted)

    def mark_merged(self, full_name: str, number: int, merge_sha: str) -> None:
        with self._lock:
            self.merged(self.pull(full_name, number), merge_sha)

    def set_state(self, full_name: str, number: int, state: str) -> None:
        with self._lock:
            pr = self.pull(full_name, number)
            pr.update(state=state, open=state == "OPEN", closed=state != "OPEN", updatedDate=millis(),
                      version=pr["version"] + 1)

    def add_comment(self, full_name: str, number: int, body: str, author: str) -> int:
        with self._lock:
            return self.new_comment(self.pull(full_name, number), body, self.user(author))["id"]

    def set_status(self, full_name: str, sha: str, key: str, state: str) -> None:
        with self._lock:
            self.add_status(self._repo(full_name), sha, {"key": key, "state": state, "url": "https://ci.example"})

    # ---- reading state -------------------------------------------------------------
    def pull(self, full_name: str, number: int) -> dict:
        try:
            return self._repo(full_name).pulls[int(number)]
        except KeyError:
            raise Abort(404, f"Pull request {number} does not exist in {full_name}.") from None

    def pull_json(self, full_name: str, number: int) -> dict:
        return public(self.pull(full_name, number))

    def participant_json(self, full_name: str, number: int, name: str) -> dict:
        return next(r for r in self.pull(full_name, number)["reviewers"] if r["user"]["name"] == name)

    def comment_json(self, full_name: str, number: int, comment_id: int | None = None) -> dict:
        comments = self.pull(full_name, number)["_comments"]
        found = comments[-1] if comment_id is None else self.comment_of(self.pull(full_name, number), comment_id)
        return public(found)

    def comments(self, full_name: str, number: int) -> list[dict]:
        """{id, body, author, version} of every comment, oldest first, as they read now."""
        return [{"id": c["id"], "body": c["text"], "author": c["author"]["name"], "version": c["version"]}
                for c in self.pull(full_name, number)["_comments"]]

    def statuses(self, full_name: str, sha: str) -> list[dict]:
        return list(self._repo(full_name).statuses.get(sha, []))

    def merges(self, full_name: str) -> list[tuple]:
        return list(self._repo(full_name).merges)

    def deleted_branches(self, full_name: str) -> list[str]:
        return list(self._repo(full_name).deleted_branches)

    def _repo(self, full_name: str) -> _Repo:
        try:
            return self._repos[full_name]
        except KeyError:
            raise Abort(404, f"Repository {full_name} does not exist.") from None

    def next_id(self) -> int:
        return next(self._ids)

    def __enter__(self) -> Self:
        self.start()
        return self
