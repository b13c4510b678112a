"""Which projects a command runs: from -d/-p flags, or from the pull request's changes."""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Sequence

from bot.errors import UserFacingError
from bot.models import Command
from runners.models import Project
from runners.projects import discover_projects
from runners.workspace import PathEscape, Workspace

TF_SUFFIXES = (".tf", ".tf.json")


def terraform_dirs(root: Path) -> list[str]:
    """Every directory of the checkout holding Terraform files, relative, sorted."""
    dirs = set()
    for path in root.rglob("*"):
        if path.suffix in (".tf", ".json") and path.name.endswith(TF_SUFFIXES) and ".terraform" not in path.parts:
            rel = path.parent.relative_to(root).as_posix()
            if not rel.startswith(".git"):
                dirs.add(rel or ".")
    return sorted(dirs)


def repo_workspace(workspace: Workspace, repo_dir: str) -> Workspace:
    """The checkout in `repo_dir` as a Workspace of its own, so paths resolve inside the repo."""
    return Workspace(root=workspace.resolve(repo_dir), home=workspace.home, tmp=workspace.tmp)


def project_dir(workspace: Workspace, repo_dir: str, project: Project) -> Path:
    """Absolute directory of a project; raises PathEscape when it leaves the checkout."""
    return repo_workspace(workspace, repo_dir).resolve(project.dir)


def select_projects(workspace: Workspace, repo_dir: str, command: Command, changed: Sequence[str]) -> list[Project]:
    """Projects for the command; raises UserFacingError for a -d/-p that matches nothing."""
    repo = repo_workspace(workspace, repo_dir)
    root = repo.root
    if command.projects:
        raise UserFacingError(
            f"No project named {', '.join(command.projects)}: project names come from a repo config "
            "(plankeeper.yaml or atlantis.yaml), and this repository has none. Use `-d DIR` instead."
        )
    if not command.dirs:
        return discover_projects(root, changed)
    workspace_name = command.workspace or "default"
    selected: list[str] = []
    for pattern in command.dirs:
        selected += _expand_dir(repo, pattern)
    return [Project(dir=d, workspace=workspace_name) for d in dict.fromkeys(selected)]


def _expand_dir(repo: Workspace, pattern: str) -> list[str]:
    root = repo.root
    clean = pattern.strip("/") or "."
    if any(ch in clean for ch in "*?["):
        matches = [d for d in terraform_dirs(root) if fnmatch.fnmatchcase(d, clean)]
        if not matches:
            raise UserFacingError(f"`-d {pattern}` matches no directory holding Terraform files.")
        return matches
    try:
        path = repo.resolve(clean)
    except PathEscape as exc:
        raise UserFacingError(f"`-d {pattern}` is refused: {exc}") from exc
    if not path.is_dir():
        raise UserFacingError(f"`-d {pattern}`: there is no such directory in the pull request's head commit.")
    rel = path.relative_to(root).as_posix()
    return [rel or "."]
