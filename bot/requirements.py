"""What must hold before a command runs: a project's apply_requirements, plan_requirements and
import_requirements (`approved`, `mergeable`, `undiverged`; `policies_passed` is what bot.policies
enforces on every apply anyway), asked of the forge and of git now, never of a cache."""
from __future__ import annotations

from collections.abc import Sequence

from bot.context import JobContext
from bot.models import PullRequest
from runners.git import GitError


def unmet(ctx: JobContext, pull: PullRequest, requirements: Sequence[str], repo_dir: str | None = None) -> list[str]:
    """Each requirement that does not hold now, in words. With repo_dir (the pull request's
    checkout), `undiverged` is checked with git against the base branch as the remote has it."""
    problems = []
    if "approved" in requirements:
        problems += _approval(ctx, pull)
    if "mergeable" in requirements or ("undiverged" in requirements and repo_dir is None):
        state = ctx.forge.mergeability(pull)
        if "mergeable" in requirements and not state.mergeable:
            problems.append(f"not mergeable: {state.reason}")
        if "undiverged" in requirements and repo_dir is None and "behind" in state.reason:
            problems.append(f"diverged: `{pull.base_ref}` has commits this pull request lacks; merge or rebase "
                            f"`{pull.base_ref}` into the branch and push")
    if "undiverged" in requirements and repo_dir is not None:
        problems += _divergence(ctx, pull, repo_dir)
    return problems


def _approval(ctx: JobContext, pull: PullRequest) -> list[str]:
    approvers, missing = ctx.forge.approvals(pull)
    approvers = [a for a in approvers if a.lower() != pull.author.lower()
                 and ctx.forge.has_write_permission(pull.repo, a)]  # a reader's approval counts for nothing
    if missing > 0 or not approvers:
        needed = max(missing, 1)
        return [f"needs {needed} approval{'s' if needed > 1 else ''}, has {len(approvers)}"]
    return []


def _divergence(ctx: JobContext, pull: PullRequest, repo_dir: str) -> list[str]:
    """Is the base branch's tip an ancestor of the head commit? Asked of git in the checkout."""
    try:
        tip = ctx.repo_cache().diverged_from(ctx.workspace.resolve(repo_dir), pull.repo.clone_url, pull.base_ref,
                                             pull.head_sha, auth=ctx.forge.clone_auth(pull.repo))
    except GitError as exc:
        return [f"undiverged could not be checked: {exc}; comment the command again"]
    if tip is None:
        return []
    return [(f"diverged: `{pull.base_ref}` is at {tip[:7]}, which the head {pull.head_sha[:7]} does not contain; "
            f"merge or rebase `{pull.base_ref}` into the branch, push, and plan again")]
