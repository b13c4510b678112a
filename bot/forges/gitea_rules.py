"""Pure readings of Gitea's JSON for GiteaForge: pull requests, comments and statuses in the bot's
words, whose approval counts, why a pull request will not merge, which branch protection rule
applies and which of its checks block."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Any

from bot.events.gitea import is_draft_title
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.models import Comment, PullRequest, Repo

BEHIND = "head branch is behind the base branch"
# What Gitea's POST .../merge means by its refusals.
MERGE_REFUSALS = {
    405: "it cannot be merged now (a conflict, a work in progress, a merge check still running, "
         "a merge style the repository does not allow, or branch protection)",
    409: "its head moved since it was planned, or merging it conflicts",
}
# Review states that set a reviewer's standing; COMMENT, PENDING and REQUEST_REVIEW do not.
_DECISIVE = ("APPROVED", "REQUEST_CHANGES")
_STATES = {"pending": PENDING, "success": SUCCESS, "failure": FAILURE, "error": FAILURE}


# ---------------------------------------------------------------- JSON -> the bot's models


def pull_from(repo: Repo, pr: dict) -> PullRequest:
    """A PullRequest from the API's (or a list item's) pull request object."""
    head, base = pr["head"], pr["base"]
    is_fork = head.get("repo_id") != base.get("repo_id")  # -1 on the head: its fork was deleted
    merged = bool(pr.get("merged"))
    clone_url = (head.get("repo") or {}).get("clone_url") or ("" if is_fork else repo.clone_url)
    return PullRequest(
        repo=repo, number=int(pr["number"]), author=str(pr["user"]["login"]),
        head_sha=str(head["sha"]), head_ref=str(head["ref"]), base_ref=str(base["ref"]),
        url=str(pr.get("html_url") or ""), title=str(pr.get("title") or ""),
        base_sha=str(pr.get("merge_base") or base.get("sha") or ""),  # where the diff starts
        head_clone_url=str(clone_url), is_fork=is_fork, is_draft=is_draft(pr),
        state="merged" if merged else ("closed" if pr.get("state") == "closed" else "open"),
        merge_sha=(pr.get("merge_commit_sha") or None) if merged else None,
    )


def listed_pull_from(repo: Repo, pr: dict) -> PullRequest:
    return replace(pull_from(repo, pr), updated_at=epoch(pr.get("updated_at")))


def comment_from(comment: dict) -> Comment:
    login = (comment.get("user") or {}).get("login") or ""
    return Comment(str(comment["id"]), str(login), str(comment.get("body") or ""))


def comment_is_on(comment: dict, number: int) -> bool:
    """Whether a comment read by id belongs to issue or pull request `number` (by its URLs)."""
    url = str(comment.get("pull_request_url") or comment.get("issue_url") or "").rstrip("/")
    return not url or url.endswith(f"/{number}")


def latest_states(statuses: list[dict]) -> dict[str, str]:
    """Each context's latest status (the highest id), in the bot's words where it has them."""
    latest: dict[str, tuple[int, str]] = {}
    for status in statuses:
        context, number = str(status.get("context") or ""), int(status.get("id") or 0)
        if context not in latest or number >= latest[context][0]:
            latest[context] = (number, str(status.get("status") or status.get("state") or ""))
    return {context: _STATES.get(state, state) for context, (_, state) in latest.items()}


def epoch(moment: Any) -> float:
    """Epoch seconds of Gitea's RFC 3339 time (2024-01-31T12:00:00+01:00 or ...Z); 0 when absent."""
    if not moment:
        return 0.0
    parsed = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- reviews and merging


def is_draft(pr: dict) -> bool:
    """Gitea's work-in-progress: `draft` where the server says it, else the title's prefix."""
    draft = pr.get("draft")
    return draft if isinstance(draft, bool) else is_draft_title(str(pr.get("title") or ""))


def approvers_of(reviews: list[dict], head_sha: str) -> list[str]:
    """Logins whose latest approving or change-requesting review, not dismissed, approves head_sha
    (a stale review, of an older head, counts for nothing)."""
    latest: dict[str, dict] = {}
    for review in sorted(reviews, key=lambda r: int(r.get("id") or 0)):
        login = (review.get("user") or {}).get("login")
        if login and review.get("state") in _DECISIVE and not review.get("dismissed"):
            latest[str(login)] = review
    return [login for login, review in latest.items() if review["state"] == "APPROVED"
            and review.get("commit_id") == head_sha and not review.get("stale")]


def pull_blocker(pr: dict) -> str | None:
    """Why Gitea itself will not merge the pull request now, or None."""
    if pr.get("merged"):
        return "it is already merged"
    if pr.get("state") != "open":
        return "pull request is closed"
    if is_draft(pr):
        return ("it is a work in progress (its title starts with WIP: or a similar prefix); "
                "take the prefix off")
    if not pr.get("mergeable"):
        return ("Gitea reports it cannot be merged: it conflicts with the base branch, or Gitea's "
                "merge check has not finished (try again in a moment)")
    return None


def is_behind(pr: dict) -> bool:
    """The base branch has commits the head lacks: its head is not the merge base."""
    base_head, merge_base = (pr.get("base") or {}).get("sha"), pr.get("merge_base")
    return bool(base_head and merge_base and base_head != merge_base)


def protection_for(rules: list[dict], branch: str) -> dict | None:
    """The branch protection rule Gitea applies to `branch`: one named exactly, else the first
    whose name (a glob since Gitea 1.19) matches."""
    names = [(rule, str(rule.get("rule_name") or rule.get("branch_name") or "")) for rule in rules]
    exact = next((rule for rule, name in names if name == branch), None)
    return exact or next((rule for rule, name in names if name and fnmatchcase(branch, name)), None)


def protection_blockers(rule: dict, statuses: dict[str, str], behind: bool,
                        own_status: str) -> list[str]:
    """What the rule refuses a merge for: an outdated head, required status checks not green."""
    reasons = []
    if behind and rule.get("block_on_outdated_branch"):
        reasons.append(f"{BEHIND} and the branch protection of it requires it up to date")
    if rule.get("enable_status_check"):
        failing = _failing_checks(rule.get("status_check_contexts") or [], statuses, own_status)
        if failing:
            reasons.append("required status checks have not passed: " + ", ".join(failing))
    return reasons


def _failing_checks(patterns: list[Any], statuses: dict[str, str], own_status: str) -> list[str]:
    """Required context patterns without a green status; the bot's own apply status is no blocker."""
    failing = []
    for pattern in map(str, patterns):
        states = [state for context, state in statuses.items()
                  if context != own_status and fnmatchcase(context, pattern)]
        if not states and fnmatchcase(own_status, pattern):
            continue
        if not states:
            failing.append(f"{pattern} (no status yet)")
        elif any(state != SUCCESS for state in states):
            failing.append(f"{pattern} ({', '.join(sorted(set(states) - {SUCCESS}))})")
    return failing


def said(error: BaseException | None) -> str:
    """`: Gitea says "..."` from the API error behind a refusal, or nothing."""
    message = getattr(error, "message", "")
    return f': Gitea says "{message}"' if isinstance(message, str) and message else ""
