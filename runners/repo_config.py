"""Read and validate a repo config: plankeeper.yaml, else atlantis.yaml (version 3) unchanged.

`load_repo_config()` returns None when the repo has no config file, a RepoConfig when it is
valid, and raises RepoConfigError (file, line, key path, message) when it is not.
`merge_with_server()` (runners/repo_config_merge.py) then applies the server-side settings;
workflows are read by runners/repo_config_workflows.py, glob dirs expanded by
runners/repo_config_globs.py.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from croniter import croniter

from runners.repo_config_globs import expand_globs, is_glob, pattern_problem
from runners.repo_config_nodes import Reader, did_you_mean, join_key, line_of, null_node
from runners.repo_config_schema import (
    MERGE_METHODS, REQUIREMENTS, SILENCEABLE, Autodiscover, DriftConfig, KubectlConfig, ProjectConfig,
    RepoConfig, RepoConfigError, Workflow,
)
from runners.repo_config_workflows import parse_server_workflows, parse_workflows
from runners.yaml_bounds import BoundedSafeLoader

CONFIG_FILES = ("plankeeper.yaml", "atlantis.yaml")
MAX_BYTES = 5 * 1024 * 1024
TOP_KEYS = ("version", "automerge", "automerge_method", "delete_source_branch_on_merge", "parallel_plan", "parallel_apply",
            "parallel_policy_check", "abort_on_execution_order_fail", "autodiscover", "projects",
            "workflows", "allowed_regexp_prefixes", "repo_locks", "silence_pr_comments", "policies",
            "emoji_reaction")
PROJECT_KEYS = ("name", "dir", "workspace", "branch", "autoplan", "apply_requirements", "plan_requirements",
                "import_requirements", "workflow", "terraform_version", "terraform_distribution",
                "depends_on", "execution_order_group", "repo_locks", "repo_locking", "silence_pr_comments",
                "custom_policy_check", "policy_check", "delete_source_branch_on_merge", "engine",
                "apply_on_approval", "apply_on_merge", "drift", "kubectl", "glob_file_match")
CUSTOM_POLICY_WARNING = ("ignored: Plankeeper runs the server's Rego policy sets (`policies.sets`) on each plan; "
                         "a workflow's own policy check is not run")
PARALLEL_POLICY_WARNING = "has no effect: policy checks run inside each project's plan job"
LOCKS_DISABLED_WARNING = ("partly honoured: plans take no lock, but an apply still locks the project "
                          "(Plankeeper never applies a project another pull request may be applying)")
_BAD_WORKSPACE = re.compile(r"[/\\$\s]|\.\.")
_URL_SAFE_NAME = re.compile(r"[A-Za-z0-9._~/-]+")  # Atlantis: URL-safe, slashes allowed
_VERSION_PART = re.compile(r"^\s*(=|!=|>=|<=|>|<|~>)?\s*v?\d+(\.\d+){0,2}(-[\w.]+)?\s*$")


def find_config_file(repo_root: Path, config_file: Optional[str] = None) -> Optional[Path]:
    """The config file to read: config_file when given, else plankeeper.yaml, else atlantis.yaml."""
    for name in (config_file,) if config_file else CONFIG_FILES:
        path = Path(repo_root) / name
        if path.is_file():
            return path
    return None


def load_repo_config(repo_root: Path, config_file: Optional[str] = None) -> Optional[RepoConfig]:
    """The repo's config, or None when it has none. Raises RepoConfigError when invalid.

    config_file is the server-side `repo_config_file` (a path relative to the repo root).
    """
    if config_file and (config_file.startswith("/") or ".." in Path(config_file).parts):
        raise RepoConfigError("must be a path inside the repository", "server settings", None, "repo_config_file")
    path = find_config_file(repo_root, config_file)
    if path is None:
        return None
    rel = path.relative_to(repo_root).as_posix() if path.is_relative_to(repo_root) else path.name
    if path.stat().st_size > MAX_BYTES:
        raise RepoConfigError(f"file is larger than {MAX_BYTES // 1024 // 1024} MiB", rel)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RepoConfigError(f"cannot read the file: {exc}", rel) from None
    return expand_globs(parse_repo_config(text, rel, require_version=path.name != "plankeeper.yaml"), repo_root)


def parse_repo_config(text: str, file: str = "atlantis.yaml", require_version: bool = True) -> RepoConfig:
    """Validate YAML text as a repo config; raises RepoConfigError naming file, line and key."""
    try:
        root = yaml.compose(text, Loader=BoundedSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RepoConfigError(f"not valid YAML: {problem}", file, mark.line + 1 if mark else None) from None
    reader = Reader(file)
    if root is None or reader.is_null(root):
        if require_version:
            raise RepoConfigError("the file is empty; it needs at least `version: 3`", file, 1, "version")
        return RepoConfig(file=file)
    top = reader.mapping(root, "", TOP_KEYS)
    _check_version(reader, top, require_version)
    values: dict[str, Any] = {"version": reader.version}
    for key in ("automerge", "delete_source_branch_on_merge", "parallel_plan", "parallel_apply",
                "abort_on_execution_order_fail"):
        if key in top and not reader.is_null(top[key]):
            values[key] = reader.boolean(top[key], key)
    if "automerge_method" in top and not reader.is_null(top["automerge_method"]):
        values["automerge_method"] = reader.choice(top["automerge_method"], "automerge_method", MERGE_METHODS)
    if "parallel_policy_check" in top and not reader.is_null(top["parallel_policy_check"]):
        reader.boolean(top["parallel_policy_check"], "parallel_policy_check")
        reader.warn_at_key("parallel_policy_check", PARALLEL_POLICY_WARNING)
    if "autodiscover" in top:
        values["autodiscover"] = _autodiscover(reader, top["autodiscover"])
    if "allowed_regexp_prefixes" in top:
        values["allowed_regexp_prefixes"] = reader.strings(top["allowed_regexp_prefixes"], "allowed_regexp_prefixes")
    workflows = parse_workflows(reader, top["workflows"], "workflows", "repo") if "workflows" in top else {}
    projects = tuple(_project(reader, node, i) for i, node in
                     enumerate(reader.sequence(top.get("projects", null_node()), "projects")))
    _check_projects(reader, projects)
    projects = _top_level_defaults(reader, top, values, projects)
    return RepoConfig(file=file, projects=projects, workflows=workflows, lines=dict(reader.lines),
                      warnings=tuple(reader.warnings), **values)


def _top_level_defaults(reader: Reader, top: dict[str, yaml.Node], values: dict[str, Any],
                        projects: tuple[ProjectConfig, ...]) -> tuple[ProjectConfig, ...]:
    """Atlantis' top-level keys: repo_locks and silence_pr_comments are every project's default
    (a project's own key wins); policies and emoji_reaction are accepted and reported as ignored."""
    defaults: dict[str, Any] = {}
    if "repo_locks" in top and not reader.is_null(top["repo_locks"]):
        defaults.update(_project_value(reader, "repo_locks", top["repo_locks"], "repo_locks"))
        values["repo_locks_mode"] = defaults.get("repo_locks_mode")
    if "silence_pr_comments" in top and not reader.is_null(top["silence_pr_comments"]):
        defaults.update(_project_value(reader, "silence_pr_comments", top["silence_pr_comments"], "silence_pr_comments"))
    if "policies" in top:
        if not reader.is_null(top["policies"]):
            reader.mapping(top["policies"], "policies", None)
        reader.warn_at_key("policies", "ignored: Plankeeper takes policy sets from the server settings "
                    "(`policies.sets`), never from a repository")
    if "emoji_reaction" in top and not reader.is_null(top["emoji_reaction"]):
        values["emoji_reaction"] = reader.string(top["emoji_reaction"], "emoji_reaction")
        reader.warn_at_key("emoji_reaction", "ignored: commands are acknowledged with the "
                    "server's reaction (eyes)")
    out = []
    for p in projects:
        own = {k: v for k, v in defaults.items() if not getattr(p, k)}
        out.append(dataclasses.replace(p, **own) if own else p)
    return tuple(out)


def _check_version(reader: Reader, top: dict[str, yaml.Node], required: bool) -> None:
    node = top.get("version")
    if node is None or reader.is_null(node):
        if required:
            raise RepoConfigError("required: add `version: 3` at the top of the file", reader.file, 1, "version")
        return
    version = reader.integer(node, "version")
    if version not in (2, 3):
        raise reader.error(node, "version", f"only versions 3 and 2 are supported, got {node.value}")
    reader.version = version


def _autodiscover(reader: Reader, node: yaml.Node) -> Autodiscover:
    keys = reader.mapping(node, "autodiscover", ("mode", "ignore_paths"))
    mode = reader.choice(keys["mode"], "autodiscover.mode", ("auto", "enabled", "disabled")) if "mode" in keys else "auto"
    paths = reader.strings(keys["ignore_paths"], "autodiscover.ignore_paths") if "ignore_paths" in keys else ()
    for i, pattern in enumerate(paths):
        problem = "pattern must not begin with a slash '/'" if pattern.startswith("/") else pattern_problem(pattern)
        if problem:
            raise reader.error(keys["ignore_paths"].value[i], f"autodiscover.ignore_paths[{i}]", problem)
    return Autodiscover(mode=mode, ignore_paths=paths)


def _project(reader: Reader, node: yaml.Node, index: int) -> ProjectConfig:
    path = f"projects[{index}]"
    keys = reader.mapping(node, path, PROJECT_KEYS)
    if "dir" not in keys:
        raise reader.error(node, path, "`dir` is required (the project's directory, relative to the repo root)")
    values: dict[str, Any] = {"dir": _dir(reader, keys["dir"], f"{path}.dir"), "line": line_of(node), "index": index}
    for key, node_ in keys.items():
        if key != "dir" and not reader.is_null(node_):
            values.update(_project_value(reader, key, node_, join_key(path, key)))
    engine = values.get("engine", "terraform")
    if values.get("kubectl") is not None and engine != "kubectl":
        raise reader.error(keys["kubectl"], f"{path}.kubectl", "only for projects with `engine: kubectl`")
    _check_glob_dir(reader, keys, values, path)
    return ProjectConfig(**values)


def _check_glob_dir(reader: Reader, keys: dict[str, yaml.Node], values: dict[str, Any], path: str) -> None:
    """As Atlantis: a glob `dir` makes one project per matching directory, so it takes no name;
    glob_file_match only goes with a glob dir."""
    glob = is_glob(values["dir"])  # (a name cannot hold one: names are URL-safe)
    if glob and values.get("name") is not None:
        raise reader.error(keys["name"], f"{path}.name", "cannot be used with a glob `dir`: the glob makes several "
                           "projects, which cannot share a name")
    if values.get("glob_file_match") is not None and not glob:
        raise reader.error(keys["glob_file_match"], f"{path}.glob_file_match",
                           "can only be used when `dir` contains a glob pattern")


def _project_value(reader: Reader, key: str, node: yaml.Node, path: str) -> dict[str, Any]:
    """One project key -> ProjectConfig fields."""
    if key in ("name", "workflow"):
        value = reader.string(node, path, allow_numbers=True)
        if not value.strip() or "\n" in value:
            raise reader.error(node, path, "must be a non-empty single line")
        if key == "name" and not _URL_SAFE_NAME.fullmatch(value):
            raise reader.error(node, path, f"{value!r} is not allowed: use only letters, digits and - _ . ~ / "
                               "(a name is written in `-p NAME` and in URLs)")
        return {key: value}
    if key == "workspace":
        return {key: _workspace(reader, node, path)}
    if key == "branch":
        return {key: _branch(reader, node, path)}
    if key == "autoplan":
        return _autoplan(reader, node, path)
    if key in ("apply_requirements", "plan_requirements", "import_requirements"):
        return {key: reader.strings(node, path, REQUIREMENTS)}
    if key == "terraform_version":
        return {key: _version(reader, node, path)}
    if key == "terraform_distribution":
        return {key: reader.choice(node, path, ("terraform", "opentofu"))}
    if key == "depends_on":
        return {key: reader.strings(node, path)}
    if key == "execution_order_group":
        return {key: reader.integer(node, path)}
    if key == "repo_locks":
        mode = reader.mapping(node, path, ("mode",)).get("mode")
        if not mode:
            return {}
        value = reader.choice(mode, f"{path}.mode", ("disabled", "on_plan", "on_apply"))
        if value == "disabled":
            reader.warn(mode, f"{path}.mode", LOCKS_DISABLED_WARNING)
        return {"repo_locks_mode": value}
    if key == "repo_locking":  # Atlantis' older spelling
        enabled = reader.boolean(node, path)
        if not enabled:
            reader.warn(node, path, LOCKS_DISABLED_WARNING)
        return {"repo_locks_mode": "on_plan" if enabled else "disabled"}
    if key == "silence_pr_comments":
        return {key: reader.strings(node, path, SILENCEABLE)}
    if key == "custom_policy_check":
        value = reader.boolean(node, path)
        if value:
            reader.warn(node, path, CUSTOM_POLICY_WARNING)
        return {key: value}
    if key in ("apply_on_approval", "apply_on_merge", "policy_check", "delete_source_branch_on_merge"):
        return {key: reader.boolean(node, path)}
    if key == "engine":
        return {key: reader.choice(node, path, ("terraform", "kubectl"))}
    if key == "drift":
        return {key: _drift(reader, node, path)}
    if key == "glob_file_match":
        return {key: _file_patterns(reader, node, path)}
    return {key: _kubectl(reader, node, path)}


def _file_patterns(reader: Reader, node: yaml.Node, path: str) -> tuple[str, ...]:
    patterns = reader.strings(node, path)
    if not patterns:
        raise reader.error(node, path, "cannot be an empty list; leave it out for the default (Terraform files)")
    for i, pattern in enumerate(patterns):
        problem = ("must not be empty" if not pattern else pattern_problem(pattern)
                   or ("must be a file name pattern without `/`" if "/" in pattern else ""))
        if problem:
            raise reader.error(node.value[i], f"{path}[{i}]", problem)
    return patterns


def _dir(reader: Reader, node: yaml.Node, path: str) -> str:
    raw = reader.string(node, path, allow_numbers=True).strip()
    if not raw:
        raise reader.error(node, path, "must not be empty; use `.` for the repo root")
    raw = raw.lstrip("/") or "."  # Atlantis strips a leading slash: `/infra/dev` is `infra/dev`
    if raw.startswith("~") or "\\" in raw or "\x00" in raw:
        raise reader.error(node, path, f"{raw!r} must be a path relative to the repo root")
    norm = posixpath.normpath(raw)
    if norm == ".." or norm.startswith("../"):
        raise reader.error(node, path, f"{raw!r} leaves the repository")
    if is_glob(norm) and pattern_problem(norm):
        raise reader.error(node, path, pattern_problem(norm))
    return norm


def _workspace(reader: Reader, node: yaml.Node, path: str) -> str:
    value = reader.string(node, path, allow_numbers=True)
    if value == "":
        return "default"  # as Atlantis reads `workspace: ""`
    if _BAD_WORKSPACE.search(value) or value.startswith(("-", "~")):
        bad = "/" if "/" in value else None
        reason = f"must not contain '{bad}'" if bad else (
            "must be a name without `/`, `\\`, `..`, `$` or whitespace, not starting with `-` or `~`")
        raise reader.error(node, path, reason)
    return value


def _branch(reader: Reader, node: yaml.Node, path: str) -> str:
    value = reader.string(node, path)
    if len(value) < 2 or not (value.startswith("/") and value.endswith("/")):
        raise reader.error(node, path, f"{value!r}: write the regex between slashes, e.g. /^main$/")
    try:
        re.compile(value[1:-1])
    except re.error as exc:
        raise reader.error(node, path, f"invalid regex: {exc}") from None
    return value[1:-1]


def _autoplan(reader: Reader, node: yaml.Node, path: str) -> dict[str, Any]:
    keys = reader.mapping(node, path, ("enabled", "when_modified"))
    out: dict[str, Any] = {}
    if "enabled" in keys:
        out["autoplan_enabled"] = reader.boolean(keys["enabled"], f"{path}.enabled")
    if "when_modified" in keys:
        patterns = reader.strings(keys["when_modified"], f"{path}.when_modified")
        # as Atlantis joins them to the project's dir: an empty pattern matches nothing, a leading
        # slash is still relative to the dir
        out["when_modified"] = tuple(_relative_glob(p) for p in patterns if p.lstrip("!").strip())
    return out


def _relative_glob(pattern: str) -> str:
    negate = "!" if pattern.startswith("!") else ""
    return negate + pattern[len(negate):].lstrip("/")


def _version(reader: Reader, node: yaml.Node, path: str) -> str:
    value = reader.string(node, path, allow_numbers=True).strip()
    if not value or not all(_VERSION_PART.match(part) for part in value.split(",")):
        raise reader.error(node, path, f"{value!r} is not a version or constraint (e.g. 1.5.7, v1.11.3, ~> 1.5)")
    return value


def _drift(reader: Reader, node: yaml.Node, path: str) -> DriftConfig:
    keys = reader.mapping(node, path, ("schedule", "remediate"))
    schedule = None
    if "schedule" in keys and not reader.is_null(keys["schedule"]):
        schedule = reader.string(keys["schedule"], f"{path}.schedule")
        if not croniter.is_valid(schedule):
            raise reader.error(keys["schedule"], f"{path}.schedule",
                               f"{schedule!r} is not a cron expression (minute hour day-of-month month weekday)")
    remediate = reader.boolean(keys["remediate"], f"{path}.remediate") if "remediate" in keys else None
    return DriftConfig(schedule=schedule, remediate=remediate)


def _kubectl(reader: Reader, node: yaml.Node, path: str) -> KubectlConfig:
    keys = reader.mapping(node, path, ("context", "namespace", "render", "prune", "values"))
    values: dict[str, Any] = {}
    for key in ("context", "namespace"):
        if key in keys:
            values[key] = reader.string(keys[key], f"{path}.{key}")
    if "render" in keys:
        values["render"] = reader.choice(keys["render"], f"{path}.render", ("plain", "kustomize", "helm"))
    if "prune" in keys:
        values["prune"] = reader.boolean(keys["prune"], f"{path}.prune")
    if "values" in keys:
        files = reader.strings(keys["values"], f"{path}.values")
        for i, name in enumerate(files):
            if name.startswith("/") or ".." in name.split("/"):
                raise reader.error(keys["values"].value[i], f"{path}.values[{i}]", "must be a path inside the repository")
        values["values"] = files
    if values.get("values") and values.get("render", "plain") != "helm":
        raise reader.error(keys["values"], f"{path}.values", "values files need `render: helm`")
    return KubectlConfig(**values)


def _check_projects(reader: Reader, projects: tuple[ProjectConfig, ...]) -> None:
    """Cross-project rules: unique names, (dir, workspace) pairs, depends_on targets, no cycles."""
    names: dict[str, ProjectConfig] = {}
    for p in projects:
        if p.name is not None:
            if p.name in names:
                raise RepoConfigError(f"project name {p.name!r} is used twice (also at line {names[p.name].line}); "
                                      "names must be unique", reader.file, p.line, f"{p.key_path}.name")
            names[p.name] = p
    pairs: dict[tuple[str, str], list[ProjectConfig]] = {}
    for p in projects:
        pairs.setdefault((p.dir, p.workspace), []).append(p)
    for (dir_, ws), group in pairs.items():
        if len(group) > 1 and any(p.name is None for p in group):
            unnamed = next(p for p in group if p.name is None)
            raise RepoConfigError(
                f"there are {len(group)} projects with dir {dir_!r} and workspace {ws!r}; each of them needs a "
                "`name` so that they can be told apart", reader.file, unnamed.line, unnamed.key_path)
    for p in projects:
        for i, dep in enumerate(p.depends_on):
            if dep not in names:
                raise RepoConfigError(f"no project is named {dep!r}" + did_you_mean(dep, list(names)),
                                      reader.file, p.line, f"{p.key_path}.depends_on[{i}]")
    _check_cycles(reader, names)


def _check_cycles(reader: Reader, names: dict[str, ProjectConfig]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join(trail[trail.index(name):] + [name])
            p = names[trail[-1]]
            raise RepoConfigError(f"depends_on forms a cycle: {cycle}", reader.file, p.line, f"{p.key_path}.depends_on")
        state[name] = 1
        for dep in names[name].depends_on:
            visit(dep, trail + [name])
        state[name] = 2

    for name in names:
        visit(name, [])

__all__ = ["CONFIG_FILES", "ProjectConfig", "RepoConfig", "RepoConfigError", "Workflow", "find_config_file",
           "load_repo_config", "parse_repo_config", "parse_server_workflows"]
