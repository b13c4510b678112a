"""Forge clients behind one protocol (bot.forges.base.Forge)."""
from __future__ import annotations

from bot.forges.base import Forge
from bot.forges.github import GitHubForge
from bot.forges.gitlab import GitLabForge
from bot.models import Repo
from bot.settings import Settings


def make_forge(repo: Repo, settings: Settings) -> Forge:
    """The forge client for a repo ("github" or "gitlab" in repo.forge)."""
    forge: GitHubForge | GitLabForge
    if repo.forge == "github":
        forge = GitHubForge.from_settings(settings.github, installation_id=repo.installation_id)
    elif repo.forge == "gitlab":
        forge = GitLabForge.from_settings(settings.gitlab)
    else:
        raise ValueError(f"unknown forge kind {repo.forge!r}")
    forge.status_prefix = settings.statuses.prefix  # its own statuses, told apart in mergeability
    return forge
