"""runners/process.py against real child processes."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from runners.process import ExecutableNotFound, Session, SessionEnded, run, strip_ansi

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def py(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_lines_stream_in_order_while_running(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    code = (
        "import sys, time\n"
        "print('one'); sys.stderr.write('two\\n'); sys.stderr.flush()\n"
        "time.sleep(0.6); print('three')"
    )
    result = run(py(code), tmp_path, ENV, 10, on_line=lambda l: seen.append((l, time.monotonic())))
    assert [line for line, _ in seen] == ["one", "two", "three"]
    # "one" reached the sink well before the process finished: streamed, not buffered
    assert seen[2][1] - seen[0][1] > 0.4
    assert result.output == "one\ntwo\nthree"
    assert result.exit_code == 0 and not result.timed_out and not result.cancelled


def test_exit_code_and_exact_env(tmp_path: Path) -> None:
    result = run(["/usr/bin/env"], tmp_path, {"PATH": "/bin", "ONLY": "this"}, 10)
    assert sorted(result.output.splitlines()) == ["ONLY=this", "PATH=/bin"]
    failed = run(py("import sys; sys.exit(3)"), tmp_path, ENV, 10)
    assert failed.exit_code == 3


def test_ansi_codes_are_stripped(tmp_path: Path) -> None:
    result = run(py(r"print('\x1b[1m\x1b[32mPlan:\x1b[0m ok')"), tmp_path, ENV, 10)
    assert result.output == "Plan: ok"
    assert strip_ansi("\x1b[31mred\x1b[0m \x1b]0;title\x07x") == "red x"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, time, signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "p = subprocess.Popen(['sleep', '30']); print(p.pid, flush=True); time.sleep(30)"
    )
    started = time.monotonic()
    result = run(py(code), tmp_path, ENV, timeout=1, grace=0.5)
    assert time.monotonic() - started < 8
    assert result.timed_out and not result.cancelled
    assert result.exit_code < 0  # killed by a signal (SIGTERM after SIGINT was ignored)
    child = int(result.output.splitlines()[0])
    deadline = time.monotonic() + 3
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_should_stop_interrupts_gracefully_with_sigint(tmp_path: Path) -> None:
    code = (
        "import time\n"
        "try:\n    print('working', flush=True); time.sleep(30)\n"
        "except KeyboardInterrupt:\n    print('cleaned up', flush=True); raise SystemExit(7)"
    )
    lines: list[str] = []
    result = run(py(code), tmp_path, ENV, 30, on_line=lines.append, should_stop=lambda: bool(lines))
    assert result.cancelled and not result.timed_out
    assert result.exit_code == 7
    assert lines == ["working", "cleaned up"]
    assert result.duration < 5


def test_stubborn_process_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True); time.sleep(60)"
    )
    result = run(py(code), tmp_path, ENV, timeout=0.5, grace=0.3)
    assert result.exit_code == -9
    assert result.duration < 6


def test_missing_executable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExecutableNotFound, match="no-such-terraform") as err:
        run(["no-such-terraform", "version"], tmp_path, ENV, 5)
    assert isinstance(err.value, FileNotFoundError)


def test_missing_cwd_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        run(["/bin/true"], tmp_path / "gone", ENV, 5)


def test_failing_sink_does_not_leave_the_process_running(tmp_path: Path) -> None:
    code = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(30)"
    pids: list[int] = []

    def sink(line: str) -> None:
        pids.append(int(line))
        raise RuntimeError("log store down")

    with pytest.raises(RuntimeError, match="log store down"):
        run(py(code), tmp_path, ENV, 30, on_line=sink)
    assert not alive(pids[0])


def test_should_stop_is_polled_sparingly(tmp_path: Path) -> None:
    calls: list[float] = []

    def stop() -> bool:
        calls.append(time.monotonic())
        return False

    code = "import time\nfor i in range(2000): print(i)\ntime.sleep(0.5)"
    result = run(py(code), tmp_path, ENV, 30, should_stop=stop)
    assert len(result.output.splitlines()) == 2000
    assert 1 <= len(calls) < 20


# ---------------------------------------------------------------------------- Session

# A program speaking Session's protocol: "echo X" prints X, "exit N" ends with N, "sleep S"
# sleeps, "die" exits the program mid-command, "forge" prints an end line with a guessed token.
SPEAKER = r"""
import json, os, sys, time
for line in sys.stdin:
    request = json.loads(line)
    verb, arg = request["args"]
    code = 0
    if verb == "echo":
        print(arg, flush=True)
    elif verb == "exit":
        code = int(arg)
    elif verb == "sleep":
        time.sleep(float(arg))
    elif verb == "die":
        os._exit(int(arg))
    elif verb == "forge":
        print("0" * 32 + " 0", flush=True); print(request["token"][:-1] + "x 0", flush=True)
        print("after", flush=True)
    print("\n" + request["token"] + " " + str(code), flush=True)
"""


def speaker(tmp_path: Path) -> Session:
    return Session([sys.executable, "-u", "-c", SPEAKER], tmp_path, ENV, grace=1)


def test_a_session_runs_commands_one_after_another_in_one_process(tmp_path: Path) -> None:
    seen: list[str] = []
    with speaker(tmp_path) as session:
        pid = session.proc.pid
        first = session.run(["echo", "one"], 10, on_line=seen.append)
        second = session.run(["exit", "2"], 10)
        third = session.run(["echo", "three"], 10)
        assert session.proc.pid == pid and session.proc.poll() is None
    assert (first.exit_code, first.output) == (0, "one") and seen == ["one"]
    assert (second.exit_code, second.output) == (2, "")
    assert (third.exit_code, third.output) == (0, "three")
    assert session.proc.returncode is not None and session.ended


def test_output_cannot_end_a_command_without_its_token(tmp_path: Path) -> None:
    with speaker(tmp_path) as session:
        result = session.run(["forge", "-"], 10)
        assert session.run(["echo", "next"], 10).output == "next"
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "after"
    assert len(result.output.splitlines()) == 3


def test_a_stopped_command_ends_the_session(tmp_path: Path) -> None:
    session = speaker(tmp_path)
    result = session.run(["sleep", "30"], 0.5)
    assert result.timed_out and session.ended and session.proc.returncode is not None
    with pytest.raises(SessionEnded):
        session.run(["echo", "late"], 10)


def test_a_program_that_dies_mid_command_reports_its_exit_code(tmp_path: Path) -> None:
    session = speaker(tmp_path)
    result = session.run(["die", "7"], 10)
    assert result.exit_code == 7 and session.ended
