"""bot/app.py: /healthz is ready (200) only with Redis up and at least one worker registered."""
from __future__ import annotations

from rq import Queue, Worker

from bot import __version__
from bot.app import create_app
from bot.settings import Settings


def _client(redis_url: str):
    app = create_app(Settings(redis_url=redis_url))
    app.testing = True
    return app.test_client()


def test_healthz_is_503_degraded_while_no_worker_is_registered(redis_db):
    answer = _client(f"unix://{redis_db.socket_file}").get("/healthz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "degraded" and body["redis"] == "ok" and body["workers"] == 0
    assert "plankeeper worker" in body["message"] and body["version"] == __version__


def test_healthz_is_ok_once_a_worker_is_registered(redis_db):
    client = _client(f"unix://{redis_db.socket_file}")
    worker = Worker([Queue("plankeeper-test", connection=redis_db)], connection=redis_db)
    worker.register_birth()
    try:
        answer = client.get("/healthz")
        assert answer.status_code == 200
        body = answer.get_json()
        assert body == {"status": "ok", "redis": "ok", "workers": 1, "version": __version__,
                        **{k: v for k, v in body.items() if k.startswith("sandbox")}}
        assert body["sandbox"] in ("bubblewrap", "none")
    finally:
        worker.register_death()
    assert client.get("/healthz").get_json()["status"] == "degraded"


def test_healthz_is_503_unavailable_when_redis_does_not_answer(tmp_path):
    answer = _client(f"unix://{tmp_path / 'no-redis.sock'}").get("/healthz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "unavailable" and body["redis"].startswith("error:")


def test_healthz_reports_the_sandbox_and_what_running_without_one_exposes(redis_db):
    app = create_app(Settings(redis_url=f"unix://{redis_db.socket_file}", sandbox="none"))
    body = app.test_client().get("/healthz").get_json()
    assert body["sandbox"] == "none" and "run code from pull requests" in body["sandbox_warning"]
