"""Tests for bot/settings.py: YAML + environment + *_file secrets, validated once."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from bot.errors import SettingsError
from bot.settings import GitHubSettings, Hook, RepoDrift, RepoKubectl, Settings, validate_for_serve
from bot.settings_loader import load_settings

ROOT = Path(__file__).resolve().parents[2]


def write_yaml(tmp_path: Path, data: object, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def load(tmp_path: Path, data: object, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write_yaml(tmp_path, data), env or {})


# --- defaults and the example config ---------------------------------------------------------

def test_defaults_match_the_spec() -> None:
    s = load_settings(None, {})
    assert s == Settings(data_dir=Path.cwd() / ".plankeeper")
    assert (s.host, s.port, s.public_url, s.workers) == ("127.0.0.1", 4141,
                                                         "http://localhost:4141", 2)
    assert s.redis_url is None and s.repo_allowlist == ("*",)
    assert s.defaults.apply_requirements == ("approved", "mergeable")
    assert s.terraform.binary == "auto" and s.terraform.timeout == 3600
    assert "-target" in s.extra_args_allowlist
    assert not s.github.configured and not s.gitlab.configured
    validate_for_serve(s)


def test_example_config_equals_defaults_and_can_serve() -> None:
    example = load_settings(ROOT / "config.example.yaml", {})
    assert example == load_settings(None, {})
    validate_for_serve(example)


def test_example_config_lists_every_top_level_key() -> None:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    expected = {f.name for f in dataclasses.fields(Settings)}
    assert set(data) == expected
    assert set(data["github"]) == {"api_url", "token", "app_id", "private_key_file",
                                   "webhook_secret", "bot_login", "write_interval", "checks"}


def test_empty_file_and_null_sections_mean_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "") == load_settings(None, {})
    assert load(tmp_path, "github:\nui:\n") == load_settings(None, {})


def test_public_url_follows_port_unless_set(tmp_path: Path) -> None:
    assert load(tmp_path, {"port": 8080}).public_url == "http://localhost:8080"
    assert load(tmp_path, {"host": "bot.example.com"}).public_url == "http://bot.example.com:4141"
    explicit = load(tmp_path, {"port": 8080, "public_url": "https://pk.example.com"})
    assert explicit.public_url == "https://pk.example.com"
    # links lead to the UI: its own port when it has one
    assert load(tmp_path, {"port": 8080, "ui": {"port": 8081}}).public_url == "http://localhost:8081"


def test_relative_paths_resolve_against_current_dir(tmp_path: Path) -> None:
    s = load(tmp_path, {"data_dir": "var/pk", "kubectl": {"kubeconfig": "kube/config"},
                        "policies": {"sets": [{"name": "cost", "path": "policies/cost"}]}})
    assert s.data_dir == Path.cwd() / "var/pk"
    assert s.kubectl.kubeconfig == Path.cwd() / "kube/config"
    assert s.policies.sets[0].path == Path.cwd() / "policies/cost"
    assert load(tmp_path, {"data_dir": str(tmp_path)}).data_dir == tmp_path


def test_full_config_converts_every_kind_of_value(tmp_path: Path) -> None:
    s = load(tmp_path, {
        "repos": [{"id": "github.com/acme/infra", "apply_requirements": ["undiverged"],
                   "pre_workflow_hooks": [{"run": "make lint", "description": "lint"}],
                   "workflows": {"custom": {"plan": {"steps": ["init", "plan"]}}},
                   "kubectl": {"namespace": "infra"}, "drift": {"schedule": "0 6 * * *"}}],
        "terraform": {"binaries": {"~> 1.5.0": "/opt/tf15"}},
        "permissions": {"apply": ["alice", "team:acme/platform", "group:acme/ops"]},
        "notifications": [{"kind": "slack", "url": "https://hooks.slack.com/x"}],
        "drift": {"schedule": "*/30 * * * *", "remediate": True},
    })
    entry = s.repos[0]
    assert entry.apply_requirements == ("undiverged",) and entry.autoplan is None
    assert entry.pre_workflow_hooks == (Hook(run="make lint", description="lint"),)
    assert entry.workflows == {"custom": {"plan": {"steps": ["init", "plan"]}}}
    assert entry.kubectl == RepoKubectl(namespace="infra")
    assert s.terraform.binaries == {"~> 1.5.0": "/opt/tf15"}
    assert s.permissions == {"apply": ("alice", "team:acme/platform", "group:acme/ops")}
    assert s.notifications[0].events == ("apply", "failure", "drift")
    assert s.drift.schedule == "*/30 * * * *" and s.drift.remediate is True


# --- environment overrides -------------------------------------------------------------------

def test_env_overrides_nested_int_bool_and_lists(tmp_path: Path) -> None:
    s = load(tmp_path, {"port": 5000, "github": {"token": "from-yaml"}}, {
        "PLANKEEPER_PORT": "8080",
        "PLANKEEPER_WORKERS": "0",
        "PLANKEEPER_ALLOW_FORK_PRS": "yes",
        "PLANKEEPER_DEFAULTS__AUTOPLAN": "0",
        "PLANKEEPER_GITHUB__TOKEN": "from-env",
        "PLANKEEPER_REPO_ALLOWLIST": '["github.com/acme/*", "gitlab.com/ops/*"]',
        "PLANKEEPER_COMMENT_ALIASES": "atlantis, terrabot",
        "PLANKEEPER_PERMISSIONS__APPLY": "alice,team:acme/platform",
        "PLANKEEPER_REDIS_URL": "redis://redis:6379/0",
        "PLANKEEPER_CONFIG": "ignored: read by the command line",
        "OTHER_VAR": "ignored",
    })
    assert s.port == 8080 and s.workers == 0 and s.public_url == "http://localhost:8080"
    assert s.allow_fork_prs is True and s.defaults.autoplan is False
    assert s.github.token == "from-env"
    assert s.repo_allowlist == ("github.com/acme/*", "gitlab.com/ops/*")
    assert s.comment_aliases == ("atlantis", "terrabot")
    assert s.permissions == {"apply": ("alice", "team:acme/platform")}
    assert s.redis_url == "redis://redis:6379/0"


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("No", False),
])
def test_env_booleans(text: str, expected: bool) -> None:
    assert load_settings(None, {"PLANKEEPER_DRIFT__REMEDIATE": text}).drift.remediate is expected


def test_env_structured_values_as_json(tmp_path: Path) -> None:
    s = load_settings(None, {
        "PLANKEEPER_REPOS": '[{"id": "/github\\\\.com/acme/.*/", "automerge": true}]',
        "PLANKEEPER_TERRAFORM__BINARIES": '{">= 1.6": "/opt/tf16"}',
        "PLANKEEPER_DEFAULTS__APPLY_REQUIREMENTS": "[]",
    })
    assert s.repos[0].id == "/github\\.com/acme/.*/" and s.repos[0].automerge is True
    assert s.terraform.binaries == {">= 1.6": "/opt/tf16"}
    assert s.defaults.apply_requirements == ()


def test_env_empty_string_clears_optional_value(tmp_path: Path) -> None:
    s = load(tmp_path, {"redis_url": "redis://r:6379/0"}, {"PLANKEEPER_REDIS_URL": ""})
    assert s.redis_url is None


# --- *_file secrets --------------------------------------------------------------------------

def test_secret_files_are_read_and_trailing_newline_dropped(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("ghp_filetoken\n")
    (tmp_path / "key.pem").write_text("-----BEGIN KEY-----\nabc\n-----END KEY-----\n")
    (tmp_path / "hook").write_text("s3cret\r\n")
    (tmp_path / "pw").write_text("hunter2\n")
    s = load(tmp_path, {
        "github": {"token_file": str(tmp_path / "token"), "app_id": 42,
                   "private_key_file": str(tmp_path / "key.pem")},
        "gitlab": {"webhook_secret_file": str(tmp_path / "hook")},
        "ui": {"username": "admin", "password_file": str(tmp_path / "pw")},
    }, {"PLANKEEPER_UI__API_TOKEN_FILE": str(tmp_path / "token")})
    assert s.github.token == "ghp_filetoken"
    assert s.github.private_key == "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    assert s.gitlab.webhook_secret == "s3cret"
    assert s.ui.password == "hunter2" and s.ui.api_token == "ghp_filetoken"


def test_secret_and_its_file_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("x")
    with pytest.raises(SettingsError, match=r"^github\.token_file: both token and token_file"):
        load(tmp_path, {"github": {"token": "a", "token_file": str(tmp_path / "token")}})
    with pytest.raises(SettingsError, match=r"^github\.token_file: both"):
        load_settings(None, {"PLANKEEPER_GITHUB__TOKEN": "a",
                             "PLANKEEPER_GITHUB__TOKEN_FILE": str(tmp_path / "token")})


def test_env_secret_replaces_the_yaml_file_form(tmp_path: Path) -> None:
    s = load(tmp_path, {"github": {"token_file": str(tmp_path / "missing")}},
             {"PLANKEEPER_GITHUB__TOKEN": "from-env"})
    assert s.github.token == "from-env"


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^ui\.api_token_file: cannot read"):
        load(tmp_path, {"ui": {"api_token_file": str(tmp_path / "nope")}})


# --- bad keys and values ---------------------------------------------------------------------

BAD = [
    ({"github": {"tokn": "x"}}, {}, "github.tokn: unknown key (did you mean token?)"),
    ({"prot": 1}, {}, "prot: unknown key (did you mean port?)"),
    ({}, {"PLANKEEPER_PORT": "abc"}, "port: expected an integer 1-65535, got 'abc'"),
    ({"port": 70000}, {}, "port: expected an integer 1-65535, got 70000"),
    ({"port": "80"}, {}, "port: expected an integer 1-65535, got '80'"),
    ({"workers": -1}, {}, "workers: expected an integer >= 0, got -1"),
    ({"defaults": {"apply_requirements": ["approved", "aproved"]}}, {},
     "defaults.apply_requirements[1]: 'aproved' is not one of approved, mergeable, undiverged"),
    ({"defaults": {"allowed_overrides": ["colour"]}}, {},
     "defaults.allowed_overrides[0]: 'colour' is not one of"),
    ({"defaults": {"autoplan": "sometimes"}}, {},
     "defaults.autoplan: expected true or false, got 'sometimes'"),
    ({}, {"PLANKEEPER_ALLOW_DRAFT_PRS": "maybe"},
     "allow_draft_prs: expected true or false, got 'maybe'"),
    ({}, {"PLANKEEPER_GITHUB__TOKN": "x"}, "github.tokn: unknown key (did you mean token?)"),
    ({}, {"PLANKEEPER_NOPE": "x"}, "nope: unknown key"),
    ({}, {"PLANKEEPER_REPOS__0__ID": "x"}, "repos.0: cannot set part of this value"),
    ({"repo_allowlist": "github.com/*"}, {}, "repo_allowlist: expected a list, got"),
    ({"github": {"api_url": "api.github.com"}}, {}, "github.api_url: expected an http"),
    ({"github": {"app_id": "abc"}}, {}, "github.app_id: expected an integer >= 1, got 'abc'"),
    ({"redis_url": "localhost:6379"}, {}, "redis_url: expected redis://"),
    ({"drift": {"schedule": "every day"}}, {}, "drift.schedule: 'every day' is not a valid cron"),
    ({"repos": [{"id": "github.com/acme/x", "drift": {"schedule": "61 * * * *"}}]}, {},
     "repos[0].drift.schedule: '61 * * * *' is not a valid cron"),
    ({"repos": [{"automerge": True}]}, {}, "repos[0].id: required"),
    ({"repos": [{"id": "acme/infra"}]}, {}, "repos[0].id: expected host/owner/repo"),
    ({"repos": [{"id": "/github.com/(acme/"}]}, {}, "repos[0].id: invalid regex"),
    ({"repos": [{"id": "github.com/a/b", "pre_workflow_hooks": [{"command": "x"}]}]}, {},
     "repos[0].pre_workflow_hooks[0].command: unknown key"),
    ({"repos": [{"id": "github.com/a/b", "repo_config_file": "../x.yaml"}]}, {},
     "repos[0].repo_config_file: '../x.yaml' must be a path inside the repository"),
    ({"repos": [{"id": "github.com/a/b", "workflows": {"w": "plan"}}]}, {},
     "repos[0].workflows.w: expected a mapping"),
    ({"terraform": {"timeout": 0}}, {}, "terraform.timeout: expected an integer >= 1, got 0"),
    ({"terraform": {"binaries": {1.5: "/opt/tf"}}}, {}, "terraform.binaries.1.5: keys must be"),
    ({"extra_args_allowlist": ["-target", "rm -rf"]}, {},
     "extra_args_allowlist[1]: 'rm -rf' must be a flag"),
    ({"comment_aliases": ["two words"]}, {}, "comment_aliases[0]: 'two words' must be a single"),
    ({"permissions": {"aply": ["alice"]}}, {}, "permissions.aply: unknown key"),
    ({"permissions": {"apply": ["team:acme"]}}, {},
     "permissions.apply: 'team:acme' must be a user name, team:ORG/SLUG or group:PATH"),
    ({"policies": {"sets": [{"name": "a", "path": "p"}, {"name": "a", "path": "q"}]}}, {},
     "policies.sets: duplicate name a"),
    ({"policies": {"sets": [{"name": "a"}]}}, {}, "policies.sets[0].path: required"),
    ({"notifications": [{"kind": "email", "url": "https://x"}]}, {},
     "notifications[0].kind: 'email' is not one of slack, http"),
    ({"notifications": [{"kind": "http", "url": "https://x", "events": ["merge"]}]}, {},
     "notifications[0].events[0]: 'merge' is not one of apply, failure, drift"),
    ({"ui": {"username": ["a"]}}, {}, "ui.username: expected a string, got ['a']"),
    ({"kubectl": "kubectl"}, {}, "kubectl: expected a mapping, got 'kubectl'"),
    ({"kubectl": {"context": 5}}, {}, "kubectl.context: expected a string, got 5 (quote it"),
    ({"github": {"token": "a", "token_file": None, "tokens": 1}}, {},
     "github.tokens: unknown key (did you mean token"),
]


@pytest.mark.parametrize("data,env,message", BAD, ids=[m.split(":")[0] for _, _, m in BAD])
def test_bad_settings_name_the_key(tmp_path: Path, data: dict, env: dict, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, data, env)
    assert str(caught.value).startswith(message)


def test_bad_secret_value_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, {"gitlab": {"token": 1234567890}})
    assert str(caught.value).startswith("gitlab.token: expected a string")
    assert "1234567890" not in str(caught.value)


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "port: 1\ngithub:\n  token: [unclosed\n")
    with pytest.raises(SettingsError, match=re.escape(str(path)) + r":\d+:\d+: invalid YAML"):
        load_settings(path, {})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", {})


# --- secrets stay out of repr ----------------------------------------------------------------

def test_repr_hides_every_secret(tmp_path: Path) -> None:
    secrets = ["ghp_SECRET1", "PEMSECRET2", "hooksecret3", "glpat-SECRET4", "glhook5",
               "password6", "apitoken7", "https://hooks.slack.com/services/SECRET8"]
    (tmp_path / "key.pem").write_text(secrets[1] + "\n")
    s = load(tmp_path, {
        "github": {"token": secrets[0], "app_id": 1, "private_key_file": str(tmp_path / "key.pem"),
                   "webhook_secret": secrets[2]},
        "gitlab": {"token": secrets[3], "webhook_secret": secrets[4]},
        "ui": {"username": "admin", "password": secrets[5], "api_token": secrets[6]},
        "notifications": [{"kind": "slack", "url": secrets[7]}],
    })
    assert s.github.private_key == secrets[1] and s.notifications[0].url == secrets[7]
    for text in (repr(s), str(s), repr(s.github), repr(s.ui)):
        assert "admin" in text or "api.github.com" in text
        for secret in secrets:
            assert secret not in text


# --- server-side repo config -----------------------------------------------------------------

def test_repo_settings_precedence(tmp_path: Path) -> None:
    s = load(tmp_path, {
        "kubectl": {"context": "prod"},
        "drift": {"schedule": "0 * * * *"},
        "repos": [
            {"id": "/github\\.com/acme/.*/", "automerge": True, "apply_requirements": ["approved"],
             "workflows": {"a": {"plan": {}}}, "kubectl": {"namespace": "acme"}},
            {"id": "github.com/acme/infra", "apply_requirements": ["mergeable", "undiverged"],
             "workflows": {"b": {"apply": {}}}, "drift": {"remediate": True},
             "post_workflow_hooks": [{"run": "notify"}]},
            {"id": "/github\\.com/other/.*/", "autoplan": False},
        ],
    })
    infra = s.repo_settings("github.com/acme/infra")
    assert infra.matched_ids == ("/github\\.com/acme/.*/", "github.com/acme/infra")
    assert infra.apply_requirements == ("mergeable", "undiverged")  # later entry wins
    assert infra.automerge is True and infra.autoplan is True  # earlier entry, then defaults
    assert infra.workflows == {"a": {"plan": {}}, "b": {"apply": {}}}
    assert infra.kubectl == RepoKubectl(context="prod", namespace="acme")
    assert infra.drift == RepoDrift(schedule="0 * * * *", remediate=True)
    assert infra.post_workflow_hooks == (Hook(run="notify"),)

    web = s.repo_settings("github.com/acme/web")
    assert web.apply_requirements == ("approved",) and web.post_workflow_hooks == ()
    assert web.drift.remediate is False

    # the regex must match the whole id; an unmatched repo gets the defaults
    assert s.repo_settings("evil.example/github.com/acme/x").matched_ids == ()
    other = s.repo_settings("gitlab.com/acme/infra")
    assert other.matched_ids == () and other.apply_requirements == ("approved", "mergeable")
    assert s.repo_settings("xgithub.com/acme/infra").matched_ids == ()


# --- validate_for_serve ----------------------------------------------------------------------

@pytest.mark.parametrize("github,gitlab,message", [
    ({"token": "t"}, {}, "github.webhook_secret is required when github.token or github.app_id"),
    ({"app_id": 7, "private_key": "k"}, {}, "github.webhook_secret is required"),
    ({}, {"token": "t"}, "gitlab.webhook_secret is required when gitlab.token is set"),
    ({"app_id": 7, "webhook_secret": "s"}, {}, "github.private_key_file is required"),
])
def test_validate_for_serve_rejects(github: dict, gitlab: dict, message: str) -> None:
    s = Settings(github=GitHubSettings(**github),
                 gitlab=dataclasses.replace(Settings().gitlab, **gitlab))
    with pytest.raises(SettingsError, match=re.escape(message)):
        validate_for_serve(s)


def test_validate_for_serve_accepts_complete_forges_and_rejects_negative_workers() -> None:
    ok = Settings(github=GitHubSettings(app_id=7, private_key="k", webhook_secret="s"))
    validate_for_serve(ok)
    assert ok.github.configured
    with pytest.raises(SettingsError, match="^workers:"):
        validate_for_serve(dataclasses.replace(ok, workers=-1))
    with pytest.raises(SettingsError, match="^ui.username and ui.password"):
        validate_for_serve(dataclasses.replace(
            ok, ui=dataclasses.replace(ok.ui, username="admin")))


# --- github.checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("yaml_text, env, expected", [
    ("github:\n  checks: auto\n", {}, "auto"),
    ("github:\n  checks: on\n", {}, "on"),  # YAML 1.1 reads on/off as booleans
    ("github:\n  checks: off\n", {}, "off"),
    ("github:\n  checks: true\n", {}, "on"),
    ("github:\n  checks: false\n", {}, "off"),
    ("github:\n  checks: 'off'\n", {}, "off"),
    ("", {"PLANKEEPER_GITHUB__CHECKS": "no"}, "off"),
    ("", {"PLANKEEPER_GITHUB__CHECKS": "auto"}, "auto"),
])
def test_github_checks_takes_auto_on_off_and_booleans(tmp_path: Path, yaml_text: str, env: dict,
                                                      expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    assert load_settings(path, env).github.checks == expected


def test_github_checks_refuses_other_words(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="^github.checks: 'always' is not one of auto, on, off"):
        load(tmp_path, {"github": {"checks": "always"}})


@pytest.mark.parametrize("github, uses_checks", [
    ({"app_id": 7, "private_key": "k"}, True),
    ({"app_id": 7, "private_key": "k", "checks": "on"}, True),
    ({"app_id": 7, "private_key": "k", "checks": "off"}, False),
    ({"token": "t"}, False),
    ({"token": "t", "checks": "off"}, False),
])
def test_check_runs_only_for_an_app_unless_off(github: dict, uses_checks: bool) -> None:
    assert GitHubSettings(**github).uses_checks is uses_checks


def test_checks_on_with_a_token_is_refused_at_serve() -> None:
    s = Settings(github=GitHubSettings(token="t", webhook_secret="s", checks="on"))
    with pytest.raises(SettingsError, match=r"^github.checks: on needs a GitHub App"):
        validate_for_serve(s)
    validate_for_serve(Settings(github=GitHubSettings(app_id=7, private_key="k", webhook_secret="s", checks="on")))


def test_plan_and_import_requirements_and_merge_keys_per_repository(tmp_path: Path) -> None:
    s = load(tmp_path, {
        "defaults": {"apply_requirements": ["approved"], "plan_requirements": ["mergeable"]},
        "repos": [
            {"id": "github.com/acme/infra", "apply_requirements": ["undiverged"], "automerge_method": "squash",
             "delete_source_branch_on_merge": True, "policy_check": False},
            {"id": "github.com/acme/strict", "import_requirements": ["approved", "mergeable"],
             "plan_requirements": []},
        ],
    })
    infra = s.repo_settings("github.com/acme/infra")
    assert infra.plan_requirements == ("mergeable",)
    assert infra.import_requirements == ("undiverged",)  # unset: the same as apply_requirements
    assert (infra.automerge_method, infra.delete_source_branch_on_merge, infra.policy_check) == ("squash", True, False)
    strict = s.repo_settings("github.com/acme/strict")
    assert (strict.plan_requirements, strict.import_requirements) == ((), ("approved", "mergeable"))
    assert (strict.automerge_method, strict.delete_source_branch_on_merge, strict.policy_check) == (
        "merge", False, True)
    assert s.terraform.git_credentials is True


@pytest.mark.parametrize("data, message", [
    ({"defaults": {"plan_requirements": ["approve"]}}, "defaults.plan_requirements"),
    ({"repos": [{"id": "github.com/a/b", "import_requirements": ["policies"]}]}, "repos[0].import_requirements"),
    ({"defaults": {"automerge_method": "fast-forward"}}, "defaults.automerge_method"),
    ({"terraform": {"git_credentials": "maybe"}}, "terraform.git_credentials"),
    ({"defaults": {"allowed_overrides": ["silence"]}}, "defaults.allowed_overrides"),
])
def test_bad_new_keys_name_the_key(tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load(tmp_path, data)
