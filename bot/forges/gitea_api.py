"""A small client for Gitea's REST API v1 (Forgejo and Codeberg speak the same), on one
`requests.Session`: `Authorization: token ...`, JSON in and out, `page`/`limit` pagination.

No SDK is maintained for it, so this is all of it. It does not retry: GiteaForge wraps each
action in bot.forges.retry, which reads `status` and `headers` off a `GiteaAPIError`.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests

from bot.errors import ForgeError

# Gitea cuts larger pages to [api] MAX_RESPONSE_ITEMS, 50 by default.
PAGE_LIMIT = 50
TIMEOUT = 30
_MESSAGE_LIMIT = 200


class GiteaAPIError(Exception):
    """Gitea answered with an HTTP error; `message` is its JSON `message` (may be empty)."""

    def __init__(self, method: str, path: str, status: int, headers: Mapping[str, str], message: str):
        super().__init__(f"{method} {path}: HTTP {status}" + (f" ({message})" if message else ""))
        self.status, self.headers, self.message = status, dict(headers), message


class GiteaBadAnswer(ForgeError):
    """A 2xx answer whose body is not the JSON the API documents (a proxy's page, a cut body)."""


class _TokenAuth(requests.auth.AuthBase):
    """`Authorization: token ...` on every request. As the session's auth it also keeps requests
    from reading ~/.netrc over it; requests drops it on a redirect to another host."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"token {self._token}"
        return request


class GiteaAPI:
    """Calls under `<url>/api/v1`; `url` is the server's root URL (a trailing /api/v1 is fine)."""

    def __init__(self, url: str, token: str | None, *, timeout: float = TIMEOUT):
        self.base = url.rstrip("/").removesuffix("/api/v1") + "/api/v1"
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": "plankeeper"})
        if token:
            self._session.auth = _TokenAuth(token)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return _json(self._request("GET", path, params=params), path)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return _json(self._request("POST", path, body=body), path)

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return _json(self._request("PATCH", path, body=body), path)

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a paginated list, fetched a page at a time as the caller reads on."""
        page = 1
        while True:
            query = {**(params or {}), "page": page, "limit": PAGE_LIMIT}
            response = self._request("GET", path, params=query)
            items = _json(response, path)
            if not isinstance(items, list):
                raise GiteaBadAnswer(f"GET {path}: expected a JSON list, got {type(items).__name__}")
            yield from items
            if not items or not _has_next(response, page, len(items)):
                return
            page += 1

    def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                 body: Mapping[str, Any] | None = None) -> requests.Response:
        response = self._session.request(method, self.base + path, params=params, json=body,
                                         timeout=self._timeout)
        if response.status_code >= 400:
            raise GiteaAPIError(method, path, response.status_code, response.headers, _message(response))
        return response


def segment(value: object) -> str:
    """One path segment (an owner, a name, a login), escaped."""
    return quote(str(value), safe="")


def _has_next(response: requests.Response, page: int, count: int) -> bool:
    """Gitea sends a Link header (rel="next") and X-Total-Count on every list it paginates."""
    if response.headers.get("Link"):
        return "next" in response.links
    total = response.headers.get("X-Total-Count", "")
    if total.isdigit():
        return page * PAGE_LIMIT < int(total)
    return count >= PAGE_LIMIT


def _json(response: requests.Response, path: str) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise GiteaBadAnswer(f"{response.request.method} {path}: the answer is not JSON "
                             f"({response.headers.get('Content-Type', 'no content type')})") from None


def _message(response: requests.Response) -> str:
    """Gitea's own words for an error ({"message": ...}), one line, short; never the request."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str):
        return ""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line[:_MESSAGE_LIMIT]
