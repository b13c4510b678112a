"""bot/selection.py: -p / -d / -w against a repo config, and the plain discovery path."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bot import selection
from bot.errors import ConfigError, UserFacingError
from bot.models import Command
from bot.settings import Settings
from runners.models import Project
from runners.workspace import create_workspace

RESOURCE = 'resource "terraform_data" "x" {}\n'
CONFIG = """version: 3
allowed_regexp_prefixes: [stg-]
projects:
- {name: net, dir: stacks/net}
- {name: app, dir: stacks/app, depends_on: [net]}
- {name: app-staging, dir: stacks/app, workspace: staging}
- {name: stg-eu, dir: regions/eu}
- {name: stg-us, dir: regions/us}
"""
RESOLVED = Settings().repo_settings("github.com/acme/infra")


@pytest.fixture
def ws(tmp_path):
    ws = create_workspace(tmp_path, "job")
    repo = ws.resolve("repo")
    for d in ("stacks/net", "stacks/app", "regions/eu", "regions/us", "adhoc/one", "adhoc/two"):
        (repo / d).mkdir(parents=True)
        (repo / d / "main.tf").write_text(RESOURCE)
    (repo / "atlantis.yaml").write_text(CONFIG)
    return ws


def pick(ws, command: Command, changed=(), **kw):
    config, effective = selection.load_effective(ws, "repo", RESOLVED)
    eps = selection.select_effective(ws, "repo", command, list(changed), config, effective, RESOLVED, **kw)
    return [(ep.project.dir, ep.project.workspace, ep.project.name) for ep in eps]


def test_p_picks_named_projects(ws):
    assert pick(ws, Command("plan", projects=("app", "net"))) == [
        ("stacks/app", "default", "app"), ("stacks/net", "default", "net")]


def test_unknown_name_lists_known_names(ws):
    with pytest.raises(UserFacingError) as err:
        pick(ws, Command("plan", projects=("ap",)))
    assert "No project named `ap`" in err.value.message and "Did you mean `app`?" in err.value.message
    assert "`net`" in err.value.message and "`stg-us`" in err.value.message


def test_p_regex_only_with_an_allowed_prefix(ws):
    assert [n for _, _, n in pick(ws, Command("plan", projects=("stg-.*",)))] == ["stg-eu", "stg-us"]
    with pytest.raises(UserFacingError):
        pick(ws, Command("plan", projects=("ap.*",)))


def test_d_matches_configured_projects_in_dir(ws):
    assert pick(ws, Command("plan", dirs=("stacks/app",))) == [
        ("stacks/app", "default", "app"), ("stacks/app", "staging", "app-staging")]
    assert pick(ws, Command("plan", dirs=("stacks/app",), workspace="staging")) == [
        ("stacks/app", "staging", "app-staging")]
    assert pick(ws, Command("plan", dirs=("regions/*",))) == [
        ("regions/eu", "default", "stg-eu"), ("regions/us", "default", "stg-us")]


def test_d_outside_config_is_ad_hoc(ws):
    assert pick(ws, Command("plan", dirs=("adhoc/*",), workspace="qa")) == [
        ("adhoc/one", "qa", None), ("adhoc/two", "qa", None)]
    with pytest.raises(UserFacingError, match="refused"):
        pick(ws, Command("plan", dirs=("../etc",)))


def test_changes_select_by_config_and_dependents(ws):
    assert pick(ws, Command("plan"), ["stacks/net/main.tf"], autoplan=True) == [
        ("stacks/net", "default", "net"), ("stacks/app", "default", "app")]  # app depends on net


def test_select_projects_keeps_the_old_signature(ws):
    assert selection.select_projects(ws, "repo", Command("plan"), ["adhoc/one/main.tf"]) == [Project("adhoc/one")]
    config, effective = selection.load_effective(ws, "repo", RESOLVED)
    assert selection.select_projects(ws, "repo", Command("plan", projects=("net",)), [], config, effective) == [
        Project("stacks/net", name="net")]


def test_bad_config_becomes_a_config_error(ws):
    (ws.resolve("repo") / "atlantis.yaml").write_text("version: 3\nprojects:\n- dir: a\n  workspace: x/y\n")
    with pytest.raises(ConfigError) as err:
        selection.load_effective(ws, "repo", RESOLVED)
    assert err.value.message == "atlantis.yaml:4: `projects[0].workspace`: must not contain '/'"
    assert err.value.title == "Invalid configuration"


def test_server_repo_config_file(ws):
    repo = ws.resolve("repo")
    (repo / "ops").mkdir()
    (repo / "ops" / "pk.yaml").write_text("version: 3\nprojects: [{name: only, dir: adhoc/one}]\n")
    config, effective = selection.load_effective(ws, "repo", replace(RESOLVED, repo_config_file="ops/pk.yaml"))
    assert config.file == "ops/pk.yaml" and [ep.name for ep in effective] == ["only"]


def test_terraform_dirs_include_opentofu_files(tmp_path) -> None:
    for rel in ("tf/main.tf", "tofu/main.tofu", "tofujson/main.tofu.json", "plain/data.json", ".terraform/x.tofu"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert selection.terraform_dirs(tmp_path) == ["tf", "tofu", "tofujson"]
