"""What Bitbucket Cloud and Bitbucket Data Center share behind the Forge protocol: the
atlassian-python-api session, retries through bot.forges.retry, git credentials, vocabulary.

Both clients talk through atlassian-python-api's objects and their own `get`/`post`/`put` helpers
on one `requests` session. That library sleeps on a 429's `Retry-After` by itself (once, for as
long as the header says); bot.forges.retry owns every retry, so a session hook moves the header
where only `error_info` reads it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

import requests

from bot.errors import ForgeError
from bot.forges.base import FAILURE, PENDING, SUCCESS
from bot.forges.retry import call_with_retry, unless_missing
from bot.models import PullRequest, Repo

T = TypeVar("T")

# Bitbucket refuses longer comments (Cloud and Data Center alike, as Atlantis found).
COMMENT_LIMIT = 32_768
STATUS_DESCRIPTION_LIMIT = 255
ACCESS_TOKEN_USER = "x-token-auth"  # git's user name for an access token with no account of its own
# Build status states, both flavours: the bot's words -> Bitbucket's, and back.
BUILD_STATE = {PENDING: "INPROGRESS", SUCCESS: "SUCCESSFUL", FAILURE: "FAILED"}
FORGE_STATE = {"INPROGRESS": PENDING, "SUCCESSFUL": SUCCESS, "FAILED": FAILURE, "STOPPED": FAILURE,
               "CANCELLED": FAILURE, "UNKNOWN": PENDING}
PULL_STATE = {"OPEN": "open", "MERGED": "merged", "DECLINED": "closed", "SUPERSEDED": "closed"}
# Answers that are not the JSON Bitbucket documents (a proxy's page, a changed API).
_UNEXPECTED_ANSWER = (KeyError, TypeError, ValueError, AttributeError)


class BitbucketClient:
    """The parts of a Bitbucket forge client that do not depend on the flavour."""

    comment_limit = COMMENT_LIMIT
    status_prefix = "plankeeper"  # settings.statuses.prefix, set by bot.forges.make_forge
    flavour = "Bitbucket"

    def __init__(self, username: str | None, token: str | None, bot_login: str | None,
                 *, sleep: Callable[[float], None] = time.sleep, attempts: int = 4):
        self._username, self._token, self._bot_login = username, token, bot_login
        self._sleep, self._attempts = sleep, attempts

    def credentials(self) -> dict[str, Any]:
        """The library's keyword arguments: basic auth with a user name, else a bearer token."""
        if self._username:
            return {"username": self._username, "password": self._token}
        return {"token": self._token} if self._token else {}

    @staticmethod
    def watch(session: requests.Session) -> None:
        """Keep the library from retrying by itself (see the module's docstring)."""
        session.hooks["response"].append(_set_retry_after_aside)

    @property
    def bot_login(self) -> str:
        if self._bot_login is None:
            self._bot_login = self._call("read the bot's user", self.whoami)
        return self._bot_login

    @bot_login.setter
    def bot_login(self, login: str) -> None:
        self._bot_login = login

    def whoami(self) -> str:
        raise NotImplementedError

    # ---- the same on both flavours ------------------------------------------------
    def add_reaction(self, pull: PullRequest, comment_id: str, reaction: str = "eyes") -> None:
        """Bitbucket has no reactions on comments: nothing to do (the command's reply follows)."""

    def clone_auth(self, repo: Repo) -> tuple[str, str] | None:
        """The API's credentials for git over HTTPS (an access token without a user: x-token-auth)."""
        if not self._token:
            return None
        return (self._username or ACCESS_TOKEN_USER, self._token)

    def pull_refs(self, pull: PullRequest) -> list[str]:
        """None: Bitbucket publishes no refs/pull/N/head. The head is the source branch, fetched with
        every branch from `pull.head_clone_url` (the fork's own clone URL for a fork)."""
        return []

    # ---- retries --------------------------------------------------------------------
    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """fn() with retries; ForgeError naming the action when Bitbucket keeps failing or answers
        something that is not the JSON it documents."""
        try:
            return call_with_retry(fn, action=f"{self.flavour}: {action}", error_info=error_info,
                                   attempts=self._attempts, sleep=self._sleep)
        except _UNEXPECTED_ANSWER as exc:
            raise ForgeError(f"{self.flavour}: {action} failed: unexpected answer ({type(exc).__name__})") from exc

    def _unless_missing(self, action: str, fn: Callable[[], T], missing: T) -> T:
        """fn(), or `missing` when Bitbucket answers 404."""
        return unless_missing(self._call, action, fn, missing)


def error_info(exc: BaseException) -> tuple[int, Mapping[str, str]] | None:
    """(status, headers) of the library's HTTPError, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(exc, requests.HTTPError) or response is None:
        return None
    return response.status_code, getattr(response, "retry_headers", None) or response.headers


def _set_retry_after_aside(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    response.retry_headers = dict(response.headers)  # type: ignore[attr-defined]
    if response.status_code == 429:
        response.headers.pop("Retry-After", None)


def status_payload(context: str, state: str, description: str, target_url: str) -> dict[str, str]:
    """A build status as both flavours take it; ValueError for a state other than the three."""
    if state not in BUILD_STATE:
        raise ValueError(f"unknown commit status state {state!r}")
    text = description if len(description) <= STATUS_DESCRIPTION_LIMIT else description[:STATUS_DESCRIPTION_LIMIT - 1] + "…"
    return {"key": context, "name": context, "state": BUILD_STATE[state], "description": text, "url": target_url}


def split_full_name(repo: Repo) -> tuple[str, str]:
    """(workspace or project key, repository slug) of `owner/slug`."""
    owner, _, slug = repo.full_name.partition("/")
    if not owner or not slug or "/" in slug:
        raise ForgeError(f"Bitbucket: {repo.full_name!r} is not owner/slug")
    return owner, slug


def iso_epoch(moment: str | None) -> float:
    """Epoch seconds of Bitbucket Cloud's ISO 8601 time (2024-01-31T12:00:00.123456+00:00); 0 if absent."""
    if not moment:
        return 0.0
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def ref(pull: PullRequest) -> str:
    return f"{pull.repo.full_name} PR #{pull.number}"
