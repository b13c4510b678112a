"""Typed reads of YAML nodes (from yaml.compose) that raise RepoConfigError with file, line, key.

Working on nodes rather than loaded values keeps every value's line number for the error.
"""
from __future__ import annotations

import difflib
from typing import Any, Optional, Sequence

import yaml

from runners.repo_config_schema import RepoConfigError

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def null_node() -> yaml.Node:
    """A YAML null, for a key left out."""
    return yaml.ScalarNode(_NULL, "")


def did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class Reader:
    """Reads one file's nodes; every failure names the file, line and key path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[str, int] = {}
        self.warnings: list[str] = []  # keys accepted but not honoured, as `file:line: key: message`
        self.version = 3  # atlantis.yaml version 2 reads `run` commands differently (runners/repo_config.py)

    def warn(self, node: Optional[yaml.Node], key: str, message: str) -> None:
        self.warnings.append(str(RepoConfigError(message, self.file, line_of(node) if node is not None else None, key)))

    def warn_at_key(self, key: str, message: str) -> None:
        """A warning at the line of the key itself (its value may start on a later line)."""
        self.warnings.append(str(RepoConfigError(message, self.file, self.lines.get(key), key)))

    def error(self, node: Optional[yaml.Node], key: str, message: str) -> RepoConfigError:
        return RepoConfigError(message, self.file, line_of(node) if node is not None else None, key)

    def mapping(self, node: yaml.Node, path: str, allowed: Optional[Sequence[str]]) -> dict[str, yaml.Node]:
        """Keys -> value nodes, merge keys (`<<: *anchor`) applied; unknown keys (None allows
        any string key) or keys written twice are errors."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, path or "(top level)", f"expected a mapping, got {self.describe(node)}")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in self._merged(node, path):
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or (allowed is not None and key not in allowed):
                shown = str(key) if key is not None else "(complex key)"
                expected = f"; expected one of: {', '.join(allowed)}" if allowed is not None else ""
                raise self.error(key_node, join_key(path, shown),
                                 "unknown key" + did_you_mean(shown, allowed or ()) + expected)
            if key in out:
                raise self.error(key_node, join_key(path, key), "key given twice")
            out[key] = value_node
            self.lines[join_key(path, key)] = line_of(key_node)
        return out

    def _merged(self, node: yaml.MappingNode, path: str) -> list[tuple[yaml.Node, yaml.Node]]:
        """The mapping's pairs with `<<` merges resolved as YAML 1.1 says: keys written in the
        mapping win, then the merged mappings in the order listed. Sizes are bounded by the
        loader (runners/yaml_bounds.py)."""
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise self.error(key_node, join_key(path, "<<"),
                                     f"a merge key takes a mapping or a list of mappings, got {self.describe(source)}")
                merged.extend(self._merged(source, path))
        seen = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        pairs = []
        for key_node, value_node in merged:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if name is None or name not in seen:
                pairs.append((key_node, value_node))
                seen.add(name)
        return pairs + own

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if self.is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, path, f"expected a list, got {self.describe(node)}")
        return list(node.value)

    def boolean(self, node: yaml.Node, path: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return node.value.lower() in ("true", "yes", "on", "y")
        raise self.error(node, path, f"expected true or false, got {self.describe(node)}")

    def integer(self, node: yaml.Node, path: str) -> int:
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
            return int(node.value)
        raise self.error(node, path, f"expected an integer, got {self.describe(node)}")

    def string(self, node: yaml.Node, path: str, allow_numbers: bool = False) -> str:
        """A string scalar; allow_numbers keeps `1.5` as written (versions are often unquoted)."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR or (allow_numbers and node.tag in (_INT, _FLOAT)):
                return node.value
        raise self.error(node, path, f"expected a string, got {self.describe(node)}")

    def choice(self, node: yaml.Node, path: str, choices: Sequence[str]) -> str:
        value = self.string(node, path)
        if value not in choices:
            raise self.error(node, path, f"{value!r} is not one of {', '.join(choices)}"
                             + did_you_mean(value, choices))
        return value

    def strings(self, node: yaml.Node, path: str, choices: Optional[Sequence[str]] = None) -> tuple[str, ...]:
        items = []
        for i, item in enumerate(self.sequence(node, path)):
            key = f"{path}[{i}]"
            items.append(self.choice(item, key, choices) if choices else self.string(item, key))
        return tuple(items)

    @staticmethod
    def is_null(node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL

    @staticmethod
    def describe(node: Any) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        if isinstance(node, yaml.ScalarNode):
            return "nothing" if node.tag == _NULL else repr(node.value)
        return "nothing"
