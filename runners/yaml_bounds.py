"""A SafeLoader that bounds what aliases can expand to, for YAML from pull requests.

Aliases (`*name`) and merge keys (`<<: *name`) share nodes, so a few hundred bytes can
describe a document of billions of nodes ("billion laughs"): harmless while composing, but
anything that walks, compares, validates or serialises the result walks every copy.
Anchors are common in real files (atlantis.yaml workflows, Kubernetes manifests), so they
stay allowed; what is refused is a file whose aliases add more than MAX_ALIAS_NODES nodes,
and an alias that contains itself. Counting is linear in the file's own nodes.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.error import MarkedYAMLError

MAX_ALIAS_NODES = 100_000  # nodes that aliases may add to one file, over all its documents


class AliasExpansionError(MarkedYAMLError):
    """The aliases of a document expand past the limit, or refer to a node containing them."""


class BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that raises AliasExpansionError (a YAMLError) after composing a document
    whose aliases expand past MAX_ALIAS_NODES (counted over the whole stream)."""

    max_alias_nodes = MAX_ALIAS_NODES

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.alias_nodes = 0

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        distinct, expanded = _sizes(node)
        self.alias_nodes += expanded - distinct
        if self.alias_nodes > self.max_alias_nodes:
            raise AliasExpansionError(
                None, None,
                f"aliases (*name, <<: *name) expand this file by more than {self.max_alias_nodes:,} nodes "
                "(nested aliases multiply); write out fewer or smaller repeated blocks",
                node.start_mark)
        return node


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _sizes(root: yaml.Node) -> tuple[int, int]:
    """(distinct nodes, nodes with every alias written out); iterative, memoised per node."""
    expanded: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            visiting.discard(key)
            # capped: far past any limit already, and the sums stay small integers
            expanded[key] = min(1 + sum(expanded[id(child)] for child in _children(node)), 10**12)
            continue
        if key in expanded:
            continue
        if key in visiting:
            raise AliasExpansionError(None, None, "an alias refers to a node that contains it (a recursive "
                                      "structure)", node.start_mark)
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in expanded)
    return len(expanded), expanded[id(root)]
