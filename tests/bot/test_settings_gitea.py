"""The `gitea:` settings section (bot/settings.py): read from YAML and the environment, when it
counts as configured, its web host, what `serve` refuses, and its secrets masked (bot/redact.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.errors import SettingsError
from bot.redact import Redactor, settings_secrets
from bot.settings import GiteaSettings, Settings, validate_for_serve
from bot.settings_loader import load_settings


def test_read_from_yaml_env_and_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text("from-a-file\n")
    config = tmp_path / "plankeeper.yaml"
    config.write_text("gitea:\n  url: https://codeberg.org\n  token: t-yaml\n"
                      f"  webhook_secret_file: {secret_file}\n")
    settings = load_settings(config, {"PLANKEEPER_GITEA__TOKEN": "t-env", "PLANKEEPER_GITEA__BOT_LOGIN": "bot"})
    gitea = settings.gitea
    assert (gitea.url, gitea.token, gitea.webhook_secret, gitea.bot_login) == (
        "https://codeberg.org", "t-env", "from-a-file", "bot")
    assert "t-env" not in repr(settings) and "from-a-file" not in repr(settings)


@pytest.mark.parametrize("key, value, message", [
    ("gitea.tokn", "x", "gitea.tokn: unknown key (did you mean token?)"),
    ("gitea.url", "gitea.example.com", "gitea.url: expected an http:// or https:// URL"),
])
def test_bad_keys_and_values_name_the_key(tmp_path: Path, key: str, value: str, message: str) -> None:
    section, _, name = key.partition(".")
    config = tmp_path / "plankeeper.yaml"
    config.write_text(f"{section}:\n  {name}: {value}\n")
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(config, {})


@pytest.mark.parametrize("url, host", [
    ("https://gitea.example.com", "gitea.example.com"),
    ("https://gitea.example.com:443/", "gitea.example.com"),
    ("http://gitea.local:3000", "gitea.local:3000"),
    ("https://Codeberg.org/api/v1", "codeberg.org"),
    (None, ""),
])
def test_web_host_is_how_webhooks_name_the_repository_s_host(url: str | None, host: str) -> None:
    assert GiteaSettings(url=url).web_host == host


def test_repository_ids_on_the_gitea_host_belong_to_gitea() -> None:
    settings = Settings(gitea=GiteaSettings(url="http://gitea.local:3000", token="t", webhook_secret="s"))
    assert settings.forge_for("gitea.local:3000/acme/infra") == "gitea"
    assert settings.forge_for("github.com/acme/infra") == "github"
    assert settings.forge_for("gitea.local/acme/infra") == ""


@pytest.mark.parametrize("section, configured, problem", [
    (GiteaSettings(), False, None),
    (GiteaSettings(url="https://g.example"), False, None),
    (GiteaSettings(token="t"), False, "gitea.url is required when gitea.token is set"),
    (GiteaSettings(url="https://g.example", token="t"), True, "gitea.webhook_secret is required"),
    (GiteaSettings(url="https://g.example", token="t", webhook_secret="s"), True, None),
])
def test_configured_and_what_serve_refuses(section: GiteaSettings, configured: bool,
                                           problem: str | None) -> None:
    assert section.configured is configured
    if problem is None:
        assert section.webhook_auth_problem() is None
        validate_for_serve(Settings(gitea=section))
        return
    assert problem in str(section.webhook_auth_problem())
    with pytest.raises(SettingsError, match=problem):
        validate_for_serve(Settings(gitea=section))


def test_the_token_and_webhook_secret_are_masked_everywhere() -> None:
    settings = Settings(gitea=GiteaSettings(url="https://g.example", token="gitea-token-0123456789",
                                            webhook_secret="gitea-hook-secret-99"))
    assert {"gitea-token-0123456789", "gitea-hook-secret-99"} <= set(settings_secrets(settings))
    masked = Redactor(settings_secrets(settings))("clone with gitea-token-0123456789 and gitea-hook-secret-99")
    assert "gitea-token" not in masked and "gitea-hook-secret" not in masked
