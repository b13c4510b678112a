"""Which projects a command runs: from -d/-p flags, or from the pull request's changes.

With a repo config (plankeeper.yaml / atlantis.yaml) -p picks named projects, -d matches the
configured projects in a dir (else an ad-hoc project there), and a change selects projects by
their when_modified globs; without one, changed Terraform dirs are discovered.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from bot.errors import ConfigError, UserFacingError
from bot.models import Command
from runners.models import Project
from runners.projects import discover_projects, select_for_changes
from runners.repo_config import RepoConfig, RepoConfigError, load_repo_config
from runners.repo_config_merge import merge_with_server, project_defaults
from runners.repo_config_schema import EffectiveProject
from runners.workspace import PathEscape, Workspace

TF_SUFFIXES = (".tf", ".tf.json", ".tofu", ".tofu.json")


def terraform_dirs(root: Path) -> list[str]:
    """Every directory of the checkout holding Terraform files, relative, sorted."""
    dirs = set()
    for path in root.rglob("*"):
        if path.suffix in (".tf", ".tofu", ".json") and path.name.endswith(TF_SUFFIXES) and ".terraform" not in path.parts:
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


def config_error(exc: RepoConfigError) -> ConfigError:
    """A RepoConfigError as the UserFacingError posted on the pull request."""
    return ConfigError(exc.message, file=exc.file, line=exc.line, key=exc.key)


def load_effective(workspace: Workspace, repo_dir: str, resolved: Any) -> tuple[Optional[RepoConfig], list[EffectiveProject]]:
    """The checkout's repo config and its projects merged with the server-side settings.

    Raises ConfigError (file, line, key) for a bad config or one the server forbids.
    """
    root = repo_workspace(workspace, repo_dir).root
    try:
        config = load_repo_config(root, getattr(resolved, "repo_config_file", None))
        return config, merge_with_server(config, resolved)
    except RepoConfigError as exc:
        raise config_error(exc) from exc


def select_projects(workspace: Workspace, repo_dir: str, command: Command, changed: Sequence[str],
                    repo_config: Optional[RepoConfig] = None, effective: Optional[Sequence[EffectiveProject]] = None,
                    resolved: Any = None, autoplan: bool = False, base_branch: Optional[str] = None) -> list[Project]:
    """Projects for the command; raises UserFacingError for a -d/-p that matches nothing.

    Without repo_config/effective it behaves as before repo configs existed (discovery only).
    """
    if repo_config is None and effective is None:
        return _select_plain(workspace, repo_dir, command, changed)
    return [ep.project for ep in select_effective(workspace, repo_dir, command, changed, repo_config,
                                                  effective, resolved, autoplan, base_branch)]


def select_effective(workspace: Workspace, repo_dir: str, command: Command, changed: Sequence[str],
                     repo_config: Optional[RepoConfig], effective: Optional[Sequence[EffectiveProject]],
                     resolved: Any = None, autoplan: bool = False,
                     base_branch: Optional[str] = None) -> list[EffectiveProject]:
    """Like select_projects, with every project's effective settings (workflow, versions, ...).

    autoplan=True (a pull request event) leaves out projects whose autoplan is disabled.
    """
    projects = list(effective or ())
    repo = repo_workspace(workspace, repo_dir)

    def defaults(project: Project) -> EffectiveProject:
        return project_defaults(project, resolved) if resolved is not None else EffectiveProject(project=project)

    if command.projects:
        return _by_name(projects, command.projects, repo_config)
    if command.dirs:
        return _by_dir(repo, projects, command, defaults)
    autodiscover = repo_config.autodiscover if repo_config is not None else None
    return select_for_changes(projects, changed, repo.root, autodiscover, autoplan, base_branch, defaults)


def _by_name(projects: Sequence[EffectiveProject], names: Sequence[str],
             repo_config: Optional[RepoConfig]) -> list[EffectiveProject]:
    known = [ep.name for ep in projects if ep.name]
    prefixes = repo_config.allowed_regexp_prefixes if repo_config else ()
    chosen: list[EffectiveProject] = []
    for name in names:
        matches = [ep for ep in projects if ep.name == name]
        if not matches and any(name.startswith(p) for p in prefixes):
            matches = [ep for ep in projects if ep.name and _regex_match(name, ep.name)]
        if not matches:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            listing = ", ".join(f"`{n}`" for n in known) or "none (the repo config names no project)"
            raise UserFacingError(f"No project named `{name}`.{hint} Known projects: {listing}.")
        chosen += [ep for ep in matches if ep not in chosen]
    return chosen


def _regex_match(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _by_dir(repo: Workspace, projects: Sequence[EffectiveProject], command: Command, defaults) -> list[EffectiveProject]:
    chosen: list[EffectiveProject] = []
    for pattern in command.dirs:
        clean = pattern.strip("/") or "."
        in_dir = [ep for ep in projects if fnmatch.fnmatchcase(ep.project.dir, clean)
                  and (command.workspace is None or ep.project.workspace == command.workspace)]
        if in_dir:
            chosen += [ep for ep in in_dir if ep not in chosen]
            continue
        for d in _expand_dir(repo, pattern):
            project = Project(dir=d, workspace=command.workspace or "default")
            if all(ep.project.key != project.key for ep in chosen):
                chosen.append(defaults(project))
    return chosen


def _select_plain(workspace: Workspace, repo_dir: str, command: Command, changed: Sequence[str]) -> list[Project]:
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
