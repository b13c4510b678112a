"""Reading the settings: YAML, then `PLANKEEPER_*` environment overrides, then `*_file`
secrets, converted and checked field by field using the dataclasses of bot.settings as the
schema: `load_settings` is the only way settings are read."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from bot.errors import SettingsError
from bot.settings import ENV_NOT_SETTINGS, ENV_PREFIX, Settings

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
        # Links in comments lead to the UI, which listens on ui.port when that is set.
        changes["public_url"] = _default_public_url(settings.host, settings.ui.port or settings.port)
    return dataclasses.replace(settings, **changes)


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
        value = _on_off(value, choices)
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


def _on_off(value: Any, choices: tuple) -> Any:
    """A boolean for a choice between on and off: YAML 1.1 reads `on`, `off`, `true` and `false`
    as booleans, and the environment spells them any of the ways _convert_bool accepts."""
    if "on" not in choices or "off" not in choices:
        return value
    if isinstance(value, _EnvStr) and value.strip().lower() in _TRUE + _FALSE:
        return "on" if value.strip().lower() in _TRUE else "off"
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


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
