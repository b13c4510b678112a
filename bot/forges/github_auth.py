"""Who GitHubForge talks to GitHub as: a token, or a GitHub App's installation tokens.

An App's JWT buys an installation token (one per installation), kept until shortly
before it expires; the installation is the event's, the configured one, or looked up
from the repository.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TypeVar

from github import Auth, Github, GithubIntegration

from bot.errors import ForgeError, SettingsError
from bot.models import Repo

T = TypeVar("T")
# (action, fn) -> fn() with the forge's retry policy
Call = Callable[[str, Callable[[], T]], T]

TOKEN_REFRESH_MARGIN = 300.0  # seconds before expiry an installation token is replaced


class GitHubAuth:
    """PyGithub clients for one GitHub server, with fresh credentials."""

    def __init__(
        self,
        api_url: str,
        call: Call,
        token: Optional[str] = None,
        app_id: Optional[int] = None,
        private_key: Optional[str] = None,
        installation_id: Optional[int] = None,
        write_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        """Raises SettingsError unless a token or both app_id and private_key are given."""
        if not token and not (app_id and private_key):
            raise SettingsError(
                "github: set github.token, or github.app_id and github.private_key_file"
            )
        self.api_url, self._call, self._clock = api_url, call, clock
        self._token, self._write_interval = token, write_interval
        self._installation_id = installation_id
        self._lock = threading.Lock()
        self._installations: dict[str, int] = {}  # repo full name -> installation id
        self._tokens: dict[int, tuple[str, float, Github]] = {}  # -> token, expiry, client
        self._client: Optional[Github] = self._github(token) if token else None
        self._integration: Optional[GithubIntegration] = None
        if not token:
            self._integration = GithubIntegration(
                base_url=api_url,
                auth=Auth.AppAuth(str(app_id), private_key),
                retry=None,
                seconds_between_requests=None,
                seconds_between_writes=None,  # one token an hour needs no pacing
            )

    def _github(self, token: str) -> Github:
        return Github(
            base_url=self.api_url,
            auth=Auth.Token(token),
            retry=None,  # bot.forges.retry decides
            per_page=100,
            lazy=True,
            seconds_between_requests=None,
            seconds_between_writes=self._write_interval or None,
        )

    @property
    def is_app(self) -> bool:
        """Whether calls go as a GitHub App installation (a token, when given, wins)."""
        return self._client is None

    def client(self, repo: Optional[Repo] = None) -> Github:
        """The client to use now. Raises ForgeError when no installation token can be had."""
        if self._client is not None:
            return self._client
        installation = self._installation_for(repo)
        with self._lock:
            cached = self._tokens.get(installation)
            if cached and cached[1] - TOKEN_REFRESH_MARGIN > self._clock():
                return cached[2]
            auth = self._call(
                f"get an installation token for installation {installation}",
                lambda: self._app().get_access_token(installation),
            )
            client = self._github(auth.token)
            self._tokens[installation] = (auth.token, auth.expires_at.timestamp(), client)
            return client

    def token(self, repo: Optional[Repo] = None) -> str:
        """The token the client uses (for HTTPS git); never log it."""
        if self._token:
            return self._token
        self.client(repo)
        return self._tokens[self._installation_for(repo)][0]

    def login(self) -> str:
        """The token's user login, or "<app slug>[bot]" for an App."""
        if self._client is not None:
            client = self._client
            return self._call("read the authenticated user", lambda: client.get_user().login)
        slug = self._call("read the GitHub App", lambda: self._app().get_app().slug)
        return f"{slug}[bot]"

    def _app(self) -> GithubIntegration:
        assert self._integration is not None
        return self._integration

    def _installation_for(self, repo: Optional[Repo]) -> int:
        if repo is not None and repo.installation_id:
            return repo.installation_id
        if self._installation_id:
            return self._installation_id
        if repo is None:
            raise ForgeError("GitHub App: no installation id known for this call")
        if repo.full_name not in self._installations:
            owner, name = repo.full_name.split("/", 1)
            self._installations[repo.full_name] = self._call(
                f"find the App installation for {repo.full_name}",
                lambda: self._app().get_repo_installation(owner, name).id,
            )
        return self._installations[repo.full_name]
