"""/revert (and the UI's "Roll back"): GitOps rollback of a merged pull request.

On the base branch's head, revert what the pull request merged (a merge commit against its first
parent; a squash commit; rebased commits newest first: runners.git.RevertPlan), push that as a new
branch `plankeeper/revert-<N>-<short sha>` with the bot's credentials, and open a pull request
"Revert #N: <title>". The forge's `opened` webhook then autoplans it like any other pull request;
it is approved, applied and deployed under the same rules. A conflict is reported with the files,
and nothing is pushed.
"""
from __future__ import annotations

from dataclasses import replace

from bot.context import JobContext
from bot.errors import UserFacingError
from bot.handlers.base import Handler, Request, Started, Trigger
from bot.models import PullRequest
from bot.state import audit, reverts
from runners.git import GitError, NothingToRevert, RevertConflict, RevertPlan

REVERT_DIR = "revert"
BRANCH_PREFIX = "plankeeper/revert-"
TITLE_LIMIT = 250  # GitLab refuses titles over 255 characters


class RevertHandler(Handler):
    name = "revert"

    def start(self, ctx: JobContext, request: Request) -> Started:
        pull = request.pull
        try:
            refuse_unless_merged(pull)
            open_already = open_revert_of(ctx, pull)
            if open_already is not None:
                ctx.forge.create_comment(pull, f"**Plankeeper revert**: {open_already.ref} already rolls back "
                                               f"{pull.ref}: review and merge [it]({open_already.url}), or close it "
                                               "and comment `/revert` again.")
                audit.record(ctx.redis, "revert", user=request.actor, repo=pull.repo.id, pull=pull.number,
                             commit=pull.merge_sha, result=f"already open: {open_already.ref}", job_id=ctx.job_id)
                return f"replied: {open_already.ref} already reverts it"
            opened = open_revert(ctx, pull, request.actor, request.trigger)
        except UserFacingError as exc:
            audit.record(ctx.redis, "revert", user=request.actor, repo=pull.repo.id, pull=pull.number,
                         commit=pull.merge_sha or pull.head_sha, result=f"refused: {exc.title}",
                         detail=ctx.redact(exc.message[:300]), job_id=ctx.job_id)
            raise
        return f"opened {opened.ref}"


def refuse_unless_merged(pull: PullRequest) -> None:
    if pull.state == "merged":
        return
    if pull.state == "open":
        raise UserFacingError(
            f"{pull.ref} is not merged yet: `/revert` rolls back a *merged* pull request by opening one that "
            "reverts it. To undo changes here, push a commit that removes them, or close the pull request.",
            title="revert refused")
    raise UserFacingError(
        f"{pull.ref} was closed without being merged: none of its changes reached `{pull.base_ref}`, so there "
        "is nothing to revert.", title="revert refused")


def open_revert_of(ctx: JobContext, pull: PullRequest) -> PullRequest | None:
    """The revert pull request the bot opened for `pull`, while it is still open."""
    number = reverts.reverted_by(ctx.redis, pull.repo.id, pull.number)
    if number is None:
        return None
    current = ctx.forge.pull_request(pull.repo, number)
    return current if current.state == "open" else None


def open_revert(ctx: JobContext, pull: PullRequest, actor: str, trigger: Trigger) -> PullRequest:
    """Revert the merged pull request on its base branch's head, push the branch, open the pull
    request, record it and reply on the original. Raises UserFacingError (conflicts, git, forge)."""
    merged = pull.merge_sha or pull.head_sha  # GitLab reports no merge commit for a fast-forward merge
    cache, auth = ctx.repo_cache(), ctx.forge.clone_auth(pull.repo)
    try:
        base_head = cache.branch_head(pull.repo.clone_url, pull.base_ref, auth=auth)
    except GitError as exc:
        raise UserFacingError(f"Could not read the head of `{pull.base_ref}`: {exc}", title="Revert failed") from exc
    # The base repository's branch, even for a pull request that came from a fork.
    repo_dir = ctx.checkout(replace(pull, head_clone_url=pull.repo.clone_url), sha=base_head, subdir=REVERT_DIR)
    work = ctx.workspace.resolve(repo_dir)
    branch = f"{BRANCH_PREFIX}{pull.number}-{merged[:7]}"
    try:
        plan = cache.revert_plan(work, merged, pull.head_sha, pull.base_sha)
        ctx.log(f"reverting {pull.ref} ({plan.kind}: {', '.join(c[:12] for c in plan.commits)}) on "
                f"{pull.base_ref} at {base_head[:12]} as {branch}")
        cache.revert_and_push(work, pull.repo.clone_url, branch, plan, commit_message(pull, plan, actor),
                              author=bot_identity(ctx, pull), auth=auth)
    except RevertConflict as exc:
        files = "\n".join(f"- `{f}`" for f in exc.files)
        raise UserFacingError(
            f"Reverting {pull.ref} on `{pull.base_ref}` (at `{base_head[:7]}`) conflicts with later changes "
            f"in:\n{files}\n\nNothing was pushed. Revert it by hand in a pull request that resolves the "
            "conflicts.", title="Revert conflicts") from exc
    except NothingToRevert as exc:
        raise UserFacingError(f"`{pull.base_ref}` no longer has any of {pull.ref}'s changes (was it reverted "
                              "already?): there is nothing to roll back.", title="Nothing to revert") from exc
    except GitError as exc:
        raise UserFacingError(f"Could not revert {pull.ref}: {exc}\n\nNothing was opened.",
                              title="Revert failed") from exc
    opened = ctx.forge.create_pull_request(pull.repo, branch, pull.base_ref, revert_title(pull),
                                           revert_body(pull, plan, actor, trigger))
    reverts.record(ctx.redis, reverts.Revert(
        repo=pull.repo.id, original=pull.number, revert=opened.number, merged_commit=merged, kind=plan.kind,
        commits=plan.commits, branch=branch, url=opened.url, actor=actor))
    audit.record(ctx.redis, "revert", user=actor, repo=pull.repo.id, pull=pull.number, commit=merged,
                 result=f"opened {opened.ref}", detail=f"{branch} via {trigger}", job_id=ctx.job_id)
    ctx.forge.create_comment(pull, (
        f"**Plankeeper revert**: opened [{opened.ref}]({opened.url}) to roll back {pull.ref}. Its branch "
        f"`{branch}` reverts {describe(plan)} on `{pull.base_ref}`. It is planned there like any other pull "
        "request: review the plan, then merge it (or `/apply` it) to deploy the rollback."))
    return opened


def revert_title(pull: PullRequest) -> str:
    title = f"Revert {pull.ref}: {pull.title}".strip()
    return title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"


def describe(plan: RevertPlan) -> str:
    if plan.kind == "merge":
        return f"merge commit `{plan.commits[0][:7]}`"
    if len(plan.commits) == 1:
        return f"{'squashed ' if plan.kind == 'squash' else ''}commit `{plan.commits[0][:7]}`"
    return f"{len(plan.commits)} commits ({', '.join(f'`{c[:7]}`' for c in plan.commits)})"


def revert_body(pull: PullRequest, plan: RevertPlan, actor: str, trigger: Trigger) -> str:
    how = "from the Plankeeper UI" if trigger is Trigger.API else f"with `/revert` on {pull.ref}"
    return (f"Reverts {pull.ref}\n\n"
            f"This pull request rolls back [{pull.ref}]({pull.url}) (**{pull.title}**): it reverts "
            f"{describe(plan)}, the changes {pull.ref} merged into `{pull.base_ref}`.\n\n"
            "Plankeeper plans it like any other pull request. Merging it (or applying it, where the repository "
            "applies before merging) deploys the rollback.\n\n"
            f"Requested by @{actor} {how}.")


def commit_message(pull: PullRequest, plan: RevertPlan, actor: str) -> str:
    lines = [f"Revert {pull.ref}: {pull.title}"[:200], ""]
    lines += [f"This reverts commit {c}." for c in plan.commits]
    lines += ["", f"Rolls back {pull.url or pull.ref}, as requested by @{actor}."]
    return "\n".join(lines)


def bot_identity(ctx: JobContext, pull: PullRequest) -> tuple[str, str]:
    login = ctx.forge.bot_login
    return login, f"{login}@users.noreply.{pull.repo.host}"
