"""bot/settings.py, the `azuredevops` section: secrets, what `serve` refuses, repository ids, and
Azure DevOps' user and team names in `permissions`."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import SettingsError
from bot.settings import AzureDevOpsSettings, Settings, validate_for_serve
from bot.settings_loader import load_settings

SERVICES = "https://dev.azure.com/fabrikam"


def test_secrets_come_from_files_and_the_environment_and_stay_out_of_repr(tmp_path: Path) -> None:
    (tmp_path / "pat").write_text("pat-value\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"azuredevops:\n  org_url: {SERVICES}\n  token_file: {tmp_path / 'pat'}\n"
                      "  webhook_username: hooks\n")
    settings = load_settings(config, {"PLANKEEPER_AZUREDEVOPS__WEBHOOK_PASSWORD": "hook-pass"})
    section = settings.azuredevops
    assert (section.token, section.webhook_password, section.work_item_type) == ("pat-value", "hook-pass", "Issue")
    assert "pat-value" not in repr(settings) and "hook-pass" not in repr(settings)
    validate_for_serve(settings)


@pytest.mark.parametrize("section, problem", [
    ({"org_url": SERVICES, "token": "t"}, "webhook_username and azuredevops.webhook_password are required"),
    ({"org_url": SERVICES, "token": "t", "webhook_username": "u"}, "webhook_password are required"),
    ({"org_url": SERVICES}, "org_url and azuredevops.token must be set together"),
    ({"token": "t", "webhook_username": "u", "webhook_password": "p"}, "must be set together"),
])
def test_serve_refuses_a_half_configured_section(section: dict, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        validate_for_serve(Settings(azuredevops=AzureDevOpsSettings(**section)))


def test_unconfigured_by_default_and_named_by_host_and_organization() -> None:
    assert not Settings().azuredevops.configured and "azuredevops" in Settings().forges()
    services = Settings(azuredevops=AzureDevOpsSettings(org_url=SERVICES + "/"))
    assert services.azuredevops.web_host == "dev.azure.com" and services.azuredevops.collection_path == "fabrikam"
    assert services.forge_for("dev.azure.com/fabrikam/Platform/infra") == "azuredevops"
    server = AzureDevOpsSettings(org_url="https://TFS.example.com:8443/tfs/DefaultCollection")
    assert (server.web_host, server.collection_path) == ("tfs.example.com:8443", "tfs/DefaultCollection")


def test_permissions_take_azure_devops_users_and_teams(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text('permissions:\n  apply: [alice@fabrikam.com, "FABRIKAM\\\\bob", "team:My Project/Platform Team"]\n')
    assert load_settings(config, {}).permissions["apply"] == (
        "alice@fabrikam.com", "FABRIKAM\\bob", "team:My Project/Platform Team")
    config.write_text('permissions:\n  apply: ["team:acme/platform/extra"]\n')
    with pytest.raises(SettingsError, match="permissions"):
        load_settings(config, {})


def test_a_bad_org_url_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("azuredevops:\n  org_url: dev.azure.com/fabrikam\n")
    with pytest.raises(SettingsError, match="azuredevops.org_url"):
        load_settings(config, {})
