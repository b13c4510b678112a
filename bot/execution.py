"""One project's engine inside a job: its effective settings, plan, stored plan, apply.

Shared by the plan, apply and deploy handlers and by drift checks. The user's own mistakes
(a project dir that leaves the checkout, a missing Terraform version or kubectl) come back
as a failed result naming the `setup` step; anything else is a bug and propagates, so the
run engine logs its traceback and reports an internal error with the job id.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional, Sequence

from bot import redact, selection
from bot.commands import PATH_FLAGS
from bot.context import JobContext
from bot.engines import render_base_dir, runner_for, step_env_for
from bot.errors import UserFacingError
from bot.models import PullRequest
from bot.redact import Redactor
from bot.state import artifacts, keys
from runners.models import ApplyResult, PlanResult, Project
from runners.plan_json import change_values
from runners.repo_config import CONFIG_FILES, find_config_file
from runners.repo_config_merge import project_defaults
from runners.repo_config_schema import EffectiveProject
from runners.workspace import PathEscape, Workspace

SETUP_ERRORS = (UserFacingError, PathEscape)  # the user's to fix: reported on the project


def effective_for(ctx: JobContext, pull: PullRequest, repo_dir: str, project: Project) -> EffectiveProject:
    """The project's settings as the repo config at this checkout and the server resolve them."""
    resolved = ctx.settings.repo_settings(pull.repo.id)
    _, effective = selection.load_effective(ctx.workspace, repo_dir, resolved)
    for ep in effective:
        if ep.project.key == project.key and (ep.project.name == project.name or not project.name):
            return ep
    return project_defaults(project, resolved)


def repo_config_text(ctx: JobContext, repo_dir: str, resolved) -> tuple[str, str]:
    """(file name relative to the checkout, text) of the repo config the checkout would be read
    with, or ("", "") when it has none."""
    repo = selection.repo_workspace(ctx.workspace, repo_dir)
    path = find_config_file(repo.root, getattr(resolved, "repo_config_file", None))
    if path is None:
        return "", ""
    name = path.relative_to(repo.root).as_posix()
    try:
        repo.resolve(name)
    except PathEscape as exc:
        raise UserFacingError(f"The repo config `{name}`: {exc}.", title="Repo config refused") from exc
    return name, path.read_text(encoding="utf-8", errors="replace")


def generated_repo_config(ctx: JobContext, repo_dir: str, resolved, before: tuple[str, str]) -> tuple[str, str]:
    """The repo config a pre-workflow hook created or changed, as (file, text); ("", "") when the
    hooks left the config as the commit has it."""
    after = repo_config_text(ctx, repo_dir, resolved)
    return after if after[0] and after != before else ("", "")


def write_repo_config(ctx: JobContext, pull: PullRequest, repo_dir: str, name: str, text: str) -> None:
    """Write the repo config a pre-workflow hook generated (stored with the run) into this job's
    checkout, so its projects are read as the coordinator read them. Only a config file name
    (plankeeper.yaml, atlantis.yaml or the server's repo_config_file) inside the checkout."""
    if not name:
        return
    allowed = set(CONFIG_FILES) | {ctx.settings.repo_settings(pull.repo.id).repo_config_file or ""}
    if name not in allowed:
        raise UserFacingError(f"The generated repo config `{name}` is not a repo config file.",
                              title="Repo config refused")
    path = selection.repo_workspace(ctx.workspace, repo_dir).resolve(name)  # PathEscape: not inside
    if path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def remember_repo_config(ctx: JobContext, pull: PullRequest, generated: tuple[str, str]) -> None:
    """Keep the repo config a pre-workflow hook generated for this head's plan, for the commands
    that follow it on the same head (/apply, /import, /state rm, automerge), which run no hooks;
    forget an older one when the hooks generated none this time."""
    key = keys.PLAN_CONFIG.format(repo=pull.repo.id, number=pull.number)
    if not generated[0]:
        ctx.redis.delete(key)
        return
    record = {"head_sha": pull.head_sha, "file": generated[0], "text": generated[1]}
    ctx.redis.set(key, json.dumps(record), ex=artifacts.RETENTION_SECONDS)


def use_plan_repo_config(ctx: JobContext, pull: PullRequest, repo_dir: str) -> None:
    """Write the repo config the plan of the pull request's head was read with into this
    checkout, when a pre-workflow hook generated it (the hooks are not run again)."""
    raw = ctx.redis.get(keys.PLAN_CONFIG.format(repo=pull.repo.id, number=pull.number))
    record = json.loads(raw) if raw else None
    if record and record["head_sha"] == pull.head_sha:
        write_repo_config(ctx, pull, repo_dir, record["file"], record["text"])


def plan_in(ctx: JobContext, pull: PullRequest, repo_dir: str, effective: EffectiveProject,
            extra_args: Sequence[str] = (), actor: str = "") -> PlanResult:
    """Plan one project of a checkout with its engine or workflow."""
    project = effective.project
    sink = ctx.log.with_prefix(f"[{project.label}] ")
    sink(f"planning {project.dir} (workspace {project.workspace})")
    try:
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        check_path_args(selection.repo_workspace(ctx.workspace, repo_dir), project, extra_args)
        runner = runner_for(project, ctx.settings, ctx.workspace, effective,
                            step_env_for(pull, project, project.dir, extra_args, actor), project_dir=project_dir,
                            repo_id=pull.repo.id, git_credentials=ctx.git_credentials(pull.repo),
                            init_records=ctx.init_records(repo_dir), sessions=ctx.terraform_sessions)
    except SETUP_ERRORS as exc:
        return PlanResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
    base_dir = render_base_dir(ctx, pull, repo_dir, project)  # render-only kubectl: diff base and head
    extra = {"base_dir": base_dir} if base_dir is not None else {}
    return runner.plan(project_dir, project.workspace, output_dir(ctx, project), tuple(extra_args), on_line=sink,
                       should_stop=ctx.should_stop(pull), **extra)


def check_path_args(repo: Workspace, project: Project, extra_args: Sequence[str]) -> None:
    """`-var-file PATH` / `-var-file=PATH` must stay inside the repository, taken relative to the
    project's directory as Terraform does; raises PathEscape (reported on the project) otherwise."""
    args = list(extra_args)
    for i, arg in enumerate(args):
        name, has_value, value = arg.partition("=")
        if name.lstrip("-").lower() not in PATH_FLAGS:
            continue
        if not has_value:
            value = args[i + 1] if i + 1 < len(args) else ""
        try:
            repo.resolve(value, base=project.dir)
        except PathEscape as exc:
            raise PathEscape(f"`{name}`: {exc}; give a path inside the repository") from None


def output_dir(ctx: JobContext, project: Project) -> Path:
    out = ctx.workspace.resolve(f"out/{re.sub(r'[^A-Za-z0-9_.-]', '_', project.key)}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def store_plan(ctx: JobContext, pull: PullRequest, project: Project, result: PlanResult,
               head_sha: Optional[str] = None) -> Optional[artifacts.PlanArtifact]:
    """Save the plan file with its SHA-256 and sensitive values; None for a plan without a file."""
    if not result.plan_file:
        return None
    artifact = artifacts.PlanArtifact(
        repo_id=pull.repo.id, pull_number=pull.number, project_key=project.key, project_name=project.name,
        engine=project.engine, head_sha=head_sha or pull.head_sha, sha256="", summary=result.summary,
        changes=list(result.changes), job_id=ctx.job_id,
    )
    secrets = redact.sensitive_values(result.plan_json) if result.plan_json else []
    values = change_values(result.plan_json) if result.plan_json else []
    saved = artifacts.save_plan(ctx.redis, artifact, Path(result.plan_file), sorted(secrets), values)
    ctx.log(f"[{project.label}] saved plan {saved.sha256[:12]} for {saved.head_sha[:7]}")
    return saved


def apply_in(ctx: JobContext, pull: PullRequest, repo_dir: str, plan: artifacts.PlanArtifact, project: Project,
             actor: str = "") -> ApplyResult:
    """Apply exactly the stored plan (SHA-256 checked) in a checkout of the pull request."""
    sink = ctx.log.with_prefix(f"[{project.label}] ")
    try:
        effective = effective_for(ctx, pull, repo_dir, project)
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        plan_file = artifacts.write_plan_file(ctx.redis, plan, ctx.workspace.resolve(f"plans/{plan.sha256[:16]}"))
        runner = runner_for(project, ctx.settings, ctx.workspace, effective,
                            step_env_for(pull, project, project.dir, (), actor), project_dir=project_dir,
                            repo_id=pull.repo.id, git_credentials=ctx.git_credentials(pull.repo),
                            init_records=ctx.init_records(repo_dir), sessions=ctx.terraform_sessions)
    except artifacts.ArtifactCorrupt as exc:
        return ApplyResult(ok=False, failed_step="verify", error=f"{exc}: comment `/plan` to plan again.")
    except SETUP_ERRORS as exc:
        return ApplyResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
    if isinstance(ctx.redact, Redactor):
        ctx.redact.add_secrets(artifacts.plan_secrets(ctx.redis, plan))
    sink(f"applying plan {plan.sha256[:12]} of {plan.head_sha[:7]}")
    return runner.apply(project_dir, project.workspace, plan_file, on_line=sink, should_stop=ctx.should_stop(pull))
