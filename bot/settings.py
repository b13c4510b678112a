"""Server settings: read once (YAML, then `PLANKEEPER_*` environment, then `*_file` secrets),
validated, and passed down as frozen dataclasses.

`load_settings()` is the only place that reads configuration. Every problem raises
`SettingsError` whose message starts with the full key path, e.g.
`github.tokn: unknown key (did you mean token?)`. Secrets never appear in `repr()`.

The dataclasses double as the schema: field types drive conversion, field metadata adds
checks (`check` on the value, `each` on every item, `min`/`max` for integers, `keys` for the
allowed keys of a mapping, `secret` for values that may come from `<key>_file`).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from croniter import croniter

from bot.errors import SettingsError

ENV_PREFIX = "PLANKEEPER_"
# Read by the command line itself (which file to load), not a setting.
ENV_NOT_SETTINGS = frozenset({"PLANKEEPER_CONFIG"})
COMMANDS = ("plan", "apply", "unlock", "cancel", "approve_policies", "help", "version")

Requirement = Literal["approved", "mergeable", "undiverged"]
Override = Literal[
    "apply_requirements", "workflow", "apply_on_approval", "apply_on_merge", "automerge",
    "autoplan", "drift",
]
NotificationEvent = Literal["apply", "failure", "drift"]

_PRINCIPAL = re.compile(r"(team:[^/\s]+/[^/\s]+|group:\S+|[A-Za-z0-9][A-Za-z0-9_.\-\[\]]*)")


# --- value checks: return an error message, or None when the value is fine -----------------

def _check_url(value: str) -> str | None:
    if re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return "expected an http:// or https:// URL"


def _check_redis_url(value: str) -> str | None:
    if re.fullmatch(r"(rediss?|unix)://\S+", value):
        return None
    return f"expected redis://HOST:PORT/DB, rediss://... or unix://PATH, got {value!r}"


def _check_cron(value: str) -> str | None:
    if croniter.is_valid(value):
        return None
    return f"{value!r} is not a valid cron expression (minute hour day-of-month month weekday)"


def _check_repo_id(value: str) -> str | None:
    if value.startswith("/"):
        if len(value) < 3 or not value.endswith("/"):
            return f"{value!r}: a regex id must be written /regex/"
        try:
            re.compile(value[1:-1])
        except re.error as exc:
            return f"invalid regex {value!r}: {exc}"
        return None
    if re.fullmatch(r"[^\s/*?]+(/[^\s/*?]+){2,}", value):
        return None
    return f"expected host/owner/repo (e.g. github.com/acme/infra) or /regex/, got {value!r}"


def _check_nonempty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _check_word(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
        return None
    return f"{value!r} must be a single word (letters, digits, _ . -)"


def _check_flag(value: str) -> str | None:
    if re.fullmatch(r"--?[A-Za-z0-9][A-Za-z0-9\-]*", value):
        return None
    return f"{value!r} must be a flag such as -target"


def _check_principal(value: str) -> str | None:
    if _PRINCIPAL.fullmatch(value):
        return None
    return f"{value!r} must be a user name, team:ORG/SLUG or group:PATH"


def _check_relative(value: str) -> str | None:
    if value.startswith(("/", "~")) or ".." in Path(value).parts:
        return f"{value!r} must be a path inside the repository"
    return None


def _check_mapping(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else "expected a mapping"


def _check_unique_names(value: tuple[Any, ...]) -> str | None:
    names = [item.name for item in value]
    dupes = sorted({n for n in names if names.count(n) > 1})
    return f"duplicate name {', '.join(dupes)}" if dupes else None


def _check_not_empty_list(value: tuple[Any, ...]) -> str | None:
    return None if value else "must list at least one entry"


def _secret(default: Any = None, **meta: Any) -> Any:
    return field(default=default, repr=False, metadata={"secret": True, **meta})


def _meta(default: Any = MISSING, factory: Any = MISSING, **meta: Any) -> Any:
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --- the settings tree ----------------------------------------------------------------------

@dataclass(frozen=True)
class GitHubSettings:
    api_url: str = _meta("https://api.github.com", check=_check_url)
    token: str | None = _secret()
    app_id: int | None = _meta(None, min=1)
    private_key: str | None = _secret()  # PEM text, usually given as private_key_file
    webhook_secret: str | None = _secret()
    bot_login: str | None = None  # None = ask the API who we are
    write_interval: float = _meta(1.0, min=0)  # seconds between API writes, as GitHub asks of integrations

    @property
    def configured(self) -> bool:
        """True when a token or a GitHub App is set."""
        return bool(self.token or self.app_id)


@dataclass(frozen=True)
class GitLabSettings:
    url: str = _meta("https://gitlab.com", check=_check_url)
    token: str | None = _secret()
    webhook_secret: str | None = _secret()
    bot_login: str | None = None

    @property
    def configured(self) -> bool:
        """True when a token is set."""
        return bool(self.token)


@dataclass(frozen=True)
class ProjectDefaults:
    autoplan: bool = True
    apply_requirements: tuple[Requirement, ...] = ("approved", "mergeable")
    apply_on_approval: bool = False
    apply_on_merge: bool = False
    automerge: bool = False
    allowed_overrides: tuple[Override, ...] = (
        "apply_requirements", "workflow", "apply_on_approval", "apply_on_merge", "automerge",
    )


@dataclass(frozen=True)
class Hook:
    run: str = _meta(check=_check_nonempty)
    description: str | None = None


@dataclass(frozen=True)
class RepoKubectl:
    context: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class RepoDrift:
    schedule: str | None = _meta(None, check=_check_cron)
    remediate: bool | None = None


@dataclass(frozen=True)
class RepoEntry:
    """One server-side repo config entry; None means "not set here, inherit"."""

    id: str = _meta(check=_check_repo_id)
    autoplan: bool | None = None
    apply_requirements: tuple[Requirement, ...] | None = None
    apply_on_approval: bool | None = None
    apply_on_merge: bool | None = None
    automerge: bool | None = None
    allowed_overrides: tuple[Override, ...] | None = None
    workflow: str | None = None  # default workflow name, as in Atlantis' repos.yaml
    allow_custom_workflows: bool | None = None
    allowed_workflows: tuple[str, ...] | None = None
    workflows: dict[str, Any] | None = _meta(None, each=_check_mapping)
    pre_workflow_hooks: tuple[Hook, ...] | None = None
    post_workflow_hooks: tuple[Hook, ...] | None = None
    repo_config_file: str | None = _meta(None, check=_check_relative)
    kubectl: RepoKubectl | None = None
    drift: RepoDrift | None = None

    def matches(self, repo_id: str) -> bool:
        """Exact id, or full match of the regex written as /regex/."""
        if self.id.startswith("/") and self.id.endswith("/") and len(self.id) > 1:
            return re.fullmatch(self.id[1:-1], repo_id) is not None
        return self.id == repo_id


@dataclass(frozen=True)
class ResolvedRepoSettings:
    """Defaults overlaid by every matching repo entry, in order."""

    repo_id: str
    autoplan: bool
    apply_requirements: tuple[Requirement, ...]
    apply_on_approval: bool
    apply_on_merge: bool
    automerge: bool
    allowed_overrides: tuple[Override, ...]
    workflow: str | None
    allow_custom_workflows: bool
    allowed_workflows: tuple[str, ...]
    workflows: dict[str, Any]
    pre_workflow_hooks: tuple[Hook, ...]
    post_workflow_hooks: tuple[Hook, ...]
    repo_config_file: str | None  # None = plankeeper.yaml, else atlantis.yaml
    kubectl: RepoKubectl
    drift: RepoDrift
    matched_ids: tuple[str, ...]  # ids of the entries applied, in order


@dataclass(frozen=True)
class TerraformSettings:
    binary: str = _meta("auto", check=_check_nonempty)
    binaries: dict[str, str] = _meta(factory=dict)  # version constraint -> path
    timeout: int = _meta(3600, min=1)


@dataclass(frozen=True)
class KubectlSettings:
    binary: str = _meta("kubectl", check=_check_nonempty)  # a name on PATH or a path
    helm: str = _meta("helm", check=_check_nonempty)  # for `render: helm`; a name on PATH or a path
    kubeconfig: Path | None = None  # None = render-only mode
    context: str | None = None


@dataclass(frozen=True)
class DriftSettings:
    schedule: str | None = _meta(None, check=_check_cron)
    remediate: bool = False


@dataclass(frozen=True)
class PolicySet:
    name: str = _meta(check=_check_word)
    path: Path = _meta()
    owners: tuple[str, ...] = _meta((), each=_check_principal)


@dataclass(frozen=True)
class PolicySettings:
    sets: tuple[PolicySet, ...] = _meta((), check=_check_unique_names)


@dataclass(frozen=True)
class UISettings:
    username: str | None = None
    password: str | None = _secret()
    api_token: str | None = _secret()


@dataclass(frozen=True)
class Notification:
    kind: Literal["slack", "http"] = _meta()
    url: str = _secret(MISSING, check=_check_url)  # Slack webhook URLs carry a secret
    events: tuple[NotificationEvent, ...] = _meta(
        ("apply", "failure", "drift"), check=_check_not_empty_list)


@dataclass(frozen=True)
class Settings:
    host: str = _meta("127.0.0.1", check=_check_nonempty)
    port: int = _meta(4141, min=1, max=65535)
    public_url: str = _meta("http://localhost:4141", check=_check_url)
    data_dir: Path = Path(".plankeeper")
    redis_url: str | None = _meta(None, check=_check_redis_url)
    workers: int = _meta(2, min=0)
    repo_allowlist: tuple[str, ...] = _meta(("*",), each=_check_nonempty)
    comment_aliases: tuple[str, ...] = _meta((), each=_check_word)
    github: GitHubSettings = field(default_factory=GitHubSettings)
    gitlab: GitLabSettings = field(default_factory=GitLabSettings)
    defaults: ProjectDefaults = field(default_factory=ProjectDefaults)
    repos: tuple[RepoEntry, ...] = ()
    terraform: TerraformSettings = field(default_factory=TerraformSettings)
    kubectl: KubectlSettings = field(default_factory=KubectlSettings)
    extra_args_allowlist: tuple[str, ...] = _meta(
        ("-target", "-replace", "-var", "-refresh", "-lock-timeout", "-parallelism"),
        each=_check_flag)
    drift: DriftSettings = field(default_factory=DriftSettings)
    policies: PolicySettings = field(default_factory=PolicySettings)
    permissions: dict[str, tuple[str, ...]] = _meta(
        factory=dict, keys=COMMANDS, each=lambda v: _first(map(_check_principal, v)))
    allow_fork_prs: bool = False
    allow_draft_prs: bool = False
    ui: UISettings = field(default_factory=UISettings)
    notifications: tuple[Notification, ...] = ()

    def repo_settings(self, repo_id: str) -> ResolvedRepoSettings:
        """Settings for one repository (host/owner/repo): later matching entries win."""
        values: dict[str, Any] = dataclasses.asdict(self.defaults)
        values.update(workflow=None, allow_custom_workflows=False, allowed_workflows=(),
                      workflows={}, pre_workflow_hooks=(), post_workflow_hooks=(),
                      repo_config_file=None)
        kube: dict[str, Any] = {"context": self.kubectl.context, "namespace": None}
        drift: dict[str, Any] = {"schedule": self.drift.schedule,
                                 "remediate": self.drift.remediate}
        matched = []
        for entry in self.repos:
            if not entry.matches(repo_id):
                continue
            matched.append(entry.id)
            for name in values:
                value = getattr(entry, name)
                if value is not None:
                    values[name] = {**values[name], **value} if name == "workflows" else value
            for target, part in ((kube, entry.kubectl), (drift, entry.drift)):
                if part is not None:
                    target.update({k: v for k, v in vars(part).items() if v is not None})
        return ResolvedRepoSettings(
            repo_id=repo_id, **values, kubectl=RepoKubectl(**kube), drift=RepoDrift(**drift),
            matched_ids=tuple(matched))


def _first(messages: Any) -> str | None:
    return next((m for m in messages if m), None)


# --- loading --------------------------------------------------------------------------------

class _EnvStr(str):
    """A string from the environment: may still need parsing as int, bool, list or null."""


def load_settings(path: str | Path | None, environ: Mapping[str, str]) -> Settings:
    """Read the YAML file (None = defaults only), apply `PLANKEEPER_*` overrides from
    `environ`, read `*_file` secrets, and validate. Raises SettingsError naming the key."""
    raw = _read_yaml(Path(path)) if path is not None else {}
    _overlay_env(raw, environ)
    public_url_set = raw.get("public_url") not in (None, "")
    if not public_url_set:
        raw.pop("public_url", None)
    settings = _build(Settings, raw, "")
    changes: dict[str, Any] = {"data_dir": _resolve_path(settings.data_dir)}
    if not public_url_set:
        changes["public_url"] = _default_public_url(settings.host, settings.port)
    return dataclasses.replace(settings, **changes)


def validate_for_serve(settings: Settings) -> None:
    """Checks that only matter for a running server. Raises SettingsError naming the key."""
    gh, gl = settings.github, settings.gitlab
    if gh.configured and not gh.webhook_secret:
        raise SettingsError(
            "github.webhook_secret is required when github.token or github.app_id is set")
    if gl.configured and not gl.webhook_secret:
        raise SettingsError("gitlab.webhook_secret is required when gitlab.token is set")
    if gh.app_id and not gh.private_key:
        raise SettingsError("github.private_key_file is required when github.app_id is set")
    if gh.private_key and not gh.app_id:
        raise SettingsError("github.app_id is required when github.private_key is set")
    if settings.workers < 0:
        raise SettingsError(f"workers: expected an integer >= 0, got {settings.workers}")
    if bool(settings.ui.username) != bool(settings.ui.password):
        raise SettingsError("ui.username and ui.password must be set together")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings at the top level")
    return data


def _default_public_url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "::", "127.0.0.1", "::1"):
        host = "localhost"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _resolve_path(path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _err(path: str, message: str) -> SettingsError:
    return SettingsError(f"{path}: {message}")


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _allowed_keys(cls: type) -> list[str]:
    keys = []
    for spec in fields(cls):
        keys.append(spec.name)
        if spec.metadata.get("secret"):
            keys.append(spec.name + "_file")
    return keys


def _secret_sibling(cls: type, key: str) -> str | None:
    """For a secret key, its `_file` twin and back; None for other keys."""
    secrets = {f.name for f in fields(cls) if f.metadata.get("secret")}
    if key in secrets:
        return key + "_file"
    if key.endswith("_file") and key[:-5] in secrets:
        return key[:-5]
    return None


# --- environment overlay --------------------------------------------------------------------

def _overlay_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    set_by_env: set[tuple[str, ...]] = set()
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        segments = tuple(name[len(ENV_PREFIX):].lower().split("__"))
        sibling = _env_target(segments, name)
        node = raw
        for seg in segments[:-1]:
            if not isinstance(node.get(seg), dict):
                node[seg] = {}
            node = node[seg]
        if sibling is not None:
            if segments[:-1] + (sibling,) in set_by_env:
                path = ".".join(segments)
                raise _err(path, f"both {path} and {sibling} are set in the environment; use one")
            node.pop(sibling, None)  # the environment overrides YAML's other form of the secret
        node[segments[-1]] = _EnvStr(environ[name])
        set_by_env.add(segments)


def _env_target(segments: tuple[str, ...], var: str) -> str | None:
    """Check that an env var names a settings key; return the key's secret twin, if any."""
    tp: Any = Settings
    for depth, seg in enumerate(segments):
        path = ".".join(segments[: depth + 1])
        tp = _unwrap_optional(tp)
        if is_dataclass(tp):
            allowed = _allowed_keys(tp)
            if seg not in allowed:
                raise _err(path, f"unknown key{_did_you_mean(seg, allowed)}; set by {var}")
            if depth == len(segments) - 1:
                return _secret_sibling(tp, seg)
            tp = _hints(tp).get(seg, str)
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            whole = ENV_PREFIX + "__".join(segments[:depth]).upper()
            raise _err(path, f"cannot set part of this value (set by {var}); set {whole} "
                             "to the whole value as JSON")
    return None


# --- conversion -----------------------------------------------------------------------------

def _build(cls: Any, raw: Any, path: str) -> Any:
    if isinstance(raw, _EnvStr):
        raw = _parse_env(raw, path, dict)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _err(path or "settings", f"expected a mapping, got {_show(raw, {})}")
    raw = dict(raw)
    allowed = _allowed_keys(cls)
    for key in raw:
        if not isinstance(key, str) or key not in allowed:
            raise _err(_key(path, str(key)), "unknown key" + _did_you_mean(str(key), allowed))
    _read_secret_files(cls, raw, path)
    hints = _hints(cls)
    kwargs = {}
    for spec in fields(cls):
        key = _key(path, spec.name)
        if spec.name in raw:
            kwargs[spec.name] = _convert(raw[spec.name], hints[spec.name], key, spec.metadata)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise _err(key, "required")
    return cls(**kwargs)


def _read_secret_files(cls: Any, raw: dict[str, Any], path: str) -> None:
    for spec in fields(cls):
        file_key = spec.name + "_file"
        if not spec.metadata.get("secret") or file_key not in raw:
            continue
        filename = raw.pop(file_key)
        if filename is None or (isinstance(filename, _EnvStr) and not filename.strip()):
            continue
        key = _key(path, file_key)
        if raw.get(spec.name) is not None:
            raise _err(key, f"both {spec.name} and {file_key} are set; use one")
        if not isinstance(filename, str):
            raise _err(key, f"expected a file path, got {filename!r}")
        try:
            text = _resolve_path(Path(filename)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _err(key, f"cannot read {filename!r}: {exc}") from None
        raw[spec.name] = text.rstrip("\r\n")


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        return next(a for a in get_args(tp) if a is not type(None))
    return tp


def _show(value: Any, meta: Mapping[str, Any]) -> str:
    if meta.get("secret"):
        return f"a value of type {type(value).__name__}"  # never echo a secret
    return repr(str(value)) if isinstance(value, _EnvStr) else repr(value)


def _parse_env(value: _EnvStr, path: str, kind: type) -> Any:
    """Lists: JSON/YAML `[a, b]` or comma-separated; mappings: JSON/YAML `{k: v}`."""
    text = value.strip()
    if kind is list and not text.startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        parsed = yaml.safe_load(text) if text else kind()
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, kind):
        noun = "a JSON list" if kind is list else "a JSON object"
        raise _err(path, f"expected {noun} in the environment variable, got {str(value)!r}")
    return parsed


def _convert(value: Any, tp: Any, path: str, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, _EnvStr) and value.strip().lower()
                             in ("", "null", "none")):
            return None
        return _convert(value, _unwrap_optional(tp), path, meta)
    result = _convert_value(value, tp, origin, path, meta)
    message = meta.get("check") and meta["check"](result)
    if message:
        raise _err(path, message)
    return result


def _convert_value(value: Any, tp: Any, origin: Any, path: str, meta: Mapping[str, Any]) -> Any:
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise _err(path, f"{_show(value, meta)} is not one of {', '.join(choices)}")
        return str(value)
    if origin is tuple:
        return _convert_list(value, get_args(tp)[0], path, meta)
    if origin is dict:
        return _convert_dict(value, get_args(tp)[1], path, meta)
    if tp is Any:
        return value
    if is_dataclass(tp):
        return _build(tp, value, path)
    if tp is bool:
        return _convert_bool(value, path)
    if tp is int:
        return _convert_int(value, path, meta)
    if tp is float:
        return _convert_float(value, path, meta)
    if not isinstance(value, str):
        hint = " (quote it in YAML)" if isinstance(value, (int, float, bool)) else ""
        raise _err(path, f"expected a string, got {_show(value, meta)}{hint}")
    return _resolve_path(Path(value)) if tp is Path else str(value)


def _convert_list(value: Any, item_tp: Any, path: str, meta: Mapping[str, Any]) -> tuple:
    if isinstance(value, _EnvStr):
        value = _parse_env(value, path, list)
    if not isinstance(value, list):
        raise _err(path, f"expected a list, got {_show(value, meta)}")
    items = []
    for i, item in enumerate(value):
        converted = _convert(item, item_tp, f"{path}[{i}]", {})
        message = meta.get("each") and meta["each"](converted)
        if message:
            raise _err(f"{path}[{i}]", message)
        items.append(converted)
    return tuple(items)


def _convert_dict(value: Any, value_tp: Any, path: str, meta: Mapping[str, Any]) -> dict:
    if isinstance(value, _EnvStr):
        value = _parse_env(value, path, dict)
    if not isinstance(value, Mapping):
        raise _err(path, f"expected a mapping, got {_show(value, meta)}")
    result = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _err(_key(path, str(key)), "keys must be strings (quote it in YAML)")
        allowed = meta.get("keys")
        if allowed is not None and key not in allowed:
            raise _err(_key(path, key), f"unknown key, expected one of {', '.join(allowed)}"
                                        + _did_you_mean(key, allowed))
        converted = _convert(item, value_tp, _key(path, key), {})
        message = meta.get("each") and meta["each"](converted)
        if message:
            raise _err(_key(path, key), message)
        result[key] = converted
    return result


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _convert_bool(value: Any, path: str) -> bool:
    if isinstance(value, _EnvStr) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, bool):
        return value
    raise _err(path, f"expected true or false, got {_show(value, {})}")


def _convert_float(value: Any, path: str, meta: Mapping[str, Any]) -> float:
    low = meta.get("min")
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or (low is not None and number < low):
        wanted = "a number" + (f" >= {low}" if low is not None else "")
        raise _err(path, f"expected {wanted}, got {_show(value, meta)}")
    return number


def _convert_int(value: Any, path: str, meta: Mapping[str, Any]) -> int:
    low, high = meta.get("min"), meta.get("max")
    wanted = "an integer" + (f" {low}-{high}" if high is not None
                             else f" >= {low}" if low is not None else "")
    number = value
    if isinstance(value, _EnvStr):
        number = int(value.strip()) if re.fullmatch(r"\s*-?\d+\s*", value) else None
    if (not isinstance(number, int) or isinstance(number, bool)
            or (low is not None and number < low) or (high is not None and number > high)):
        raise _err(path, f"expected {wanted}, got {_show(value, meta)}")
    return number
