"""Fixtures for GitLab end-to-end tests: a FakeGitLab and `plankeeper serve` processes
configured against it; pytest finds them here for every end-to-end test."""
from __future__ import annotations

from pathlib import Path

import pytest
import redis

from bot.embedded_redis import EmbeddedRedis
from tests.fakes.gitlab import FakeGitLab
from tests.support import EMBEDDED_TERRAFORM, Server

GITLAB_TOKEN = "glpat-test-token"
GITLAB_WEBHOOK_SECRET = "gitlab-webhook-token-for-tests"
BOT_LOGIN = "plankeeper-bot"


@pytest.fixture
def fake_gitlab():
    with FakeGitLab(token=GITLAB_TOKEN, bot_username=BOT_LOGIN) as fake:
        yield fake


@pytest.fixture
def gitlab_serve_factory(tmp_path: Path, fake_gitlab):
    """Start `plankeeper serve` processes configured against the fake GitLab; `extra` merges
    into the config one level deep (e.g. {"defaults": {"apply_on_merge": True}})."""
    servers: list[Server] = []

    def start(extra: dict | None = None, name: str = "server") -> Server:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        config: dict = {
            "workers": 2,
            "gitlab": {"url": fake_gitlab.url, "token": GITLAB_TOKEN,
                       "webhook_secret": GITLAB_WEBHOOK_SECRET, "bot_login": BOT_LOGIN},
            "terraform": {"binary": EMBEDDED_TERRAFORM, "timeout": 120},
            "sandbox_paths": [f"{tmp_path / 'state'}:rw"],  # local backends' state, outside the work dirs
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        server = Server(directory, config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        code = server.stop()
        _stop_embedded_redis(server)
        assert code == 0, f"serve exited with {code}:\n{server.log()}"


def _stop_embedded_redis(server: Server) -> None:
    """Shut down the Redis `serve` started if it is still up: serve's own stop sends
    SHUTDOWN ... NOW FORCE, which the bundled Redis 6.2 refuses, so it would outlive the test
    (and a later run whose data dir hashes to the same socket would take it over)."""
    socket = EmbeddedRedis(Path(server.config["data_dir"])).socket
    if not socket.exists():
        return
    try:
        redis.Redis(unix_socket_path=str(socket), socket_timeout=5).shutdown(nosave=True)
    except redis.RedisError:
        pass  # already gone
