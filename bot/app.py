"""create_app(settings): the Flask factory. One Redis connection per process."""
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
from bot.ui import api_blueprint as ui_api_bp, blueprint as ui_bp
from bot.webhooks import blueprint as webhooks_bp
from bot.settings import Settings

log = logging.getLogger(__name__)
NO_WORKERS = ("no worker is registered on this Redis: webhooks are accepted and queued, but nothing runs "
              "them. Start `plankeeper worker` against the same redis_url, or run `plankeeper serve` with "
              "workers > 0.")


def create_app(settings: Settings, runtime: Runtime | None = None) -> Flask:
    """Build the web app; settings must already be validated and redis_url set."""
    app = Flask(__name__)
    rt = runtime or Runtime.connect(settings)
    app.config["RUNTIME"] = rt
    app.config["MAX_CONTENT_LENGTH"] = None  # the webhook view enforces its own limit with a JSON answer

    app.register_blueprint(webhooks_bp)
    app.register_blueprint(ui_bp)
    app.register_blueprint(ui_api_bp)
    app.before_request(logs.clear)  # a server thread's last request must not lend its log context
    app.register_blueprint(drift_bp)

    @app.get("/healthz")
    def healthz():
        try:
            rt.redis.ping()
            workers = Worker.count(connection=rt.redis)
        except redis.RedisError as exc:
            return jsonify({"status": "unavailable", "redis": f"error: {exc}", "version": __version__}), 503
        if workers == 0:
            # Webhooks are still acknowledged and queued, but nothing runs them: not ready.
            return jsonify({"status": "degraded", "redis": "ok", "workers": 0, "version": __version__,
                            "message": NO_WORKERS}), 503
        return jsonify({"status": "ok", "redis": "ok", "workers": workers, "version": __version__})

    @app.get("/metrics")
    def metrics_view():
        body = metrics.exposition(
            rt.redis,
            queue_depth=lambda: queueing.queue(rt.redis).count,
            locks_held=lambda: len(locks.all_locks(rt.redis)),
        )
        return Response(body, mimetype="text/plain; version=0.0.4")

    return app
