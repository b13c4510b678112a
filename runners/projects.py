"""Which Terraform projects a change touches, when the repo has no config listing them.

A directory with a changed *.tf, *.tf.json or *.tfvars file is a project, unless other
directories use it as a local module: then every root that (transitively) uses it is.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
from pathlib import Path
from typing import Iterable, Sequence

from runners.models import Project

TF_SUFFIXES = (".tf", ".tf.json")
CHANGE_SUFFIXES = (".tf", ".tf.json", ".tfvars", ".tfvars.json")
SKIP_DIRS = frozenset({".git", ".terraform", ".terragrunt-cache", "node_modules"})
_SOURCE = re.compile(r"""\bsource\s*=\s*"(\.\.?/[^"]*)\"""")


def discover_projects(repo_root: Path, changed_files: Sequence[str]) -> list[Project]:
    """Projects (workspace "default") to plan for changed_files, sorted by dir.

    Files under .terraform/, in directories that no longer exist or hold no Terraform
    configuration are ignored.
    """
    index = _index(Path(repo_root))
    users = _invert(index)
    dirs: set[str] = set()
    for path in changed_files:
        directory = _changed_dir(path)
        if directory is None or directory not in index:
            continue
        if directory in users:
            dirs.update(_roots_using(directory, users, index))
        else:
            dirs.add(directory)
    return [Project(dir=d) for d in sorted(dirs)]


def module_users(repo_root: Path) -> dict[str, set[str]]:
    """Local module dir -> the dirs whose module blocks use it directly."""
    return _invert(_index(Path(repo_root)))


def _changed_dir(path: str) -> str | None:
    norm = posixpath.normpath(path.replace("\\", "/").lstrip("/"))
    parts = norm.split("/")
    if norm.startswith("..") or any(p in SKIP_DIRS for p in parts[:-1]):
        return None
    if not parts[-1].endswith(CHANGE_SUFFIXES):
        return None
    return posixpath.dirname(norm) or "."


def _index(root: Path) -> dict[str, set[str]]:
    """Every dir holding Terraform files -> the local module dirs it uses (once per call)."""
    index: dict[str, set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        tf_files = [f for f in filenames if f.endswith(TF_SUFFIXES)]
        if not tf_files:
            continue
        rel = Path(dirpath).relative_to(root).as_posix()
        sources: set[str] = set()
        for name in tf_files:
            sources.update(_module_sources(Path(dirpath) / name))
        index[rel] = {d for d in (_join(rel, s) for s in sources) if d is not None and d != rel}
    return index


def _join(directory: str, source: str) -> str | None:
    joined = posixpath.normpath(posixpath.join(directory, source.split("//")[0].split("?")[0]))
    if joined == ".." or joined.startswith("../"):
        return None
    return joined


def _module_sources(path: Path) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    if "module" not in text:
        return set()
    if path.name.endswith(".json"):
        return _json_sources(text)
    try:
        return _hcl_sources(text)
    except Exception:  # python-hcl2 rejects some valid HCL; the regex still finds sources
        return set(_SOURCE.findall(text))


def _hcl_sources(text: str) -> set[str]:
    import hcl2  # slow to import; only needed for files that mention modules

    parsed = hcl2.loads(text)
    found = set()
    for block in parsed.get("module", []):
        for body in block.values():
            if isinstance(body, dict):
                source = str(body.get("source", "")).strip('"')
                if source.startswith(("./", "../")):
                    found.add(source)
    return found


def _json_sources(text: str) -> set[str]:
    try:
        data = json.loads(text)
    except ValueError:
        return set(_SOURCE.findall(text))
    modules = data.get("module", {}) if isinstance(data, dict) else {}
    blocks = modules if isinstance(modules, list) else [modules]
    found = set()
    for block in blocks:
        for body in block.values() if isinstance(block, dict) else ():
            source = body.get("source", "") if isinstance(body, dict) else ""
            if isinstance(source, str) and source.startswith(("./", "../")):
                found.add(source)
    return found


def _invert(index: dict[str, set[str]]) -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    for user, modules in index.items():
        for module in modules:
            users.setdefault(module, set()).add(user)
    return users


def _roots_using(
    module: str, users: dict[str, set[str]], index: dict[str, set[str]]
) -> Iterable[str]:
    """Dirs that use module, directly or through other modules, and are not modules themselves."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for user in users.get(current, ()):
            if user not in seen:
                seen.add(user)
                todo.append(user)
    return sorted(d for d in seen if d not in users and d in index)
