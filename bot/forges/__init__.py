"""Forge clients behind one protocol (bot.forges.base.Forge)."""
from __future__ import annotations

from bot.forges.base import Forge
from bot.forges.github import GitHubForge
from bot.forges.gitlab import GitLabForge
from bot.models import Repo
from bot.settings import Settings


def make_forge(repo: Repo, settings: Settings) -> Forge:
    """The forge client for a repo ("github" or "gitlab" in repo.forge)."""
    if repo.forge == "github":
        return GitHubForge.from_settings(settings.github, installation_id=repo.installation_id)
    if repo.forge == "gitlab":
        return GitLabForge.from_settings(settings.gitlab)
    raise ValueError(f"unknown forge kind {repo.forge!r}")
