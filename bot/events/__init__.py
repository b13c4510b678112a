"""Forge webhooks read into plain events (no I/O): one module per forge, each with its SOURCE."""
from __future__ import annotations

from bot.events import azuredevops, bitbucket, gitea, github, gitlab
from bot.events.base import Headers, Ignored, MalformedEvent, WebhookSource
from bot.events.github import parse_github
from bot.events.gitlab import parse_gitlab

# The order matters where a forge also sends another's headers (Gitea sends GitHub's too).
# Azure DevOps sends no event header of its own (only basic auth): it must stay last.
SOURCES: tuple[WebhookSource, ...] = (gitea.SOURCE, github.SOURCE, gitlab.SOURCE, bitbucket.SOURCE,
                                      azuredevops.SOURCE)

__all__ = [
    "SOURCES",
    "Ignored",
    "MalformedEvent",
    "WebhookSource",
    "parse_github",
    "parse_gitlab",
    "source_for",
]


def source_for(headers: Headers) -> WebhookSource | None:
    """The forge whose webhook this is, by its headers; None when no configured kind matches."""
    return next((source for source in SOURCES if source.recognises(headers)), None)
