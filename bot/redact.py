"""Secret masking, applied last to everything that leaves the bot (comments, logs, UI, audit)."""
from __future__ import annotations

import re
from typing import Iterable

MASK = "***"

# Token formats that must never be shown, whoever printed them.
_TOKEN_PATTERNS = [
    r"gh[pousr]_[A-Za-z0-9]{36,255}",  # GitHub classic and app tokens
    r"github_pat_[A-Za-z0-9_]{22,255}",  # GitHub fine-grained tokens
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab personal access tokens
    r"gl(?:oas|dt|rt|ptt|cbt|imt|ft)-[A-Za-z0-9_\-]{20,}",  # other GitLab token kinds
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
    r"(?i:aws_secret_access_key)\s*[=:]\s*\S+",
    r"xox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]


class Redactor:
    """Masks known token formats, configured regexes and exact secret values."""

    def __init__(self, secrets: Iterable[str] = (), patterns: Iterable[str] = ()):
        values = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        parts = [re.escape(v) for v in values] + _TOKEN_PATTERNS + list(patterns)
        self._regex = re.compile("|".join(f"(?:{p})" for p in parts))

    def __call__(self, text: str) -> str:
        return self._regex.sub(MASK, text) if text else text


def settings_secrets(settings) -> list[str]:
    """Every secret value in the server settings (tokens, webhook secrets, passwords)."""
    values = [
        settings.github.token,
        settings.github.webhook_secret,
        settings.gitlab.token,
        settings.gitlab.webhook_secret,
        settings.ui.password,
        settings.ui.api_token,
    ]
    return [v for v in values if v]
