"""A fake Bitbucket Cloud (REST API 2.0): real HTTP on 127.0.0.1, driven through
atlassian-python-api's `Cloud` client.

Objects are built from the published answers in tests/fixtures/bitbucket (`rest.*.json`, and the
webhooks' `repository`), deep-copied with fields replaced. Collections page as Bitbucket Cloud
does (`pagelen`, `page`, an absolute `next` link). Commits are written with 12 hex digits in pull
requests, as Bitbucket does; `commit/{sha}` resolves any prefix to the full hash (from the
repository's git when it has one). Users are known by name in the helpers; the API shows their
account ids. Tests arrange state with the helpers and read back what the bot did.
"""
from __future__ import annotations

import itertools
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.fakes.bitbucket_common import Abort, FakeBitbucketServer, fixture, now_iso
from tests.fakes.bitbucket_routes import CloudRoutes, diffstat_entry, public

WEB = "https://bitbucket.org"


@dataclass
class _Repo:
    data: dict
    git_path: Path | None
    pulls: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)  # full sha -> [status, ...] in posting order
    permissions: dict = field(default_factory=dict)  # user name -> read | write | admin
    issues: dict = field(default_factory=dict)
    merges: list = field(default_factory=list)  # (number, strategy, close_source_branch)


class FakeBitbucketCloud(CloudRoutes, FakeBitbucketServer):
    """Bitbucket Cloud on an ephemeral port; `api_url` is what `bitbucket.url` is set to."""

    prefix = "/2.0"

    def __init__(self, username: str = "plankeeper-bot", token: str = "bb-app-password",
                 bot: str = "plankeeper-bot", git_root: Path | None = None):
        self._ids = itertools.count(1000)
        self._users: dict[str, dict] = {}
        self._repos: dict[str, _Repo] = {}
        self.bot_name = bot
        super().__init__(username, token, git_root)

    @property
    def api_url(self) -> str:
        return f"{self.url}/2.0"

    @property
    def web_url(self) -> str:
        """Where repositories' pages (and git) live: the git server when there is one."""
        return self.git.url if self.git else WEB

    # ---- users -------------------------------------------------------------------------
    def user(self, name: str) -> dict:
        """The user's JSON (account id, uuid, nickname), made on first use."""
        if name not in self._users:
            ident = uuid.uuid5(uuid.NAMESPACE_URL, f"bitbucket-user:{name}")
            user = fixture("rest.user")
            for key in ("username", "has_2fa_enabled", "is_staff", "location", "created_on", "account_status"):
                user.pop(key, None)
            user.update(display_name=name.title(), nickname=name, uuid=f"{{{ident}}}",
                        account_id=f"557058:{ident}", links={
                            "self": {"href": f"{self.api_url}/users/%7B{ident}%7D"},
                            "html": {"href": f"{WEB}/%7B{ident}%7D/"},
                            "avatar": {"href": f"{WEB}/account/{name}/avatar/"}})
            self._users[name] = user
        return self._users[name]

    def account_id(self, name: str) -> str:
        return self.user(name)["account_id"]

    def name_of(self, account_id: str) -> str:
        return next((n for n, u in self._users.items() if u["account_id"] == account_id), "")

    # ---- arranging state ---------------------------------------------------------------
    def add_repo(self, full_name: str, git_path: Path | None = None, has_issues: bool = True,
                 main: str = "main") -> dict:
        """A repository (workspace/slug); `git_path` is its bare repository, served by the git server
        when the fake has one."""
        workspace, slug = full_name.split("/")
        data = fixture("pullrequest.comment_created")["repository"]
        api, web = f"{self.api_url}/repositories/{full_name}", f"{self.web_url}/{full_name}"
        data.update(name=slug, full_name=full_name, uuid=f"{{{uuid.uuid5(uuid.NAMESPACE_URL, full_name)}}}",
                    owner=self.user(workspace), has_issues=has_issues, is_private=True,
                    mainbranch={"name": main, "type": "branch"}, links={
                        "self": {"href": api}, "html": {"href": web}, "avatar": {"href": f"{web}/avatar/32/"},
                        "pullrequests": {"href": f"{api}/pullrequests"}, "commits": {"href": f"{api}/commits"},
                        "clone": [{"name": "https", "href": f"{web}.git"}]})
        data["workspace"].update(slug=workspace, name=workspace, links={"self": {"href": f"{self.api_url}/workspaces/{workspace}"}})
        with self._lock:
            self._repos[full_name] = _Repo(data, git_path)
            self.set_permission(full_name, self.bot_name, "admin")
        return data

    def add_pull(self, full_name: str, number: int, head_sha: str, branch: str, base: str, author: str,
                 files: list, base_sha: str = "", draft: bool = False, source: str = "", title: str = "") -> dict:
        """Open pull request #number from `branch` (of `source`, a fork, when given) into `base`.
        files: paths, (old, new) renames, or diffstat dicts."""
        repo = self._repo(full_name)
        pr = fixture("rest.pullrequest.approved")
        api = f"{self.api_url}/repositories/{full_name}/pullrequests/{number}"
        pr.update(id=number, title=title or f"PR {number}", description="", state="OPEN", draft=draft,
                  author=self.user(author), participants=[], reviewers=[], merge_commit=None, closed_by=None,
                  reason="", created_on=now_iso(), updated_on=now_iso(), comment_count=0, close_source_branch=False,
                  summary={"raw": "", "markup": "markdown", "html": "", "type": "rendered"},
                  links={**{name: {"href": f"{api}/{name}"} for name in (
                      "decline", "commits", "comments", "merge", "activity", "diff", "approve", "statuses",
                      "diffstat")}, "self": {"href": api},
                      "html": {"href": f"{self.web_url}/{full_name}/pull-requests/{number}"}},
                  source={"branch": {"name": branch}, "repository": self.repository_ref(source or full_name)},
                  destination={"branch": {"name": base}, "repository": self.repository_ref(full_name)},
                  _head=head_sha, _base=base_sha, _files=[diffstat_entry(f) for f in files], _comments=[],
                  _merge=None)
        with self._lock:
            repo.pulls[number] = pr
        return pr

    def add_fork(self, full_name: str, of: str) -> dict:
        return self.add_repo(full_name, git_path=self._repo(of).git_path)

    def push(self, full_name: str, number: int, head_sha: str, files: list) -> None:
        with self._lock:
            pr = self.pull(full_name, number)
            pr.update(_head=head_sha, _files=[diffstat_entry(f) for f in files], updated_on=now_iso())

    def approve(self, full_name: str, number: int, user: str, approved: bool = True) -> None:
        with self._lock:
            pr = self.pull(full_name, number)
            pr["participants"] = [p for p in pr["participants"] if p["user"]["account_id"] != self.account_id(user)]
            pr["participants"].append({"role": "REVIEWER", "participated_on": now_iso(), "type": "participant",
                                       "approved": approved, "state": "approved" if approved else None,
                                       "user": self.user(user)})
            pr["updated_on"] = now_iso()

    def set_permission(self, full_name: str, user: str, permission: str) -> None:
        """read, write or admin on the repository (its effective permission, however given)."""
        with self._lock:
            self._repo(full_name).permissions[user] = permission

    def set_state(self, full_name: str, number: int, state: str) -> None:
        with self._lock:
            self.pull(full_name, number).update(state=state, updated_on=now_iso())

    def set_conflicted(self, full_name: str, number: int, path: str) -> None:
        with self._lock:
            self.pull(full_name, number)["_files"].append(diffstat_entry({"path": path, "status": "merge conflict"}))

    def mark_merged(self, full_name: str, number: int, merge_sha: str) -> None:
        """Merged outside the API (in the UI) into a real commit."""
        with self._lock:
            self.pull(full_name, number).update(state="MERGED", _merge=merge_sha, updated_on=now_iso(),
                                                closed_by=self.user(self.bot_name))

    def add_comment(self, full_name: str, number: int, body: str, author: str) -> int:
        with self._lock:
            return self.new_comment(self.pull(full_name, number), body, self.user(author))["id"]

    def delete_comment(self, full_name: str, number: int, comment_id: int) -> None:
        with self._lock:
            self.comment_of(self.pull(full_name, number), comment_id).update(deleted=True, updated_on=now_iso())

    def set_status(self, full_name: str, sha: str, key: str, state: str) -> None:
        """A build status posted by someone else (a CI)."""
        with self._lock:
            self.add_status(self._repo(full_name), sha, {"key": key, "state": state, "url": "https://ci.example"})

    # ---- reading state -------------------------------------------------------------
    def pull(self, full_name: str, number: int) -> dict:
        return self._repo(full_name).pulls[number]

    def repository(self, full_name: str) -> dict:
        return self._repo(full_name).data

    def pull_json(self, full_name: str, number: int) -> dict:
        """The pull request as the API (and a webhook) shows it now."""
        return self._rendered(full_name, number)

    def comment_json(self, full_name: str, number: int, comment_id: int | None = None) -> dict:
        """A comment (the latest when no id is given) as the API shows it."""
        comments = self.pull(full_name, number)["_comments"]
        found = comments[-1] if comment_id is None else self.comment_of(self.pull(full_name, number), comment_id)
        return public(found)

    def comments(self, full_name: str, number: int) -> list[dict]:
        """{id, body, author (name), deleted} of every comment, oldest first, as they read now."""
        return [{"id": c["id"], "body": c["content"]["raw"], "author": self.name_of(c["user"]["account_id"]),
                 "deleted": c["deleted"]} for c in self.pull(full_name, number)["_comments"]]

    def statuses(self, full_name: str, sha: str) -> list[dict]:
        """Every build status posted on the commit (any prefix of its hash), in posting order."""
        repo = self._repo(full_name)
        return [public(s) for s in repo.statuses.get(self.resolve(repo, sha), [])]

    def issues(self, full_name: str) -> list[dict]:
        return [public(i) for i in self._repo(full_name).issues.values()]

    def merges(self, full_name: str) -> list[tuple]:
        return list(self._repo(full_name).merges)

    # ---- shared with the routes ----------------------------------------------------
    def repository_ref(self, full_name: str) -> dict:
        """A repository as other objects embed it."""
        data = self._repo(full_name).data
        return {"links": {k: data["links"][k] for k in ("self", "html", "avatar")}, "type": "repository",
                "name": data["name"], "full_name": full_name, "uuid": data["uuid"]}

    def commit_ref(self, full_name: str, sha: str) -> dict:
        short = sha[:12]
        return {"hash": short, "type": "commit", "links": {
            "self": {"href": f"{self.api_url}/repositories/{full_name}/commit/{short}"},
            "html": {"href": f"{self.web_url}/{full_name}/commits/{short}"}}}

    def resolve(self, repo: _Repo, sha: str) -> str:
        """The full hash of a commit named by a prefix of it; Abort(404) when unknown."""
        known = {p["_head"] for p in repo.pulls.values()} | {p["_base"] for p in repo.pulls.values()}
        known |= {p["_merge"] for p in repo.pulls.values()} | set(repo.statuses)
        found = [s for s in known if s and s.startswith(sha.lower())]
        if len(found) == 1:
            return found[0]
        if repo.git_path is not None:
            done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"], cwd=repo.git_path,
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                return done.stdout.strip()
        raise Abort(404, f"Commit not found: {sha}")

    def _repo(self, full_name: str) -> _Repo:
        try:
            return self._repos[full_name]
        except KeyError:
            raise Abort(404, f"Repository {full_name} not found") from None

    def next_id(self) -> int:
        return next(self._ids)

    def __enter__(self) -> Self:
        self.start()
        return self

