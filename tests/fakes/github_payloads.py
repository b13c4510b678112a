"""JSON bodies in GitHub's REST shapes, built from a real published payload.

The pull request, repository and user objects are deep copies of the `pull_request`
object in the octokit example `pull_request.opened.json` with fields replaced, so
attribute names and nesting stay those GitHub documents. Smaller objects (files, reviews,
comments, statuses, issues) follow the REST reference field by field.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

_TEMPLATE_NAME = "pull_request.opened.json"
_TEMPLATE_REPO = "Codertocat/Hello-World"
_TEMPLATE_LOGIN = "Codertocat"


_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github"


@functools.lru_cache(maxsize=1)
def _template() -> dict:
    return json.loads((_FIXTURES / _TEMPLATE_NAME).read_text())["pull_request"]


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stable_id(*parts: object) -> int:
    """A positive id that is the same for the same inputs (logins, repos)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:8], 16) + 1000


def stable_sha(*parts: object) -> str:
    """A 40-hex commit id that is the same for the same inputs (branches of repositories without git)."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def _rebase(obj: Any, replacements: list[tuple[str, str]]) -> Any:
    """Deep copy of obj with each URL/name prefix of the template swapped for ours."""
    text = json.dumps(obj)
    for old, new in replacements:
        text = text.replace(old, new)
    return json.loads(text)


def user_json(login: str, api: str, web: str) -> dict:
    user = _rebase(
        _template()["user"],
        [
            ("https://api.github.com/users/" + _TEMPLATE_LOGIN, f"{api}/users/{login}"),
            ("https://github.com/" + _TEMPLATE_LOGIN, f"{web}/{login}"),
        ],
    )
    user.update(
        login=login, id=stable_id("user", login), type="Bot" if login.endswith("[bot]") else "User"
    )
    return user


def repo_json(full_name: str, clone_url: str, default_branch: str, api: str, web: str) -> dict:
    owner = full_name.split("/")[0]
    repo = _rebase(
        _template()["base"]["repo"],
        [
            ("https://api.github.com/repos/" + _TEMPLATE_REPO, f"{api}/repos/{full_name}"),
            ("https://api.github.com", api),
            ("https://github.com/" + _TEMPLATE_REPO, f"{web}/{full_name}"),
            (_TEMPLATE_REPO, full_name),
        ],
    )
    repo.update(
        id=stable_id("repo", full_name),
        name=full_name.split("/", 1)[1],
        full_name=full_name,
        owner=user_json(owner, api, web),
        clone_url=clone_url,
        default_branch=default_branch,
        fork=False,
    )
    return repo


def pull_json(repo: dict, pull: Any, head_repo: Optional[dict], users: dict[str, dict]) -> dict:
    """A pull request object; `pull` is the fake's record, `repo` the base repository JSON."""
    api_repo, web_repo, n = repo["url"], repo["html_url"], pull.number
    body = _rebase(
        {k: v for k, v in _template().items() if k not in ("head", "base", "user")},
        [
            (f"https://api.github.com/repos/{_TEMPLATE_REPO}", api_repo),
            (f"https://github.com/{_TEMPLATE_REPO}", web_repo),
        ],
    )
    body.update(
        id=stable_id("pull", repo["full_name"], n),
        number=n,
        url=f"{api_repo}/pulls/{n}",
        html_url=f"{web_repo}/pull/{n}",
        diff_url=f"{web_repo}/pull/{n}.diff",
        patch_url=f"{web_repo}/pull/{n}.patch",
        issue_url=f"{api_repo}/issues/{n}",
        commits_url=f"{api_repo}/pulls/{n}/commits",
        review_comments_url=f"{api_repo}/pulls/{n}/comments",
        comments_url=f"{api_repo}/issues/{n}/comments",
        statuses_url=f"{api_repo}/statuses/{pull.head_sha}",
        state="closed" if pull.merged or pull.closed else "open",
        title=pull.title,
        body=pull.body,
        user=users[pull.author],
        draft=pull.draft,
        merged=pull.merged,
        merged_at=pull.merged_at,
        closed_at=getattr(pull, "closed_at", None) or pull.merged_at,
        updated_at=getattr(pull, "updated_at", None) or body.get("updated_at"),
        merge_commit_sha=pull.merge_commit_sha,
        mergeable=pull.mergeable,
        rebaseable=pull.mergeable,
        mergeable_state=pull.mergeable_state,
        assignees=[],
        requested_reviewers=[],
        labels=[],
        changed_files=len(pull.files),
        _links={
            "self": {"href": f"{api_repo}/pulls/{n}"},
            "html": {"href": f"{web_repo}/pull/{n}"},
            "issue": {"href": f"{api_repo}/issues/{n}"},
            "comments": {"href": f"{api_repo}/issues/{n}/comments"},
            "review_comments": {"href": f"{api_repo}/pulls/{n}/comments"},
            "review_comment": {"href": f"{api_repo}/pulls/comments{{/number}}"},
            "commits": {"href": f"{api_repo}/pulls/{n}/commits"},
            "statuses": {"href": f"{api_repo}/statuses/{pull.head_sha}"},
        },
    )
    head_owner = head_repo["owner"] if head_repo else users[pull.author]
    body["head"] = {
        "label": f"{head_owner['login']}:{pull.head_ref}",
        "ref": pull.head_ref,
        "sha": pull.head_sha,
        "user": head_owner,
        "repo": head_repo,
    }
    body["base"] = {
        "label": f"{repo['owner']['login']}:{pull.base_ref}",
        "ref": pull.base_ref,
        "sha": pull.base_sha,
        "user": repo["owner"],
        "repo": repo,
    }
    return body


def file_json(repo: dict, head_sha: str, entry: dict) -> dict:
    name = entry["filename"]
    body = {
        "sha": hashlib.sha1(name.encode()).hexdigest(),
        "filename": name,
        "status": entry.get("status", "modified"),
        "additions": 1,
        "deletions": 1,
        "changes": 2,
        "blob_url": f"{repo['html_url']}/blob/{head_sha}/{name}",
        "raw_url": f"{repo['html_url']}/raw/{head_sha}/{name}",
        "contents_url": f"{repo['url']}/contents/{name}?ref={head_sha}",
        "patch": "@@ -1 +1 @@\n-old\n+new",
    }
    if entry.get("previous_filename"):
        body["previous_filename"] = entry["previous_filename"]
    return body


def review_json(repo: dict, number: int, review: dict, user: dict) -> dict:
    return {
        "id": review["id"],
        "node_id": f"PRR_{review['id']}",
        "user": user,
        "body": review.get("body", ""),
        "state": review["state"],
        "html_url": f"{repo['html_url']}/pull/{number}#pullrequestreview-{review['id']}",
        "pull_request_url": f"{repo['url']}/pulls/{number}",
        "author_association": "COLLABORATOR",
        "submitted_at": review["submitted_at"],
        "commit_id": review["commit_id"],
        "_links": {
            "html": {"href": f"{repo['html_url']}/pull/{number}#pullrequestreview-{review['id']}"},
            "pull_request": {"href": f"{repo['url']}/pulls/{number}"},
        },
    }


def comment_json(repo: dict, comment: dict, user: dict) -> dict:
    cid, number = comment["id"], comment["issue_number"]
    return {
        "id": cid,
        "node_id": f"IC_{cid}",
        "url": f"{repo['url']}/issues/comments/{cid}",
        "html_url": f"{repo['html_url']}/pull/{number}#issuecomment-{cid}",
        "issue_url": f"{repo['url']}/issues/{number}",
        "body": comment["body"],
        "user": user,
        "created_at": comment["created_at"],
        "updated_at": comment["updated_at"],
        "author_association": "CONTRIBUTOR",
        "reactions": _reaction_rollup(repo, cid, comment["reactions"]),
    }


def _reaction_rollup(repo: dict, cid: int, reactions: list[dict]) -> dict:
    names = {
        "+1": 0,
        "-1": 0,
        "laugh": 0,
        "hooray": 0,
        "confused": 0,
        "heart": 0,
        "rocket": 0,
        "eyes": 0,
    }
    for reaction in reactions:
        names[reaction["content"]] += 1
    return {
        "url": f"{repo['url']}/issues/comments/{cid}/reactions",
        "total_count": len(reactions),
        **names,
    }


def reaction_json(reaction: dict, user: dict) -> dict:
    return {
        "id": reaction["id"],
        "node_id": f"REA_{reaction['id']}",
        "user": user,
        "content": reaction["content"],
        "created_at": reaction["created_at"],
    }


def status_json(repo: dict, sha: str, status: dict, creator: dict) -> dict:
    return {
        "url": f"{repo['url']}/statuses/{sha}",
        "avatar_url": creator["avatar_url"],
        "id": status["id"],
        "node_id": f"SC_{status['id']}",
        "state": status["state"],
        "description": status["description"],
        "target_url": status["target_url"],
        "context": status["context"],
        "created_at": status["created_at"],
        "updated_at": status["created_at"],
        "creator": creator,
    }


def combined_status_json(repo: dict, sha: str, latest: list[dict]) -> dict:
    states = {s["state"] for s in latest}
    if states & {"error", "failure"}:
        state = "failure"
    elif "pending" in states or not latest:
        state = "pending"
    else:
        state = "success"
    return {
        "state": state,
        "statuses": latest,
        "sha": sha,
        "total_count": len(latest),
        "repository": repo,
        "commit_url": f"{repo['url']}/commits/{sha}",
        "url": f"{repo['url']}/commits/{sha}/status",
    }


def issue_json(repo: dict, issue: dict, user: dict) -> dict:
    n = issue["number"]
    return {
        "id": stable_id("issue", repo["full_name"], n),
        "node_id": f"I_{n}",
        "url": f"{repo['url']}/issues/{n}",
        "repository_url": repo["url"],
        "comments_url": f"{repo['url']}/issues/{n}/comments",
        "html_url": f"{repo['html_url']}/issues/{n}",
        "number": n,
        "state": issue["state"],
        "title": issue["title"],
        "body": issue["body"],
        "user": user,
        "labels": [],
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "locked": False,
        "comments": issue.get("comment_count", 0),
        "created_at": issue["created_at"],
        "updated_at": issue["updated_at"],
        "closed_at": issue.get("closed_at"),
        "author_association": "NONE",
    }


@functools.lru_cache(maxsize=1)
def _check_run_template() -> dict:
    return json.loads((_FIXTURES / "check_run.created.json").read_text())["check_run"]


def check_run_json(repo: dict, run: dict, pulls: list) -> dict:
    """A check run object, from the `check_run` of the octokit example `check_run.created.json`;
    `run` is the fake's record, `pulls` the pull requests it lists (FakePull)."""
    api_repo, web_repo = repo["url"], repo["html_url"]
    body = _rebase(
        {k: v for k, v in _check_run_template().items() if k not in ("app", "pull_requests")},
        [
            (f"https://api.github.com/repos/{_TEMPLATE_REPO}", api_repo),
            (f"https://github.com/{_TEMPLATE_REPO}", web_repo),
        ],
    )
    rid = run["id"]
    body.update(
        id=rid,
        node_id=f"CR_{rid}",
        head_sha=run["head_sha"],
        external_id=run["external_id"],
        url=f"{api_repo}/check-runs/{rid}",
        html_url=f"{web_repo}/runs/{rid}",
        details_url=run["details_url"],
        status=run["status"],
        conclusion=run["conclusion"],
        started_at=run["started_at"],
        completed_at=run["completed_at"],
        name=run["name"],
        output={**run["output"], "annotations_count": 0,
                "annotations_url": f"{api_repo}/check-runs/{rid}/annotations"},
        app=_app_json(run["app_id"], run["app_slug"]),
        pull_requests=[_check_run_pull(repo, p) for p in pulls],
    )
    body["check_suite"].update(id=stable_id("suite", repo["full_name"], run["head_sha"], run["app_id"]),
                               head_sha=run["head_sha"], after=run["head_sha"])
    body["check_suite"].pop("pull_requests", None)
    body["check_suite"].pop("app", None)
    return body


def _app_json(app_id: Optional[int], slug: str) -> dict:
    app = dict(json.loads((_FIXTURES / "check_run.created.json").read_text())["check_run"]["app"])
    app.update(id=app_id, node_id=f"A_{app_id}", name=slug, html_url=f"https://github.com/apps/{slug}")
    return app


def _check_run_pull(repo: dict, pull: Any) -> dict:
    """A pull request as a check run lists it: number, head and base, each with a short repo."""
    short = {"id": repo["id"], "url": repo["url"], "name": repo["name"]}
    return {
        "url": f"{repo['url']}/pulls/{pull.number}",
        "id": stable_id("pull", repo["full_name"], pull.number),
        "number": pull.number,
        "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": short},
        "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo": short},
    }
