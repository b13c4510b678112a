"""Pure comment grammar (SPEC §6): comment text -> `Command`, or `UsageError` with the reply.

`parse_comment` returns None for comments not addressed to the bot, a `Command` for a valid
command, and raises `UsageError` (whose message is the complete reply: what was wrong plus
the usage of the command) for anything malformed. It never raises anything else.
"""
from __future__ import annotations

import dataclasses
import difflib
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from bot.errors import UsageError
from bot.models import Command

COMMANDS = ("plan", "apply", "unlock", "cancel", "approve_policies", "help", "version", "revert", "import",
            "state")
DEFAULT_EXTRA_ARGS_ALLOWLIST = (
    "-target", "-replace", "-var", "-refresh", "-lock-timeout", "-parallelism", "-destroy", "-var-file",
)
_NO_VALUE_FLAGS = ("destroy", "refresh-only")  # a word after them is not their value
PATH_FLAGS = ("var-file",)  # values must stay inside the repository (checked again at plan time)
# Words people type out of habit (other tools, or Terraform itself); never aliases by default.
_FOREIGN_PREFIXES = ("terraform", "tofu", "atlantis")


@dataclass(frozen=True)
class _Usage:
    synopsis: str
    summary: str
    details: tuple[str, ...] = ()


_USAGES = {
    "plan": _Usage(
        "/plan [-d DIR]... [-w WORKSPACE] [-p PROJECT]... [--verbose] [-- EXTRA_ARGS...]",
        "plan every project this pull request changed, or only the ones named",
        (
            "-d, --dir DIR            project directory relative to the repo root; repeatable;"
            " globs allowed (stacks/*)",
            "-w, --workspace NAME     Terraform workspace (default: the project's)",
            "-p, --project NAME       project name from the repo config; repeatable;"
            " not with -d/-w",
            "--verbose                include the full Terraform output",
            "-- EXTRA_ARGS            extra Terraform flags, each one in extra_args_allowlist",
        ),
    ),
    "apply": _Usage(
        "/apply [-d DIR]... [-w WORKSPACE] [-p PROJECT]... [--auto-merge-disabled]"
        " [--auto-merge-method METHOD] [--queue] [--verbose]",
        "apply the saved plans of this pull request (all planned projects, or the ones named)",
        (
            "-d, --dir DIR            project directory; repeatable; globs allowed",
            "-w, --workspace NAME     Terraform workspace",
            "-p, --project NAME       project name from the repo config; repeatable;"
            " not with -d/-w",
            "--auto-merge-disabled    do not merge the pull request after a successful apply",
            "--auto-merge-method M    how automerge merges: merge, squash or rebase",
            "--queue                  wait for a lock held by another pull request",
            "--verbose                include the full Terraform output",
        ),
    ),
    "unlock": _Usage("/unlock", "release every lock this pull request holds, discard its plans"),
    "cancel": _Usage("/cancel", "stop this pull request's queued and running jobs"),
    "approve_policies": _Usage(
        "/approve_policies", "override failed policy checks (policy owners only)"),
    "help": _Usage("/help [COMMAND]", "show this help, or the usage of one command"),
    "version": _Usage("/version", "show the bot's and each project's Terraform/kubectl version"),
    "revert": _Usage(
        "/revert", "on a merged pull request: open a pull request that reverts it (GitOps rollback)",
        ("The revert pull request is planned, approved and deployed like any other.",),
    ),
    "import": _Usage(
        "/import [-d DIR | -p PROJECT] [-w WORKSPACE] ADDRESS ID [-- EXTRA_ARGS...]",
        "import an existing object into one project's state; its plan is discarded: /plan again",
        (
            "-d, --dir DIR            project directory (default: the only project); not with -p",
            "-w, --workspace NAME     Terraform workspace",
            "-p, --project NAME       project name from the repo config",
            "ADDRESS ID               resource address and the provider's id of the object",
            "-- EXTRA_ARGS            extra Terraform flags, each one in extra_args_allowlist",
        ),
    ),
    "state": _Usage(
        "/state rm [-d DIR | -p PROJECT] [-w WORKSPACE] ADDRESS... [-- EXTRA_ARGS...]",
        "remove resources from one project's state; its plan is discarded: /plan again",
        (
            "-d, --dir DIR            project directory (default: the only project); not with -p",
            "-w, --workspace NAME     Terraform workspace",
            "-p, --project NAME       project name from the repo config",
            "ADDRESS...               resource addresses to forget (nothing is destroyed)",
            "-- EXTRA_ARGS            extra Terraform flags, each one in extra_args_allowlist",
        ),
    ),
}

# Canonical flag names per spelling; value flags take the next token or `=VALUE`.
_FLAGS = {
    "-d": "dir", "--dir": "dir",
    "-w": "workspace", "--workspace": "workspace",
    "-p": "project", "--project": "project",
    "--verbose": "verbose",
    "--queue": "queue",
    "--auto-merge-disabled": "auto_merge_disabled",
    "--auto-merge-method": "auto_merge_method",
}
_VALUE_FLAGS = frozenset({"dir", "workspace", "project", "auto_merge_method"})
MERGE_METHODS = ("merge", "squash", "rebase")
_ALLOWED_FLAGS = {
    "plan": frozenset({"dir", "workspace", "project", "verbose"}),
    "apply": frozenset({"dir", "workspace", "project", "verbose", "queue",
                        "auto_merge_disabled", "auto_merge_method"}),
    "import": frozenset({"dir", "workspace", "project"}),
    "state": frozenset({"dir", "workspace", "project"}),
}
_STATE_COMMANDS = ("import", "state")  # one project, positional ADDRESS [ID], extra args
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------- help texts


def usage(name: str | None = None) -> str:
    """The /help reply as markdown: every command, or the usage of one (unknown -> all)."""
    spec = _USAGES.get(name or "")
    if spec is None:
        lines = [f"{u.synopsis}\n    {u.summary}" for u in _USAGES.values()]
        intro = ("Plankeeper commands (start a comment with `/`, `plankeeper ` or a configured "
                 "alias; only the first line counts):")
        return f"{intro}\n\n```\n" + "\n".join(lines) + "\n```"
    body = "\n".join((spec.synopsis, "", spec.summary, *spec.details))
    return f"Usage of `/{name}`:\n\n```\n{body}\n```"


def did_you_mean(word: str) -> str | None:
    """The command `word` is a near miss of ("pln" -> "plan"), or None if it is none."""
    if not isinstance(word, str) or not word:
        return None
    matches = difflib.get_close_matches(word.lower(), COMMANDS, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _fail(problem: str, command: str | None = None) -> NoReturn:
    raise UsageError(f"{problem}\n\n{usage(command)}", title="Invalid command")


def _unknown(word: str) -> NoReturn:
    guess = did_you_mean(word)
    if guess:
        _fail(f"Unknown command `{word}`. Did you mean `/{guess}`?", guess)
    _fail(f"Unknown command `{word}`.")


# ---------------------------------------------------------------- addressing


def _first_line(body: str) -> str:
    for line in body.splitlines():
        line = line.strip().strip("`").strip()
        if line:
            return line
    return ""


def _command_text(line: str, bot_login: str | None, aliases: Sequence[str]) -> str | None:
    """The text after the bot's prefix ("plan -d x"), or None when not addressed to the bot."""
    if line.startswith("/"):
        return line[1:]
    parts = line.split(None, 1)
    prefixes = {"plankeeper", *(a.strip().lower() for a in aliases if isinstance(a, str))}
    if bot_login:
        login = bot_login.lstrip("@").lower()
        # People mention a GitHub App as @name although it posts as name[bot].
        prefixes.update({"@" + login, "@" + login.removesuffix("[bot]")})
    prefixes.discard("")
    first = parts[0].lower() if parts else ""
    if first in prefixes:
        if len(parts) < 2:
            _fail("No command given.")
        return parts[1]
    if first in _FOREIGN_PREFIXES and len(parts) == 2:
        guess = did_you_mean(parts[1].split(None, 1)[0])
        if guess:
            _fail(f"Plankeeper does not take `{first}` commands. Did you mean `/{guess}`?",
                  guess)
    return None


# ---------------------------------------------------------------- validation


def _check_dir(value: str, command: str) -> str:
    """A DIR relative to the repo root, normalized; refuses absolute paths and `..`."""
    if not value:
        _fail("`-d` needs a directory.", command)
    if _CONTROL.search(value):
        _fail("Directory names may not contain control characters.", command)
    if value.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", value):
        _fail(f"Directory `{value}` must be relative to the repository root.", command)
    if ".." in re.split(r"[/\\]", value):
        _fail(f"Directory `{value}` may not contain `..`: it must stay inside the "
              "repository.", command)
    return posixpath.normpath(value)


def _check_workspace(value: str, command: str) -> str:
    bad = (
        not value
        or any(ch in value for ch in "/\\$")
        or ".." in value
        or any(ch.isspace() for ch in value)
        or _CONTROL.search(value) is not None
        or value.startswith(("-", "~"))
    )
    if bad:
        _fail(f"Invalid workspace name `{value}`: it may not be empty, contain `/`, `\\`, "
              "`..`, `$` or whitespace, or start with `-` or `~`.", command)
    return value


def _check_project(value: str, command: str) -> str:
    if not value or _CONTROL.search(value) or value != value.strip():
        _fail(f"Invalid project name `{value}`.", command)
    return value


def _check_extra_args(args: list[str], allowlist: Sequence[str], command: str) -> tuple[str, ...]:
    """Each flag after `--` must be allowlisted; a bare word only as the previous flag's value."""
    allowed = {a.lstrip("-").lower() for a in allowlist if isinstance(a, str)}
    shown = ", ".join(f"`{a}`" for a in allowlist) or "none"
    expects_value, flag = False, ""
    for arg in args:
        if _CONTROL.search(arg):
            _fail("Extra arguments may not contain control characters.", command)
        if arg.startswith("-") and arg.strip("-"):
            name, has_value, value = arg.partition("=")
            flag = name.lstrip("-").lower()
            if flag not in allowed:
                _fail(f"Extra argument `{name}` is not allowed. Allowed: {shown}.", command)
            if has_value:
                _check_path_value(flag, value, command)
            expects_value = not has_value and flag not in _NO_VALUE_FLAGS
        elif expects_value:
            _check_path_value(flag, arg, command)
            expects_value = False
        else:
            _fail(f"Unexpected extra argument `{arg}`: only allowlisted flags and their "
                  "values may follow `--`.", command)
    return tuple(args)


def _check_path_value(flag: str, value: str, command: str) -> None:
    """`-var-file` takes a path inside the repository: relative, never absolute or home-relative."""
    if flag in PATH_FLAGS and (not value or value.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:", value)):
        _fail(f"`-{flag}` takes a path inside the repository, relative to the project's directory; "
              f"`{value}` is not one.", command)


# ---------------------------------------------------------------- flags


def _split_flag(token: str) -> tuple[str, str | None]:
    """("-d", "x") for "-d=x"; ("--verbose", None) for "--verbose"."""
    name, sep, value = token.partition("=")
    return name.lower(), (value if sep else None)


def _take_value(flag: str, inline: str | None, tokens: list[str], i: int,
                command: str) -> tuple[str, int]:
    if inline is not None:
        return inline, i
    # A following flag means the value was forgotten; "-x" alone is a (bad) value.
    if i + 1 >= len(tokens) or tokens[i + 1] == "--" or _split_flag(tokens[i + 1])[0] in _FLAGS:
        _fail(f"Flag `{flag}` needs a value.", command)
    return tokens[i + 1], i + 1


def _parse_flags(command: str, tokens: list[str], allowlist: Sequence[str]) -> Command:
    allowed = _ALLOWED_FLAGS[command]
    dirs: list[str] = []
    projects: list[str] = []
    workspace: str | None = None
    merge_method: str | None = None
    switches: set[str] = set()
    extra: tuple[str, ...] = ()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            if command != "plan":
                _fail(f"`/{command}` takes no extra arguments after `--`.", command)
            extra = _check_extra_args(tokens[i + 1:], allowlist, command)
            break
        if not token.startswith("-"):
            _fail(f"Unexpected argument `{token}`.", command)
        flag, inline = _split_flag(token)
        name = _FLAGS.get(flag)
        if name is None or name not in allowed:
            _fail(f"Unknown flag `{flag}` for `/{command}`.", command)
        if name not in _VALUE_FLAGS:
            if inline is not None:
                _fail(f"Flag `{flag}` takes no value.", command)
            switches.add(name)
        else:
            value, i = _take_value(flag, inline, tokens, i, command)
            if name == "dir":
                dirs.append(_check_dir(value, command))
            elif name == "project":
                projects.append(_check_project(value, command))
            elif name == "auto_merge_method":
                merge_method = _check_merge_method(value, command)
            elif workspace is not None:
                _fail("`-w` may be given only once.", command)
            else:
                workspace = _check_workspace(value, command)
        i += 1
    if projects and (dirs or workspace is not None):
        _fail("`-p` cannot be combined with `-d` or `-w`.", command)
    return Command(
        name=command,
        dirs=tuple(dict.fromkeys(dirs)),
        workspace=workspace,
        projects=tuple(dict.fromkeys(projects)),
        verbose="verbose" in switches,
        extra_args=extra,
        queue="queue" in switches,
        auto_merge_disabled="auto_merge_disabled" in switches,
        auto_merge_method=merge_method,
    )


def _check_merge_method(value: str, command: str) -> str:
    if value not in MERGE_METHODS:
        _fail(f"`--auto-merge-method` takes merge, squash or rebase, not `{value[:40]}`.", command)
    return value


def _parse_state_command(command: str, tokens: list[str], allowlist: Sequence[str]) -> Command:
    """/import ADDRESS ID and /state rm ADDRESS...: flags as /plan's (one project), positional
    arguments in `args`, extra args after `--` checked against the allowlist."""
    extra: list[str] = []
    if "--" in tokens:
        cut = tokens.index("--")
        tokens, extra = tokens[:cut], tokens[cut + 1:]
    flags: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("-"):
            flags.append(token)
            flag, inline = _split_flag(token)
            if _FLAGS.get(flag) in _VALUE_FLAGS and inline is None and i + 1 < len(tokens):
                flags.append(tokens[i + 1])
                i += 1
        else:
            positional.append(token)
        i += 1
    parsed = _parse_flags(command, flags, allowlist)
    if len(parsed.dirs) > 1 or len(parsed.projects) > 1:
        _fail(f"`/{command}` works on one project: give at most one `-d` or `-p`.", command)
    if any(ch in d for d in parsed.dirs for ch in "*?["):
        _fail(f"`/{command}` works on one project: `-d` takes no globs.", command)
    if command == "state":
        if not positional or positional[0].lower() != "rm":
            _fail("`/state` needs the subcommand `rm`: `/state rm ADDRESS...`.", command)
        positional = positional[1:]
        if not positional:
            _fail("`/state rm` needs at least one resource address.", command)
    elif len(positional) != 2:
        _fail(f"`/import` needs a resource address and an id (got {len(positional)} argument(s)).", command)
    if any(_CONTROL.search(a) for a in positional):
        _fail("Arguments may not contain control characters.", command)
    return dataclasses.replace(parsed, args=tuple(positional),
                               extra_args=_check_extra_args(extra, allowlist, command))


def _parse_plain(command: str, tokens: list[str]) -> Command:
    """Commands without flags; /help takes one optional command name, kept in extra_args."""
    if command == "help" and len(tokens) == 1 and not tokens[0].startswith("-"):
        topic = tokens[0].lower().lstrip("/")
        if topic not in COMMANDS:
            _unknown(tokens[0])
        return Command(name="help", extra_args=(topic,))
    if tokens:
        _fail(f"`/{command}` takes no arguments (got `{tokens[0]}`).", command)
    return Command(name=command)


# ---------------------------------------------------------------- entry point


def parse_comment(
    body: str,
    *,
    bot_login: str | None = None,
    aliases: Sequence[str] = (),
    extra_args_allowlist: Sequence[str] = DEFAULT_EXTRA_ARGS_ALLOWLIST,
) -> Command | None:
    """Parse the first non-blank line of a comment.

    Returns None when the comment is not addressed to the bot (including `/word` comments
    meant for other bots), a `Command` when it is valid. Raises `UsageError` carrying the
    whole reply for anything malformed, for near-miss command names and for
    `terraform plan`-style comments.
    """
    if not isinstance(body, str):
        return None
    line = _first_line(body)
    text = _command_text(line, bot_login, aliases)
    if text is None:
        return None
    explicit = not line.startswith("/")
    parts = text.split(None, 1)
    word = parts[0] if parts else ""
    name = word.lower()
    if name not in COMMANDS:
        # A slash word for another bot (/lgtm, /cc) is not ours; a near miss is.
        if explicit or did_you_mean(word):
            _unknown(word)
        return None
    try:
        tokens = shlex.split(parts[1] if len(parts) > 1 else "", posix=True)
    except ValueError as exc:
        _fail(f"Could not read the arguments: {exc} (check your quotes).", name)
    if name in _STATE_COMMANDS:
        return _parse_state_command(name, tokens, extra_args_allowlist)
    if name in _ALLOWED_FLAGS:
        return _parse_flags(name, tokens, extra_args_allowlist)
    return _parse_plain(name, tokens)
