"""runners/terraform_binaries.py: picking the Terraform binary by setting, PATH and version."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runners.embedded_terraform import embedded_argv
from runners.terraform_binaries import MissingBinary, resolve_binary, version_satisfies


def _exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_resolve_binary_auto(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_binary("auto", str(empty)) == embedded_argv()
    bins = tmp_path / "bin"
    bins.mkdir()
    tofu = _exe(bins / "tofu")
    assert resolve_binary("auto", str(bins)) == [str(tofu)]
    terraform = _exe(bins / "terraform")
    assert resolve_binary("auto", f"{empty}{os.pathsep}{bins}") == [str(terraform)]
    assert resolve_binary("tofu", str(bins)) == [str(tofu)]
    assert resolve_binary("/opt/tf", str(bins)) == ["/opt/tf"]


def test_resolve_binary_by_version() -> None:
    binaries = {"1.5.7": "/tf/1.5.7", "1.6.6": "/tf/1.6.6", "1.9.0": "/tf/1.9.0"}
    assert resolve_binary("auto", "", "1.5.7", binaries) == ["/tf/1.5.7"]
    assert resolve_binary("auto", "", "~> 1.5", binaries) == ["/tf/1.9.0"]
    assert resolve_binary("auto", "", "~> 1.5.0", binaries) == ["/tf/1.5.7"]
    assert resolve_binary("auto", "", ">= 1.6, < 1.9", binaries) == ["/tf/1.6.6"]
    assert resolve_binary("auto", "", "1.6.6", {"~> 1.6": "/tf/one-six"}) == ["/tf/one-six"]
    with pytest.raises(MissingBinary, match=r"'~> 2.0'.*terraform\.binaries"):
        resolve_binary("auto", "", "~> 2.0", binaries)


@pytest.mark.parametrize(
    "version,constraint,ok",
    [
        ("1.5.7", "1.5.7", True),
        ("1.5.7", "= 1.5.7", True),
        ("1.5.8", "!= 1.5.7", True),
        ("1.6.0", "~> 1.5.7", False),
        ("2.0.0", "~> 1.5", False),
        ("1.4.9", ">= 1.5", False),
        ("1.5.0", "> 1.4, <= 1.5", True),
        ("1.5.0", "garbage", False),
    ],
)
def test_version_satisfies(version: str, constraint: str, ok: bool) -> None:
    assert version_satisfies(version, constraint) is ok
