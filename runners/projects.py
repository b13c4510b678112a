"""Which projects a change touches.

Without a repo config (discover_projects): a directory with a changed *.tf, *.tf.json, *.tofu,
*.tofu.json or *.tfvars file is a project, unless other directories use it as a local module: then every
root that (transitively) uses it is. With one (select_for_changes): when_modified globs,
local modules, depends_on and the autodiscover mode decide.
"""
from __future__ import annotations

import bisect
import functools
import json
import os
import posixpath
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

from runners.models import Project
from runners.repo_config_schema import Autodiscover, EffectiveProject

TF_SUFFIXES = (".tf", ".tf.json", ".tofu", ".tofu.json")  # .tofu: OpenTofu's own file names
CHANGE_SUFFIXES = TF_SUFFIXES + (".tfvars", ".tfvars.json")
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


# ---------------------------------------------------------------------------- repo config selection


class PathMatcher:
    """Ordered globs, as Atlantis' when_modified: `**` spans directories, `!` excludes, the last
    matching pattern decides, and a pattern naming a directory matches everything under it.

    Patterns are compiled once; `candidates()` narrows a sorted file list by each pattern's
    literal directory prefix, so matching 1,000 projects against 500 files stays cheap.
    """

    def __init__(self, patterns: Sequence[str], base_dir: str = ".") -> None:
        # (negate, dir prefix stripped before matching, regex): the regex is compiled for the
        # dir-relative pattern, so 1,000 projects sharing "**/*.tf*" share one compiled regex
        self.rules: list[tuple[bool, str, re.Pattern[str]]] = []
        self.prefixes: list[str] = []
        base = "" if posixpath.normpath(base_dir) == "." else posixpath.normpath(base_dir) + "/"
        for raw in patterns:
            negate = raw.startswith("!")
            full = _join_glob(base_dir, raw[1:] if negate else raw)
            if full is None:
                continue  # leaves the repository: can never match a changed file
            strip = base if base and full.startswith(base) else ""
            self.rules.append((negate, strip, _glob_regex(full[len(strip):])))
            if not negate:
                self.prefixes.append(_literal_prefix(full))

    def matches(self, path: str) -> bool:
        matched = False
        for negate, strip, regex in self.rules:
            if strip and not path.startswith(strip):
                continue
            if regex.match(path, len(strip)):
                matched = not negate
        return matched

    def candidates(self, sorted_files: Sequence[str]) -> Iterable[str]:
        """Files of sorted_files that some positive pattern could match (may repeat)."""
        for prefix in self.prefixes:
            if not prefix:
                yield from sorted_files
                return
            start = bisect.bisect_left(sorted_files, prefix)
            for path in sorted_files[start:]:
                if not path.startswith(prefix):
                    break
                if len(path) == len(prefix) or path[len(prefix)] == "/":
                    yield path

    def any_match(self, sorted_files: Sequence[str]) -> bool:
        return any(self.matches(path) for path in self.candidates(sorted_files))


def _join_glob(base_dir: str, pattern: str) -> str | None:
    joined = posixpath.normpath(posixpath.join(base_dir, pattern.strip()))
    if joined == ".." or joined.startswith("../"):
        return None
    return "" if joined == "." else joined


def _literal_prefix(pattern: str) -> str:
    literal = []
    for segment in pattern.split("/"):
        if any(ch in segment for ch in "*?["):
            break
        literal.append(segment)
    return "/".join(literal)


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    segments = pattern.split("/") if pattern else []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:.*/)?")
            continue
        out.append(_segment_regex(segment) + ("" if last else "/"))
    # a match on a directory covers every file below it
    return re.compile("".join(out) + ("(?:/.*)?$" if out else ".*$"))


def _segment_regex(segment: str) -> str:
    out, i = [], 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            while i + 1 < len(segment) and segment[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and "]" in segment[i + 1:]:
            end = segment.index("]", i + 1)
            body = segment[i + 1:end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def normalize_changed(changed_files: Iterable[str]) -> list[str]:
    """Repo-relative, normalised, de-duplicated and sorted; paths leaving the repo are dropped."""
    files = set()
    for path in changed_files:
        norm = posixpath.normpath(path.replace("\\", "/").lstrip("/"))
        if norm != "." and not norm.startswith("../") and norm != "..":
            files.add(norm)
    return sorted(files)


def select_for_changes(
    effective_projects: Sequence["EffectiveProject"],
    changed_files: Sequence[str],
    repo_root: Path,
    autodiscover: "Autodiscover | None" = None,
    autoplan: bool = True,
    base_branch: str | None = None,
    defaults: Callable[[Project], "EffectiveProject"] | None = None,
) -> list["EffectiveProject"]:
    """The projects a change plans: configured ones whose when_modified globs (relative to
    their dir) match, roots using a changed local module, dependents (depends_on) of those,
    and discovered projects per the autodiscover mode (auto: only with no configured project).

    autoplan=True leaves out projects whose autoplan is disabled (a `/plan` without flags
    passes False). `defaults` builds the settings of discovered projects.
    """
    files = normalize_changed(changed_files)
    mode = (autodiscover or Autodiscover()).mode
    eligible = [ep for ep in effective_projects
                if (ep.autoplan or not autoplan) and _branch_ok(ep.branch, base_branch)]
    chosen = {id(ep) for ep in eligible if PathMatcher(ep.when_modified, ep.project.dir).any_match(files)}
    chosen |= _module_users_selected(eligible, files, Path(repo_root))
    chosen |= _dependents(eligible, chosen)
    selected = [ep for ep in eligible if id(ep) in chosen]
    if mode == "enabled" or (mode == "auto" and not effective_projects):
        make = defaults or (lambda project: EffectiveProject(project=project))
        selected += _discovered(effective_projects, files, Path(repo_root), autodiscover, make)
    return selected


def _branch_ok(branch: str | None, base_branch: str | None) -> bool:
    return branch is None or base_branch is None or re.search(branch, base_branch) is not None


def _module_users_selected(eligible: Sequence["EffectiveProject"], files: Sequence[str], root: Path) -> set[int]:
    """Configured projects whose root uses (transitively) a local module the change touches."""
    project_dirs = {ep.project.dir for ep in eligible}
    suspects = {d for d in (_changed_dir(f) for f in files) if d is not None and d not in project_dirs}
    if not suspects or not eligible:
        return set()  # parsing every module block is slow: only when a non-project dir changed
    index = _index(root)
    users = _invert(index)
    roots: set[str] = set()
    for module in suspects:
        if module in users:
            roots.update(_roots_using(module, users, index))
            roots.update(_all_users(module, users))
    return {id(ep) for ep in eligible if ep.project.dir in roots}


def _all_users(module: str, users: dict[str, set[str]]) -> set[str]:
    """Every dir using module directly or transitively (a configured project may itself be used)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for user in users.get(todo.pop(), ()):
            if user not in seen:
                seen.add(user)
                todo.append(user)
    return seen


def _dependents(eligible: Sequence["EffectiveProject"], chosen: set[int]) -> set[int]:
    by_dependency: dict[str, list["EffectiveProject"]] = {}
    for ep in eligible:
        for dep in ep.depends_on:
            by_dependency.setdefault(dep, []).append(ep)
    found: set[int] = set()
    todo = [ep for ep in eligible if id(ep) in chosen]
    while todo:
        current = todo.pop()
        for dependent in by_dependency.get(current.project.name or "", ()):
            if id(dependent) not in chosen and id(dependent) not in found:
                found.add(id(dependent))
                todo.append(dependent)
    return found


def _discovered(
    configured: Sequence["EffectiveProject"], files: Sequence[str], root: Path,
    autodiscover: "Autodiscover | None", make: Callable[[Project], "EffectiveProject"],
) -> list["EffectiveProject"]:
    taken = {ep.project.dir for ep in configured}
    ignore = PathMatcher(autodiscover.ignore_paths) if autodiscover and autodiscover.ignore_paths else None
    found = []
    for project in discover_projects(root, files):
        if project.dir in taken or (ignore is not None and ignore.matches(project.dir)):
            continue
        found.append(make(project))
    return found
