"""The workflows of a repo config or of the server settings: stages of steps (Atlantis' schema),
read from YAML nodes with file, line and key in every error (runners/repo_config_nodes.py)."""
from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from runners.repo_config_nodes import Reader, join_key, null_node
from runners.repo_config_schema import STAGES, RepoConfigError, Step, Workflow

STEP_KEYS = {"init": ("extra_args",), "plan": ("extra_args",), "apply": ("extra_args",),
             "show": ("extra_args",), "import": ("extra_args",), "state_rm": ("extra_args",),
             "policy_check": ("extra_args",), "version": (),
             "run": ("command", "output", "shell", "shell_args", "shellArgs"),
             "multienv": ("command", "output", "shell", "shell_args", "shellArgs"),
             "env": ("name", "value", "command", "shell", "shell_args", "shellArgs")}
POLICY_STAGE_WARNING = ("ignored: a workflow's policy_check stage is not run; Plankeeper runs the server's Rego "
                        "policy sets (`policies.sets`) on each plan")
OUTPUT_MODES = ("show", "hide", "strip_refreshing")


def parse_server_workflows(raw: Mapping[str, Any], where: str = "server settings") -> dict[str, Workflow]:
    """Server-side `workflows` (plain dicts from the settings file) as Workflow objects."""
    if not raw:
        return {}
    node = yaml.compose(yaml.safe_dump(dict(raw)), Loader=yaml.SafeLoader)
    return parse_workflows(_Lineless(where), node, "workflows", "server")


class _Lineless(Reader):
    """Errors without line numbers: the values were re-serialised and lines would mislead."""

    def error(self, node: yaml.Node | None, key: str, message: str) -> RepoConfigError:
        return RepoConfigError(message, self.file, None, key)


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
        parsed = {k: v for k, v in parsed.items() if v is not None}  # a stage without steps keeps the default ones
        if "policy_check" in parsed:
            reader.warn_at_key(join_key(key, "policy_check"), POLICY_STAGE_WARNING)
        extra = {k: v for k, v in parsed.items() if k not in ("plan", "apply")}
        workflows[name] = Workflow(name=name, stages=extra, source=source,
                                   **{k: v for k, v in parsed.items() if k in ("plan", "apply")})
    return workflows


def _steps(reader: Reader, node: yaml.Node, path: str, stage: str) -> tuple[Step, ...] | None:
    """The stage's steps; None when it names none (`plan:` or `steps:` left empty: Atlantis
    keeps the stage's default steps then), () for `steps: []`."""
    if reader.is_null(node):
        return None
    keys = reader.mapping(node, path, ("steps",))
    if reader.is_null(keys.get("steps", null_node())):
        return None
    steps = tuple(_step(reader, item, f"{path}.steps[{i}]")
                  for i, item in enumerate(reader.sequence(keys.get("steps", null_node()), f"{path}.steps")))
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
