"""Read and validate a repo config: plankeeper.yaml, else atlantis.yaml (version 3) unchanged.

`load_repo_config()` returns None when the repo has no config file, a RepoConfig when it is
valid, and raises RepoConfigError (file, line, key path, message) when it is not.
`merge_with_server()` (runners/repo_config_merge.py) then applies the server-side settings.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml
from croniter import croniter

from runners.repo_config_nodes import Reader, did_you_mean, join_key, line_of
from runners.repo_config_schema import (
    REQUIREMENTS, STAGES, Autodiscover, DriftConfig, KubectlConfig, ProjectConfig, RepoConfig,
    RepoConfigError, Step, Workflow,
)
from runners.yaml_bounds import BoundedSafeLoader

CONFIG_FILES = ("plankeeper.yaml", "atlantis.yaml")
MAX_BYTES = 5 * 1024 * 1024
TOP_KEYS = ("version", "automerge", "delete_source_branch_on_merge", "parallel_plan", "parallel_apply",
            "parallel_policy_check", "abort_on_execution_order_fail", "autodiscover", "projects",
            "workflows", "allowed_regexp_prefixes", "repo_locks", "silence_pr_comments", "policies",
            "emoji_reaction")
PROJECT_KEYS = ("name", "dir", "workspace", "branch", "autoplan", "apply_requirements", "plan_requirements",
                "import_requirements", "workflow", "terraform_version", "terraform_distribution",
                "depends_on", "execution_order_group", "repo_locks", "repo_locking", "silence_pr_comments",
                "custom_policy_check", "policy_check", "delete_source_branch_on_merge", "engine",
                "apply_on_approval", "apply_on_merge", "drift", "kubectl")
STEP_KEYS = {"init": ("extra_args",), "plan": ("extra_args",), "apply": ("extra_args",),
             "show": ("extra_args",), "import": ("extra_args",), "state_rm": ("extra_args",),
             "policy_check": ("extra_args",), "version": (),
             "run": ("command", "output", "shell", "shell_args", "shellArgs"),
             "multienv": ("command", "output", "shell", "shell_args", "shellArgs"),
             "env": ("name", "value", "command", "shell", "shell_args", "shellArgs")}
SILENCE_WARNING = "accepted but not honoured: Plankeeper comments on every plan and apply"
OUTPUT_MODES = ("show", "hide", "strip_refreshing")
_BAD_WORKSPACE = re.compile(r"[/\\$\s]|\.\.")
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
    return parse_repo_config(text, rel, require_version=path.name != "plankeeper.yaml")


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
    if "autodiscover" in top:
        values["autodiscover"] = _autodiscover(reader, top["autodiscover"])
    if "allowed_regexp_prefixes" in top:
        values["allowed_regexp_prefixes"] = reader.strings(top["allowed_regexp_prefixes"], "allowed_regexp_prefixes")
    workflows = parse_workflows(reader, top["workflows"], "workflows", "repo") if "workflows" in top else {}
    projects = tuple(_project(reader, node, i) for i, node in
                     enumerate(reader.sequence(top.get("projects", _null()), "projects")))
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
        _warn_key(reader, "policies", "ignored: Plankeeper takes policy sets from the server settings "
                    "(`policies.sets`), never from a repository")
    if "emoji_reaction" in top and not reader.is_null(top["emoji_reaction"]):
        values["emoji_reaction"] = reader.string(top["emoji_reaction"], "emoji_reaction")
        _warn_key(reader, "emoji_reaction", "ignored: commands are acknowledged with the "
                    "server's reaction (eyes)")
    out = []
    for p in projects:
        own = {k: v for k, v in defaults.items() if not getattr(p, k)}
        out.append(dataclasses.replace(p, **own) if own else p)
    return tuple(out)


def parse_server_workflows(raw: Mapping[str, Any], where: str = "server settings") -> dict[str, Workflow]:
    """Server-side `workflows` (plain dicts from the settings file) as Workflow objects."""
    if not raw:
        return {}
    node = yaml.compose(yaml.safe_dump(dict(raw)), Loader=yaml.SafeLoader)
    return parse_workflows(_Lineless(where), node, "workflows", "server")


class _Lineless(Reader):
    """Errors without line numbers: the values were re-serialised and lines would mislead."""

    def error(self, node: Optional[yaml.Node], key: str, message: str) -> RepoConfigError:
        return RepoConfigError(message, self.file, None, key)


def _null() -> yaml.Node:
    return yaml.ScalarNode("tag:yaml.org,2002:null", "")


def _warn_key(reader: Reader, key: str, message: str) -> None:
    """A warning at the line of the key itself (its value may start on a later line)."""
    reader.warnings.append(str(RepoConfigError(message, reader.file, reader.lines.get(key), key)))


def _check_version(reader: Reader, top: dict[str, yaml.Node], required: bool) -> None:
    node = top.get("version")
    if node is None:
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
    return Autodiscover(mode=mode, ignore_paths=paths)


def parse_workflows(reader: Reader, node: yaml.Node, path: str, source: str) -> dict[str, Workflow]:
    """`workflows: {name: {plan: {steps: [...]}, apply: ...}}` -> {name: Workflow}."""
    if reader.is_null(node):
        return {}
    entries = reader.mapping(node, path, None)
    workflows = {}
    for name, body in entries.items():
        key = join_key(path, name)
        stages = reader.mapping(body, key, STAGES) if not reader.is_null(body) else {}
        parsed = {stage: _steps(reader, stage_node, join_key(key, stage), stage) for stage, stage_node in stages.items()}
        extra = {k: v for k, v in parsed.items() if k not in ("plan", "apply")}
        workflows[name] = Workflow(name=name, stages=extra, source=source,
                                   **{k: v for k, v in parsed.items() if k in ("plan", "apply")})
    return workflows


def _steps(reader: Reader, node: yaml.Node, path: str, stage: str) -> tuple[Step, ...]:
    if reader.is_null(node):
        return ()
    keys = reader.mapping(node, path, ("steps",))
    steps = tuple(_step(reader, item, f"{path}.steps[{i}]")
                  for i, item in enumerate(reader.sequence(keys.get("steps", _null()), f"{path}.steps")))
    wrong = {"plan": "apply", "apply": "plan"}.get(stage)
    for i, step in enumerate(steps):
        if step.kind == wrong:
            raise reader.error(keys["steps"].value[i], f"{path}.steps[{i}]",
                               f"a `{wrong}` step cannot run in the {stage} stage")
    return steps


def _step(reader: Reader, node: yaml.Node, path: str) -> Step:
    if hasattr(node, "value") and isinstance(node.value, str):
        kind = reader.choice(node, path, tuple(k for k, v in STEP_KEYS.items() if "extra_args" in v or not v))
        return Step(kind)
    entries = reader.mapping(node, path, tuple(STEP_KEYS))
    if len(entries) != 1:
        raise reader.error(node, path, "a step has exactly one key, e.g. `- run: make plan`")
    kind, body = next(iter(entries.items()))
    key = join_key(path, kind)
    if kind in ("run", "multienv") and isinstance(body, yaml.ScalarNode) and not reader.is_null(body):
        return Step(kind, command=_command(reader, body, key, v2_words=kind == "run"))
    fields = reader.mapping(body, key, STEP_KEYS[kind])
    _shell(reader, fields, key)
    if kind == "env":
        return _env_step(reader, body, fields, key)
    if kind in ("run", "multienv"):
        if "command" not in fields:
            raise reader.error(body, key, "`command` is required")
        output = reader.choice(fields["output"], join_key(key, "output"), OUTPUT_MODES) if "output" in fields else "show"
        return Step(kind, command=_command(reader, fields["command"], join_key(key, "command"), kind == "run"),
                    output=output)
    extra = reader.strings(fields["extra_args"], join_key(key, "extra_args")) if "extra_args" in fields else ()
    return Step(kind, extra_args=extra)


def _command(reader: Reader, node: yaml.Node, path: str, v2_words: bool = False) -> str:
    """The command text; a `run` command of a version 2 file is read as Atlantis reads it (split
    into shell words, quotes and escapes removed, joined by spaces), then run with /bin/sh -c."""
    command = reader.string(node, path)
    if not command.strip():
        raise reader.error(node, path, "must not be empty")
    if v2_words and reader.version == 2:
        try:
            return " ".join(shlex.split(command))
        except ValueError as exc:
            raise reader.error(node, path, f"cannot be split into words as version 2 does: {exc}") from None
    return command


def _shell(reader: Reader, fields: dict[str, yaml.Node], key: str) -> None:
    """`shell` / `shell_args` (`shellArgs`, Atlantis' documented spelling): accepted; anything but
    Atlantis' default `sh -c` is reported, as steps always run with /bin/sh -c."""
    if "shell_args" in fields and "shellArgs" in fields:
        raise reader.error(fields["shellArgs"], join_key(key, "shellArgs"), "give only one of shell_args and shellArgs")
    if "shell" in fields:
        shell = reader.string(fields["shell"], join_key(key, "shell"))
        if shell not in ("sh", "/bin/sh"):
            reader.warn(fields["shell"], join_key(key, "shell"), f"{shell!r} is ignored: steps run with /bin/sh -c")
    for name in ("shell_args", "shellArgs"):
        if name in fields:
            node = fields[name]
            args = (reader.strings(node, join_key(key, name)) if isinstance(node, yaml.SequenceNode)
                    else tuple(reader.string(node, join_key(key, name)).split()))
            if args != ("-c",):
                reader.warn(node, join_key(key, name), f"{' '.join(args)!r} is ignored: steps run with /bin/sh -c")


def _env_step(reader: Reader, body: yaml.Node, fields: dict[str, yaml.Node], key: str) -> Step:
    if "name" not in fields:
        raise reader.error(body, key, "`name` is required")
    name = reader.string(fields["name"], join_key(key, "name"))
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise reader.error(fields["name"], join_key(key, "name"), f"{name!r} is not a valid variable name")
    if ("value" in fields) == ("command" in fields):
        raise reader.error(body, key, "give exactly one of `value` and `command`")
    if "value" in fields:
        return Step("env", name=name, value=reader.string(fields["value"], join_key(key, "value"), allow_numbers=True))
    return Step("env", name=name, command=_command(reader, fields["command"], join_key(key, "command")))


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
    return ProjectConfig(**values)


def _project_value(reader: Reader, key: str, node: yaml.Node, path: str) -> dict[str, Any]:
    """One project key -> ProjectConfig fields."""
    if key in ("name", "workflow"):
        value = reader.string(node, path, allow_numbers=True)
        if not value.strip() or "\n" in value:
            raise reader.error(node, path, "must be a non-empty single line")
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
        return {"repo_locks_mode": reader.choice(mode, f"{path}.mode", ("disabled", "on_plan", "on_apply"))} if mode else {}
    if key == "repo_locking":  # Atlantis' older spelling
        return {"repo_locks_mode": "on_plan" if reader.boolean(node, path) else "disabled"}
    if key == "silence_pr_comments":
        value = reader.strings(node, path, ("plan", "apply"))
        if value:
            reader.warn(node, path, SILENCE_WARNING)
        return {key: value}
    if key in ("custom_policy_check", "apply_on_approval", "apply_on_merge"):
        return {key: reader.boolean(node, path)}
    if key in ("policy_check", "delete_source_branch_on_merge"):
        reader.boolean(node, path)  # Atlantis keys we accept and leave to the server
        return {}
    if key == "engine":
        return {key: reader.choice(node, path, ("terraform", "kubectl"))}
    if key == "drift":
        return {key: _drift(reader, node, path)}
    return {key: _kubectl(reader, node, path)}


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
    return norm


def _workspace(reader: Reader, node: yaml.Node, path: str) -> str:
    value = reader.string(node, path, allow_numbers=True)
    if not value or _BAD_WORKSPACE.search(value) or value.startswith(("-", "~")):
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
        for i, pattern in enumerate(patterns):
            if not pattern.lstrip("!").strip() or pattern.startswith("/"):
                raise reader.error(keys["when_modified"].value[i], f"{path}.when_modified[{i}]",
                                   f"{pattern!r}: give a glob relative to the project's dir")
        out["when_modified"] = patterns
    return out


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
