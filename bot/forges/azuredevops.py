"""Azure DevOps (Services and Server) behind the Forge protocol, on Microsoft's azure-devops SDK.

Repo.full_name is ORGANIZATION/PROJECT/REPOSITORY (on Server, the collection path stands for the
organization), all under `azuredevops.org_url`; users are named by their identity's uniqueName
(an email, or DOMAIN\\user on Server). In Azure DevOps words:

- a comment is a thread the bot opens with one comment; its id here is "THREAD/COMMENT". An
  outdated plan is edited and its thread closed, which Azure DevOps folds away;
- a status is a pull request status (genre = statuses.prefix, name = plan or apply) on the
  iteration of that commit, and a commit status on the commit itself (what `statuses` reads);
- an approval is a reviewer's vote of 10 (approved) or 5 (approved with suggestions). A vote
  names no commit: a push keeps it unless the branch policy "Reset code reviewer votes when
  there are new changes" is on;
- merging is completing the pull request; drift reports are work items (bot.forges.azuredevops_work_items);
- permissions are read from the repository's security ACL (bot.forges.azuredevops_access).

Every call goes through `Sdk.call` (bot.forges.retry): 5xx, 429 and dropped connections are
retried with backoff (honouring Retry-After), then ForgeError.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from azure.devops.v7_0.git.models import Comment as ThreadComment
from azure.devops.v7_0.git.models import (
    GitCommitRef,
    GitPullRequest,
    GitPullRequestCommentThread,
    GitPullRequestCompletionOptions,
    GitPullRequestSearchCriteria,
    GitPullRequestStatus,
    GitStatus,
    GitStatusContext,
)

from bot.errors import ForgeError
from bot.forges.azuredevops_access import Access, RepoPath
from bot.forges.azuredevops_pulls import (
    change_paths,
    comment_ids,
    discussion_url,
    epoch,
    login,
    pull_from,
    shorten,
)
from bot.forges.azuredevops_sdk import Sdk
from bot.forges.azuredevops_work_items import WorkItems
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.retry import unless_missing
from bot.models import Comment, CommentRef, Mergeability, PullRequest, Repo
from bot.render import OUTDATED_BANNER

COMMENT_LIMIT = 150_000  # characters Azure DevOps accepts in one pull request comment
DESCRIPTION_LIMIT = 4_000  # a pull request's description
STATUS_DESCRIPTION_LIMIT = 256
PAGE = 100
MERGE_POLLS = (0.5, 1.0, 2.0, 3.0)  # waits while Azure DevOps completes a pull request

_STATE = {PENDING: "pending", SUCCESS: "succeeded", FAILURE: "failed"}
_FORGE_STATE = {"succeeded": SUCCESS, "failed": FAILURE, "error": FAILURE, "pending": PENDING}
_MERGE_STRATEGY = {"merge": "noFastForward", "squash": "squash", "rebase": "rebase"}
_OUTDATED = OUTDATED_BANNER.partition("{")[0]


class AzureDevOpsForge:
    """The Forge protocol on one Azure DevOps organization (or Server collection)."""

    comment_limit = COMMENT_LIMIT
    status_prefix = "plankeeper"  # settings.statuses.prefix, set by bot.forges.make_forge

    def __init__(self, org_url: str, token: str, bot_login: str | None = None,
                 work_item_type: str = "Issue", *, attempts: int = 4,
                 sleep: Callable[[float], None] = time.sleep):
        self.org_url = org_url.rstrip("/")
        self._token, self._bot_login, self._sleep = token, bot_login, sleep
        self._org_path = urlsplit(self.org_url).path.strip("/")
        self._sdk = Sdk(self.org_url, token, sleep=sleep, attempts=attempts)
        self._access = Access(self._sdk)
        self._work_items = WorkItems(self._sdk, work_item_type)
        # (repo id, sha) -> open pull requests with that head, as last read: where a status goes
        self._heads: dict[tuple[str, str], set[int]] = {}

    @classmethod
    def from_settings(cls, section: Any) -> AzureDevOpsForge:
        """From Settings.azuredevops (org_url, token, bot_login, work_item_type)."""
        return cls(section.org_url, section.token, section.bot_login, section.work_item_type)

    @property
    def bot_login(self) -> str:
        """The uniqueName of the token's identity (`_apis/connectionData`), unless configured."""
        if self._bot_login is None:
            self._bot_login = self._sdk.call("read who the token belongs to", self._access.token_login)
        return self._bot_login

    # -- pull requests --------

    def pull_request(self, repo: Repo, number: int) -> PullRequest:
        where = self._where(repo)
        return self._sdk.call(f"read pull request {_ref(repo, number)}", lambda: self._pull_from(
            repo, self._sdk.git.get_pull_request(where.name, number, project=where.project)))

    def create_pull_request(self, repo: Repo, head_branch: str, base_branch: str, title: str,
                            body: str) -> PullRequest:
        """Opened from head_branch of the repository itself; its branch is deleted on completion."""
        where = self._where(repo)
        pull = GitPullRequest(source_ref_name=f"refs/heads/{head_branch}", target_ref_name=f"refs/heads/{base_branch}",
                              title=title, description=shorten(body, DESCRIPTION_LIMIT),
                              completion_options=GitPullRequestCompletionOptions(delete_source_branch=True))
        return self._sdk.call(f"open a pull request from {head_branch} into {base_branch} of {repo.full_name}",
                              lambda: self._pull_from(repo, self._sdk.git.create_pull_request(
                                  pull, where.name, project=where.project)))

    def changed_files(self, pull: PullRequest) -> list[str]:
        """Every path of the latest iteration against the merge base (all pages; renames both ways)."""
        where = self._where(pull.repo)

        def fetch() -> list[str]:
            git = self._sdk.git
            iterations = git.get_pull_request_iterations(where.name, pull.number, project=where.project)
            latest = max(iteration.id for iteration in iterations)
            paths: dict[str, None] = {}
            skip: int | None = 0
            while skip is not None:
                page = git.get_pull_request_iteration_changes(where.name, pull.number, latest, project=where.project,
                                                              top=PAGE, skip=skip)
                for change in page.change_entries or []:
                    paths.update(dict.fromkeys(change_paths(change)))
                skip = page.next_skip if page.next_top and (page.next_skip or 0) > skip else None
            return list(paths)

        return self._sdk.call(f"list the changes of {_pull_ref(pull)}", fetch)

    # -- comments --------

    def create_comment(self, pull: PullRequest, body: str) -> CommentRef:
        where = self._where(pull.repo)
        thread = GitPullRequestCommentThread(comments=[ThreadComment(content=body, comment_type="text")])
        created = self._sdk.call(f"comment on {_pull_ref(pull)}", lambda: self._sdk.git.create_thread(
            thread, where.name, pull.number, project=where.project))
        return CommentRef(id=f"{created.id}/{created.comments[0].id}", url=discussion_url(pull.url, created.id))

    def update_comment(self, pull: PullRequest, comment_id: str, body: str) -> None:
        """Replace the comment's text; a plan marked outdated also has its thread closed."""
        where, (thread, number) = self._where(pull.repo), comment_ids(comment_id)
        git = self._sdk.git
        self._sdk.call(f"edit comment {comment_id} on {_pull_ref(pull)}", lambda: git.update_comment(
            ThreadComment(content=body), where.name, pull.number, thread, number, project=where.project))
        if body.startswith(_OUTDATED):
            self._sdk.call(f"close thread {thread} on {_pull_ref(pull)}", lambda: git.update_thread(
                GitPullRequestCommentThread(status="closed"), where.name, pull.number, thread, project=where.project))

    def comment(self, pull: PullRequest, comment_id: str) -> Comment | None:
        where, (thread, number) = self._where(pull.repo), comment_ids(comment_id)
        found = self._unless_missing(f"read comment {comment_id} on {_pull_ref(pull)}", lambda: self._sdk.git.get_comment(
            where.name, pull.number, thread, number, project=where.project))
        if found is None or found.is_deleted:
            return None
        return Comment(comment_id, login(found.author), found.content or "")

    def add_reaction(self, pull: PullRequest, comment_id: str, reaction: str = "eyes") -> None:
        """A like: the only reaction Azure DevOps has (liking twice is not an error)."""
        where, (thread, number) = self._where(pull.repo), comment_ids(comment_id)
        self._sdk.call(f"like comment {comment_id} on {_pull_ref(pull)}", lambda: self._sdk.git.create_like(
            where.name, pull.number, thread, number, project=where.project))

    # -- statuses, approvals, mergeability --------

    def set_status(self, repo: Repo, sha: str, context: str, state: str, description: str,
                   target_url: str = "") -> None:
        """A commit status on sha, and a pull request status on the iteration of sha of each open
        pull request whose head it is. Raises ValueError for an unknown state."""
        if state not in _STATE:
            raise ValueError(f"unknown commit status state {state!r}")
        where = self._where(repo)
        genre, _, name = context.rpartition("/")
        fields = {"context": GitStatusContext(genre=genre or None, name=name), "state": _STATE[state],
                  "description": shorten(description, STATUS_DESCRIPTION_LIMIT), "target_url": target_url or None}
        git = self._sdk.git
        self._sdk.call(f"set status {context} on {sha[:12]} of {repo.full_name}", lambda: git.create_commit_status(
            GitStatus(**fields), sha, where.name, project=where.project))
        for number in self._pulls_with_head(repo, sha):
            self._sdk.call(f"set status {context} on {_ref(repo, number)}",
                           lambda number=number: self._post_pull_status(where, number, sha, fields))

    def _post_pull_status(self, where: RepoPath, number: int, sha: str, fields: dict) -> None:
        git = self._sdk.git
        iterations = git.get_pull_request_iterations(where.name, number, project=where.project)
        of_sha = [i.id for i in iterations if i.source_ref_commit and i.source_ref_commit.commit_id == sha]
        if of_sha:  # none: the pull request moved on since (its newer head gets its own status)
            git.create_pull_request_status(GitPullRequestStatus(iteration_id=max(of_sha), **fields),
                                           where.name, number, project=where.project)

    def _pulls_with_head(self, repo: Repo, sha: str) -> set[int]:
        known = self._heads.get((repo.id, sha))
        if known is None:
            self.open_pull_requests(repo)  # remembers every open head
            known = self._heads.get((repo.id, sha), set())
        return known

    def statuses(self, repo: Repo, sha: str) -> dict[str, str]:
        """The latest commit status on sha per genre/name."""
        where = self._where(repo)

        def fetch() -> dict[str, str]:
            found: dict[str, str] = {}
            for status in self._sdk.git.get_statuses(sha, where.name, project=where.project, latest_only=True):
                context = "/".join(p for p in (status.context.genre, status.context.name) if p)
                found.setdefault(context, _FORGE_STATE.get(status.state, status.state))
            return found

        return self._sdk.call(f"read the statuses of {sha[:12]} of {repo.full_name}", fetch)

    def approvals(self, pull: PullRequest) -> tuple[list[str], int]:
        """Reviewers (people, not groups) whose vote approves; one still required if none. Branch
        policies (minimum number of reviewers) are enforced by Azure DevOps and in mergeability."""
        approvers = self._sdk.call(f"read the reviewers of {_pull_ref(pull)}",
                                   lambda: self._access.approvers(self._where(pull.repo), pull.number))
        return approvers, 0 if approvers else 1

    def mergeability(self, pull: PullRequest) -> Mergeability:
        """Active, not a draft, the test merge succeeded, and every blocking branch policy approves,
        apart from a status policy on the bot's own `{statuses.prefix}/apply`."""
        where = self._where(pull.repo)
        return self._sdk.call(f"read whether {_pull_ref(pull)} can be completed",
                              lambda: self._access.mergeability(where, pull.number, self.status_prefix))

    # -- permissions --------

    def has_write_permission(self, repo: Repo, login: str) -> bool:
        """The repository's effective "Contribute" permission for the user (groups included)."""
        where = self._where(repo)
        return self._sdk.call(f"read {login}'s permissions on {repo.full_name}",
                              lambda: self._access.may_contribute(where, login))

    def in_group(self, repo: Repo, login: str, group: str) -> bool:
        """`team:PROJECT/TEAM` membership (the team's direct members); other kinds never match."""
        kind, _, name = group.partition(":")
        project, _, team = name.partition("/")
        if kind != "team" or not project or not team:
            return False
        found = self._unless_missing(f"read the members of team {name}", lambda: self._access.in_team(project, team, login))
        return bool(found)  # an unknown team (404) has no members

    # -- merging, git --------

    def merge(self, pull: PullRequest, delete_source_branch: bool = False, method: str = "merge") -> None:
        """Complete the pull request at exactly pull.head_sha (merge, squash or rebase); ForgeError
        when Azure DevOps refuses or does not complete it."""
        if method not in _MERGE_STRATEGY:
            raise ValueError(f"unknown merge method {method!r}: expected merge, squash or rebase")
        where = self._where(pull.repo)
        update = GitPullRequest(status="completed", last_merge_source_commit=GitCommitRef(commit_id=pull.head_sha),
                                completion_options=GitPullRequestCompletionOptions(
                                    merge_strategy=_MERGE_STRATEGY[method], delete_source_branch=delete_source_branch))
        done = self._sdk.call(f"complete {_pull_ref(pull)}", lambda: self._sdk.git.update_pull_request(
            update, where.name, pull.number, project=where.project))
        for wait in MERGE_POLLS:
            if done.status == "completed":
                return
            self._sleep(wait)
            done = self._sdk.call(f"read pull request {_pull_ref(pull)}", lambda: self._sdk.git.get_pull_request(
                where.name, pull.number, project=where.project))
        if done.status != "completed":
            raise ForgeError(f"Azure DevOps did not complete {_pull_ref(pull)}: it is {done.status}, merge status "
                             f"{done.merge_status or 'unknown'}")

    def clone_auth(self, repo: Repo) -> tuple[str, str] | None:
        """The personal access token as the basic auth password (any user name; Microsoft's own is empty)."""
        return ("", self._token) if self._token else None

    def pull_refs(self, pull: PullRequest) -> list[str]:
        """Azure DevOps publishes refs/pull/N/merge (the test merge, whose second parent is the head),
        not a head ref; the source branch comes with the heads."""
        return [f"refs/pull/{pull.number}/merge"]

    # -- drift reports --------

    def create_or_update_issue(self, repo: Repo, title: str, body: str, issue_id: str | None) -> str:
        where = self._where(repo)
        return self._sdk.call(f"write a {self._work_items.type} work item in {where.project}",
                              lambda: self._work_items.write(where.project, title, body, issue_id))

    def close_issue(self, repo: Repo, issue_id: str, comment: str) -> None:
        where = self._where(repo)
        self._sdk.call(f"close work item {issue_id} in {where.project}",
                       lambda: self._work_items.close(where.project, int(issue_id), comment))

    # -- listing, for the reconciliation sweep --------

    def open_pull_requests(self, repo: Repo) -> list[PullRequest]:
        """Every active pull request (all pages). Azure DevOps keeps no "last updated" time, so
        updated_at is 0 (unknown): the sweep looks at each one."""
        return self._sdk.call(f"list the active pull requests of {repo.full_name}",
                              lambda: [self._pull_from(repo, pr) for pr in self._listed(repo, "active")])

    def recently_closed_pull_requests(self, repo: Repo, since: float) -> list[PullRequest]:
        """Completed, then abandoned pull requests closed since `since`, newest first; pages are
        read until one holds nothing created or closed since."""
        def fetch() -> list[PullRequest]:
            found = []
            for status in ("completed", "abandoned"):
                listed = self._listed(repo, status, until=lambda pr: max(epoch(pr.closed_date),
                                                                         epoch(pr.creation_date)) < since)
                found += [pr for pr in listed if epoch(pr.closed_date) >= since]
            found.sort(key=lambda pr: epoch(pr.closed_date), reverse=True)
            return [self._pull_from(repo, pr) for pr in found]

        return self._sdk.call(f"list the recently closed pull requests of {repo.full_name}", fetch)

    def comments_since(self, pull: PullRequest, since: float) -> list[Comment]:
        """Text comments (replies too) published or edited since `since`, oldest first; system
        comments (votes, pushes) left out."""
        where = self._where(pull.repo)

        def fetch() -> list[Comment]:
            found = []
            for thread in self._sdk.git.get_threads(where.name, pull.number, project=where.project):
                for c in thread.comments or []:
                    if c.comment_type == "text" and not c.is_deleted and \
                            max(epoch(c.published_date), epoch(c.last_updated_date)) >= since:
                        found.append((epoch(c.published_date), thread.id, c.id,
                                      Comment(f"{thread.id}/{c.id}", login(c.author), c.content or "")))
            return [comment for *_, comment in sorted(found, key=lambda f: f[:3])]

        return self._sdk.call(f"list the comments of {_pull_ref(pull)}", fetch)

    # -- internals --------

    def _listed(self, repo: Repo, status: str, until: Callable[[Any], bool] = lambda pr: False) -> list[Any]:
        """Pull requests of a status, page by page, until a page is short or `until` holds for all of it."""
        where, found, skip = self._where(repo), [], 0
        criteria = GitPullRequestSearchCriteria(status=status)
        while True:
            page = self._sdk.git.get_pull_requests(where.name, criteria, project=where.project, top=PAGE, skip=skip)
            found += page
            if len(page) < PAGE or all(until(pr) for pr in page):
                return found
            skip += len(page)

    def _pull_from(self, repo: Repo, pr: Any) -> PullRequest:
        pull = pull_from(repo, pr, self._web_url(repo, pr.pull_request_id), self._clone_url(repo))
        if pull.state == "open":
            self._heads.setdefault((repo.id, pull.head_sha), set()).add(pull.number)
        return pull

    def _where(self, repo: Repo) -> RepoPath:
        """(project, repository) of ORGANIZATION/PROJECT/REPOSITORY; ForgeError for another organization."""
        prefix = f"{self._org_path}/" if self._org_path else ""
        rest = repo.full_name[len(prefix):] if repo.full_name.lower().startswith(prefix.lower()) else ""
        project, _, name = rest.partition("/")
        if not project or not name or "/" in name:
            raise ForgeError(f"Azure DevOps: {repo.id} is not a repository of {self.org_url} "
                             "(expected HOST/ORGANIZATION/PROJECT/REPOSITORY)")
        return RepoPath(project, name)

    def _web_url(self, repo: Repo, number: int) -> str:
        return f"{self._repo_url(repo)}/pullrequest/{number}"

    def _clone_url(self, repo: Repo) -> str:
        return repo.clone_url or self._repo_url(repo)

    def _repo_url(self, repo: Repo) -> str:
        where = self._where(repo)
        return f"{self.org_url}/{quote(where.project)}/_git/{quote(where.name)}"

    def _unless_missing(self, action: str, fn: Callable[[], Any]) -> Any:
        """fn(), or None when Azure DevOps answers 404."""
        return unless_missing(self._sdk.call, action, fn, None)


def _ref(repo: Repo, number: int) -> str:
    return f"{repo.full_name}#{number}"


def _pull_ref(pull: PullRequest) -> str:
    return _ref(pull.repo, pull.number)
