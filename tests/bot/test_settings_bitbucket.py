"""The `bitbucket:` section of bot/settings.py: Cloud or Data Center by URL, the host of repository
ids, secrets from the environment and files (hidden, redacted), serve refusing a token without a
webhook secret, and Cloud account ids accepted as users in `permissions`."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.errors import SettingsError
from bot.redact import settings_secrets
from bot.settings import BitbucketSettings, Settings, validate_for_serve
from bot.settings_loader import load_settings


def load(tmp_path: Path, data: dict, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_settings(path, env or {})


@pytest.mark.parametrize("url, cloud, host", [
    ("https://api.bitbucket.org/2.0", True, "bitbucket.org"),
    ("https://api.bitbucket.org/2.0/", True, "bitbucket.org"),
    ("http://127.0.0.1:8123/2.0", True, "127.0.0.1:8123"),
    ("https://bitbucket.acme.io", False, "bitbucket.acme.io"),
    ("https://acme.io:7990/bitbucket", False, "acme.io:7990"),
])
def test_the_url_says_cloud_or_data_center(url: str, cloud: bool, host: str) -> None:
    section = BitbucketSettings(url=url)
    assert (section.is_cloud, section.web_host) == (cloud, host)


def test_token_and_secret_from_environment_and_files_stay_hidden(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("hook-secret-from-file\n")
    s = load(tmp_path, {"bitbucket": {"url": "https://bitbucket.acme.io", "username": "svc",
                                      "webhook_secret_file": str(secret_file)}},
             {"PLANKEEPER_BITBUCKET__TOKEN": "bbdc-token-from-env"})
    assert (s.bitbucket.token, s.bitbucket.webhook_secret) == ("bbdc-token-from-env", "hook-secret-from-file")
    assert s.bitbucket.configured and "bbdc-token-from-env" not in repr(s)
    assert {"bbdc-token-from-env", "hook-secret-from-file"} <= set(settings_secrets(s))
    assert s.forge_for("bitbucket.acme.io/ACME/infra") == "bitbucket"
    validate_for_serve(s)


def test_serve_refuses_a_token_without_a_webhook_secret(tmp_path: Path) -> None:
    s = load(tmp_path, {"bitbucket": {"token": "t"}})
    with pytest.raises(SettingsError, match="bitbucket.webhook_secret is required when bitbucket.token is set"):
        validate_for_serve(s)
    assert not load(tmp_path, {}).bitbucket.configured


def test_unknown_keys_and_bad_urls_are_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="bitbucket.tokn"):
        load(tmp_path, {"bitbucket": {"tokn": "t"}})
    with pytest.raises(SettingsError, match="bitbucket.url"):
        load(tmp_path, {"bitbucket": {"url": "bitbucket.acme.io"}})


def test_cloud_account_ids_are_users_in_permissions(tmp_path: Path) -> None:
    ids = ["557058:dc3817de-68b5-45cd-b81c-5c39d2560090", "624de6f6fd5e450070486936"]
    assert load(tmp_path, {"permissions": {"apply": ids}}).permissions["apply"] == tuple(ids)
    with pytest.raises(SettingsError, match="permissions"):
        load(tmp_path, {"permissions": {"apply": ["team:no-slash"]}})
