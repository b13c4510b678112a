"""Gitea's REST API v1 objects for FakeGitea, built from the published webhook payloads in
tests/fixtures/gitea (a webhook's `pull_request`, `repository`, `issue`, `comment` and `sender` are
the API's own objects, convert.ToAPIPullRequest and friends): deep copies with fields replaced, so
names and nesting stay Gitea's. Objects no payload carries (reviews, statuses, changed files,
teams) follow the swagger definitions field by field."""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gitea"
WIP_PREFIXES = ("WIP:", "[WIP]")  # Gitea's default WORK_IN_PROGRESS_PREFIXES


@functools.cache
def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def template(name: str, *keys: str) -> Any:
    """A deep copy of fixture `name` at the path of keys."""
    value: Any = fixture(name)
    for key in keys:
        value = value[key]
    return copy.deepcopy(value)


def now_iso() -> str:
    """A time as Gitea writes it: RFC 3339, seconds, Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stable_sha(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def is_wip(title: str) -> bool:
    return title.upper().startswith(tuple(p.upper() for p in WIP_PREFIXES))


def user_json(user_id: int, login: str, web: str) -> dict:
    user = template("pull_request.closed.merged", "pull_request", "user")
    user.update(id=user_id, login=login, username=login, full_name=login.title(),
                email=f"{login}@noreply.example.org", avatar_url=f"{web}/avatars/{user_id}")
    return user


def repo_json(repo_id: int, full_name: str, owner: dict, web: str, clone_url: str, default_branch: str) -> dict:
    repo = template("pull_request.closed.merged", "repository")
    name = full_name.rpartition("/")[2]
    host = web.split("://", 1)[1]
    repo.update(id=repo_id, name=name, full_name=full_name, owner=owner, html_url=f"{web}/{full_name}",
                url=f"{web}/api/v1/repos/{full_name}", languages_url=f"{web}/api/v1/repos/{full_name}/languages",
                clone_url=clone_url, ssh_url=f"git@{host}:{full_name}.git", default_branch=default_branch,
                created_at=now_iso(), updated_at=now_iso(), private=True)
    return repo


def pull_json(pull: dict, base_repo: dict, head_repo: dict | None, users: dict[str, dict],
              base_head: str) -> dict:
    """GET /repos/{owner}/{repo}/pulls/{index} for the fake's pull state `pull`."""
    pr = template("pull_request.closed.merged", "pull_request")
    html = f"{base_repo['html_url']}/pulls/{pull['number']}"
    pr.update(
        id=pull["id"], url=html, number=pull["number"], user=users[pull["author"]], title=pull["title"],
        body=pull["body"], state="closed" if pull["closed"] else "open", comments=pull["comments"],
        html_url=html, diff_url=f"{html}.diff", patch_url=f"{html}.patch", draft=is_wip(pull["title"]),
        mergeable=pull["mergeable"] and not is_wip(pull["title"]), merged=pull["merged"],
        merged_at=pull["merged_at"], merge_commit_sha=pull["merge_commit_sha"],
        merged_by=users[pull["merged_by"]] if pull["merged_by"] else None,
        merge_base=pull["merge_base"], created_at=pull["created_at"], updated_at=pull["updated_at"],
        closed_at=pull["closed_at"], requested_reviewers=[],
    )
    pr["base"] = {"label": pull["base_ref"], "ref": pull["base_ref"], "sha": base_head,
                  "repo_id": base_repo["id"], "repo": base_repo}
    pr["head"] = {"label": pull["head_ref"], "ref": pull["head_ref"], "sha": pull["head_sha"],
                  "repo_id": head_repo["id"] if head_repo else -1, "repo": head_repo}
    return pr


def issue_json(issue: dict, repo: dict, users: dict[str, dict], pull: dict | None) -> dict:
    """GET /repos/{owner}/{repo}/issues/{index}: an issue, or a pull request's issue."""
    out = template("issue_comment.pull_request", "issue")
    kind = "pulls" if pull else "issues"
    out.update(id=issue["id"], url=f"{repo['url']}/issues/{issue['number']}",
               html_url=f"{repo['html_url']}/{kind}/{issue['number']}", number=issue["number"],
               user=users[issue["author"]], title=issue["title"], body=issue["body"], state=issue["state"],
               comments=len(issue["comments"]), created_at=issue["created_at"], updated_at=issue["updated_at"],
               closed_at=issue["closed_at"],
               repository={"id": repo["id"], "name": repo["name"], "owner": repo["owner"]["login"],
                           "full_name": repo["full_name"]})
    out["pull_request"] = None if pull is None else {
        "merged": pull["merged"], "merged_at": pull["merged_at"], "draft": is_wip(pull["title"]),
        "html_url": f"{repo['html_url']}/pulls/{issue['number']}"}
    return out


def comment_json(comment: dict, repo: dict, users: dict[str, dict], is_pull: bool) -> dict:
    out = template("issue_comment.pull_request", "comment")
    kind = "pulls" if is_pull else "issues"
    page = f"{repo['html_url']}/{kind}/{comment['issue']}"
    out.update(id=comment["id"], html_url=f"{page}#issuecomment-{comment['id']}",
               pull_request_url=page if is_pull else "", issue_url="" if is_pull else page,
               user=users[comment["author"]], body=comment["body"], created_at=comment["created_at"],
               updated_at=comment["updated_at"])
    return out


def review_json(review: dict, users: dict[str, dict], pull_html: str, head_sha: str) -> dict:
    return {"id": review["id"], "user": users[review["author"]], "team": None, "state": review["state"],
            "body": review["body"], "commit_id": review["commit_id"], "stale": review["commit_id"] != head_sha,
            "official": True, "dismissed": review["dismissed"], "comments_count": 0,
            "submitted_at": review["submitted_at"], "updated_at": review["submitted_at"],
            "html_url": f"{pull_html}#issuecomment-{review['id']}", "pull_request_url": pull_html}


def status_json(status: dict, users: dict[str, dict], repo: dict) -> dict:
    return {"id": status["id"], "status": status["state"], "target_url": status["target_url"],
            "description": status["description"], "url": f"{repo['url']}/statuses/{status['sha']}",
            "context": status["context"], "creator": users[status["author"]],
            "created_at": status["created_at"], "updated_at": status["created_at"]}


def changed_file_json(entry: Any, repo: dict, head_sha: str) -> dict:
    """A ChangedFile from a path, an (old, new) rename or a ready dict."""
    if isinstance(entry, dict):
        return entry
    old, new = (entry, entry) if isinstance(entry, str) else entry
    out = {"filename": new, "status": "renamed" if old != new else "changed", "additions": 1,
           "deletions": 1, "changes": 2, "html_url": f"{repo['html_url']}/src/commit/{head_sha}/{new}",
           "contents_url": f"{repo['url']}/contents/{new}?ref={head_sha}",
           "raw_url": f"{repo['html_url']}/raw/commit/{head_sha}/{new}"}
    if old != new:
        out["previous_filename"] = old
    return out


def team_json(team: dict, org: dict) -> dict:
    return {"id": team["id"], "name": team["name"], "description": "", "organization": org,
            "includes_all_repositories": False, "permission": team["permission"],
            "units": ["repo.code", "repo.pulls"], "units_map": {"repo.code": team["permission"]},
            "can_create_org_repo": False}
