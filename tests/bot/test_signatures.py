"""bot/signatures.py: GitHub HMAC-SHA256 and GitLab token checks."""
from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.signatures import sign_github, verify_github, verify_gitlab

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"
# The worked example in GitHub's "Validating webhook deliveries" documentation.
GITHUB_DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_sign_github_matches_githubs_documented_example() -> None:
    assert sign_github(SECRET, BODY) == GITHUB_DOC_SIGNATURE


def test_sign_github_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign_github("s3cret", body) == "sha256=" + expected


def test_verify_github_accepts_the_right_signature() -> None:
    assert verify_github(SECRET, BODY, GITHUB_DOC_SIGNATURE)


def test_verify_github_accepts_uppercase_hex() -> None:
    upper = "sha256=" + GITHUB_DOC_SIGNATURE.removeprefix("sha256=").upper()
    assert verify_github(SECRET, BODY, upper)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        "sha1=" + hashlib.sha1(BODY).hexdigest(),
        GITHUB_DOC_SIGNATURE.removeprefix("sha256="),  # no algorithm prefix
        GITHUB_DOC_SIGNATURE[:-1],  # one hex digit short
        GITHUB_DOC_SIGNATURE + "0",  # one hex digit too many
        GITHUB_DOC_SIGNATURE[:-1] + "g",  # not hex
        "sha256=" + "0" * 64,  # well formed, wrong
        "SHA256=" + GITHUB_DOC_SIGNATURE.removeprefix("sha256="),
        "sha256=é" + "0" * 63,
    ],
)
def test_verify_github_rejects_missing_malformed_or_wrong_headers(header: str | None) -> None:
    assert verify_github(SECRET, BODY, header) is False


def test_verify_github_rejects_a_changed_body() -> None:
    assert not verify_github(SECRET, BODY + b" ", GITHUB_DOC_SIGNATURE)


def test_verify_github_rejects_another_secret() -> None:
    assert not verify_github("other secret", BODY, GITHUB_DOC_SIGNATURE)


def test_verify_github_with_empty_secret_never_authenticates() -> None:
    assert not verify_github("", BODY, sign_github("", BODY))


@given(secret=st.text(min_size=1), body=st.binary(), header=st.one_of(st.none(), st.text()))
def test_verify_github_never_raises_and_accepts_only_its_own_signature(
    secret: str, body: bytes, header: str | None
) -> None:
    assert verify_github(secret, body, sign_github(secret, body))
    assert verify_github(secret, body, header) is (header is not None and header.lower()
                                                   == sign_github(secret, body))


def test_verify_gitlab_accepts_the_exact_token() -> None:
    assert verify_gitlab("tok-123", "tok-123")


@pytest.mark.parametrize("header", [None, "", "tok-12", "tok-1234", "TOK-123", " tok-123"])
def test_verify_gitlab_rejects_missing_or_wrong_token(header: str | None) -> None:
    assert verify_gitlab("tok-123", header) is False


def test_verify_gitlab_with_empty_secret_never_authenticates() -> None:
    assert not verify_gitlab("", "")


def test_verify_gitlab_handles_non_ascii_tokens() -> None:
    assert verify_gitlab("sécret", "sécret")
    assert not verify_gitlab("sécret", "secret")


@given(secret=st.text(min_size=1), header=st.one_of(st.none(), st.text()))
def test_verify_gitlab_never_raises(secret: str, header: str | None) -> None:
    assert verify_gitlab(secret, header) is (header == secret)
