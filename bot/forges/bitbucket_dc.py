"""Bitbucket Data Center (and Server) behind the Forge protocol, on atlassian-python-api
(`atlassian.Bitbucket`, REST API 1.0 under `rest/api/1.0`).

Repo.full_name is `PROJECT/repo_slug` (`~user/slug` for a personal repository); a login is the
user `name`. Data Center has no issue tracker (drift goes to the notifications) and no reactions.
Approvals count for the commit the reviewer last reviewed (`lastReviewedCommit`), when it says.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from atlassian import Bitbucket

from bot.errors import ForgeError, IssuesUnavailable
from bot.forges.bitbucket_common import (
    FORGE_STATE,
    PULL_STATE,
    BitbucketClient,
    ref,
    split_full_name,
    status_payload,
)
from bot.models import Comment, CommentRef, Mergeability, PullRequest, Repo

# Our merge methods -> Data Center's merge strategy ids (a repository may allow only some).
MERGE_STRATEGIES = {"merge": "no-ff", "squash": "squash", "rebase": "rebase-no-ff"}
REPO_WRITE = ("REPO_WRITE", "REPO_ADMIN")
PROJECT_WRITE = ("PROJECT_WRITE", "PROJECT_ADMIN")
_COMMENT_ACTIONS = ("ADDED", "EDITED")


class BitbucketDataCenterForge(BitbucketClient):
    """The Forge protocol on a Bitbucket Data Center server; see bot.forges.base.Forge for each method."""

    flavour = "Bitbucket Data Center"

    def __init__(self, url: str, username: str | None, token: str | None, bot_login: str | None = None,
                 *, sleep: Callable[[float], None] = time.sleep, attempts: int = 4):
        super().__init__(username, token, bot_login or username, sleep=sleep, attempts=attempts)
        self.url = url.rstrip("/")
        self._dc = Bitbucket(url=self.url, cloud=False, timeout=30, **self.credentials())
        self.watch(self._dc.session)

    def whoami(self) -> str:
        """The token's user, as every authenticated answer names it (X-AUSERNAME)."""
        answer = self._dc.get(self._dc.resource_url("application-properties"), advanced_mode=True)
        return answer.headers.get("X-AUSERNAME") or ""

    # ---- pull requests -------------------------------------------------------------
    def pull_request(self, repo: Repo, number: int) -> PullRequest:
        return self._call(f"read {repo.full_name} PR #{number}",
                          lambda: self._pull_from(repo, self._dc.get_pull_request(*split_full_name(repo), number)))

    def create_pull_request(self, repo: Repo, head_branch: str, base_branch: str, title: str,
                            body: str) -> PullRequest:
        key, slug = split_full_name(repo)
        return self._call(
            f"open a pull request from {head_branch} into {base_branch} of {repo.full_name}",
            lambda: self._pull_from(repo, self._dc.open_pull_request(
                key, slug, key, slug, f"refs/heads/{head_branch}", f"refs/heads/{base_branch}", title, body)))

    def changed_files(self, pull: PullRequest) -> list[str]:
        """Both paths of every change (a rename's source too), over all pages."""
        def fetch() -> list[str]:
            changes = self._dc.get_pull_requests_changes(*split_full_name(pull.repo), pull.number, limit=500)
            paths = (side["toString"] for change in changes for side in (change.get("srcPath"), change.get("path"))
                     if side)
            return list(dict.fromkeys(paths))
        return self._call(f"list the changes of {ref(pull)}", fetch)

    # ---- comments ------------------------------------------------------------------
    def create_comment(self, pull: PullRequest, body: str) -> CommentRef:
        def post() -> CommentRef:
            made = self._dc.add_pull_request_comment(*split_full_name(pull.repo), pull.number, body)
            url = f"{pull.url}/overview?commentId={made['id']}" if pull.url else ""
            return CommentRef(id=str(made["id"]), url=url)
        return self._call(f"comment on {ref(pull)}", post)

    def update_comment(self, pull: PullRequest, comment_id: str, body: str) -> None:
        """Replace the text, at the version read just before (Data Center refuses a stale one)."""
        key, slug = split_full_name(pull.repo)

        def edit() -> None:
            current = self._dc.get_pull_request_comment(key, slug, pull.number, int(comment_id))
            self._dc.update_pull_request_comment(key, slug, pull.number, int(comment_id), body, current["version"])
        self._call(f"edit comment {comment_id} on {ref(pull)}", edit)

    def comment(self, pull: PullRequest, comment_id: str) -> Comment | None:
        def fetch() -> Comment | None:
            found = self._dc.get_pull_request_comment(*split_full_name(pull.repo), pull.number, int(comment_id))
            return Comment(str(comment_id), str((found.get("author") or {}).get("name") or ""), found.get("text") or "")
        return self._unless_missing(f"read comment {comment_id} on {ref(pull)}", fetch, None)

    # ---- statuses, approvals, mergeability -----------------------------------------
    def set_status(self, repo: Repo, sha: str, context: str, state: str, description: str,
                   target_url: str = "") -> None:
        """A build status keyed by `context` on the commit (rest/build-status/1.0, on every version)."""
        status = status_payload(context, state, description, target_url or repo.html_url)
        self._call(f"set status {context} on {sha[:12]} of {repo.full_name}",
                   lambda: self._dc.post(self._build_status_url(sha), data=status))

    def statuses(self, repo: Repo, sha: str) -> dict[str, str]:
        def fetch() -> dict[str, str]:
            found = self._pages(self._build_status_url(sha), {})
            return {s["key"]: FORGE_STATE.get(s["state"], s["state"].lower()) for s in found}
        return self._call(f"read the statuses of {sha[:12]} of {repo.full_name}", fetch)

    def approvals(self, pull: PullRequest) -> tuple[list[str], int]:
        """Reviewers and participants who approve the current head; 1 still required when none does."""
        def fetch() -> list[str]:
            pr = self._dc.get_pull_request(*split_full_name(pull.repo), pull.number)
            people = [*(pr.get("reviewers") or []), *(pr.get("participants") or [])]
            return list(dict.fromkeys(p["user"]["name"] for p in people if p.get("approved")
                                      and p.get("lastReviewedCommit") in (None, "", pull.head_sha)))
        approvers = self._call(f"read the approvals of {ref(pull)}", fetch)
        return approvers, 0 if approvers else 1

    def mergeability(self, pull: PullRequest) -> Mergeability:
        """Data Center's own answer (conflicts, merge checks' vetoes) in its words."""
        def fetch() -> Mergeability:
            answer = self._dc.is_pull_request_can_be_merged(*split_full_name(pull.repo), pull.number)
            if answer.get("canMerge"):
                return Mergeability(True)
            if answer.get("conflicted"):
                return Mergeability(False, "there is a merge conflict between the source and target branches")
            vetoes = [v.get("summaryMessage") or v.get("detailedMessage") or "" for v in answer.get("vetoes") or []]
            return Mergeability(False, "; ".join(v for v in vetoes if v) or "Bitbucket will not merge it")
        return self._call(f"read the merge status of {ref(pull)}", fetch)

    # ---- permissions ---------------------------------------------------------------
    def has_write_permission(self, repo: Repo, login: str) -> bool:
        """REPO_WRITE or more on the repository, or PROJECT_WRITE or more on its project, given to
        the user or to a group of theirs. Reading these needs admin permission on the repository."""
        key, slug = split_full_name(repo)

        def fetch() -> bool:
            if key.startswith("~"):
                return key[1:].lower() == login.lower()  # a personal repository: its owner
            return (_granted(self._dc.repo_users(key, slug, filter_str=login), "user", login, REPO_WRITE)
                    or _granted(self._dc.project_users(key, filter_str=login), "user", login, PROJECT_WRITE)
                    or any(self._member(group, login) for group in self._write_groups(key, slug)))
        return self._unless_missing(f"read {login}'s permission on {repo.full_name}", fetch, False)

    def in_group(self, repo: Repo, login: str, group: str) -> bool:
        """Membership of `group:NAME` (needs the bot to be a Data Center admin); other kinds never match."""
        if not group.startswith("group:"):
            return False
        name = group.removeprefix("group:")
        return self._unless_missing(f"read {login}'s membership of {name}", lambda: self._member(name, login), False)

    def _write_groups(self, key: str, slug: str) -> list[str]:
        groups = [g["group"]["name"] for g in self._dc.repo_groups(key, slug) if g.get("permission") in REPO_WRITE]
        groups += [g["group"]["name"] for g in self._dc.project_groups(key) if g.get("permission") in PROJECT_WRITE]
        return list(dict.fromkeys(groups))

    def _member(self, group: str, login: str) -> bool:
        return any(str(u.get("name", "")).lower() == login.lower() for u in self._dc.group_members(group))

    # ---- merging, issues -----------------------------------------------------------
    def merge(self, pull: PullRequest, delete_source_branch: bool = False, method: str = "merge") -> None:
        """Merge the head the bot knows, at the pull request's current version; ForgeError for an
        unknown method, a moved head, or Data Center's refusal (a strategy the repository disallows)."""
        strategy = MERGE_STRATEGIES.get(method)
        if strategy is None:
            raise ForgeError(f"Bitbucket Data Center cannot merge with {method!r}: use one of {', '.join(MERGE_STRATEGIES)}")
        key, slug = split_full_name(pull.repo)

        def run() -> None:
            current = self._dc.get_pull_request(key, slug, pull.number)
            if current["fromRef"]["latestCommit"] != pull.head_sha:
                raise ForgeError(f"Bitbucket Data Center: {ref(pull)} has new commits: not merged")
            url = self._dc.resource_url(f"projects/{key}/repos/{slug}/pull-requests/{pull.number}/merge")
            self._dc.post(url, data={"version": current["version"], "strategyId": strategy},
                          params={"version": current["version"]})
        self._call(f"merge {ref(pull)}", run)
        if delete_source_branch and not pull.is_fork:
            self._unless_missing(f"delete branch {pull.head_ref} of {pull.repo.full_name}",
                                 lambda: self._dc.delete_branch(key, slug, pull.head_ref), None)

    def create_or_update_issue(self, repo: Repo, title: str, body: str, issue_id: str | None) -> str:
        raise IssuesUnavailable("Bitbucket Data Center has no issue tracker")

    def close_issue(self, repo: Repo, issue_id: str, comment: str) -> None:
        raise IssuesUnavailable("Bitbucket Data Center has no issue tracker")

    # ---- listing, for the reconciliation sweep -------------------------------------
    def open_pull_requests(self, repo: Repo) -> list[PullRequest]:
        def fetch() -> list[PullRequest]:
            listed = self._dc.get_pull_requests(*split_full_name(repo), state="OPEN", order="oldest")
            return [self._pull_from(repo, pr) for pr in listed]
        return self._call(f"list the open pull requests of {repo.full_name}", fetch)

    def recently_closed_pull_requests(self, repo: Repo, since: float) -> list[PullRequest]:
        """Merged, then declined ones, most recently updated first, until one is older than since."""
        def fetch() -> list[PullRequest]:
            found = []
            for state in ("MERGED", "DECLINED"):
                for pr in self._dc.get_pull_requests(*split_full_name(repo), state=state, order="newest"):
                    if _epoch_ms(pr.get("updatedDate")) < since:
                        break
                    found.append(self._pull_from(repo, pr))
            return found
        return self._call(f"list the recently closed pull requests of {repo.full_name}", fetch)

    def comments_since(self, pull: PullRequest, since: float) -> list[Comment]:
        """Comments added or edited since, from the activity stream (newest first), as they read now."""
        def fetch() -> dict[str, Comment]:
            found: dict[str, Comment] = {}
            for activity in self._dc.get_pull_requests_activities(*split_full_name(pull.repo), pull.number):
                if _epoch_ms(activity.get("createdDate")) < since:
                    break
                comment = activity.get("comment")
                if activity.get("action") == "COMMENTED" and activity.get("commentAction") in _COMMENT_ACTIONS and comment:
                    found.setdefault(str(comment["id"]), Comment(str(comment["id"]), comment["author"]["name"],
                                                                 comment.get("text") or ""))
            return found
        comments = self._call(f"list the comments of {ref(pull)}", fetch)
        return sorted(comments.values(), key=lambda c: int(c.id))

    # ---- internals -----------------------------------------------------------------
    def _build_status_url(self, sha: str) -> str:
        return self._dc.resource_url(f"commits/{sha}", api_root="rest/build-status", api_version="1.0")

    def _pages(self, url: str, params: dict) -> Iterator[dict]:
        """Every value of a paged answer, following isLastPage / nextPageStart."""
        while True:
            page = self._dc.get(url, params=params)
            yield from page.get("values") or []
            if page.get("isLastPage", True) or page.get("nextPageStart") is None:
                return
            params = {**params, "start": page["nextPageStart"]}

    def _pull_from(self, repo: Repo, pr: dict) -> PullRequest:
        """Our PullRequest from Data Center's pull request JSON (the REST API's and a webhook's)."""
        from_ref, to_ref = pr["fromRef"], pr["toRef"]
        head_repo = from_ref["repository"]
        head_name = f"{head_repo['project']['key']}/{head_repo['slug']}"
        is_fork = head_name.lower() != repo.full_name.lower()
        links = [link for link in (pr.get("links") or {}).get("self") or [] if link]
        merge = (pr.get("properties") or {}).get("mergeCommit") or {}
        return PullRequest(
            repo=repo, number=int(pr["id"]), author=pr["author"]["user"]["name"],
            head_sha=from_ref["latestCommit"], head_ref=from_ref["displayId"], base_ref=to_ref["displayId"],
            base_sha=to_ref.get("latestCommit") or "", url=links[0]["href"] if links else "",
            title=pr.get("title") or "", head_clone_url=_clone_url(head_repo, self.url) if is_fork else repo.clone_url,
            is_fork=is_fork, is_draft=bool(pr.get("draft")), state=PULL_STATE.get(pr.get("state"), "closed"),
            merge_sha=merge.get("id") or None, updated_at=_epoch_ms(pr.get("updatedDate")),
        )


def _granted(entries: Iterator[dict], kind: str, login: str, permissions: tuple[str, ...]) -> bool:
    """Whether a permission listing grants `login` one of `permissions` (the filter is a substring match)."""
    return any(str(e[kind].get("name", "")).lower() == login.lower() and e.get("permission") in permissions
               for e in entries)


def _clone_url(repo: dict, server: str) -> str:
    clone = [link["href"] for link in (repo.get("links") or {}).get("clone") or [] if link.get("name") == "http"]
    return clone[0] if clone else f"{server}/scm/{repo['project']['key'].lower()}/{repo['slug']}.git"


def _epoch_ms(value: Any) -> float:
    return int(value) / 1000 if isinstance(value, (int, float)) else 0.0

