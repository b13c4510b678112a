"""Who may read and take writing actions in the UI and the API, and CSRF protection for the pages.

Reading needs no credentials unless `ui.read_auth` is on: then every page, API read and
/metrics needs the same credentials as writing (basic auth or the bearer token; no CSRF token,
since a read changes nothing); only `POST /events`, `/healthz` and the static files stay open.
Writing (unlock, cancel, drift check) needs either
`Authorization: Bearer <ui.api_token>` (API clients; browsers never send it by themselves, so
no CSRF token is needed), or HTTP basic auth with ui.username/ui.password *plus* a CSRF token
(browsers resend basic credentials to any page that asks, so a form on another site could
otherwise post with them). The token is the browser's session id (a random cookie) signed
with a per-installation secret kept in Redis, so every web replica accepts it.
With neither credential configured the UI is read-only and writing answers 403.

Other blueprints (the drift check) protect a view with `@writer_required` and read
`current_writer()`. The app runs `read_guard` before every request.
"""
from __future__ import annotations

import functools
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable, Optional

import redis
from bot.state import keys
from flask import Response, current_app, g, jsonify, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "pk_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_MAX_AGE = 12 * 3600
REALM = 'Basic realm="Plankeeper", charset="UTF-8"'
# never behind ui.read_auth (POST /events is not a Flask view: bot.webhooks.mount serves it first)
OPEN_ENDPOINTS = frozenset({"healthz", "static",
                            "runs_api.api_plan", "runs_api.api_apply"})  # these check the API token themselves
READ_ONLY = ("The Plankeeper UI is read-only: no UI credentials are configured. Set ui.username and "
             "ui.password (pages) or ui.api_token (API) in the server config, then restart, to enable "
             "unlock, cancel and drift checks.")


@dataclass(frozen=True)
class Writer:
    """Who is taking a writing action: the UI user, or 'api-token'."""

    user: str
    via: str  # basic | token


class AccessDenied(Exception):
    """A writing action without valid credentials (401) or CSRF token / configuration (403)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _ui():
    return current_app.config["RUNTIME"].settings.ui


def basic_enabled() -> bool:
    return bool(_ui().username and _ui().password)


def writing_enabled() -> bool:
    return basic_enabled() or bool(_ui().api_token)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_user() -> Optional[str]:
    """The UI user when the request carries the right basic credentials, else None."""
    auth = request.authorization
    if not basic_enabled() or auth is None or auth.type != "basic":
        return None
    ok = _same(auth.username or "", _ui().username) & _same(auth.password or "", _ui().password)
    return _ui().username if ok else None


def _bearer() -> Optional[str]:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def check_writer() -> Writer:
    """The writer of this request; raises AccessDenied saying what is missing."""
    if not writing_enabled():
        raise AccessDenied(403, READ_ONLY)
    token = _bearer()
    if token is not None:
        if _ui().api_token and _same(token, _ui().api_token):
            return Writer("api-token", "token")
        raise AccessDenied(401, "Wrong API token: send Authorization: Bearer <ui.api_token>.")
    user = basic_user()
    if user is None:
        how = "sign in with the UI username and password" if basic_enabled() else \
            "send Authorization: Bearer <ui.api_token>"
        raise AccessDenied(401, f"This action needs the UI credentials: {how}.")
    if not csrf_valid(request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""):
        raise AccessDenied(403, "The form's CSRF token is missing or expired: reload the page and try again.")
    return Writer(user, "basic")


def check_api_token() -> Writer:
    """The writer of a CI request (POST /api/plan, /api/apply): only the API token, as
    `Authorization: Bearer` or Atlantis' `X-Atlantis-Token`; raises AccessDenied."""
    if not _ui().api_token:
        raise AccessDenied(403, "The plan/apply API is off: set ui.api_token in the server config, then restart.")
    token = _bearer()
    if token is None:
        token = request.headers.get("X-Atlantis-Token")
    if token is None:
        raise AccessDenied(401, "Send the API token: Authorization: Bearer <ui.api_token> (or X-Atlantis-Token).")
    if not _same(token, _ui().api_token):
        raise AccessDenied(403, "Wrong API token.")
    return Writer("api-token", "token")


def check_reader() -> None:
    """Raise AccessDenied (401) when ui.read_auth is on and the request lacks the UI credentials."""
    if not _ui().read_auth:
        return
    token = _bearer()
    if token is not None:
        if _ui().api_token and _same(token, _ui().api_token):
            return
        raise AccessDenied(401, "Wrong API token: send Authorization: Bearer <ui.api_token>.")
    if basic_user() is not None:
        return
    how = " or ".join(way for way, on in (("sign in with the UI username and password", basic_enabled()),
                                          ("send Authorization: Bearer <ui.api_token>", bool(_ui().api_token))) if on)
    raise AccessDenied(401, f"Reading needs the UI credentials here (ui.read_auth is on): {how}.")


def read_guard() -> Optional[Response]:
    """before_request: refuse a read without credentials when ui.read_auth is on (not /events, /healthz)."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    try:
        check_reader()
    except AccessDenied as exc:
        return denied(exc)
    return None


def current_writer() -> Writer:
    return g.pk_writer


def writer_required(view: Callable) -> Callable:
    """Decorate a writing view: answers 401/403 itself, else runs it with current_writer() set."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            g.pk_writer = check_writer()
        except AccessDenied as exc:
            return denied(exc)
        return view(*args, **kwargs)

    return wrapper


def wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes["application/json"]


def denied(exc: AccessDenied) -> Response:
    """The answer to a refused action: a page for browsers, JSON otherwise; 401 asks for basic auth."""
    if wants_html():
        response = Response(render_template("message.html", title="Not allowed", message=exc.message,
                                            status=exc.status), exc.status)
    else:
        response = jsonify({"error": exc.message})
        response.status_code = exc.status
    if exc.status == 401 and basic_enabled():
        response.headers["WWW-Authenticate"] = REALM
    return response


def _secret() -> str:
    cached = current_app.config.get("PK_UI_SECRET")
    if cached:
        return cached
    r: redis.Redis = current_app.config["RUNTIME"].redis
    r.set(keys.UI_SECRET, secrets.token_hex(32), nx=True)
    value = r.get(keys.UI_SECRET).decode()
    current_app.config["PK_UI_SECRET"] = value
    return value


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(), salt="plankeeper-csrf")


def _session_id() -> str:
    sid = request.cookies.get(SESSION_COOKIE) or g.get("pk_new_session")
    if not sid:
        sid = g.pk_new_session = secrets.token_urlsafe(24)
    return sid


def csrf_token() -> str:
    """A token for this browser session's forms (sets the session cookie when it is new)."""
    return _serializer().dumps(_session_id())


def csrf_valid(token: str) -> bool:
    sid = request.cookies.get(SESSION_COOKIE)
    if not token or not sid:
        return False
    try:
        signed_sid = _serializer().loads(token, max_age=CSRF_MAX_AGE)
    except BadSignature:
        return False
    return isinstance(signed_sid, str) and _same(signed_sid, sid)


def set_session_cookie(response: Response) -> Response:
    """after_request: hand out the session cookie a page's CSRF token was made for."""
    sid = g.get("pk_new_session")
    if sid:
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", path="/")
    return response
