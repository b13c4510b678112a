"""FakeGitHub's wire format, checked with plain HTTP (what PyGithub does not show)."""

from __future__ import annotations

from typing import Iterator

import pytest
import requests

from tests.fakes.github import FakeGitHub
from tests.support import fixture

AUTH = {"Authorization": "token t0ken"}


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(token="t0ken") as server:
        server.add_repo("acme/infra", "https://github.com/acme/infra.git")
        server.add_pull(
            "acme/infra",
            1,
            "a" * 40,
            "feature",
            "main",
            "alice",
            files=[f"f{i}.tf" for i in range(5)],
        )
        yield server


def test_requests_without_the_token_get_401(fake: FakeGitHub) -> None:
    assert requests.get(f"{fake.api_url}/repos/acme/infra", timeout=5).status_code == 401
    wrong = requests.get(
        f"{fake.api_url}/repos/acme/infra", headers={"Authorization": "token x"}, timeout=5
    )
    assert wrong.status_code == 401 and wrong.json()["message"] == "Bad credentials"
    assert (
        requests.post(
            f"{fake.api_url}/app/installations/1/access_tokens", headers=AUTH, timeout=5
        ).status_code
        == 401
    )  # needs an App JWT, not a token


def test_pull_request_has_the_shape_of_the_published_payload(fake: FakeGitHub) -> None:
    template = fixture("github", "pull_request.opened")["pull_request"]
    body = requests.get(f"{fake.api_url}/repos/acme/infra/pulls/1", headers=AUTH, timeout=5).json()
    assert set(body) == set(template)
    assert set(body["head"]) == set(template["head"]) and set(body["base"]["repo"]) == set(
        template["base"]["repo"]
    )
    assert (body["head"]["sha"], body["base"]["repo"]["full_name"], body["user"]["login"]) == (
        "a" * 40,
        "acme/infra",
        "alice",
    )
    assert body["url"] == f"{fake.api_url}/repos/acme/infra/pulls/1"


def test_lists_are_paginated_with_link_headers(fake: FakeGitHub) -> None:
    url = f"{fake.api_url}/repos/acme/infra/pulls/1/files"
    first = requests.get(url, params={"per_page": 2}, headers=AUTH, timeout=5)
    assert [f["filename"] for f in first.json()] == ["f0.tf", "f1.tf"]
    assert "page=2" in first.links["next"]["url"] and "per_page=2" in first.links["next"]["url"]
    last = requests.get(first.links["last"]["url"], headers=AUTH, timeout=5)
    assert [f["filename"] for f in last.json()] == ["f4.tf"] and "next" not in last.links


def test_bodies_github_rejects_get_422(fake: FakeGitHub) -> None:
    long_comment = requests.post(
        f"{fake.api_url}/repos/acme/infra/issues/1/comments",
        headers=AUTH,
        json={"body": "x" * 65537},
        timeout=5,
    )
    long_status = requests.post(
        f"{fake.api_url}/repos/acme/infra/statuses/{'a' * 40}",
        headers=AUTH,
        json={"state": "success", "description": "x" * 141},
        timeout=5,
    )
    assert (long_comment.status_code, long_status.status_code) == (422, 422)
    assert fake.comments("acme/infra", 1) == [] and fake.statuses("acme/infra", "a" * 40) == []


def test_combined_status_keeps_the_latest_per_context(fake: FakeGitHub) -> None:
    sha = "a" * 40
    fake.add_status("acme/infra", sha, "ci", "pending")
    fake.add_status("acme/infra", sha, "ci", "success")
    fake.add_status("acme/infra", sha, "lint", "failure")
    body = requests.get(
        f"{fake.api_url}/repos/acme/infra/commits/{sha}/status", headers=AUTH, timeout=5
    ).json()
    assert body["state"] == "failure"
    assert sorted((s["context"], s["state"]) for s in body["statuses"]) == [
        ("ci", "success"),
        ("lint", "failure"),
    ]


def test_injected_failures_are_consumed_in_order(fake: FakeGitHub) -> None:
    fake.inject_failures(r"^/repos/acme/infra$", [503, 429], retry_after=5)
    url = f"{fake.api_url}/repos/acme/infra"
    answers = [requests.get(url, headers=AUTH, timeout=5) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 429, 200]
    assert answers[1].headers["Retry-After"] == "5"
    assert fake.requests == [("GET", "/repos/acme/infra")] * 3
