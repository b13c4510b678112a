"""Credentials for Terraform: terraform.env_passthrough and repos[].env, asserted from inside a
real run (a server-side workflow's `run` step in the sandbox, through bot.execution.plan_in),
and the bot's own secrets never among them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot import execution
from bot.engines import process_env, runner_for
from bot.errors import SettingsError, UserFacingError
from bot.runs import store
from bot.settings import RepoEntry, TerraformSettings
from bot.settings_loader import load_settings
from bot.state import keys
from runners.environment import is_allowed, minimal_env
from runners.models import Project
from runners.workspace import create_workspace
from tests.bot.conftest import JOB_TOKEN
from tests.support_jobs import FULL

TF_TOKEN = "tf-token-passed-through-1234"
ENV_PLANKEEPER = "plankeeper-env-token-5678"
REPO_SECRET = "repo-secret-value-4242"
FILE_SECRET = "repo-secret-from-file-9090"


def spy_repo(env: dict, command: str) -> RepoEntry:
    workflows = {"spy": {"plan": {"steps": [{"run": command}]}}}
    return RepoEntry(id="github.com/" + FULL, workflow="spy", workflows=workflows, env=env)


@pytest.fixture
def server_env(monkeypatch):
    monkeypatch.setenv("TF_TOKEN_example_com", TF_TOKEN)
    monkeypatch.setenv("VAULT_ADDR", "https://vault.example.com")
    monkeypatch.setenv("PLANKEEPER_GITHUB__TOKEN", ENV_PLANKEEPER)
    monkeypatch.setenv("MY_FORGE_CREDS", JOB_TOKEN)  # a passed name that holds github.token's value
    monkeypatch.setenv("NOT_LISTED", "not-listed-value-777")


def test_passthrough_and_repo_env_reach_the_run_and_the_bots_secrets_do_not(bench_factory, server_env,
                                                                            tmp_path: Path) -> None:
    secret_file = tmp_path / "vault-token"
    secret_file.write_text(FILE_SECRET + "\n")
    passthrough = ("TF_TOKEN_*", "VAULT_ADDR", "MY_*")
    bench = bench_factory(terraform=TerraformSettings(env_passthrough=passthrough),
                          repos=(spy_repo({"REPO_SECRET": REPO_SECRET, "FROM_FILE": {"file": str(secret_file)}},
                                          "env > env.txt"),))
    pull = bench.open_pull()
    with bench.job() as ctx:
        repo_dir = ctx.checkout(pull)
        effective = execution.effective_for(ctx, pull, repo_dir, Project("infra/app"))
        result = execution.plan_in(ctx, pull, repo_dir, effective)
        assert result.ok, (result.failed_step, result.error, result.output)
        [evidence] = ctx.workspace.root.rglob("env.txt")
        text = evidence.read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert env["TF_TOKEN_example_com"] == TF_TOKEN
    assert env["VAULT_ADDR"] == "https://vault.example.com"
    assert (env["REPO_SECRET"], env["FROM_FILE"]) == (REPO_SECRET, FILE_SECRET)
    assert "MY_FORGE_CREDS" not in env and "NOT_LISTED" not in env
    for secret in (JOB_TOKEN, ENV_PLANKEEPER):
        assert secret not in text
    assert not any(name.startswith("PLANKEEPER_") for name in env)


def test_repo_env_is_masked_in_the_plan_comment_and_the_job_log(bench_factory, server_env) -> None:
    bench = bench_factory(terraform=TerraformSettings(env_passthrough=("TF_TOKEN_*",)),
                          repos=(spy_repo({"REPO_SECRET": REPO_SECRET},
                                          'echo "repo=$REPO_SECRET tf=$TF_TOKEN_example_com"'),))
    bench.open_pull()
    assert bench.comment("/plan", "alice") == "planning 1 project(s) in run job-1-plan"
    bench.work()
    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    comments = "\n".join(bench.comments())
    logs = "\n".join(line.decode() for key in bench.redis.keys(keys.JOB_LOG.format("*"))
                     for line in bench.redis.lrange(key, 0, -1))
    assert "repo=*** tf=***" in comments + logs, (outcome.plan.output if outcome.plan else "", comments)
    for secret in (REPO_SECRET, TF_TOKEN):
        assert secret not in comments and secret not in logs


def test_another_repositorys_env_is_not_passed(tmp_path: Path) -> None:
    settings = dataclasses.replace(load_settings(None, {}), data_dir=tmp_path,
                                   repos=(RepoEntry(id="github.com/acme/other", env={"OTHER": "other-value"}),))
    ws = create_workspace(tmp_path / "work", "job-1")
    assert runner_for(Project("."), settings, ws, repo_id="github.com/acme/infra").env.get("OTHER") is None
    assert runner_for(Project("."), settings, ws, repo_id="github.com/acme/other").env["OTHER"] == "other-value"
    assert "OTHER" not in process_env(settings, ws)


def test_an_unreadable_env_file_fails_the_project_without_its_value(tmp_path: Path) -> None:
    settings = dataclasses.replace(load_settings(None, {}), data_dir=tmp_path, repos=(
        RepoEntry(id="github.com/acme/infra", env={"VAULT_TOKEN": {"file": str(tmp_path / "missing")}}),))
    ws = create_workspace(tmp_path / "work", "job-1")
    with pytest.raises(UserFacingError, match="`VAULT_TOKEN`"):
        runner_for(Project("."), settings, ws, repo_id="github.com/acme/infra")


def load_yaml(tmp_path: Path, text: str):
    path = tmp_path / "plankeeper.yaml"
    path.write_text(text)
    return load_settings(path, {})


@pytest.mark.parametrize("glob", ["*", "P*", "PLANKEEPER_*", "plankeeper_github__token", "[Pp]LANK*",
                                  "*TOKEN", "GITHUB_*", "REDIS_URL", "?????????????"])
def test_a_passthrough_glob_that_could_match_the_bots_own_is_refused(tmp_path: Path, glob: str) -> None:
    with pytest.raises(SettingsError, match=r"terraform\.env_passthrough\[1\]: .*bot's own secrets"):
        load_yaml(tmp_path, f"terraform:\n  env_passthrough: [VAULT_ADDR, {glob!r}]\n")


def test_passthrough_and_repo_env_load(tmp_path: Path) -> None:
    settings = load_yaml(tmp_path, "terraform:\n  env_passthrough: [TF_TOKEN_*, VAULT_ADDR, VAULT_TOKEN]\n"
                                   "repos:\n- id: github.com/acme/infra\n  env: {A: xsecretx}\n"
                                   "- id: /github.com/acme/.*/\n  env: {B: {file: /run/b}, A: ysecrety}\n")
    assert settings.terraform.env_passthrough == ("TF_TOKEN_*", "VAULT_ADDR", "VAULT_TOKEN")
    assert settings.repo_settings("github.com/acme/infra").env == {"A": "ysecrety", "B": {"file": "/run/b"}}
    assert "xsecretx" not in repr(settings.repos[0])
    assert "ysecrety" not in repr(settings.repo_settings("github.com/acme/infra"))


@pytest.mark.parametrize("env, message", [
    ("{PLANKEEPER_UI__PASSWORD: x}", "not an environment variable name"),
    ("{GITHUB_TOKEN: x}", "not an environment variable name"),
    ("{'1A': x}", "not an environment variable name"),
    ("{A: 5}", "expected a string or {file: /absolute/path}"),
    ("{A: {file: relative/path}}", "expected a string or {file: /absolute/path}"),
    ("{A: {path: /x}}", "expected a string or {file: /absolute/path}"),
])
def test_a_bad_repo_env_is_refused(tmp_path: Path, env: str, message: str) -> None:
    with pytest.raises(SettingsError, match=r"repos\[0\]\.env: .*" + message.replace("{", r"\{").replace("}", r"\}")):
        load_yaml(tmp_path, f"repos:\n- id: github.com/acme/infra\n  env: {env}\n")


def test_passthrough_globs_never_pass_a_forbidden_name() -> None:
    parent = {"TF_TOKEN_a_b": "1", "PLANKEEPER_X": "2", "GITHUB_TOKEN": "3", "VAULT_ADDR": "4", "OTHER": "5"}
    env = minimal_env(parent, Path("/h"), Path("/t"), passthrough=("*",))
    assert not {"PLANKEEPER_X", "GITHUB_TOKEN"} & set(env) and {"TF_TOKEN_a_b", "OTHER"} <= set(env)
    assert is_allowed("TF_TOKEN_a_b", ("TF_TOKEN_*",)) and not is_allowed("tf_token_a", ("TF_TOKEN_*",))
