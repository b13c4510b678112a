"""call_with_retry with the exceptions the real client libraries raise."""

from __future__ import annotations

from typing import Callable

import pytest
import requests
from github import GithubException
from gitlab.exceptions import GitlabHttpError

from bot.errors import ForgeError
from bot.forges.retry import ForgeRequestFailed, call_with_retry, http_error_info


def _failing(*errors: BaseException, result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A function raising each error in turn, then returning result; counts its calls."""
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


def test_gitlab_server_errors_back_off_exponentially_then_succeed() -> None:
    sleeps: list[float] = []
    fn, calls = _failing(GitlabHttpError("boom", 502), GitlabHttpError("boom", 503))
    assert call_with_retry(fn, action="GitLab: x", sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0] and len(calls) == 3


def test_backoff_is_capped_by_max_delay() -> None:
    sleeps: list[float] = []
    fn, _ = _failing(*[GithubException(500, None, {})] * 5)
    assert (
        call_with_retry(fn, action="a", attempts=6, base_delay=4, max_delay=10, sleep=sleeps.append)
        == "ok"
    )
    assert sleeps == [4, 8, 10, 10, 10]


def test_rate_limit_reset_header_is_honoured_when_no_retry_after() -> None:
    sleeps: list[float] = []
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1012"}
    fn, _ = _failing(GithubException(403, {"message": "API rate limit exceeded"}, headers))
    call_with_retry(fn, action="a", sleep=sleeps.append, clock=lambda: 1000.0)
    assert sleeps == [12.0]


def test_plain_forbidden_is_not_retried() -> None:
    fn, calls = _failing(GithubException(403, {"message": "Resource not accessible"}, {}))
    with pytest.raises(ForgeRequestFailed) as info:
        call_with_retry(fn, action="GitHub: merge acme/infra#3", sleep=lambda _: None)
    assert (info.value.status, info.value.attempts, len(calls)) == (403, 1, 1)
    assert str(info.value) == "GitHub: merge acme/infra#3 failed: HTTP 403"


def test_dropped_connections_are_retried_and_reported() -> None:
    fn, calls = _failing(*[requests.exceptions.ConnectionError("refused")] * 3)
    with pytest.raises(ForgeError, match="^x failed: no answer from the server after 3 attempts$"):
        call_with_retry(fn, action="x", attempts=3, sleep=lambda _: None)
    assert len(calls) == 3


def test_other_exceptions_propagate_unchanged() -> None:
    fn, calls = _failing(KeyError("bug"))
    with pytest.raises(KeyError):
        call_with_retry(fn, action="x", sleep=lambda _: None)
    assert len(calls) == 1


def test_http_error_info_reads_both_libraries() -> None:
    assert http_error_info(GithubException(502, None, {"Retry-After": "3"})) == (
        502,
        {"Retry-After": "3"},
    )
    assert http_error_info(GitlabHttpError("x", 429)) == (429, {})
    assert http_error_info(ValueError("x")) is None
