"""End to end through a real `plankeeper serve`: a private module on the forge's own git (smart
HTTP, the bot's token required) is fetched during init with the bot's credentials
(`terraform.git_credentials`), and the token is nowhere Terraform, the disk or the logs show."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.fakes.git_http import GitHttpServer
from tests.fakes.github import FakeGitHub
from tests.support import GitRepo, github_comment_payload, github_pr_payload

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
TOKEN = "ghp_" + "pr1vat3m0d" * 4
CANARY = "canary-in-the-server-env-31"
MODULE = 'output "greeting" { value = "hello from a private module" }\n'


@pytest.fixture
def fake_github():  # the conftest's serve_factory runs against this one: the bot's token is TOKEN
    with FakeGitHub(token=TOKEN, login="plankeeper-bot") as fake:
        yield fake


@pytest.fixture
def forge_git(tmp_path: Path):
    with GitHttpServer.with_token(tmp_path / "forge", TOKEN) as server:
        yield server


def root(url: str) -> str:
    return (f'module "m" {{\n  source = "git::{url}/acme/modules.git?ref=main"\n}}\n'
            'output "o" { value = module.m.greeting }\n'
            'resource "terraform_data" "env" {\n  provisioner "local-exec" {\n'
            "    command = \"env | while IFS= read -r line; do printf '%s ' \\\"$${line%%=*}\\\"; "
            "printf '%s' \\\"$${line#*=}\\\" | sha256sum; done\"\n  }\n}\n")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_private_module_is_fetched_with_the_bots_token_which_never_leaks(fake_github, forge_git, serve_factory,
                                                                         tmp_path: Path):
    modules = GitRepo(tmp_path / "forge" / "acme", "modules")
    modules.commit({"main.tf": MODULE})
    infra = GitRepo(tmp_path / "forge" / "acme", "infra")
    base = infra.commit({"README.md": "infra\n"}, "initial")
    head = infra.commit({"infra/app/main.tf": root(forge_git.url)}, "use the module", branch="feature-7")
    fake_github.add_repo(REPO, f"{forge_git.url}/acme/infra.git")  # the checkout needs the token too
    fake_github.add_pull(REPO, 7, head, "feature-7", "main", "alice", files=["infra/app/main.tf"], base_sha=base)
    fake_github.set_permission(REPO, "alice", "write")
    server = serve_factory({"github": {"token": TOKEN}, "defaults": {"apply_requirements": []}},
                           env={"TF_VAR_canary": CANARY})

    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    plan = next(c["body"] for c in fake_github.comments(REPO, 7) if c["body"].startswith("**Plankeeper plan**"))
    assert "hello from a private module" in plan, plan
    assert {r.username for r in forge_git.fetched("acme/modules.git")} == {"x-access-token"}

    server.deliver_github("issue_comment", github_comment_payload(fake_github, REPO, 7, "/apply", "alice"),
                          WEBHOOK_SECRET)
    server.wait_jobs_idle()
    applied = next(c["body"] for c in fake_github.comments(REPO, 7) if c["body"].startswith("**Plankeeper apply**"))
    seen = dict(re.findall(r"\(local-exec\): (\S+) ([0-9a-f]{64})", applied))
    assert seen.get("TF_VAR_canary") == sha(CANARY), applied  # the check sees the server's variables
    assert sha(TOKEN) not in applied and not [n for n in seen if n.startswith("GIT_")], seen

    data_dir = Path(server.config["data_dir"])
    on_disk = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file() and not p.is_symlink())
    assert TOKEN.encode() not in on_disk
    assert TOKEN not in server.log()
