"""What every forge's webhook reader shares: Ignored, MalformedEvent and typed field access.

A reader returns a `PullRequestEvent`, `CommentEvent` or `ReviewEvent`, or `Ignored(reason)`
for deliveries the bot has nothing to do with. A payload that lacks a field the bot needs, or
carries it with the wrong JSON type, raises `MalformedEvent` naming the field (the receiver
answers 400); nothing else is ever raised.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Ignored:
    """A well-formed delivery the bot deliberately does nothing with, and why."""

    reason: str


class MalformedEvent(ValueError):
    """The payload is not the JSON the forge documents; the message names the field."""


# ---------------------------------------------------------------- headers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts as well as Werkzeug headers."""
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


# ---------------------------------------------------------------- typed field access

T = TypeVar("T")
_TYPE_NAMES = {dict: "an object", str: "a string", int: "an integer", bool: "a boolean"}


def get_required(obj: Mapping[str, Any], key: str, where: str, kind: type[T]) -> T:
    """obj[key] as `kind`; MalformedEvent("<where><key>: ...") when null, absent or mistyped."""
    value = obj.get(key)
    if value is None:
        raise MalformedEvent(f"{where}{key}: missing")
    # bool is an int subclass in Python; JSON true is not a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = _TYPE_NAMES.get(kind, kind.__name__)
        raise MalformedEvent(f"{where}{key}: expected {expected}, got {type(value).__name__}")
    return value


def get_obj(obj: Mapping[str, Any], key: str, where: str = "") -> dict:
    return get_required(obj, key, where, dict)


def get_opt_obj(obj: Mapping[str, Any], key: str, where: str = "") -> dict | None:
    return None if obj.get(key) is None else get_required(obj, key, where, dict)


def get_str(obj: Mapping[str, Any], key: str, where: str = "") -> str:
    return get_required(obj, key, where, str)


def get_opt_str(obj: Mapping[str, Any], key: str, where: str = "", default: str = "") -> str:
    return default if obj.get(key) is None else get_required(obj, key, where, str)


def get_int(obj: Mapping[str, Any], key: str, where: str = "") -> int:
    return get_required(obj, key, where, int)


def get_opt_int(obj: Mapping[str, Any], key: str, where: str = "") -> int | None:
    return None if obj.get(key) is None else get_required(obj, key, where, int)


def get_flag(obj: Mapping[str, Any], key: str, where: str = "") -> bool:
    return obj.get(key) is not None and get_required(obj, key, where, bool)


def host_of(url: str, field_name: str) -> str:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise MalformedEvent(f"{field_name}: not a URL ({exc})") from None
    if not host:
        raise MalformedEvent(f"{field_name}: not a URL with a host")
    return f"{host}:{port}" if port else host


def require_object(payload: Any) -> dict:
    if not isinstance(payload, dict):
        raise MalformedEvent(f"payload: expected a JSON object, got {type(payload).__name__}")
    return payload


def is_self(login: str, bot_login: str | None, *, is_bot_account: bool = False) -> bool:
    """Whether `login` is this bot; GitHub App accounts log in as `<app>[bot]`."""
    if not bot_login:
        return False
    login, bot_login = login.lower(), bot_login.lower()
    if login == bot_login:
        return True
    return is_bot_account and login == f"{bot_login}[bot]"




# ---------------------------------------------------------------- webhook sources

Headers = Mapping[str, str]


@dataclass(frozen=True)
class WebhookSource:
    """One forge's webhooks: how a delivery is recognised, authenticated, de-duplicated and read.

    `authenticate(section, headers, body)` gets the forge's settings section and the raw body and
    returns what is wrong (None when the delivery is authentic); `read(event_name, payload,
    delivery_id, settings)` turns the JSON into an event. A forge that names the event or the
    delivery in the body (Azure DevOps) overrides `recognises`, `event_name` and `delivery_id`.
    """

    forge: str
    event_header: str
    delivery_headers: tuple[str, ...]
    authenticate: Callable[[Any, Headers, bytes], str | None]
    read: Callable[[str, Any, str, Any], Any]

    def recognises(self, headers: Headers) -> bool:
        return header(headers, self.event_header) is not None

    @property
    def recognised_by(self) -> str:
        """What marks a delivery as this forge's, for the answer to one no forge recognises."""
        return f"{self.event_header} (a {self.forge} webhook)"

    @property
    def delivery_named_by(self) -> str:
        """Where the delivery id is read, for the answer to a delivery without one."""
        return " / ".join(self.delivery_headers)

    def event_name(self, headers: Headers, payload: Any = None) -> str:
        return header(headers, self.event_header) or ""

    def delivery_id(self, headers: Headers, payload: Any = None) -> str | None:
        """The forge's unique id for this delivery, used to de-duplicate retries; None if absent."""
        for name in self.delivery_headers:
            value = header(headers, name)
            if value and value.strip():
                return value.strip()
        return None


def missing_secret(forge: str, secret: str | None) -> str | None:
    """The refusal for a forge whose webhook secret the server lacks, else None."""
    if secret:
        return None
    return f"{forge}.webhook_secret is not configured on this server: set it to accept {forge} webhooks"
