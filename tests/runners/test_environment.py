"""runners/environment.py: what a Terraform process may see."""
from __future__ import annotations

from pathlib import Path

from runners.environment import minimal_env

PARENT = {
    "PATH": "/usr/bin",
    "LANG": "en_US.UTF-8",
    "LC_ALL": "C",
    "https_proxy": "http://proxy:3128",
    "AWS_ACCESS_KEY_ID": "AKIA...",
    "ARM_CLIENT_ID": "x",
    "TF_VAR_region": "eu-west-1",
    "PLANKEEPER_GITHUB__TOKEN": "ghp_secret",
    "GITHUB_TOKEN": "ghp_secret",
    "GH_TOKEN": "ghp_secret",
    "GITLAB_TOKEN": "glpat",
    "REDIS_URL": "redis://:pw@host",
    "HOME": "/root",
    "SECRET_THING": "nope",
    "CUSTOM": "yes",
}


def test_allowlist_only(tmp_path: Path) -> None:
    env = minimal_env(PARENT, tmp_path / "h", tmp_path / "t")
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "en_US.UTF-8",
        "LC_ALL": "C",
        "https_proxy": "http://proxy:3128",
        "AWS_ACCESS_KEY_ID": "AKIA...",
        "ARM_CLIENT_ID": "x",
        "TF_VAR_region": "eu-west-1",
        "HOME": str(tmp_path / "h"),
        "TMPDIR": str(tmp_path / "t"),
    }


def test_passthrough_never_lets_bot_secrets_through(tmp_path: Path) -> None:
    env = minimal_env(
        PARENT,
        tmp_path,
        tmp_path,
        extra={"TF_IN_AUTOMATION": "1", "HOME": "/override"},
        passthrough=["CUSTOM", "GITHUB_TOKEN", "PLANKEEPER_GITHUB__TOKEN", "REDIS_URL"],
    )
    assert env["CUSTOM"] == "yes"
    assert env["TF_IN_AUTOMATION"] == "1"
    assert env["HOME"] == "/override"  # extra is applied last
    assert not {"GITHUB_TOKEN", "PLANKEEPER_GITHUB__TOKEN", "REDIS_URL", "SECRET_THING"} & set(env)
