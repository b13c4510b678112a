"""Run one external program without a shell, streaming its output, with timeouts and cancel.

The program runs in its own session (process group) so that a timeout or a cancel reaches
everything it started: SIGINT first (Terraform then stops cleanly and releases state locks),
then SIGTERM, then SIGKILL.
"""
from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import secrets
import shutil
import signal
import sys
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping, Optional, Sequence

from runners.models import LineSink, StopCheck
from runners.sandbox import NO_SANDBOX, Launch, Sandbox

POLL_INTERVAL = 0.2
TERM_WAIT = 2.0
# After the main process exits, children it left behind may still hold the pipe open.
DRAIN_WAIT = 2.0

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


class ExecutableNotFound(FileNotFoundError):
    """The program to run does not exist or is not on PATH."""

    def __init__(self, argv0: str) -> None:
        super().__init__(f"executable not found: {argv0!r} (is it installed and on PATH?)")
        self.argv0 = argv0


@dataclass
class ProcessResult:
    exit_code: int  # negative: killed by that signal (in a sandbox: 128 + the signal)
    output: str  # stdout and stderr merged, ANSI stripped
    timed_out: bool
    cancelled: bool
    duration: float


def strip_ansi(text: str) -> str:
    """Remove ANSI colour and cursor escape sequences."""
    return _ANSI.sub("", text)


_PR_SET_PDEATHSIG = 1


def signal_when_parent_dies(sig: int) -> bool:
    """Have Linux send this process sig when its parent dies, even by SIGKILL (PR_SET_PDEATHSIG);
    False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def _interrupt_when_parent_dies() -> None:
    """In the child: get SIGINT (Terraform's graceful stop, which releases its state lock)
    if the job process running us is killed, instead of running on unsupervised."""
    signal_when_parent_dies(signal.SIGINT)


def run(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    on_line: Optional[LineSink] = None,
    should_stop: Optional[StopCheck] = None,
    grace: float = 10.0,
    sandbox: Sandbox = NO_SANDBOX,
) -> ProcessResult:
    """Run argv in cwd with exactly env; return its merged output and exit code.

    Lines go to on_line (from the calling thread) as they are produced. On timeout or when
    should_stop() returns True the process group is interrupted, then terminated, then killed.
    With an active sandbox (runners.sandbox) argv runs inside bubblewrap.
    Raises ExecutableNotFound when argv[0] cannot be found, NotADirectoryError when cwd is missing.
    """
    started = time.monotonic()
    proc, launch = _start(argv, Path(cwd), env, sandbox, subprocess.DEVNULL)
    try:
        return _supervise(proc, started, timeout, on_line, should_stop, grace)
    finally:
        launch.finished()


def _start(argv: Sequence[str], cwd: Path, env: Mapping[str, str], sandbox: Sandbox,
           stdin: int) -> tuple[subprocess.Popen, Launch]:
    """Popen argv in its own session (in the sandbox), stdout and stderr merged into one pipe."""
    if not argv:
        raise ValueError("empty argument list")
    if not cwd.is_dir():
        raise NotADirectoryError(f"working directory does not exist: {cwd}")
    if sandbox.active and not _findable(argv[0], cwd, env.get("PATH", "")):
        raise ExecutableNotFound(str(argv[0]))  # found by the launcher inside, so looked for here first
    launch = sandbox.launch(argv, cwd, env)
    try:
        proc = subprocess.Popen(
            launch.argv,
            cwd=str(cwd),
            env=launch.env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=launch.pass_fds,
            preexec_fn=launch.preexec or _interrupt_when_parent_dies,
        )
    except FileNotFoundError as exc:
        launch.finished()
        raise ExecutableNotFound(str(launch.argv[0])) from exc
    launch.started()
    return proc, launch


def _findable(argv0: str, cwd: Path, path: str) -> bool:
    if "/" in argv0:
        full = os.path.join(cwd, argv0)
        return os.access(full, os.X_OK) and not os.path.isdir(full)
    return shutil.which(argv0, path=path) is not None


def _supervise(
    proc: subprocess.Popen,
    started: float,
    timeout: float,
    on_line: Optional[LineSink],
    should_stop: Optional[StopCheck],
    grace: float,
) -> ProcessResult:
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    collected: list[str] = []
    watcher = _Watcher(proc, started + timeout, should_stop, grace)
    try:
        _pump(proc, reader, lines, collected, on_line, watcher)
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)  # never leave a job's process behind
        proc.wait()
        raise
    exit_code = proc.wait()
    reader.join(timeout=1)
    return ProcessResult(
        exit_code=exit_code,
        output="\n".join(collected),
        timed_out=watcher.timed_out,
        cancelled=watcher.cancelled,
        duration=time.monotonic() - started,
    )


def _pump(
    proc: subprocess.Popen,
    reader: threading.Thread,
    lines: "queue.Queue[Optional[str]]",
    collected: list[str],
    on_line: Optional[LineSink],
    watcher: "_Watcher",
) -> None:
    """Hand lines to on_line until the output ends, enforcing timeout and cancel meanwhile."""
    while True:
        try:
            line = lines.get(timeout=POLL_INTERVAL)
        except queue.Empty:
            if proc.poll() is not None and not reader.is_alive():
                return
        else:
            if line is None:
                return
            _emit(line, collected, on_line)
        watcher.check()
        if proc.poll() is not None and reader.is_alive() and watcher.drain_expired():
            _signal_group(proc.pid, signal.SIGKILL)


def _emit(line: str, collected: list[str], on_line: Optional[LineSink]) -> None:
    collected.append(line)
    if on_line is not None:
        on_line(line)


def _read_lines(stream: Optional[IO[bytes]], sink: "queue.Queue[Optional[str]]") -> None:
    assert stream is not None
    try:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            sink.put(strip_ansi(text).rstrip("\r"))
    finally:
        stream.close()
        sink.put(None)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Watcher:
    """Decides when to interrupt, terminate and kill the process group."""

    def __init__(
        self,
        proc: subprocess.Popen,
        deadline: float,
        should_stop: Optional[StopCheck],
        grace: float,
    ) -> None:
        self.proc = proc
        self.deadline = deadline
        self.should_stop = should_stop
        self.grace = grace
        self.timed_out = False
        self.cancelled = False
        self.stopping_since: Optional[float] = None
        self.stage = 0  # 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        self.exited_at: Optional[float] = None
        self.last_poll = 0.0

    def check(self) -> None:
        now = time.monotonic()
        if self.stage == 0:
            if self.proc.poll() is not None:
                return
            if now >= self.deadline:
                self.timed_out = True
            elif self._stop_requested(now):
                self.cancelled = True
            else:
                return
            self._escalate(signal.SIGINT, now)
            return
        waited = now - (self.stopping_since or now)
        if self.stage == 1 and waited >= self.grace:
            self._escalate(signal.SIGTERM, now)
        elif self.stage == 2 and waited >= self.grace + TERM_WAIT:
            self._escalate(signal.SIGKILL, now)

    def _stop_requested(self, now: float) -> bool:
        # should_stop may be a Redis round trip: ask at most every POLL_INTERVAL
        if self.should_stop is None or now - self.last_poll < POLL_INTERVAL:
            return False
        self.last_poll = now
        return bool(self.should_stop())

    def drain_expired(self) -> bool:
        """True once the main process has been gone long enough for leftovers to be killed."""
        now = time.monotonic()
        if self.exited_at is None:
            self.exited_at = now
        return now - self.exited_at >= DRAIN_WAIT or self.stage > 0

    def _escalate(self, sig: int, now: float) -> None:
        if self.stopping_since is None:
            self.stopping_since = now
        self.stage += 1
        _signal_group(self.proc.pid, sig)


class Session:
    """One long-lived program that runs commands one after another, each as `run` would run a
    process of its own (timeout, cancel, streamed lines, merged output), in one cwd and
    environment: the embedded Terraform's session (runners.embedded_terraform) speaks it.

    The program reads a JSON line {"token": T, "args": [...], "cwd": DIR} per command from stdin
    and ends the command's output with a line "T EXIT_CODE"; T is new for each command. A command that is
    stopped (timeout, cancel) or a program that dies ends the session: later commands raise
    SessionEnded, and the caller starts afresh.
    """

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], sandbox: Sandbox = NO_SANDBOX,
                 grace: float = 10.0) -> None:
        self.cwd, self.grace = Path(cwd), grace
        self.proc, self._launch = _start(argv, self.cwd, env, sandbox, subprocess.PIPE)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=_read_lines, args=(self.proc.stdout, self._lines), daemon=True)
        self._reader.start()
        self.ended = False

    def run(self, args: Sequence[str], timeout: float, on_line: Optional[LineSink] = None,
            should_stop: Optional[StopCheck] = None, cwd: Optional[Path] = None) -> ProcessResult:
        """Run one command (in cwd, default the session's); raises SessionEnded when the session
        cannot run it, NotADirectoryError when cwd is missing."""
        if self.ended:
            raise SessionEnded("the session has ended")
        cwd = Path(cwd or self.cwd)
        if not cwd.is_dir():
            raise NotADirectoryError(f"working directory does not exist: {cwd}")
        token = secrets.token_hex(16)
        started = time.monotonic()
        try:
            assert self.proc.stdin is not None
            request = {"token": token, "args": list(args), "cwd": str(cwd)}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            self.close()
            raise SessionEnded("the session's program is gone") from None
        watcher = _Watcher(self.proc, started + timeout, should_stop, self.grace)
        collected: list[str] = []
        try:
            code = self._pump(token, collected, on_line, watcher)
        except BaseException:
            self.close()
            raise
        if code is None or watcher.stage:
            self.close()
            code = self.proc.returncode if code is None else code
        return ProcessResult(exit_code=code, output="\n".join(collected), timed_out=watcher.timed_out,
                             cancelled=watcher.cancelled, duration=time.monotonic() - started)

    def _pump(self, token: str, collected: list[str], on_line: Optional[LineSink],
              watcher: "_Watcher") -> Optional[int]:
        """Lines to on_line until the command's end line (its exit code) or the program's end (None)."""
        end = token + " "
        blank = False  # an empty line is held back: the one before the end line is the program's
        while True:
            try:
                line = self._lines.get(timeout=POLL_INTERVAL)
            except queue.Empty:
                if self.proc.poll() is not None and not self._reader.is_alive():
                    return None
            else:
                if line is None:
                    self.proc.wait()
                    return None
                if line.startswith(end) and line[len(end):].lstrip("-").isdigit():
                    return int(line[len(end):])
                if blank:
                    _emit("", collected, on_line)
                blank = not line
                if line:
                    _emit(line, collected, on_line)
            watcher.check()

    def close(self) -> None:
        """End the program: its process group killed. Between commands it has nothing to finish
        (each command ends cleanly before its end line), and asking it to exit costs ~30 ms."""
        if self.ended:
            return
        self.ended = True
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=1)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass  # a write it never read
        self._launch.finished()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionPool:
    """The sessions a job keeps open between its commands, one per (argv, environment, sandbox):
    a session is only reused by commands that would have started the same process (a sandbox
    binds what existed when it started: a later checkout's .git, read-only in a new sandbox,
    makes a new key). Starting a session of another key closes the others (one idle program at a
    time). `get` may come before the first command (a prestart): the program starts meanwhile."""

    def __init__(self) -> None:
        self._open: dict[tuple, Session] = {}

    def get(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], sandbox: Sandbox = NO_SANDBOX) -> Session:
        key = (tuple(argv), tuple(sorted(env.items())), sandbox)
        session = self._open.get(key)
        if session is None or session.ended:
            self.close()
            session = self._open[key] = Session(argv, cwd, env, sandbox)
        return session

    @property
    def open_sessions(self) -> list[Session]:
        return [session for session in self._open.values() if not session.ended]

    def close(self) -> None:
        for session in self._open.values():
            session.close()
        self._open.clear()


class SessionEnded(RuntimeError):
    """A Session cannot run another command (its program stopped or was stopped)."""
