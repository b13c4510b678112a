"""Azure DevOps' objects, as the SDK reads them, in the bot's words: pull requests, iteration
changes, comment ids ("THREAD/COMMENT"), identities (their uniqueName), times."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bot.errors import ForgeError
from bot.models import PullRequest, Repo

PULL_STATE = {"active": "open", "completed": "merged", "abandoned": "closed"}


def pull_from(repo: Repo, pr: Any, url: str, clone_url: str) -> PullRequest:
    """Our PullRequest from the SDK's GitPullRequest; ForgeError before its first source commit."""
    if pr.last_merge_source_commit is None:
        raise ForgeError(f"Azure DevOps: {repo.full_name}#{pr.pull_request_id} has no source commit yet")
    state, fork = PULL_STATE.get(pr.status, pr.status), pr.fork_source
    return PullRequest(
        repo=repo, number=pr.pull_request_id, author=login(pr.created_by),
        head_sha=pr.last_merge_source_commit.commit_id, head_ref=_branch(pr.source_ref_name),
        base_ref=_branch(pr.target_ref_name), url=url, title=pr.title or "",
        base_sha=_commit(pr.last_merge_target_commit),
        head_clone_url=without_userinfo(fork.repository.remote_url) if fork else clone_url,
        is_fork=fork is not None, is_draft=bool(pr.is_draft), state=state,
        merge_sha=(_commit(pr.last_merge_commit) or None) if state == "merged" else None,
    )


def change_paths(change: Any) -> list[str]:
    """The paths one iteration change touches (a rename's old path too); folders left out."""
    item = change.item or {}
    if item.get("isFolder"):
        return []
    paths = [item.get("path"), change.original_path, change.source_server_item]
    return [p.lstrip("/") for p in paths if isinstance(p, str) and p.strip("/")]


def comment_ids(comment_id: str) -> tuple[int, int]:
    thread, _, number = comment_id.partition("/")
    if not (thread.isdigit() and number.isdigit()):
        raise ForgeError(f"Azure DevOps: {comment_id!r} is not a comment id (THREAD/COMMENT)")
    return int(thread), int(number)


def discussion_url(pull_url: str, thread: int) -> str:
    return f"{pull_url.split('#', 1)[0]}?discussionId={thread}" if pull_url else ""


def login(identity: Any) -> str:
    return (identity.unique_name or "") if identity is not None else ""


def _branch(ref: str | None) -> str:
    return (ref or "").removeprefix("refs/heads/")


def _commit(ref: Any) -> str:
    return (ref.commit_id or "") if ref is not None else ""


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_userinfo(url: str | None) -> str:
    """https://ORG@dev.azure.com/... as git needs it: the bot's own credentials go in a header."""
    parts = urlsplit(url or "")
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))


def epoch(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
