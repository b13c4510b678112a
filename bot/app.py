"""create_app(settings): the Flask factory. One Redis connection per process (shared by the
events and UI apps when `ui.port` splits them)."""
from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify
from rq import Worker

from bot import __version__, metrics, queueing
from bot.state import locks
from bot import logs
from bot.context import Runtime
from bot.drift.api import blueprint as drift_bp
from bot.engines import sandbox_status
from bot.models import pull_ref
from bot.ui import api_blueprint as ui_api_bp, blueprint as ui_bp
from bot.ui.auth import read_guard
from bot.ui.runs_api import blueprint as runs_api_bp
from bot.webhooks import EventsEndpoint, mount
from bot.settings import Settings

log = logging.getLogger(__name__)
NO_WORKERS = ("no worker is registered on this Redis: webhooks are accepted and queued, but nothing runs "
              "them. Start `plankeeper worker` against the same redis_url, or run `plankeeper serve` with "
              "workers > 0.")


SERVES = ("all", "events", "ui")


def create_app(settings: Settings, runtime: Runtime | None = None, serves: str = "all") -> Flask:
    """Build the web app; settings must already be validated and redis_url set.

    serves: "all" (one listener), "events" (`POST /events` and `/healthz` only: what faces the
    forges when `ui.port` is set) or "ui" (pages, JSON API and `/metrics`, plus `/healthz`).
    """
    if serves not in SERVES:
        raise ValueError(f"serves must be one of {SERVES}, got {serves!r}")
    app = Flask(__name__)
    rt = runtime or Runtime.connect(settings)
    app.config["RUNTIME"] = rt
    app.config["MAX_CONTENT_LENGTH"] = None  # the webhook view enforces its own limit with a JSON answer
    app.before_request(logs.clear)  # a server thread's last request must not lend its log context
    # `#12` on GitHub, `!12` for a GitLab merge request (SPEC §8), in every page
    app.jinja_env.globals["pull_ref"] = lambda repo_id, number: pull_ref(settings.forge_for(str(repo_id)), number)

    if serves != "ui":
        mount(app, EventsEndpoint(rt))
    if serves != "events":
        app.before_request(read_guard)  # ui.read_auth: every read but /events and /healthz
        app.register_blueprint(ui_bp)
        app.register_blueprint(ui_api_bp)
        app.register_blueprint(drift_bp)
        app.register_blueprint(runs_api_bp)  # POST /api/plan, /api/apply
        app.add_url_rule("/metrics", "metrics", lambda: metrics_view(rt))

    @app.get("/healthz")
    def healthz():
        kind, warning = sandbox_status(settings)  # reported, not a reason for 503: `sandbox: none` may be chosen
        sandbox = {"sandbox": kind, **({"sandbox_warning": warning} if warning else {})}
        try:
            rt.redis.ping()
            workers = Worker.count(connection=rt.redis)
        except redis.RedisError as exc:
            return jsonify({"status": "unavailable", "redis": f"error: {exc}", "version": __version__, **sandbox}), 503
        if workers == 0:
            # Webhooks are still acknowledged and queued, but nothing runs them: not ready.
            return jsonify({"status": "degraded", "redis": "ok", "workers": 0, "version": __version__,
                            "message": NO_WORKERS, **sandbox}), 503
        return jsonify({"status": "ok", "redis": "ok", "workers": workers, "version": __version__, **sandbox})

    return app


def metrics_view(rt: Runtime) -> Response:
    body = metrics.exposition(
        rt.redis,
        queue_depth=lambda: queueing.queue(rt.redis).count,
        locks_held=lambda: len(locks.all_locks(rt.redis)),
    )
    return Response(body, mimetype="text/plain; version=0.0.4")
