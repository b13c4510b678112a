"""create_app(settings): the Flask factory. One Redis connection per process."""
from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify
from rq import Worker

from bot import __version__, locks, metrics, queueing
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, runtime: Runtime | None = None) -> Flask:
    """Build the web app; settings must already be validated and redis_url set."""
    app = Flask(__name__)
    rt = runtime or Runtime.connect(settings)
    app.config["RUNTIME"] = rt
    app.config["MAX_CONTENT_LENGTH"] = None  # the webhook view enforces its own limit with a JSON answer

    from bot.webhooks import blueprint as webhooks_bp
    from bot import logs
    from bot.ui import api_blueprint as ui_api_bp, blueprint as ui_bp
    from bot.drift_api import blueprint as drift_bp

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
