"""Forge clients behind one protocol (bot.forges.base.Forge), one module per forge."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.forges.azuredevops import AzureDevOpsForge
from bot.forges.base import Forge
from bot.forges.bitbucket import bitbucket_forge
from bot.forges.gitea import GiteaForge
from bot.forges.github import GitHubForge
from bot.forges.gitlab import GitLabForge
from bot.models import Repo
from bot.settings import Settings

# How each forge's client is built from its settings section (bot.settings.FORGES names them).
_CLIENTS: dict[str, Callable[[Any, Repo], Forge]] = {
    "github": lambda section, repo: GitHubForge.from_settings(section, installation_id=repo.installation_id),
    "gitlab": lambda section, repo: GitLabForge.from_settings(section),
    "gitea": lambda section, repo: GiteaForge.from_settings(section),
    "bitbucket": lambda section, repo: bitbucket_forge(section),
    "azuredevops": lambda section, repo: AzureDevOpsForge.from_settings(section),
}


def make_forge(repo: Repo, settings: Settings) -> Forge:
    """The forge client for a repo (its kind in repo.forge)."""
    build = _CLIENTS.get(repo.forge)
    if build is None:
        raise ValueError(f"unknown forge kind {repo.forge!r}")
    forge = build(getattr(settings, repo.forge), repo)
    forge.status_prefix = settings.statuses.prefix  # its own statuses, told apart in mergeability
    return forge
