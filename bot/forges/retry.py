"""Retry with backoff for forge API calls, shared by every forge client.

Forge-neutral: the caller passes a function that reads the HTTP status and response
headers out of its client library's exception (PyGithub's `GithubException` has `.status`
and `.headers`, python-gitlab's `GitlabHttpError` has `.response_code`). Server errors
(5xx), rate limits (429, or 403 with `Retry-After` / `x-ratelimit-remaining: 0`) and
dropped connections are retried; everything else fails at once.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Optional, TypeVar

import requests

from bot.errors import ForgeError

T = TypeVar("T")
# exception -> (HTTP status, response headers), or None when it is not an API error.
ErrorInfo = Callable[[BaseException], Optional[tuple[int, Mapping[str, str]]]]
Sleep = Callable[[float], None]

# Both client libraries talk through requests; these mean the request never got an answer.
_CONNECTION_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


class ForgeRequestFailed(ForgeError):
    """A forge API call failed for good; `status` is the last HTTP status (None: no answer)."""

    def __init__(self, action: str, status: Optional[int], attempts: int):
        answer = f"HTTP {status}" if status is not None else "no answer from the server"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{action} failed: {answer}{tries}")
        self.action, self.status, self.attempts = action, status, attempts


def unless_missing(call: Callable[[str, Callable[[], T]], T], action: str, fn: Callable[[], T], missing: T) -> T:
    """call(action, fn) (a forge client's retrying call), or `missing` when the forge answers 404:
    an unknown user, team, comment or branch is an answer, not a failure."""
    try:
        return call(action, fn)
    except ForgeRequestFailed as exc:
        if exc.status == 404:
            return missing
        raise


def call_with_retry(
    fn: Callable[[], T],
    *,
    action: str,
    error_info: Optional[ErrorInfo] = None,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    sleep: Sleep = time.sleep,
    clock: Callable[[], float] = time.time,
) -> T:
    """Call fn(), retrying transient failures; return its result.

    Raises ForgeRequestFailed (a ForgeError naming `action` and the status, never the
    request or its credentials) when an API error is not transient or the last attempt
    failed. Exceptions that are not API or connection errors propagate unchanged.
    `error_info` defaults to `http_error_info`.
    """
    error_info = error_info or http_error_info
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except ForgeError:
            raise  # a nested call already retried and reported it
        except _CONNECTION_ERRORS as exc:
            status, delay = None, _backoff(attempt, base_delay, max_delay)
            last_exc: BaseException = exc
        except Exception as exc:
            info = error_info(exc)
            if info is None:
                raise
            status, headers = info
            wait = _retry_delay(status, _lower(headers), attempt, base_delay, max_delay, clock)
            if wait is None:
                raise ForgeRequestFailed(action, status, attempt) from exc
            delay, last_exc = wait, exc
        if attempt < attempts:
            sleep(delay)
    raise ForgeRequestFailed(action, status, attempts) from last_exc


def http_error_info(exc: BaseException) -> Optional[tuple[int, Mapping[str, str]]]:
    """(status, headers) of a PyGithub or python-gitlab HTTP error, else None."""
    status = getattr(exc, "status", None)  # PyGithub GithubException
    if not isinstance(status, int):
        status = getattr(exc, "response_code", None)  # python-gitlab GitlabError
    if not isinstance(status, int):
        return None
    headers = getattr(exc, "headers", None) or getattr(exc, "response_headers", None) or {}
    return status, headers


def _retry_delay(
    status: int,
    headers: Mapping[str, str],
    attempt: int,
    base_delay: float,
    max_delay: float,
    clock: Callable[[], float],
) -> Optional[float]:
    """Seconds to wait before the next attempt, or None when the error is not transient."""
    rate_limited = status == 429 or (
        status == 403 and ("retry-after" in headers or headers.get("x-ratelimit-remaining") == "0")
    )
    if not rate_limited and status < 500:
        return None
    retry_after = _seconds(headers.get("retry-after"))
    if retry_after is None and headers.get("x-ratelimit-remaining") == "0":
        reset = _seconds(headers.get("x-ratelimit-reset"))
        retry_after = max(0.0, reset - clock()) if reset is not None else None
    if retry_after is not None:
        return min(retry_after, max_delay)
    return _backoff(attempt, base_delay, max_delay)


def _backoff(attempt: int, base_delay: float, max_delay: float) -> float:
    return min(base_delay * 2 ** (attempt - 1), max_delay)


def _seconds(value: Optional[str]) -> Optional[float]:
    # Retry-After may also be an HTTP date; forges send seconds, so a date falls back to backoff.
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _lower(headers: Optional[Mapping[str, str]]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}
