"""Hostile pull requests against the runners bot.engines builds: real bubblewrap, real embedded
Terraform. What a pull request's code could reach before the sandbox, it must not reach now."""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot import cli
from bot.context import TREES_DIR
from bot.engines import CLI_CONFIG, GIT_CACHE, job_sandbox, runner_for, sandbox_status
from bot.errors import SettingsError, UserFacingError
from bot.settings import TerraformSettings
from bot.settings_loader import load_settings
from runners.embedded_terraform import embedded_argv
from runners.environment import minimal_env
from runners.git import RepoCache
from runners.models import Project
from runners.process import run
from runners.repo_config_schema import Step, Workflow
from runners.sandbox import BUBBLEWRAP, NO_SANDBOX, probe
from runners.terraform import TerraformRunner
from runners.workflows import WorkflowRunner
from runners.workspace import create_workspace
from runners.worktrees import WorkTrees
from tests.support import GitRepo

BWRAP = shutil.which("bwrap")
pytestmark = pytest.mark.skipif(not BWRAP or bool(probe(BWRAP)), reason="bubblewrap cannot run here")

PLANTED = "planted-secret-in-data-dir-4711"
CONFIG_SECRET = "ui-password-from-config-0815"
ENV_SECRET = "ui-password-from-environ-2342"
OTHER_JOB_SECRET = "other-jobs-plan-output-1337"
EVIL_PLUGIN = "terraform.d/plugins/registry.terraform.io/evil/evil/1.0.0/linux_amd64/terraform-provider-evil_v1.0.0"
EVIL_MAIN = ('terraform {\n  required_providers {\n    evil = {\n      source  = "evil/evil"\n'
             '      version = "1.0.0"\n    }\n  }\n}\nresource "evil_thing" "x" {}\n')


@pytest.fixture
def host(tmp_path: Path):
    """A worker's machine: data_dir with a planted secret, another job's work dir, a Redis
    socket, the config file, and a process whose environment holds a PLANKEEPER_ secret."""
    data = tmp_path / "data"
    settings = dataclasses.replace(load_settings(None, {}), data_dir=data,
                                   terraform=TerraformSettings(binary="embedded", timeout=120))
    job, other = create_workspace(data / "work", "job-1"), create_workspace(data / "work", "job-2")
    (data / "planted-secret").write_text(PLANTED)
    (other.root / "plan-output").write_text(OTHER_JOB_SECRET)
    config = tmp_path / "plankeeper.yaml"
    config.write_text(f"ui:\n  password: {CONFIG_SECRET}\n")
    redis_socket = socket.socket(socket.AF_UNIX)
    redis_socket.bind(str(data / "redis.sock"))
    redis_socket.listen()
    worker = subprocess.Popen(["sleep", "120"], env={"PATH": "/usr/bin:/bin", "PLANKEEPER_UI__PASSWORD": ENV_SECRET})
    yield {"settings": settings, "job": job, "other": other, "data": data, "config": config}
    worker.kill()
    worker.wait()
    redis_socket.close()


SPY = """\
echo "uid=$(id -u)"
cat {data}/planted-secret 2>/dev/null || echo "planted: hidden"
cat {config} 2>/dev/null || echo "config: hidden"
cat {other}/plan-output 2>/dev/null || echo "other job: hidden"
ls {data}/work
cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep PLANKEEPER_ || echo "environ: clean"
grep -l 'sle[e]p' /proc/[0-9]*/cmdline 2>/dev/null | head -1 || true
"{python}" -I -S -c "import socket; socket.socket(socket.AF_UNIX).connect('{data}/redis.sock'); print('redis: connected')" \
  2>/dev/null || echo "redis: unreachable"
"""


def spy(host: dict, settings) -> str:
    """A custom workflow's `run` step that goes looking for the bot's secrets; its output."""
    job = host["job"]
    repo = job.resolve("repo")
    repo.mkdir()
    terraform = runner_for(Project("."), settings, job)
    assert isinstance(terraform, TerraformRunner)
    script = SPY.format(data=host["data"], config=host["config"], other=host["other"].root, python=sys.executable)
    workflow = Workflow("spy", plan=(Step("run", command=script),))
    result = WorkflowRunner(terraform, workflow, {}, 60).plan(repo, "default", job.resolve("out"))
    assert result.ok, result.output
    return result.output


def test_a_run_step_finds_the_bots_secrets_without_a_sandbox(host) -> None:
    """The attack works on an unsandboxed job: the checks below are not vacuous."""
    output = spy(host, dataclasses.replace(host["settings"], sandbox="none"))
    for found in (PLANTED, CONFIG_SECRET, OTHER_JOB_SECRET, ENV_SECRET, "job-2", "redis: connected", "/proc/"):
        assert found in output


def test_a_run_step_in_the_sandbox_finds_nothing_of_the_bot(host) -> None:
    output = spy(host, host["settings"])
    for secret in (PLANTED, CONFIG_SECRET, OTHER_JOB_SECRET, ENV_SECRET):
        assert secret not in output
    assert "uid=65534" in output
    assert "planted: hidden" in output and "config: hidden" in output and "other job: hidden" in output
    assert "environ: clean" in output  # its /proc is its own PID namespace's: no worker in it
    assert "/proc/" not in output  # and the host's `sleep` (the "worker") is not among its processes
    assert "job-1" in output and "job-2" not in output  # its own work dir only
    assert "redis: unreachable" in output


def test_terraform_runs_a_provider_from_the_repo_without_the_bots_cli_config(host) -> None:
    """terraform.d/plugins in a pull request is an implied local mirror: no network needed."""
    root, evidence = plant_evil_provider(host["job"])
    env = minimal_env({"PATH": "/usr/bin:/bin"}, host["job"].home, host["job"].tmp)
    TerraformRunner(embedded_argv(), env, 120).plan(root, "default", host["job"].resolve("out"))
    assert evidence.exists()


def test_terraform_never_installs_a_provider_committed_to_the_repo(host) -> None:
    root, evidence = plant_evil_provider(host["job"])
    runner = runner_for(Project("infra/app"), host["settings"], host["job"])
    result = runner.plan(root, "default", host["job"].resolve("out"))
    assert not result.ok and result.failed_step == "init", result.output
    assert "evil/evil" in result.output
    assert not evidence.exists()
    config = host["data"] / CLI_CONFIG
    assert "provider_installation" in config.read_text() and "direct {}" in config.read_text()


def test_a_terraform_dir_committed_to_the_repo_is_removed_before_init(host) -> None:
    root, evidence = plant_evil_provider(host["job"])
    committed = root / ".terraform/providers/registry.terraform.io/evil/evil/1.0.0/linux_amd64"
    committed.mkdir(parents=True)
    shutil.copy(root / EVIL_PLUGIN, committed / "terraform-provider-evil_v1.0.0")
    lines: list[str] = []
    runner = runner_for(Project("infra/app"), host["settings"], host["job"])
    result = runner.plan(root, "default", host["job"].resolve("out"), on_line=lines.append)
    assert not result.ok and not evidence.exists()
    assert "$ removing .terraform that came with the repository" in lines
    assert not (committed / "terraform-provider-evil_v1.0.0").exists()


def plant_evil_provider(job) -> tuple[Path, Path]:
    """The pull request of issue 14: a script committed as a provider; it leaves evidence."""
    root, evidence = job.resolve("repo/infra/app"), job.root / "evil-ran"
    plugin = root / EVIL_PLUGIN
    plugin.parent.mkdir(parents=True)
    plugin.write_text(f"#!/bin/sh\ncat /proc/*/environ > {evidence} 2>/dev/null; ls -la / >> {evidence}\nexit 1\n")
    plugin.chmod(0o755)
    (root / "main.tf").write_text(EVIL_MAIN)
    return root, evidence


def test_sandbox_status_and_a_required_sandbox_that_is_missing(host, monkeypatch) -> None:
    settings, job = host["settings"], host["job"]
    assert sandbox_status(settings) == ("bubblewrap", "")
    assert job_sandbox(settings, job).kind == BUBBLEWRAP
    kind, warning = sandbox_status(dataclasses.replace(settings, sandbox="none"))
    assert kind == "none" and "sandbox: none" in warning
    assert job_sandbox(dataclasses.replace(settings, sandbox="none"), job) is NO_SANDBOX
    monkeypatch.setenv("PATH", os.fspath(host["data"]))  # no bwrap on PATH
    kind, warning = sandbox_status(settings)
    assert kind == "none" and "bubblewrap" in warning and "not on PATH" in warning
    assert job_sandbox(settings, job) is NO_SANDBOX  # auto: run, with the warning at start
    with pytest.raises(UserFacingError, match="requires a sandbox"):
        job_sandbox(dataclasses.replace(settings, sandbox="bubblewrap"), job)


def test_a_checkouts_git_dir_is_read_only_in_the_sandbox(host) -> None:
    repo = host["job"].resolve("repo")
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text("[core]\n")
    script = "echo '[core] fsmonitor = evil' >> .git/config || echo refused; echo ok > made"
    sandbox = job_sandbox(host["settings"], host["job"])
    result = run_in(sandbox, script, repo)
    assert "refused" in result and (repo / "made").read_text() == "ok\n"
    assert (repo / ".git" / "config").read_text() == "[core]\n"


def run_in(sandbox, script: str, cwd: Path) -> str:
    return run(["/bin/sh", "-c", script], cwd, {"PATH": "/usr/bin:/bin"}, 30, sandbox=sandbox).output


def test_serve_warns_without_a_sandbox_and_refuses_to_start_when_one_is_required(host, monkeypatch, caplog) -> None:
    monkeypatch.setenv("PATH", os.fspath(host["data"]))  # no bwrap on PATH
    with caplog.at_level(logging.WARNING, logger="plankeeper"):
        cli._check_sandbox(host["settings"])
    assert "SECURITY: no sandbox: `bwrap` is not on PATH" in caplog.text
    with pytest.raises(SettingsError, match="sandbox: bubblewrap, but `bwrap` is not on PATH"):
        cli._check_sandbox(dataclasses.replace(host["settings"], sandbox="bubblewrap"))


def test_sandbox_paths_are_bound_read_only_or_writable(host) -> None:
    state, certs = host["data"].parent / "state", host["data"].parent / "certs"
    settings = dataclasses.replace(host["settings"], sandbox_paths=(f"{state}:rw", str(certs)))
    sandbox = job_sandbox(settings, host["job"])
    assert state in sandbox.writable and host["job"].root in sandbox.writable
    assert certs in sandbox.read_only and certs not in sandbox.writable
    assert host["data"] not in sandbox.read_only + sandbox.writable


def test_a_kept_work_tree_reads_its_mirror_and_nothing_else(host, tmp_path) -> None:
    from_git = {"PATH": "/usr/bin:/bin"}
    repos = {name: GitRepo(tmp_path / "git" / name, name) for name in ("infra", "other")}
    heads = {name: repo.commit({"main.tf": "# x\n"}, "initial") for name, repo in repos.items()}
    trees = WorkTrees(host["data"] / TREES_DIR, RepoCache(host["data"] / GIT_CACHE, from_git))
    leases = {name: trees.lease(f"github.com/acme/{name}", "pull-1", host["other"].resolve(name) if name == "other"
                                else host["job"].resolve(name)) for name in ("other", "infra")}
    for name, lease in leases.items():  # the other repository's mirror sits next to this one's
        trees.check_out(lease, repos[name].clone_url, heads[name])
    lease = leases["infra"]
    mirror, other = (trees.cache.mirror_path(repos[name].clone_url) for name in ("infra", "other"))
    script = (f"git rev-parse HEAD; echo x >> .git || echo refused; touch {mirror}/planted || echo read-only; "
              f"ls {other} >/dev/null 2>&1 || echo other: hidden")
    result = run_in(job_sandbox(host["settings"], host["job"]), script, lease.tree)
    assert heads["infra"] in result, result  # git works in the sandbox, as in a clone
    assert "refused" in result and "read-only" in result and "other: hidden" in result, result
    assert not (mirror / "planted").exists()
