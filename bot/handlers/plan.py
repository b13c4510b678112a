"""/plan and autoplan: select the pull request's projects; each project job locks, plans,
stores the plan and checks policies."""
from __future__ import annotations

from bot import hooks, policies, redact, requirements, selection
from bot.context import JobContext
from bot.drift.status import base_drift
from bot.errors import UserFacingError
from bot.execution import (effective_for, generated_repo_config, plan_in, remember_repo_config, repo_config_text,
                           store_plan, write_repo_config)
from bot.forges.base import SUCCESS
from bot.handlers.base import Handler, Request, Started, Trigger
from bot.models import OutcomeStatus, ProjectOutcome, PullRequest, RunKind, pull_ref
from bot.runs.model import NewRun, Run
from bot.runs.report import CommandReport, silenced_projects
from bot.state import locks
from runners.repo_config_schema import EffectiveProject

FORK_MESSAGE = (
    "**Plankeeper** does not plan pull requests from forks with the server's credentials "
    "(`allow_fork_prs` is off). A maintainer can push the branch to this repository instead."
)


class PlanHandler(Handler):
    name = "plan"

    def start(self, ctx: JobContext, request: Request) -> Started:
        pull, autoplan = request.pull, request.trigger is Trigger.AUTOPLAN
        if fork_refused(ctx, pull) and not autoplan:
            raise UserFacingError(FORK_MESSAGE, title="Plan refused")
        report = CommandReport(ctx, pull, "plan")
        resolved = ctx.settings.repo_settings(pull.repo.id)
        try:
            repo_dir = ctx.checkout(pull)
            ctx.prestart_terraform(pull, repo_dir)  # loads while projects are selected, the comment posted
            before = repo_config_text(ctx, repo_dir, resolved)
            hooks.run_pre_workflow_hooks(ctx, pull, repo_dir)  # before the config: a hook may generate it
            generated = generated_repo_config(ctx, repo_dir, resolved, before)
            remember_repo_config(ctx, pull, generated)
            config, effective = selection.load_effective(ctx.workspace, repo_dir, resolved)
            chosen = selection.select_effective(
                ctx.workspace, repo_dir, request.command, ctx.forge.changed_files(pull), config, effective,
                resolved, autoplan=autoplan, base_branch=pull.base_ref)
        except UserFacingError as exc:
            report.fail(exc.title, exc.message)
            return f"failed: {exc.title}"
        if not chosen:
            if autoplan:
                report.status(SUCCESS, "No Terraform or Kubernetes project changed")
                return "no projects changed"
            report.fail("Nothing to plan", "No project matches: the pull request changes no Terraform files. "
                        "Use `/plan -d DIR` to plan a directory.")
            return "nothing to plan"
        run = Run(id=f"{ctx.job_id}-plan", kind=RunKind.PLAN, pull=pull, command=request.command,
                  actor=request.actor or pull.author, projects=[ep.project for ep in chosen],
                  coordinator_job=ctx.job_id, autoplan=autoplan,
                  abort_on_fail=bool(config and config.abort_on_execution_order_fail),
                  repo_config_file=generated[0], repo_config_override=generated[1],
                  silenced=silenced_projects(chosen, "plan"))
        return NewRun(run, chosen, parallel=config.parallel_plan if config else True)

    def project(self, ctx: JobContext, run: Run, outcome: ProjectOutcome) -> None:
        """Check out, lock, plan, store; fills in the outcome."""
        pull, project = run.pull, outcome.project
        repo_dir = ctx.checkout(pull)
        write_repo_config(ctx, pull, repo_dir, run.repo_config_file, run.repo_config_override)
        effective = effective_for(ctx, pull, repo_dir, project)
        unmet = requirements.unmet(ctx, pull, effective.plan_requirements, repo_dir)  # none: no forge call
        if unmet:
            outcome.status, outcome.message = OutcomeStatus.FAILED, plan_refused(effective.plan_requirements, unmet)
        else:
            self._plan(ctx, run, outcome, repo_dir, effective)
        if project == run.projects[0]:  # once per comment, under the first project
            outcome.message = "\n\n".join(m for m in (outcome.message, config_warnings(ctx, pull, repo_dir)) if m)

    def _plan(self, ctx: JobContext, run: Run, outcome: ProjectOutcome, repo_dir: str,
              effective: EffectiveProject) -> None:
        pull, project = run.pull, outcome.project
        if effective.repo_locks_mode == "on_plan":
            held = locks.try_lock(ctx.redis, locks.new_lock(pull.repo.id, project.key, pull.number, pull.url,
                                                            pull.author))
            if held.pull_number != pull.number:
                outcome.status, outcome.message = OutcomeStatus.LOCKED, locked_message(held, pull.repo.forge)
                return
        result = plan_in(ctx, pull, repo_dir, effective, run.command.extra_args, run.actor)
        redact.learn_plan_secrets(ctx, result)
        outcome.plan = result
        if result.cancelled:
            outcome.status, outcome.message = OutcomeStatus.CANCELLED, "The plan was cancelled by `/cancel`."
        elif not result.ok:
            outcome.status = OutcomeStatus.FAILED
        else:
            saved = store_plan(ctx, pull, project, result)
            outcome.status = OutcomeStatus.PLANNED if result.has_changes else OutcomeStatus.NO_CHANGES
            outcome.drift, outcome.message = base_drift(ctx.redis, pull.repo.id, project.key, result)
            if saved is not None:
                outcome.policies = policies.check_plan(ctx, pull, project.key, result.plan_json, saved.sha256,
                                                       run.actor, enabled=effective.policy_check)

    def finish(self, ctx: JobContext, run: Run, outcomes: list[ProjectOutcome]) -> None:
        """Post-workflow hooks; a failure is reported, the plans stand."""
        if not ctx.settings.repo_settings(run.pull.repo.id).post_workflow_hooks:
            return
        problem = hooks.run_post_workflow_hooks(ctx, run.pull, ctx.checkout(run.pull))
        if problem:
            ctx.forge.create_comment(run.pull, ctx.redact(f"**Post-workflow hook failed**\n\n{problem}"))


def plan_refused(required: tuple[str, ...], unmet: list[str]) -> str:
    """Why a project was not planned: which plan requirement does not hold, and what to do."""
    return ("Not planned: this project's plan requirements (" + ", ".join(f"`{r}`" for r in required)
            + ") do not hold:\n" + "\n".join(f"- {p}" for p in unmet)
            + "\n\nOnce they hold, comment `/plan` (the server's `plan_requirements`, or the repo config's).")


def config_warnings(ctx: JobContext, pull: PullRequest, repo_dir: str) -> str:
    """The repo config's keys that are accepted but not honoured, as one small note; "" if none."""
    config, _ = selection.load_effective(ctx.workspace, repo_dir, ctx.settings.repo_settings(pull.repo.id))
    if config is None or not config.warnings:
        return ""
    return "⚠️ Repo config keys Plankeeper does not honour:\n" + "\n".join(f"- `{w}`" for w in config.warnings)


def locked_message(held: locks.Lock, forge: str) -> str:
    """Who holds the project's lock, as `#N` or `!N` (a GitLab merge request)."""
    return (f"🔒 This project is locked by [{pull_ref(forge, held.pull_number)}]({held.pull_url}) (@{held.user}). "
            "It can be planned here once that pull request is merged or closed, or after someone comments "
            "`/unlock` there.")


def fork_refused(ctx: JobContext, pull: PullRequest) -> bool:
    """True when the server does not plan this pull request because it comes from a fork."""
    return pull.is_fork and not ctx.settings.allow_fork_prs
