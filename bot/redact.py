"""Secret masking, applied last to everything that leaves the bot (comments, logs, UI, audit).

What is masked:
- known token formats (GitHub, GitLab, AWS, Slack, private keys), whoever printed them;
- the server's own secrets (forge tokens, webhook secrets, UI password and API token);
- every value of repos[].env (read from its file when given as {file: path});
- the values of the secret environment variables handed to Terraform and hooks: every
  variable that runners.environment passes through whose name contains TOKEN, SECRET,
  PASSWORD, KEY or CREDENTIAL (e.g. AWS_SECRET_ACCESS_KEY, TF_VAR_db_password, ARM_CLIENT_SECRET).
  This is how "configured patterns" are configured: there is no separate regex setting, a
  value given to Terraform under such a name is masked;
- the sensitive values of a plan (sensitive variables, outputs and attributes of `terraform
  show -json`), added to a job's Redactor with `add_secrets` once the plan is known.

Values shorter than MIN_SECRET_LENGTH are not masked: masking "true" or "1" everywhere would
make every output unreadable and leak nothing worth hiding.

Simple encodings of a known secret are masked too, for secrets of at least
MIN_TRANSFORMED_LENGTH characters: reversed, base64 (standard and URL-safe, with or without
padding) and hex (either case). Code from a pull request can still encode a secret some other
way (or split it over lines); this only catches the obvious ways to smuggle one into a comment.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bot.engines import parent_environment
from bot.state import keys
from runners.environment import is_allowed

MASK = "***"
MIN_SECRET_LENGTH = 6
MIN_TRANSFORMED_LENGTH = 8
SECRET_NAME_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")

# Token formats that must never be shown, whoever printed them.
_TOKEN_PATTERNS = [
    r"gh[pousr]_[A-Za-z0-9]{36,255}",  # GitHub classic and app tokens
    r"github_pat_[A-Za-z0-9_]{22,255}",  # GitHub fine-grained tokens
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab personal access tokens
    r"gl(?:oas|dt|rt|ptt|cbt|imt|ft)-[A-Za-z0-9_\-]{20,}",  # other GitLab token kinds
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
    r"(?i:aws_secret_access_key)\s*[=:]\s*\S+",
    r"xox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]


class Redactor:
    """Masks known token formats, configured regexes and exact secret values.

    One instance is shared by a job's context and its job log, so `add_secrets` (a plan's
    sensitive values) takes effect on both at once.
    """

    def __init__(self, secrets: Iterable[str] = (), patterns: Iterable[str] = ()):
        self._secrets: set[str] = set()
        self._patterns = list(patterns)
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Mask these exact values too from now on (and each line of a multi-line value)."""
        for value in secrets:
            if not isinstance(value, str):
                continue
            lines = [line.strip() for line in value.splitlines()] if "\n" in value else []
            for text in (v for v in [value, *lines] if len(v) >= MIN_SECRET_LENGTH):
                self._secrets.add(text)
                if len(text) >= MIN_TRANSFORMED_LENGTH:
                    self._secrets.update(encodings(text))
        values = sorted(self._secrets, key=len, reverse=True)  # longest first: no partial leftovers
        parts = [re.escape(v) for v in values] + _TOKEN_PATTERNS + self._patterns
        self._regex = re.compile("|".join(f"(?:{p})" for p in parts))

    def __call__(self, text: str) -> str:
        return self._regex.sub(MASK, text) if text else text


def encodings(secret: str) -> list[str]:
    """The forms of secret that are masked besides itself: reversed, base64 (standard and
    URL-safe, padded and not) and hex (lower and upper case), the encodings also of the secret
    with a newline after it (`echo "$SECRET" | base64`)."""
    forms = [secret[::-1]]
    for raw in (secret.encode("utf-8"), secret.encode("utf-8") + b"\n"):
        forms += [raw.hex(), raw.hex().upper()]
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            padded = encode(raw).decode("ascii")
            forms += [padded, padded.rstrip("=")]
    return forms


def settings_secrets(settings) -> list[str]:
    """Every secret value the server knows of: its settings' tokens, webhook secrets and
    passwords, and the secret environment variables it hands to Terraform."""
    values = [
        settings.github.token,
        settings.github.webhook_secret,
        settings.gitlab.token,
        settings.gitlab.webhook_secret,
        settings.bitbucket.token,
        settings.bitbucket.webhook_secret,
        settings.ui.password,
        settings.ui.api_token,
    ]
    passthrough = settings.terraform.env_passthrough
    return ([v for v in values if v] + terraform_env_secrets(parent_environment(), passthrough)
            + repo_env_secrets(settings))


def repo_env_secrets(settings) -> list[str]:
    """Every value of every repos[].env (all secrets, whatever their names), files read now."""
    found = []
    for entry in settings.repos:
        for value in (entry.env or {}).values():
            if isinstance(value, str):
                found.append(value)
                continue
            try:
                found.append(Path(value["file"]).read_text(encoding="utf-8").rstrip("\r\n"))
            except (OSError, UnicodeDecodeError):
                pass  # the job that needs it reports the unreadable file
    return [v for v in found if v]


def is_secret_name(name: str) -> bool:
    """True for environment variable names that hold secrets by convention."""
    upper = name.upper()
    return any(word in upper for word in SECRET_NAME_WORDS)


def terraform_env_secrets(parent: Mapping[str, str], passthrough: Iterable[str] = ()) -> list[str]:
    """Values of the secret-named variables that runners.environment passes to Terraform (with
    terraform.env_passthrough: TF_TOKEN_*, VAULT_TOKEN)."""
    globs = tuple(passthrough)
    return [v for k, v in parent.items() if v and is_allowed(k, globs) and is_secret_name(k)]


def sensitive_values(plan_json: dict | None) -> list[str]:
    """The actual values a plan marks sensitive (`terraform show -json`): sensitive root
    variables, sensitive outputs, and resource attributes under the before/after/state
    sensitivity masks. Every leaf is returned as text; objects also as their JSON."""
    if not plan_json:
        return []
    found: list[Any] = []
    variables = (plan_json.get("configuration") or {}).get("root_module", {}).get("variables", {})
    given = plan_json.get("variables") or {}
    found += [given[name].get("value") for name, spec in variables.items()
              if spec.get("sensitive") and isinstance(given.get(name), dict)]
    for change in plan_json.get("resource_changes") or []:
        found += _changes_under_masks(change.get("change") or {})
    for change in (plan_json.get("output_changes") or {}).values():
        found += _changes_under_masks(change or {})
    for section in ("planned_values", "prior_state"):
        found += _state_values(plan_json.get(section) or {})
    return sorted({text for value in found for text in _texts(value)})


def _changes_under_masks(change: dict) -> list[Any]:
    values = list(_masked(change.get("before"), change.get("before_sensitive")))
    values += _masked(change.get("after"), change.get("after_sensitive"))
    return values


def _state_values(state: dict) -> list[Any]:
    values: list[Any] = []
    values += [out.get("value") for out in (state.get("outputs") or {}).values() if out.get("sensitive")]
    modules = [state.get("root_module") or state.get("values", {}).get("root_module") or {}]
    while modules:
        module = modules.pop()
        for resource in module.get("resources") or []:
            values += _masked(resource.get("values"), resource.get("sensitive_values"))
        modules += module.get("child_modules") or []
    return values


def _masked(value: Any, mask: Any) -> Iterator[Any]:
    """The parts of value that mask (a sensitivity mask of the same shape) marks true."""
    if mask is True:
        yield value
    elif isinstance(mask, dict) and isinstance(value, dict):
        for key, sub in mask.items():
            if key in value:
                yield from _masked(value[key], sub)
    elif isinstance(mask, list) and isinstance(value, list):
        for item, sub in zip(value, mask):
            yield from _masked(item, sub)


def _texts(value: Any) -> Iterator[str]:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (str, int, float)):
        yield str(value)
        return
    yield json.dumps(value)
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        yield from _texts(item)


def mask_log(r, job_id: str, redact: Redactor) -> int:
    """Mask again the lines a job already wrote to its log (after `add_secrets` learnt values
    it could not know while they streamed); returns how many lines changed."""
    key = keys.JOB_LOG.format(job_id)
    changed = 0
    for index, raw in enumerate(r.lrange(key, 0, -1)):
        line = raw.decode("utf-8", "replace")
        masked = redact(line)
        if masked != line:
            r.lset(key, index, masked)
            changed += 1
    return changed


def learn_plan_secrets(ctx, result) -> None:
    """After a plan (ctx: bot.context.JobContext, result: runners.models.PlanResult): make
    the job's Redactor mask the plan's sensitive values, mask the lines already logged, and
    mask the result's texts before they are stored (other jobs render them later)."""
    values = sensitive_values(result.plan_json)
    if values and isinstance(ctx.redact, Redactor):
        ctx.redact.add_secrets(values)
        mask_log(ctx.redis, ctx.job_id, ctx.redact)
    result.output, result.error, result.summary = ctx.redact(result.output), ctx.redact(result.error), \
        ctx.redact(result.summary)
