"""runners/sandbox.py: the bwrap argument list, and real bubblewrap around real processes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from runners.embedded_terraform import embedded_argv, embedded_paths
from runners.process import DRAIN_WAIT, ExecutableNotFound, run
from runners.sandbox import BUBBLEWRAP, LAUNCHER, NO_SANDBOX, Sandbox, probe
from runners.terraform import TerraformRunner

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
BWRAP = shutil.which("bwrap")
needs_bwrap = pytest.mark.skipif(not BWRAP or bool(probe(BWRAP)),
                                 reason=f"bubblewrap cannot run here: {BWRAP and probe(BWRAP)}")


def box(*writable: Path, read_only: tuple[Path, ...] = ()) -> Sandbox:
    return Sandbox(BUBBLEWRAP, BWRAP or "bwrap", read_only=read_only, writable=tuple(writable))


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


# ---------------------------------------------------------------------------- argument list


def test_no_sandbox_runs_the_argv_as_it_is(tmp_path: Path) -> None:
    assert NO_SANDBOX.wrap(["terraform", "plan"], tmp_path, 5, 6) == ["terraform", "plan"]
    launch = NO_SANDBOX.launch(["terraform", "plan"], tmp_path, {"A": "1"})
    assert launch.argv == ["terraform", "plan"] and launch.env == {"A": "1"} and launch.pass_fds == ()


def test_bubblewrap_argv_isolates_and_binds_only_what_it_is_given(tmp_path: Path) -> None:
    work, tool = tmp_path / "data" / "work" / "job-1", tmp_path / "bin" / "terraform"
    args = Sandbox(BUBBLEWRAP, "/usr/bin/bwrap", read_only=(tool,), writable=(work,)).wrap(
        ["terraform", "plan"], work / "repo", 7, 8)
    assert args[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in args
    assert flag_values(args, "--uid") == ["65534"] and flag_values(args, "--gid") == ["65534"]
    assert flag_values(args, "--cap-drop") == ["ALL"]
    assert flag_values(args, "--proc") == ["/proc"] and flag_values(args, "--dev") == ["/dev"]
    assert flag_values(args, "--tmpfs") == ["/tmp"]
    assert "--unshare-net" not in args  # providers need the network
    assert flag_values(args, "--bind-try") == [str(work)]  # the only writable path
    read_only = flag_values(args, "--ro-bind-try") + flag_values(args, "--ro-bind")
    assert str(tool) in read_only and "/usr" in read_only
    assert "/etc" not in read_only and "/etc/shadow" not in read_only and "/etc/ssl/private" not in read_only
    assert "/etc/resolv.conf" in read_only and "/etc/passwd" in read_only
    assert not any(p.startswith(str(tmp_path / "data")) and p != str(work) for p in read_only)
    assert "/" not in read_only and "/proc" not in read_only
    assert args.index(str(work)) < args.index(str(tool))  # read-only paths inside stay read-only
    assert flag_values(args, "--chdir") == [str(work / "repo")]
    tail = args[args.index("--") + 1:]
    assert tail == [sys.executable, "-I", "-S", "-c", LAUNCHER, "7", "8", "terraform", "plan"]


def test_launch_keeps_the_environment_off_the_command_line(tmp_path: Path) -> None:
    launch = box(tmp_path).launch(["sh", "-c", "true"], tmp_path, {"TF_VAR_password": "hunter2-value"})
    try:
        assert launch.env == {}  # bwrap itself runs with nothing a workflow step could set (LD_PRELOAD)
        assert not any("hunter2-value" in a for a in launch.argv)
        env_fd = launch.pass_fds[0]
        assert os.read(env_fd, 1000) == b"TF_VAR_password=hunter2-value\0"
    finally:
        launch.finished()


# ---------------------------------------------------------------------------- real bubblewrap


@needs_bwrap
def test_sandboxed_process_sees_only_its_binds(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("not for you")
    script = (f"id -u; hostname; cat {outside}/secret; ls /proc | grep -c '^[0-9]'; echo $ONLY; "
              f"echo hi > written && cat written; touch /usr/x 2>/dev/null || echo usr-read-only")
    result = run(["/bin/sh", "-c", script], work, {**ENV, "ONLY": "this"}, 30, sandbox=box(work))
    lines = result.output.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[0] == "65534" and lines[1] == "plankeeper-sandbox"
    assert "not for you" not in result.output and "No such file" in lines[2]
    assert int(lines[3]) < 10  # its own PID namespace: bwrap's init, the shell, a few helpers
    assert lines[4:] == ["this", "hi", "usr-read-only"]
    assert (work / "written").read_text() == "hi\n"


@needs_bwrap
def test_missing_program_is_named_before_entering_the_sandbox(tmp_path: Path) -> None:
    with pytest.raises(ExecutableNotFound, match="no-such-terraform"):
        run(["no-such-terraform", "version"], tmp_path, ENV, 5, sandbox=box(tmp_path))


@needs_bwrap
def test_embedded_terraform_runs_and_is_interrupted_gracefully(tmp_path: Path) -> None:
    root, home, tmp = tmp_path / "root", tmp_path / "home", tmp_path / "tmp"
    for path in (root, home, tmp):
        path.mkdir()
    (root / "main.tf").write_text('resource "terraform_data" "x" {\n  input = "slow"\n'
                                  '  provisioner "local-exec" {\n    command = "sleep 30"\n  }\n}\n')
    env = {**ENV, "HOME": str(home), "TMPDIR": str(tmp)}
    sandbox = box(tmp_path, read_only=tuple(embedded_paths()))
    plan = TerraformRunner(embedded_argv(), env, 60, sandbox=sandbox).plan(root, "default", tmp_path / "out")
    assert plan.ok, plan.output
    result = TerraformRunner(embedded_argv(), env, 3, sandbox=sandbox).apply(root, "default", Path(plan.plan_file))
    assert not result.ok and "timed out after 3s" in result.error
    # SIGINT reached Terraform, not bwrap: it stopped cleanly instead of being killed with it
    assert "Interrupt received" in result.output and "Gracefully shutting down" in result.output


JOB = """
import sys
from pathlib import Path
from runners.process import run
from runners.sandbox import Sandbox
work = Path(sys.argv[1])
script = 'trap "echo interrupted > interrupted; exit 0" INT; echo up > ready; while :; do sleep 0.1; done'
run(["/bin/sh", "-c", script], work, {"PATH": "/usr/bin:/bin"}, 60,
    sandbox=Sandbox("bubblewrap", sys.argv[2], writable=(work,)))
"""


@needs_bwrap
def test_sandboxed_process_is_interrupted_when_its_job_dies(tmp_path: Path) -> None:
    job = subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path), BWRAP or "bwrap"],
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    deadline = time.monotonic() + 30
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "ready").exists()
    job.send_signal(signal.SIGKILL)  # the work-horse dies; nobody signals the sandbox
    job.wait()
    deadline = time.monotonic() + 10
    while not (tmp_path / "interrupted").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "interrupted").read_text() == "interrupted\n"


@needs_bwrap
def test_nothing_a_sandboxed_program_leaves_running_outlives_it(tmp_path: Path) -> None:
    """The launcher is the PID namespace's init (--as-pid-1): when it exits, the kernel kills
    whatever the program left behind (an external data source's background child, in a session of
    its own so that no signal to the job's process group reaches it), which could otherwise
    rewrite the saved plan, or a later job's files, after the step."""
    sleeper = "sleep 31.4159"
    result = run(["/bin/sh", "-c", f"setsid {sleeper} >/dev/null 2>&1 & echo started"], tmp_path, ENV, 30,
                 sandbox=box(tmp_path))
    assert result.exit_code == 0 and result.output == "started"
    assert result.duration < DRAIN_WAIT  # gone with the program, not killed after the drain wait
    left = [p for p in psutil.process_iter(["cmdline"]) if " ".join(p.info["cmdline"] or ()) == sleeper]
    assert left == []
