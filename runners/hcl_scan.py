"""A small reader of Terraform's native syntax (HCL): a file's blocks, each with its labels,
attributes and nested blocks, enough to tell what `terraform init` depends on.

Not a full parser: expressions are kept as their tokens, and only plain string literals are
decoded. Comments and layout are dropped, so reformatting a file or editing a comment changes
no Block. Text that is not valid HCL never raises: what can be read is returned.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\r?\n")
_ESCAPE = re.compile(r'\\(["\\nrt]|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})')
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
OPENING, CLOSING = "([{", ")]}"

Token = tuple[str, str]  # (kind, text): kind is ident, string, heredoc, number, punct or nl


@dataclass(frozen=True)
class Expr:
    """An attribute's value: its tokens, and the string when it is one plain string literal."""

    tokens: tuple[str, ...]
    literal: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def references(self, *names: str) -> bool:
        """True when the expression reads `name.` for one of names (e.g. var, local), also
        inside a string template."""
        if any(a in names and b == "." for a, b in zip(self.tokens, self.tokens[1:])):
            return True
        pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, names)) + r")\s*\.")
        return any(t.startswith(('"', "<<")) and ("${" in t or "%{" in t) and pattern.search(t) for t in self.tokens)


@dataclass(frozen=True)
class Block:
    type: str
    labels: tuple[str, ...] = ()
    attributes: dict[str, Expr] = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()
    tokens: tuple[str, ...] = ()  # the body without comments and layout: what a digest is made of


def tokenize(text: str) -> list[Token]:
    """The tokens of text; comments and blanks are dropped, newlines kept (they end attributes)."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            out.append(("nl", "\n"))
            i += 1
        elif c in " \t\r\ufeff":
            i += 1
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == '"':
            end = _string_end(text, i)
            out.append(("string", text[i:end]))
            i = end
        elif c == "<" and (heredoc := _HEREDOC.match(text, i)):
            end = _heredoc_end(text, heredoc)
            out.append(("heredoc", text[i:end]))
            i = end
        elif (word := _IDENT.match(text, i)) is not None:
            out.append(("ident", word.group()))
            i = word.end()
        elif (number := _NUMBER.match(text, i)) is not None:
            out.append(("number", number.group()))
            i = number.end()
        else:
            out.append(("punct", c))
            i += 1
    return out


def parse(text: str) -> list[Block]:
    """The top-level blocks of a .tf file (its top-level attributes are not Terraform)."""
    tokens = tokenize(text)
    blocks: list[Block] = []
    i = 0
    while i < len(tokens):
        _, i, block = _statement(tokens, i)
        if block is not None:
            blocks.append(block)
    return blocks


def parse_json(text: str) -> list[Block]:
    """The top-level blocks of a .tf.json file, shaped like parse()'s; [] when it is not JSON.

    Bodies are canonical JSON; strings are literal unless they hold a `${` template."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    blocks: list[Block] = []
    for kind, value in data.items():
        depth = 2 if kind in ("resource", "data", "ephemeral") else 1 if kind in ("module", "provider") else 0
        blocks += _json_blocks(kind, (), value, depth)
    return blocks


def literal(token: Token) -> str | None:
    """The value of a string token that is a plain literal (no template); None otherwise."""
    kind, text = token
    if kind != "string" or len(text) < 2 or not text.endswith('"'):
        return None
    body = text[1:-1]
    if "${" in body.replace("$${", "") or "%{" in body.replace("%%{", ""):
        return None
    body = body.replace("$${", "${").replace("%%{", "%{")
    return _ESCAPE.sub(lambda m: _SIMPLE_ESCAPES.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), body)


# ---------------------------------------------------------------------------- native syntax


def _statement(tokens: list[Token], i: int) -> tuple[tuple[str, Expr] | None, int, Block | None]:
    """One attribute or block starting at i: (attribute, next index, block); skips anything else."""
    kind, text = tokens[i]
    if kind != "ident":
        return None, i + 1, None
    j = i + 1
    if j < len(tokens) and tokens[j][1] == "=" and (j + 1 >= len(tokens) or tokens[j + 1][1] not in "=>"):
        expr, end = _expression(tokens, j + 1)
        return (text, expr), end, None
    labels: list[str] = []
    while j < len(tokens) and tokens[j][0] in ("string", "ident"):
        labels.append(literal(tokens[j]) or tokens[j][1])
        j += 1
    if j < len(tokens) and tokens[j] == ("punct", "{"):
        attributes, blocks, end = _body(tokens, j + 1)
        body = tuple(t for k, t in tokens[j + 1:end - 1] if k != "nl")
        return None, end, Block(text, tuple(labels), attributes, tuple(blocks), body)
    return None, j, None


def _body(tokens: list[Token], i: int) -> tuple[dict[str, Expr], list[Block], int]:
    """Attributes and blocks up to the closing brace; the index after it."""
    attributes: dict[str, Expr] = {}
    blocks: list[Block] = []
    while i < len(tokens):
        if tokens[i] == ("punct", "}"):
            return attributes, blocks, i + 1
        if tokens[i][0] == "nl":
            i += 1
            continue
        attribute, i, block = _statement(tokens, i)
        if attribute is not None:
            attributes[attribute[0]] = attribute[1]
        if block is not None:
            blocks.append(block)
    return attributes, blocks, i


def _expression(tokens: list[Token], i: int) -> tuple[Expr, int]:
    """Tokens up to the end of the line (or the enclosing block's brace), brackets balanced."""
    start, depth = i, 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "nl" and depth == 0:
            break
        if kind == "punct" and text in CLOSING:
            if depth == 0:
                break
            depth -= 1
        elif kind == "punct" and text in OPENING:
            depth += 1
        i += 1
    parts = [t for t in tokens[start:i] if t[0] != "nl"]
    value = literal(parts[0]) if len(parts) == 1 else None
    return Expr(tuple(text for _, text in parts), value), i


def _string_end(text: str, i: int) -> int:
    """The index after the string starting at i (a quote); templates may hold nested strings."""
    j, n = i + 1, len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
        elif c == '"':
            return j + 1
        elif c == "\n":
            return j  # quoted strings end at the line: an unterminated one stops there
        elif text.startswith(("$${", "%%{"), j):
            j += 3
        elif text.startswith(("${", "%{"), j):
            j = _template_end(text, j + 2)
        else:
            j += 1
    return n


def _template_end(text: str, j: int) -> int:
    depth, n = 1, len(text)
    while j < n:
        c = text[j]
        if c == '"':
            j = _string_end(text, j)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return n


def _heredoc_end(text: str, match: re.Match) -> int:
    """The index of the newline that ends the heredoc's closing line (or the end of text)."""
    tag, i = match.group(1), match.end()
    while i < len(text):
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        if text[i:end].strip() == tag:
            return end
        i = end + 1
    return len(text)


# ---------------------------------------------------------------------------- JSON syntax


def _json_blocks(kind: str, labels: tuple[str, ...], value: object, depth: int) -> list[Block]:
    """`"resource": {"type": {"name": {...}}}` -> Block("resource", ("type", "name")): depth is
    how many object levels are labels; a list holds several bodies."""
    if isinstance(value, list):
        return [b for item in value for b in _json_blocks(kind, labels, item, depth)]
    if not isinstance(value, dict):
        return []
    if depth > 0:
        return [b for label, inner in value.items() for b in _json_blocks(kind, (*labels, label), inner, depth - 1)]
    attributes, blocks = {}, []
    for name, inner in value.items():
        if kind == "terraform" and name in ("backend", "cloud"):
            blocks += _json_blocks(name, (), inner, 1 if name == "backend" else 0)
        else:
            attributes[name] = _json_expr(inner)
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return [Block(kind, labels, attributes, tuple(blocks), (canonical,))]


def _json_expr(value: object) -> Expr:
    if isinstance(value, str):
        plain = "${" not in value.replace("$${", "") and "%{" not in value.replace("%%{", "")
        tokens = tuple(t for _, t in tokenize(value)) if not plain else (json.dumps(value),)
        return Expr(tokens, value.replace("$${", "${").replace("%%{", "%{") if plain else None)
    return Expr((json.dumps(value, sort_keys=True, separators=(",", ":")),))
