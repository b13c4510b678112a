"""A project `dir` written as a glob (`modules/*`, `envs/**`), as Atlantis expands it: one project
per directory of the checkout that matches and holds a file matching `glob_file_match` (default:
Terraform files), each with the entry's settings and without its name.

Patterns are doublestar globs over `/`-separated paths: `*` and `?` stay within a directory,
`**` spans any number of them (none too), `[...]` is a class, `{a,b}` alternatives.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import Path

from runners.repo_config_schema import ProjectConfig, RepoConfig, RepoConfigError

GLOB_CHARS = "*?["
DEFAULT_FILE_MATCH = ("*.tf", "*.tf.json", "*.tofu", "*.tofu.json")
_SKIPPED_DIRS = {".git", ".terraform"}


def is_glob(text: str) -> bool:
    return any(ch in text for ch in GLOB_CHARS)


def pattern_problem(pattern: str) -> str:
    """Why pattern is not a valid glob ("" when it is): an unclosed `[` or `{`, a trailing `\\`."""
    i, braces = 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 == len(pattern):
                return f"invalid pattern {pattern!r}: it ends with a backslash"
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "^", "]") else i + 1)
            if end < 0:
                return f"invalid pattern {pattern!r}: syntax error in pattern (`[` is never closed)"
            i = end
        elif ch == "{":
            braces += 1
        elif ch == "}" and braces:
            braces -= 1
        i += 1
    return f"invalid pattern {pattern!r}: syntax error in pattern (`{{` is never closed)" if braces else ""


def expand_globs(config: RepoConfig, root: Path) -> RepoConfig:
    """The config with every glob `dir` replaced by the projects it matches in the checkout at
    root, in the entry's place, sorted by dir. Raises RepoConfigError when two projects then
    share a dir and workspace without names to tell them apart."""
    if not any(is_glob(p.dir) for p in config.projects):
        return config
    dirs = _directories(Path(root))
    projects: list[ProjectConfig] = []
    warnings = list(config.warnings)
    for p in config.projects:
        if not is_glob(p.dir):
            projects.append(p)
            continue
        regex = dir_regex(p.dir)
        patterns = p.glob_file_match or DEFAULT_FILE_MATCH
        matched = sorted(d for d, files in dirs.items() if regex.fullmatch(d) and _holds(files, patterns))
        projects += [dataclasses.replace(p, dir=rel, name=None) for rel in matched]
        if not matched:
            warnings.append(str(RepoConfigError(f"{p.dir!r} matches no directory holding {', '.join(patterns)}: "
                                                "it makes no project", config.file, p.line, f"{p.key_path}.dir")))
    projects = [dataclasses.replace(p, index=i) for i, p in enumerate(projects)]
    _check_unique(config.file, projects)
    return dataclasses.replace(config, projects=tuple(projects), warnings=tuple(warnings))


def dir_regex(pattern: str) -> re.Pattern[str]:
    """The regex a directory path (relative, `/`-separated) must fully match."""
    segments = pattern.strip("/").split("/")
    regex, separate = "", False
    for i, segment in enumerate(segments):
        if segment != "**":
            regex += ("/" if separate else "") + _segment(segment)
            separate = True
        elif i == len(segments) - 1:  # `a/**` is `a` and everything below it
            regex += "(?:/[^/]+)*" if separate else "(?:[^/]+(?:/[^/]+)*)?"
        else:
            regex += ("/" if separate else "") + "(?:[^/]+/)*"
            separate = False
    return re.compile(regex)


def _segment(segment: str) -> str:
    out, i = [], 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.index("]", i + 2 if segment[i + 1:i + 2] in ("!", "^", "]") else i + 1)
            body = segment[i + 1:end]
            out.append("[" + ("^" + body[1:] if body[:1] in ("!", "^") else body).replace("\\", "\\\\") + "]")
            i = end
        elif ch == "{":
            end = segment.index("}", i)
            out.append("(?:" + "|".join(_segment(alt) for alt in segment[i + 1:end].split(",")) + ")")
            i = end
        elif ch == "\\" and i + 1 < len(segment):
            i += 1
            out.append(re.escape(segment[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _directories(root: Path) -> dict[str, list[str]]:
    """Every directory of the checkout (relative, "." for the root) with the names of its files."""
    found: dict[str, list[str]] = {}
    stack = [root]
    while stack:
        current = stack.pop()
        rel = current.relative_to(root).as_posix()
        files = found.setdefault(rel, [])
        for entry in current.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                if entry.name not in _SKIPPED_DIRS:
                    stack.append(entry)
            elif entry.is_file():
                files.append(entry.name)
    return found


def _holds(files: list[str], patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in files for pattern in patterns)


def _check_unique(file: str, projects: list[ProjectConfig]) -> None:
    seen: set[tuple[str, str]] = set()
    for p in projects:
        if (p.dir, p.workspace) in seen and any(q.name is None for q in projects if (q.dir, q.workspace) ==
                                                 (p.dir, p.workspace)):
            raise RepoConfigError(f"once its glob `dir` is expanded, two projects have dir {p.dir!r} and workspace "
                                  f"{p.workspace!r}: narrow the glob, or name the other project and list it "
                                  "under another workspace", file, p.line, "projects")
        seen.add((p.dir, p.workspace))
