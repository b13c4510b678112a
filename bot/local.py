"""Local mode: `plankeeper plan` and `plankeeper check` on a checkout, no forge, no Redis."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from bot import render, selection
from bot.engines import runner_for
from bot.errors import UserFacingError
from bot.models import Command, ProjectOutcome, PullRequest, Repo
from bot.redact import Redactor, settings_secrets
from runners.git import GitError, RepoCache
from runners.projects import discover_projects, module_users
from runners.workspace import create_workspace

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
            projects = selection.select_projects(ws, "repo", Command("plan", dirs=tuple(dirs), projects=tuple(names)), changed)
        except (GitError, UserFacingError) as exc:
            print(f"plankeeper plan: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 1
        pull = PullRequest(Repo("local", "local", repo.name, str(repo)), 0, os.environ.get("USER", "local"),
                           head_sha, head, base or "")
        outcomes = []
        for project in projects:
            _progress(f"planning {project.dir} (workspace {project.workspace})")
            runner = runner_for(project, settings, ws)
            out = ws.resolve(f"out/{len(outcomes)}")
            out.mkdir(parents=True)
            result = runner.plan(selection.project_dir(ws, "repo", project), project.workspace, out,
                                 on_line=lambda line: None)
            status = "failed" if not result.ok else ("planned" if result.has_changes else "no_changes")
            outcomes.append(ProjectOutcome(project, status, plan=result))
            _progress(f"{project.dir}: {result.summary or result.error or status}")
    if not outcomes:
        print("No Terraform project changed between the base and the head.")
        return 0
    print(render.command_comment("plan", pull, outcomes, running=False, limit=GITHUB_LIMIT, redact=redact))
    if any(o.status == "failed" for o in outcomes):
        return 1
    return 2 if any(o.status == "planned" for o in outcomes) else 0


def check_repo(settings, repo: Path, base: str | None, head: str | None) -> int:
    """List projects and what a change would autoplan; 1 on a bad config."""
    root = repo.resolve()
    roots = selection.terraform_dirs(root)
    users = module_users(root)
    modules = sorted(users)
    print(f"Repository: {root}")
    print("Terraform roots:" if roots else "No Terraform files found.")
    for d in roots:
        if d not in users:
            print(f"  - {d} (workspace default)")
    if modules:
        print("Local modules (a change plans every root using them):")
        for m in modules:
            print(f"  - {m}: used by {', '.join(sorted(users[m]))}")
    if head:
        cache = RepoCache(root / ".git" / "plankeeper-cache", dict(os.environ))
        try:
            head_sha = _resolve(root, head)
            base_sha = _resolve(root, base) if base else _default_base(root, head_sha)
            changed = cache.changed_files(root, base_sha, head_sha)
        except Exception as exc:
            print(f"plankeeper check: {exc}", file=sys.stderr)
            return 1
        planned = discover_projects(root, changed)
        print(f"A change from {base_sha[:7]} to {head_sha[:7]} would autoplan:")
        for p in planned:
            print(f"  - {p.dir} (workspace {p.workspace})")
        if not planned:
            print("  nothing")
    return 0
