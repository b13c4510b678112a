"""Microsoft's `azure-devops` SDK as the Azure DevOps client uses it.

The SDK finds every route on the server first (`GET {org}/_apis/ResourceAreas`, then
`OPTIONS {area}/_apis` for the route templates by location id) and sends the api-version in the
Accept header. Three things are set here, on every SDK client the connection hands out:

- its own retries are off (msrest retries 5xx even on POST): bot.forges.retry owns every retry;
- the last HTTP answer (status, headers) is remembered: the SDK's errors carry neither, and the
  retry needs both (Retry-After);
- the route tables it learns stay in memory for the process instead of the SDK's files under
  ~/.azure-devops (never read back, so a stale table on disk cannot misroute a call);
- a pull request iteration's changes keep their paths: the SDK's generated GitPullRequestChange
  lacks the fields of GitChange (item, originalPath...) and would drop them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import requests
from azure.devops import _file_cache
from azure.devops.connection import Connection
from azure.devops.v7_1.location.location_client import LocationClient
from msrest.authentication import BasicAuthentication
from msrest.exceptions import ClientException, ClientRequestError
from msrest.serialization import Model

from bot import __version__
from bot.errors import ForgeError
from bot.forges.retry import ForgeRequestFailed, call_with_retry

T = TypeVar("T")
TIMEOUT = 30  # seconds per request
MESSAGE_LIMIT = 300  # characters of Azure DevOps' own error message kept


class Sdk:
    """The SDK clients of one organization (or Server collection), authenticated with a PAT."""

    def __init__(self, org_url: str, token: str, *, sleep: Callable[[float], None], attempts: int = 4):
        _keep_route_tables_in_memory()
        self._sleep, self._attempts = sleep, attempts
        self._last: tuple[int, Mapping[str, str]] | None = None
        self._connection = _Connection(org_url, BasicAuthentication("", token), self._tune)

    # -- clients, built (and their routes found) on first use --------

    @property
    def git(self) -> Any:
        return self._connection.clients.get_git_client()

    @property
    def work_items(self) -> Any:
        return self._connection.clients.get_work_item_tracking_client()

    @property
    def security(self) -> Any:
        return self._connection.clients.get_security_client()

    @property
    def identity(self) -> Any:
        return self._connection.clients.get_identity_client()

    @property
    def core(self) -> Any:
        return self._connection.clients.get_core_client()

    @property
    def policy(self) -> Any:
        return self._connection.clients.get_policy_client()

    @property
    def location(self) -> Any:
        return self._connection.clients.get_location_client()

    # -- calls --------

    def call(self, action: str, fn: Callable[[], T]) -> T:
        """fn() with retries on 5xx, 429 and dropped connections; ForgeError naming the action
        (and the HTTP status) once Azure DevOps keeps failing or refuses."""
        try:
            return call_with_retry(self._attempt(fn), action=f"Azure DevOps: {action}",
                                   error_info=self._error_info, attempts=self._attempts, sleep=self._sleep)
        except ForgeRequestFailed as err:
            raise _with_server_message(err) from err.__cause__
        except ClientException as err:  # no HTTP status: e.g. an answer the SDK cannot read
            raise ForgeError(f"Azure DevOps: {action} failed: {err}") from err
        except ValueError as err:
            if not str(err).startswith("API resource location"):
                raise
            raise ForgeError(f"Azure DevOps: {action} failed: {err} (is the server too old?)") from err

    def _attempt(self, fn: Callable[[], T]) -> Callable[[], T]:
        def attempt() -> T:
            self._last = None
            try:
                return fn()
            except ClientRequestError as err:
                cause = err.inner_exception
                if self._last is None and isinstance(cause, requests.RequestException):
                    raise cause from err  # no answer at all: a dropped connection, retried
                raise
        return attempt

    def _error_info(self, exc: BaseException) -> tuple[int, Mapping[str, str]] | None:
        if isinstance(exc, ClientException) and self._last is not None and self._last[0] >= 400:
            return self._last
        return None

    def _tune(self, client: Any) -> Any:
        retry = client.config.retry_policy
        retry.retries = 0  # the adapters hold this very Retry object: changed in place
        retry.policy.status_forcelist = frozenset()
        client.config.connection.timeout = TIMEOUT
        client.config.hooks.append(self._remember)
        models = getattr(client, "_deserialize", None)
        if models is not None and "GitPullRequestChange" in models.dependencies:
            models.dependencies["GitPullRequestChange"] = IterationChange
        return client

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last = (response.status_code, dict(response.headers))


def _with_server_message(err: ForgeRequestFailed) -> ForgeRequestFailed:
    """The failure with Azure DevOps' own words for it (e.g. "TF401027: ..."), when it gave some."""
    message = getattr(err.__cause__, "message", None)
    if not isinstance(message, str) or not message.strip():
        return err
    detailed = ForgeRequestFailed(err.action, err.status, err.attempts)
    detailed.args = (f"{err}: {message.strip()[:MESSAGE_LIMIT]}",)
    return detailed


class IterationChange(Model):
    """One change of a pull request iteration, with the fields Azure DevOps sends."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "change_tracking_id": {"key": "changeTrackingId", "type": "int"},
        "change_id": {"key": "changeId", "type": "int"},
        "change_type": {"key": "changeType", "type": "object"},
        "item": {"key": "item", "type": "object"},
        "original_path": {"key": "originalPath", "type": "str"},
        "source_server_item": {"key": "sourceServerItem", "type": "str"},
    }

    def __init__(self, change_tracking_id: int | None = None, change_id: int | None = None,
                 change_type: Any = None, item: Any = None, original_path: str | None = None,
                 source_server_item: str | None = None) -> None:
        super().__init__()
        self.change_tracking_id, self.change_id, self.change_type = change_tracking_id, change_id, change_type
        self.item, self.original_path, self.source_server_item = item, original_path, source_server_item


class _Connection(Connection):
    """The SDK's Connection, handing out tuned clients; its resource area lookup goes through a
    tuned LocationClient too (the SDK's own would retry by itself and cache the areas on disk)."""

    def __init__(self, org_url: str, creds: BasicAuthentication, tune: Callable[[Any], Any]):
        super().__init__(base_url=org_url, creds=creds, user_agent=f"plankeeper/{__version__}")
        self._tune = tune

    def _get_client_instance(self, client_class: Any) -> Any:
        return self._tune(super()._get_client_instance(client_class))

    def _get_resource_areas(self, force: bool = False) -> Any:
        if self._resource_areas is None or force:
            location = self._tune(LocationClient(self.base_url, self._creds))
            self._resource_areas = location.get_resource_areas() or []  # Server answers none
        return self._resource_areas


def _keep_route_tables_in_memory() -> None:
    # An empty file name makes the SDK's FileCache a plain dict: never loaded, never saved.
    for cache in (_file_cache.OPTIONS_CACHE, _file_cache.RESOURCE_CACHE):
        if cache.file_name:
            cache.file_name = ""
            cache.data, cache.initial_load_occurred = {}, True
