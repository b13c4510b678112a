"""Local mode: `plankeeper plan` and `plankeeper check` on a checkout, no forge, no Redis."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from bot import render, selection
from bot.engines import runner_for, step_env_for
from bot.errors import UserFacingError
from bot.models import Command, OutcomeStatus, ProjectOutcome, PullRequest, Repo
from bot.redact import Redactor, settings_secrets
from runners.models import PlanResult
from runners.git import GitError, RepoCache
from runners.projects import module_users, select_for_changes
from runners.repo_config import RepoConfigError, load_repo_config
from runners.repo_config_merge import merge_with_server, project_defaults
from runners.workspace import create_workspace

LOCAL_REPO_ID = "local/local/repo"

GITHUB_LIMIT = 65536


def _resolve(repo: Path, ref: str) -> str:
    import git

    return git.Repo(repo).commit(ref).hexsha


def _default_base(repo: Path, head: str) -> str:
    import git

    r = git.Repo(repo)
    for candidate in ("origin/HEAD", "origin/main", "origin/master", "main", "master"):
        try:
            base = r.merge_base(candidate, head)
        except git.GitCommandError:
            continue
        if base and base[0].hexsha != r.commit(head).hexsha:
            return base[0].hexsha
    return r.commit(head).parents[0].hexsha if r.commit(head).parents else r.commit(head).hexsha


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def local_plan(settings, repo: Path, base: str | None, head: str, dirs: Sequence[str], names: Sequence[str]) -> int:
    """Print the comment the bot would post; 0 no changes, 2 changes, 1 error."""
    redact = Redactor(settings_secrets(settings))
    try:
        head_sha = _resolve(repo, head)
        base_sha = _resolve(repo, base) if base else _default_base(repo, head_sha)
    except Exception as exc:
        print(f"plankeeper plan: cannot resolve refs in {repo}: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="plankeeper-") as tmp:
        ws = create_workspace(Path(tmp), "local")
        cache = RepoCache(Path(tmp) / "cache", dict(os.environ))
        try:
            cache.checkout(str(repo.resolve()), head_sha, ws.resolve("repo"))
            changed = cache.changed_files(ws.resolve("repo"), base_sha, head_sha)
            resolved = settings.repo_settings(LOCAL_REPO_ID)
            config, effective = selection.load_effective(ws, "repo", resolved)
            command = Command("plan", dirs=tuple(dirs), projects=tuple(names))
            chosen = selection.select_effective(ws, "repo", command, changed, config, effective, resolved,
                                                autoplan=not (dirs or names))
        except (GitError, UserFacingError) as exc:
            print(f"plankeeper plan: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 1
        pull = PullRequest(Repo("local", "local", repo.name, str(repo)), 0, os.environ.get("USER", "local"),
                           head_sha, head, base or "")
        outcomes = []
        for ep in chosen:
            project = ep.project
            _progress(f"planning {project.dir} (workspace {project.workspace})")
            out = ws.resolve(f"out/{len(outcomes)}")
            out.mkdir(parents=True)
            try:
                step_env = step_env_for(pull, project, project.dir)
                runner = runner_for(project, settings, ws, ep, step_env)
                result = runner.plan(selection.project_dir(ws, "repo", project), project.workspace, out,
                                     on_line=lambda line: None)
            except UserFacingError as exc:
                result = PlanResult(ok=False, failed_step="setup", error=exc.message)
            status = OutcomeStatus.FAILED if not result.ok else (
                OutcomeStatus.PLANNED if result.has_changes else OutcomeStatus.NO_CHANGES)
            outcomes.append(ProjectOutcome(project, status, plan=result))
            _progress(f"{project.dir}: {result.summary or result.error or status}")
    if not outcomes:
        print("No Terraform project changed between the base and the head.")
        return 0
    print(render.command_comment("plan", pull, outcomes, running=False, limit=GITHUB_LIMIT, redact=redact,
                                 hints=False, footer=local_footer(outcomes)))
    if any(o.status is OutcomeStatus.FAILED for o in outcomes):
        return 1
    return 2 if any(o.status is OutcomeStatus.PLANNED for o in outcomes) else 0


def local_footer(outcomes: Sequence[ProjectOutcome]) -> str:
    """What to do next after a local plan: there is no pull request to comment `/apply` on."""
    if any(o.status is OutcomeStatus.FAILED for o in outcomes):
        return "Fix the failing project(s) and run `plankeeper plan` again.\n"
    engines = sorted({o.project.engine for o in outcomes if o.status is OutcomeStatus.PLANNED})
    if not engines:
        return ""
    by_hand = " or ".join(_LOCAL_APPLY.get(e, f"`{e}`") for e in engines)
    return ("Local plan: nothing was saved or locked, and `plankeeper plan` cannot apply. To apply, open a "
            "pull request from this branch and comment `/apply` there once Plankeeper has planned it, or "
            f"run {by_hand} yourself in each project directory with changes.\n")


_LOCAL_APPLY = {"terraform": "`terraform apply` (`tofu apply`)", "kubectl": "`kubectl apply`"}


def check_repo(settings, repo: Path, base: str | None, head: str | None) -> int:
    """Validate the repo config, list the resolved projects and what a change would autoplan.

    Exit 1 on a bad config (printed as file:line: key: message) or unresolvable refs.
    """
    root = repo.resolve()
    resolved = settings.repo_settings(LOCAL_REPO_ID)
    try:
        config = load_repo_config(root, resolved.repo_config_file)
        effective = merge_with_server(config, resolved)
    except RepoConfigError as exc:
        print(f"plankeeper check: {exc}", file=sys.stderr)
        return 1
    print(f"Repository: {root}")
    _print_config(root, config, effective)
    if head:
        cache = RepoCache(root / ".git" / "plankeeper-cache", dict(os.environ))
        try:
            head_sha = _resolve(root, head)
            base_sha = _resolve(root, base) if base else _default_base(root, head_sha)
            changed = cache.changed_files(root, base_sha, head_sha)
        except Exception as exc:
            print(f"plankeeper check: {exc}", file=sys.stderr)
            return 1
        planned = select_for_changes(effective, changed, root, config.autodiscover if config else None,
                                     autoplan=True, defaults=lambda p: project_defaults(p, resolved))
        print(f"A change from {base_sha[:7]} to {head_sha[:7]} would autoplan:")
        for ep in planned:
            print("  - " + _describe(ep))
        if not planned:
            print("  nothing")
    return 0


def _describe(ep) -> str:
    p = ep.project
    name = f"{p.name}: " if p.name else ""
    return (f"{name}{p.dir} (workspace {p.workspace}, engine {p.engine}, workflow {ep.workflow.name}, "
            f"autoplan {'on' if ep.autoplan else 'off'})")


def _print_config(root: Path, config, effective) -> None:
    if config is None:
        print("No repo config (plankeeper.yaml or atlantis.yaml): projects are discovered.")
        _print_discovered(root)
        return
    print(f"Config: {config.file} (valid)")
    for warning in config.warnings:
        print(f"Warning: {warning}")
    print(f"Projects ({len(effective)}):" if effective else "Projects: none configured")
    for ep in effective:
        print("  - " + _describe(ep))
        if ep.depends_on:
            print(f"      depends on {', '.join(ep.depends_on)}")
    if config.workflows:
        print("Workflows: " + ", ".join(sorted(config.workflows)))
    mode = config.autodiscover.mode
    if mode == "enabled" or (mode == "auto" and not effective):
        print(f"Autodiscovery: {mode} (unlisted Terraform dirs are planned too)")
        _print_discovered(root)


def _print_discovered(root: Path) -> None:
    roots = selection.terraform_dirs(root)
    users = module_users(root)
    print("Terraform roots:" if roots else "No Terraform files found.")
    for d in roots:
        if d not in users:
            print(f"  - {d} (workspace default)")
    if users:
        print("Local modules (a change plans every root using them):")
        for m in sorted(users):
            print(f"  - {m}: used by {', '.join(sorted(users[m]))}")
