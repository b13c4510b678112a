"""Choosing the Terraform/OpenTofu binary for a project: on PATH, embedded, or the configured
binary that satisfies a terraform_version (a version or a constraint such as "~> 1.5")."""
from __future__ import annotations

import re
import shutil
from typing import Mapping, Optional

from runners.embedded_terraform import embedded_argv


class MissingBinary(Exception):
    """No configured Terraform binary satisfies a project's terraform_version."""


def resolve_binary(
    setting: str,
    path: str,
    version: Optional[str] = None,
    binaries: Mapping[str, str] = {},
    distribution: str = "terraform",
) -> list[str]:
    """The argv prefix that runs Terraform for a project.

    setting "auto" picks `terraform`, else `tofu` on the given PATH, else the embedded
    Terraform; anything else is a path or a name looked up on PATH. With a version constraint
    the binary comes from `binaries` (constraint or version -> path). Raises MissingBinary when
    no entry fits the version.
    """
    if version:
        return [_pick_versioned(version, binaries, distribution)]
    if setting == "embedded":
        return embedded_argv()
    if setting == "auto":
        for name in ("terraform", "tofu"):
            found = shutil.which(name, path=path)
            if found:
                return [found]
        return embedded_argv()
    if "/" in setting:
        return [setting]
    return [shutil.which(setting, path=path) or setting]


def _pick_versioned(version: str, binaries: Mapping[str, str], distribution: str) -> str:
    wanted = version.strip()
    if wanted in binaries:
        return binaries[wanted]
    candidates = [
        (_parse_version(key), path)
        for key, path in binaries.items()
        if _is_plain_version(key) and version_satisfies(key, wanted)
    ]
    if candidates:
        return max(candidates)[1]
    if _is_plain_version(wanted):
        for key, path in binaries.items():
            if not _is_plain_version(key) and version_satisfies(wanted, key):
                return path
    known = ", ".join(sorted(binaries)) or "none"
    raise MissingBinary(
        f"no {distribution} binary for version {wanted!r}: add one to the server setting "
        f"terraform.binaries (configured: {known})"
    )


_CONSTRAINT = re.compile(r"^\s*(=|!=|>=|<=|>|<|~>)?\s*v?(\d+(?:\.\d+){0,2})(?:-[\w.]+)?\s*$")


def _is_plain_version(text: str) -> bool:
    return re.fullmatch(r"v?\d+(\.\d+){0,2}", text.strip()) is not None


def _parse_version(text: str) -> tuple[int, int, int]:
    nums = [int(n) for n in re.findall(r"\d+", text.strip().lstrip("v").split("-")[0])[:3]]
    return (nums + [0, 0, 0])[0], (nums + [0, 0, 0])[1], (nums + [0, 0, 0])[2]


def version_satisfies(version: str, constraint: str) -> bool:
    """True when version (e.g. "1.5.7") meets a Terraform constraint ("~> 1.5, != 1.5.2")."""
    have = _parse_version(version)
    for part in constraint.split(","):
        match = _CONSTRAINT.match(part)
        if not match:
            return False
        op, raw = match.group(1) or "=", match.group(2)
        want = _parse_version(raw)
        if not _compare(have, op, want, raw.count(".") + 1):
            return False
    return True


def _compare(have: tuple[int, int, int], op: str, want: tuple[int, int, int], given: int) -> bool:
    if op == "~>":
        # ~> 1.5 allows 1.x >= 1.5; ~> 1.5.7 allows 1.5.x >= 1.5.7
        prefix = max(given - 1, 1)
        return have >= want and have[:prefix] == want[:prefix]
    return {
        "=": have == want,
        "!=": have != want,
        ">": have > want,
        ">=": have >= want,
        "<": have < want,
        "<=": have <= want,
    }[op]
