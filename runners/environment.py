"""The explicit, minimal environment that Terraform and kubectl run with.

Built from an allowlist so that the bot's own secrets (forge tokens, Redis URL, any
PLANKEEPER_* setting) never reach a process that runs code from a pull request.
"""
from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable, Mapping

ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "LANG",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)
ALLOWED_PREFIXES = ("LC_", "AWS_", "GOOGLE_", "CLOUDSDK_", "ARM_", "AZURE_", "TF_VAR_")
FORBIDDEN_NAMES = frozenset({"GITHUB_TOKEN", "GITLAB_TOKEN", "GH_TOKEN", "REDIS_URL"})
FORBIDDEN_PREFIXES = ("PLANKEEPER_",)
# Allowlisted variables that name files or directories the tools read (credentials, CA
# bundles): a sandbox (runners.sandbox) binds them read-only.
PATH_NAMES = frozenset(
    {
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CA_BUNDLE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLOUDSDK_CONFIG",
        "ARM_CLIENT_CERTIFICATE_PATH",
        "ARM_OIDC_TOKEN_FILE_PATH",
        "AZURE_CONFIG_DIR",
    }
)


def is_forbidden(name: str) -> bool:
    """True for variables that must never be handed to a child process."""
    return name in FORBIDDEN_NAMES or name.upper().startswith(FORBIDDEN_PREFIXES)


def is_allowed(name: str, passthrough: Iterable[str] = ()) -> bool:
    """True when name may be copied from the parent environment: the built-in allowlist, or a
    name or glob of passthrough (`TF_TOKEN_*`, case-sensitive); never a forbidden name."""
    if is_forbidden(name):
        return False
    return (name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)
            or any(fnmatchcase(name, glob) for glob in passthrough))


def could_match_forbidden(glob: str) -> bool:
    """True when some forbidden name (a FORBIDDEN_NAMES one, or any PLANKEEPER_* in any case)
    matches glob: such a glob is refused in settings, though is_allowed drops them anyway."""
    if any(fnmatchcase(name, glob) for name in FORBIDDEN_NAMES):
        return True
    prefix = FORBIDDEN_PREFIXES[0]
    tokens = re.findall(r"\[!?\]?[^\]]*\]|.", glob)
    for i, token in enumerate(tokens):
        if i == len(prefix) or token == "*":
            return True
        if token.startswith("[") and len(token) > 1:
            fits = fnmatchcase(prefix[i], token) or fnmatchcase(prefix[i].lower(), token)
        else:
            fits = token == "?" or token.upper() == prefix[i]
        if not fits:
            return False
    return len(tokens) >= len(prefix)


def minimal_env(
    parent: Mapping[str, str],
    home: Path,
    tmpdir: Path,
    extra: Mapping[str, str] = {},
    passthrough: Iterable[str] = (),
) -> dict[str, str]:
    """Allowlisted variables of parent, HOME and TMPDIR set to the job's dirs, then extra.

    Forbidden names are dropped even when listed in passthrough; extra is the caller's
    explicit choice and is applied last, unfiltered.
    """
    globs = tuple(passthrough)
    env = {k: v for k, v in parent.items() if is_allowed(k, globs)}
    env["HOME"] = str(home)
    env["TMPDIR"] = str(tmpdir)
    env.update(extra)
    return env


def path_values(env: Mapping[str, str]) -> list[Path]:
    """The absolute paths named by the PATH_NAMES variables of env (a minimal_env built from
    the server's own environment, never one a workflow step has changed)."""
    return [Path(env[name]) for name in sorted(PATH_NAMES) if env.get(name, "").startswith("/")]
