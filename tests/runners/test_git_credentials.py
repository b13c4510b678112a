"""runners/git_credentials.py: private modules fetched during `terraform init` with the bot's
credentials, from a real git smart-HTTP server that requires them, by the real embedded
Terraform inside real bubblewrap; the token reaches git through the helper only."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runners.embedded_terraform import embedded_argv, embedded_paths
from runners.environment import minimal_env
from runners.git_credentials import (
    HELPER,
    SOCKET_DIR,
    GitCredentials,
    answer,
    merge_git_config,
    origin_of,
    served,
)
from runners.sandbox import BUBBLEWRAP, Sandbox, probe
from runners.terraform import TerraformRunner
from tests.fakes.git_http import GitHttpServer
from tests.support import GitRepo

TOKEN = "ghs_" + "m0dul3" * 6
LOGIN = ("x-access-token", TOKEN)
CANARY = "canary-value-7b1e"
MODULE = 'output "greeting" { value = "hello from a private module" }\n'
BWRAP = shutil.which("bwrap")
needs_bwrap = pytest.mark.skipif(not BWRAP or bool(probe(BWRAP)), reason="bubblewrap cannot run here")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def forge_git(tmp_path: Path):
    """The forge's git over HTTP (requires TOKEN) with a private module repository."""
    root = tmp_path / "forge"
    repo = GitRepo(root / "acme", "modules")
    repo.commit({"main.tf": MODULE})
    repo.git("push", "-q", "origin", "main")
    with GitHttpServer.with_token(root, TOKEN) as server:
        yield server


@pytest.fixture
def job(tmp_path: Path):
    """A job's work dir (deep on purpose: its socket path exceeds a socket address' 107 bytes),
    its environment and its sandbox."""
    work = tmp_path / ("w" * 60) / "job-1-plan-p0"
    home, tmp = work / "home", work / "tmp"
    for path in (home, tmp):
        path.mkdir(parents=True)
    parent = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "LANG": "C.UTF-8", "TF_VAR_canary": CANARY}
    env = minimal_env(parent, home, tmp)
    sandbox = Sandbox(BUBBLEWRAP, BWRAP or "bwrap", read_only=(*embedded_paths(), HELPER), writable=(work,))
    return work, env, sandbox


def root_using(work: Path, source: str) -> Path:
    root = work / "repo" / "infra"
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.tf").write_text(
        f'module "m" {{\n  source = "{source}"\n}}\n'
        'output "o" { value = module.m.greeting }\n'
        'variable "canary" { type = string }\n'
        'resource "terraform_data" "env" {\n'
        '  provisioner "local-exec" {\n'
        # the name and a hash of the value of every variable Terraform's children see
        "    command = \"env | while IFS= read -r line; do printf '%s ' \\\"$${line%%=*}\\\"; "
        "printf '%s' \\\"$${line#*=}\\\" | sha256sum; done\"\n"
        "  }\n}\n")
    return root


def credentials(work: Path, origin: str, login=LOGIN) -> GitCredentials:
    return GitCredentials(origin, lambda: login, work)


def everything_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@needs_bwrap
def test_a_private_module_on_the_forge_is_fetched_with_the_bots_token(forge_git: GitHttpServer, job) -> None:
    work, env, sandbox = job
    root = root_using(work, f"git::{forge_git.url}/acme/modules.git?ref=main")
    lines: list[str] = []
    runner = TerraformRunner(embedded_argv(), env, 120, sandbox=sandbox,
                             git_credentials=credentials(work, forge_git.url))
    plan = runner.plan(root, "default", work / "out", on_line=lines.append)
    assert plan.ok, plan.output
    assert "hello from a private module" in plan.output
    assert {r.username for r in forge_git.fetched("acme/modules.git")} == {"x-access-token"}
    assert any("git credentials of the bot offered for " + forge_git.url in line for line in lines)
    applied = runner.apply(root, "default", Path(plan.plan_file or ""), on_line=lines.append)
    assert applied.ok, applied.output
    seen = dict(re.findall(r"\(local-exec\): (\S+) ([0-9a-f]{64})", applied.output))
    # what Terraform's children saw: the canary (proof the check can fail), never the token
    assert seen.get("TF_VAR_canary") == sha(CANARY)
    assert sha(TOKEN) not in applied.output and sha(f"{LOGIN[0]}:{TOKEN}") not in applied.output
    assert not [name for name in seen if name.startswith("GIT_")], seen  # the helper's config: init only
    # never on disk (the module's clone, its .git/config, plan files...) nor in the log
    assert TOKEN.encode() not in everything_under(work)
    assert TOKEN not in "\n".join(lines)
    assert not (work / SOCKET_DIR).exists() or not any((work / SOCKET_DIR).iterdir())


@needs_bwrap
def test_without_credentials_the_private_module_is_refused(forge_git: GitHttpServer, job) -> None:
    work, env, sandbox = job
    root = root_using(work, f"git::{forge_git.url}/acme/modules.git")
    plan = TerraformRunner(embedded_argv(), env, 120, sandbox=sandbox).plan(root, "default", work / "out")
    assert not plan.ok and plan.failed_step == "init"
    assert not forge_git.fetched("acme/modules.git")


@needs_bwrap
def test_another_host_gets_nothing(forge_git: GitHttpServer, job, tmp_path: Path) -> None:
    work, env, sandbox = job
    other_root = tmp_path / "other"
    other = GitRepo(other_root / "acme", "modules")
    other.commit({"main.tf": MODULE})
    other.git("push", "-q", "origin", "main")
    with GitHttpServer.with_token(other_root, TOKEN) as elsewhere:  # same token accepted, another origin (port)
        root = root_using(work, f"git::{elsewhere.url}/acme/modules.git")
        runner = TerraformRunner(embedded_argv(), env, 120, sandbox=sandbox,
                                 git_credentials=credentials(work, forge_git.url))
        plan = runner.plan(root, "default", work / "out")
        assert not plan.ok and plan.failed_step == "init", plan.output
        assert elsewhere.requests and not any(r.username for r in elsewhere.requests)


@needs_bwrap
def test_a_planted_global_git_config_never_hears_the_token(forge_git: GitHttpServer, job) -> None:
    """A pull request's code that ran earlier in the job (a hook) may have written ~/.gitconfig:
    a helper of its own would be told the credentials on `store`, a hooks path would run its code
    while the socket is served. Git ignores the global config while credentials are offered."""
    work, env, sandbox = job
    leak = work / "leak.txt"
    hooks = work / "evil-hooks"
    hooks.mkdir()
    host = forge_git.url.split("://", 1)[1]
    # what an attacker's hook does: ask git (hence the socket) for the forge's credentials
    (hooks / "post-checkout").write_text(
        f"#!/bin/sh\nprintf 'protocol=http\\nhost={host}\\n\\n' | git credential fill >> {leak} 2>&1\n")
    (hooks / "post-checkout").chmod(0o755)
    Path(env["HOME"], ".gitconfig").write_text(
        f'[credential]\n\thelper = "!f() {{ cat >> {leak}; }}; f"\n[core]\n\thooksPath = {hooks}\n')
    root = root_using(work, f"git::{forge_git.url}/acme/modules.git")
    runner = TerraformRunner(embedded_argv(), env, 120, sandbox=sandbox,
                             git_credentials=credentials(work, forge_git.url))
    plan = runner.plan(root, "default", work / "out")
    assert plan.ok, plan.output
    assert not leak.exists() or TOKEN not in leak.read_text()


def test_the_helper_answers_for_the_origin_only_and_only_while_served(tmp_path: Path) -> None:
    origin = "https://git.example.com:8443"
    with served(credentials(tmp_path, origin)) as env:
        key = env["GIT_CONFIG_KEY_1"]
        assert key == f"credential.{origin}.helper" and env["GIT_CONFIG_VALUE_0"] == ""
        socket_path = env["GIT_CONFIG_VALUE_1"].rsplit(" ", 1)[-1].strip("'")
        assert ask(socket_path, "protocol=https\nhost=git.example.com:8443\npath=acme/m.git\n") == \
            f"username=x-access-token\npassword={TOKEN}\n"
        assert ask(socket_path, "protocol=https\nhost=git.example.com\n") == ""  # another port
        assert ask(socket_path, "protocol=http\nhost=git.example.com:8443\n") == ""  # another scheme
        assert ask(socket_path, "protocol=https\nhost=evil.example\n") == ""
        assert TOKEN not in repr(env) and oct(Path(socket_path).stat().st_mode)[-3:] == "600"
    assert not Path(socket_path).exists()
    assert ask(socket_path, "protocol=https\nhost=git.example.com:8443\n") == ""


def ask(socket_path: str, request: str, action: str = "get") -> str:
    """Run the helper program as git does."""
    out = subprocess.run([sys.executable, "-I", "-S", str(HELPER), socket_path, action], input=request.encode(),
                         capture_output=True, timeout=30, check=True)
    return out.stdout.decode()


def test_store_and_erase_say_nothing(tmp_path: Path) -> None:
    with served(credentials(tmp_path, "https://h")) as env:
        socket_path = env["GIT_CONFIG_VALUE_1"].rsplit(" ", 1)[-1].strip("'")
        assert ask(socket_path, "protocol=https\nhost=h\n", "store") == ""


def test_nothing_is_served_without_a_login(tmp_path: Path) -> None:
    with served(credentials(tmp_path, "https://h", login=None)) as env:
        assert env == {}
    with served(None) as env:
        assert env == {}


@pytest.mark.parametrize("url, origin", [
    ("https://github.com/acme/infra.git", "https://github.com"),
    ("https://x-access-token:abc@GitLab.Example.com:8443/g/p.git", "https://gitlab.example.com:8443"),
    ("http://127.0.0.1:3000/acme/infra.git", "http://127.0.0.1:3000"),
    ("/srv/git/acme/infra.git", None),
    ("git@github.com:acme/infra.git", None),
    ("ssh://git@github.com/acme/infra.git", None),
])
def test_origin_of(url: str, origin) -> None:
    assert origin_of(url) == origin


def test_answer_ignores_a_login_that_would_break_the_protocol() -> None:
    assert answer(b"protocol=https\nhost=h\n", "https://h", ("u", "p\nusername=evil")) == b""


def test_git_config_entries_are_appended_after_existing_ones() -> None:
    env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "a.b", "GIT_CONFIG_VALUE_0": "c", "PATH": "/bin"}
    extra = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "d.e", "GIT_CONFIG_VALUE_0": "f", "GIT_TERMINAL_PROMPT": "0"}
    merged = merge_git_config(env, extra)
    assert merged["GIT_CONFIG_COUNT"] == "2" and merged["GIT_CONFIG_KEY_1"] == "d.e"
    assert merged["GIT_CONFIG_KEY_0"] == "a.b" and merged["GIT_TERMINAL_PROMPT"] == "0"
    assert merge_git_config(env, {}) == env
