"""Server-side pre- and post-workflow hooks, run in the checkout with a minimal environment, in
the job's sandbox (they may run the repository's scripts)."""
from __future__ import annotations

from bot.engines import job_sandbox, parent_environment, step_env_for
from bot.errors import UserFacingError
from bot.models import PullRequest
from runners.environment import minimal_env
from runners.models import Project
from runners.workflows import run_hooks


def _run(ctx, pull: PullRequest, repo_dir: str, which: str) -> None:
    hooks = getattr(ctx.settings.repo_settings(pull.repo.id), f"{which}_workflow_hooks")
    if not hooks:
        return
    env = minimal_env(parent_environment(), ctx.workspace.home, ctx.workspace.tmp,
                      extra=step_env_for(pull, Project("."), ".", (), pull.author))
    result = run_hooks(hooks, ctx.workspace.resolve(repo_dir), env, ctx.log.with_prefix(f"[{which}-hook] "),
                       timeout=ctx.settings.terraform.timeout, sandbox=job_sandbox(ctx.settings, ctx.workspace))
    if not result.ok:
        raise UserFacingError(
            f"The {which}-workflow hook `{result.failed_hook}` failed: {result.error}\n\n"
            f"```\n{result.output[-3000:]}\n```\nFix the hook (server config `repos[].{which}_workflow_hooks`) "
            "or the repository, then comment `/plan`.",
            title=f"{which.capitalize()}-workflow hook failed",
        )


def run_pre_workflow_hooks(ctx, pull: PullRequest, repo_dir: str) -> None:
    """Raises UserFacingError (nothing is planned) when a pre-workflow hook fails."""
    _run(ctx, pull, repo_dir, "pre")


def run_post_workflow_hooks(ctx, pull: PullRequest, repo_dir: str) -> str:
    """Post-workflow hooks run after the plans; a failure is reported, not raised."""
    try:
        _run(ctx, pull, repo_dir, "post")
    except UserFacingError as exc:
        return exc.message
    return ""
