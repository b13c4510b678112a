"""Pure webhook authentication: GitHub, Bitbucket and Gitea HMAC-SHA256 signatures, GitLab secret
tokens and the basic auth of Azure DevOps service hooks.

Every comparison is constant time (`hmac.compare_digest`) so a caller cannot learn the
secret byte by byte from response timings.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_GITHUB_PREFIX = "sha256="
_SHA256_HEX_LEN = 64


def sign_github(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` header value GitHub would send for `body`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _GITHUB_PREFIX + digest


def verify_github(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is `sha256=<hex>` and the HMAC of `body` under `secret` matches.

    False (never an exception) for a missing header, another algorithm, a wrong length,
    non-hex digits or an empty secret.
    """
    if not secret or not header or not header.startswith(_GITHUB_PREFIX):
        return False
    given = header[len(_GITHUB_PREFIX):].lower()
    if len(given) != _SHA256_HEX_LEN or any(c not in "0123456789abcdef" for c in given):
        return False
    expected = sign_github(secret, body)[len(_GITHUB_PREFIX):]
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


def verify_bitbucket(secret: str, body: bytes, header: str | None) -> bool:
    """Bitbucket Cloud and Data Center sign as GitHub does, in `X-Hub-Signature`:
    `sha256=<hex HMAC-SHA256 of the body>`. Same rules as verify_github."""
    return verify_github(secret, body, header)


def verify_basic_auth(username: str, password: str, header: str | None) -> bool:
    """True when `header` is `Basic base64(username:password)` with both equal to the configured
    ones, compared in constant time (the whole `username:password`, so neither leaks first).

    False for a missing or malformed header, another scheme, or an empty username or password.
    """
    if not username or not password or not header:
        return False
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = f"{username}:{password}".encode()
    return hmac.compare_digest(expected, given)


def verify_gitlab(secret: str, header: str | None) -> bool:
    """True when the `X-Gitlab-Token` header equals `secret`, compared in constant time.

    False for a missing header or an empty secret (an empty secret never authenticates).
    """
    if not secret or header is None:
        return False
    # compare_digest on bytes accepts any characters; str would reject non-ASCII input.
    return hmac.compare_digest(secret.encode("utf-8"), header.encode("utf-8", "surrogatepass"))


def sign_gitea(secret: str, body: bytes) -> str:
    """The `X-Gitea-Signature` (and `X-Forgejo-Signature`) value for `body`: the hex
    HMAC-SHA256, without GitHub's `sha256=` prefix."""
    return sign_github(secret, body)[len(_GITHUB_PREFIX):]


def verify_gitea(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the hex HMAC-SHA256 of `body` under `secret` (Gitea, Forgejo).

    False (never an exception) for a missing or empty header (Gitea sends an empty one when the
    webhook has no secret), a prefixed, short or non-hex value, or an empty secret.
    """
    return bool(header) and verify_github(secret, body, _GITHUB_PREFIX + str(header))
