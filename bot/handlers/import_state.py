"""/import ADDRESS ID and /state rm ADDRESS... (as Atlantis): one project, import_requirements
checked first; under the project's lock and its apply lease (they write state), init then the
command (or the workflow's `import` / `state_rm` stage); the project's plan is discarded after."""
from __future__ import annotations

from typing import ClassVar

from bot import requirements, selection
from bot.context import JobContext
from bot.engines import runner_for, step_env_for
from bot.errors import ApplyRefused, UserFacingError
from bot.execution import SETUP_ERRORS, effective_for, use_plan_repo_config
from bot.handlers.apply import apply_lease, hold_lock
from bot.handlers.base import Handler, Request, Started
from bot.models import ApplyResult, OutcomeStatus, ProjectOutcome, RunKind, pull_ref
from bot.runs.model import NewRun, Run
from bot.state import artifacts, audit
from runners.terraform import TerraformRunner
from runners.workflows import WorkflowRunner

REPLAN = "The project's plan was discarded: comment `/plan` to plan it again."


class _StateHandler(Handler):
    """What /import and /state rm share; subclasses name the command, its run kind and stage."""

    kind: ClassVar[RunKind]
    stage: ClassVar[str]  # workflow stage and audit action: import | state_rm
    shown: ClassVar[str]  # how the command is written: /import | /state rm

    def start(self, ctx: JobContext, request: Request) -> Started:
        pull, command, actor = request.pull, request.command, request.actor
        repo_dir = ctx.checkout(pull)
        use_plan_repo_config(ctx, pull, repo_dir)  # a hook's generated config, as the plan read it
        resolved = ctx.settings.repo_settings(pull.repo.id)
        config, effective = selection.load_effective(ctx.workspace, repo_dir, resolved)
        chosen = selection.select_effective(ctx.workspace, repo_dir, command, ctx.forge.changed_files(pull), config,
                                            effective, resolved, base_branch=pull.base_ref)
        if len(chosen) != 1:
            found = "no project" if not chosen else f"{len(chosen)} projects"
            raise UserFacingError(f"`{self.shown}` works on exactly one project and this selection has {found}: "
                                  "name it with `-d DIR` or `-p PROJECT`.", title=f"{self.shown} refused")
        [ep] = chosen
        if ep.project.engine != "terraform":
            raise UserFacingError(f"`{self.shown}` is for Terraform projects; {ep.project.label} is "
                                  f"{ep.project.engine}.", title=f"{self.shown} refused")
        problems = requirements.unmet(ctx, pull, sorted(ep.import_requirements), repo_dir)
        if problems:
            audit.record(ctx.redis, f"{self.stage}_refused", user=actor, repo=pull.repo.id, pull=pull.number,
                         commit=pull.head_sha, project=ep.project.key, result="; ".join(problems), job_id=ctx.job_id)
            raise ApplyRefused("Import requirements do not hold:\n" + "\n".join(f"- {p}" for p in problems),
                               title=f"{self.shown} refused")
        run = Run(id=f"{ctx.job_id}-{self.kind.value}", kind=self.kind, pull=pull, command=command, actor=actor,
                  projects=[ep.project], coordinator_job=ctx.job_id)
        return NewRun(run, [ep])

    def project(self, ctx: JobContext, run: Run, outcome: ProjectOutcome) -> None:
        """Lock, take the apply lease, run the command, discard the plan."""
        pull, project = run.pull, outcome.project
        held = hold_lock(ctx, pull, project.key, False)
        if held is not None:
            outcome.status, outcome.message = OutcomeStatus.LOCKED, (
                f"🔒 Locked by [{pull_ref(pull.repo.forge, held.pull_number)}]({held.pull_url}) (@{held.user}).")
            return
        lease = apply_lease(ctx, pull.repo.id, project.key)
        if not lease.acquire():
            outcome.status, outcome.message = OutcomeStatus.SKIPPED, "An apply of this project is running right now."
            return
        with lease.kept():
            result = self._execute(ctx, run, outcome)
            outcome.apply = result
            outcome.status = OutcomeStatus.APPLIED if result.ok else (
                OutcomeStatus.CANCELLED if result.cancelled else OutcomeStatus.FAILED)
            audit.record(ctx.redis, self.stage, user=run.actor, repo=pull.repo.id, pull=pull.number,
                         commit=pull.head_sha, project=project.key, detail=" ".join(run.command.args)[:200],
                         result="success" if result.ok else f"failed: {result.failed_step or ''}", job_id=ctx.job_id)
            if result.ok:
                artifacts.delete_plan(ctx.redis, pull.repo.id, pull.number, project.key)
                outcome.message = REPLAN

    def _execute(self, ctx: JobContext, run: Run, outcome: ProjectOutcome) -> ApplyResult:
        pull, project, command = run.pull, outcome.project, run.command
        sink = ctx.log.with_prefix(f"[{project.label}] ")
        try:
            repo_dir = ctx.checkout(pull)
            use_plan_repo_config(ctx, pull, repo_dir)
            effective = effective_for(ctx, pull, repo_dir, project)
            project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
            step_env = step_env_for(pull, project, project.dir, command.extra_args, run.actor)
            runner = runner_for(project, ctx.settings, ctx.workspace, effective, step_env, repo_id=pull.repo.id,
                                git_credentials=ctx.git_credentials(pull.repo),
                                init_records=ctx.init_records(repo_dir))
        except SETUP_ERRORS as exc:
            return ApplyResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
        if isinstance(runner, TerraformRunner) and self.stage in effective.workflow.stages:
            # only this stage is custom: the workflow's other stages are the defaults
            runner = WorkflowRunner(runner, effective.workflow, step_env, ctx.settings.terraform.timeout, runner.env)
        sink(f"{self.shown} in {project.dir} (workspace {project.workspace})")
        return self._call(runner, project_dir, project.workspace, command.args, command.extra_args, sink,
                          ctx.should_stop(pull))

    def _call(self, runner, project_dir, workspace, args, extra_args, sink, should_stop) -> ApplyResult:
        raise NotImplementedError


class ImportHandler(_StateHandler):
    name = "import"
    kind = RunKind.IMPORT
    stage = "import"
    shown = "/import"

    def _call(self, runner, project_dir, workspace, args, extra_args, sink, should_stop) -> ApplyResult:
        address, resource_id = args
        return runner.import_resource(project_dir, workspace, address, resource_id, extra_args, on_line=sink,
                                      should_stop=should_stop)


class StateRmHandler(_StateHandler):
    name = "state"
    kind = RunKind.STATE_RM
    stage = "state_rm"
    shown = "/state rm"

    def _call(self, runner, project_dir, workspace, args, extra_args, sink, should_stop) -> ApplyResult:
        return runner.state_rm(project_dir, workspace, args, extra_args, on_line=sink, should_stop=should_stop)
