"""Two failure channels: errors safe to show users, and everything else.

A `UserFacingError` becomes a clear comment and a failed status. Any other exception is
logged with the job id, and the pull request gets "internal error (job ...)".
"""
from __future__ import annotations


class UserFacingError(Exception):
    """An error whose message is safe to post and tells the user what to do next."""

    def __init__(self, message: str, *, title: str = "Plankeeper could not run this command"):
        super().__init__(message)
        self.message = message
        self.title = title


class UsageError(UserFacingError):
    """A malformed comment command; the message carries the reply (what was wrong + usage)."""


class ConfigError(UserFacingError):
    """A bad repo config (file, line, key) or server setting."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, key: str = ""):
        where = file + (f":{line}" if line else "")
        prefix = f"{where}: " if where else ""
        key_part = f"`{key}`: " if key else ""
        super().__init__(f"{prefix}{key_part}{message}", title="Invalid configuration")
        self.file, self.line, self.key = file, line, key


class LockHeld(UserFacingError):
    """Another pull request holds the project's lock."""


class ApplyRefused(UserFacingError):
    """Apply requirements do not hold, or the plan is stale."""


class ForgeError(Exception):
    """The forge API failed after retries (not the user's fault)."""


class IssuesUnavailable(ForgeError):
    """The repository has no issue tracker (Bitbucket Data Center never has one): drift is reported
    through the notifications instead."""


class SettingsError(Exception):
    """A server setting is missing or invalid; the message names the key. Stops the start."""
