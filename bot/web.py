"""serve's web listeners, on granian: HTTP is parsed and answered in Rust, the Flask app runs in a
web process that granian forks from `serve` (and forks again when it dies), on HTTP_THREADS
request threads.

Chosen by measurement (`bench/wsgi_servers.py`, README "Benchmarks"): with the same app, the
same Redis and 2,000 webhooks at 50 in flight, granian acked at p99 ~60 ms and ~1,100/s where
waitress, the server before it, gave ~85 ms and ~800/s; waitress' Python HTTP parser and the
GIL hand-offs of its I/O loop were a third of the web process' CPU.
"""
from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

from flask import Flask
from granian.constants import Interfaces
from granian.server import Server

from bot.app import create_app
from bot.logs import setup_logging
from bot.settings import Settings
from bot.settings_loader import load_settings
from bot.ui.api import MAX_STREAMS

# Per listener: a UI with every live log tail open (each holds a thread) still has one for
# webhooks. Not more: the app is CPU under one GIL.
HTTP_THREADS = MAX_STREAMS + 1
# On SIGTERM granian waits for running requests this long: a live log tail can run for as long
# as its job, and must not hold up a restart.
KILL_SECONDS = 5
UI_APP = "bot.web:ui_app"  # the factory `python -m granian` loads for a UI port of its own
# granian's own lines go through the root logger, as JSON like every other line
_LOGGING = {"version": 1, "disable_existing_loggers": False,
            "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}}}
_PR_SET_PDEATHSIG = 1


def serve(settings: Settings, serves: str) -> None:
    """Serve create_app(settings, serves=serves) on settings.host:settings.port until SIGTERM or
    SIGINT, then stop the web process and return. granian answers SystemExit(1) when the web
    process keeps dying at start."""
    parent = os.getpid()
    server = Server("plankeeper", address=settings.host, port=settings.port, **_options())
    server.serve(target_loader=lambda: _web_process_app(settings, serves, parent), wrap_loader=False)


def ui_listener_argv(settings: Settings) -> list[str]:
    """The command that serves the UI, API and /metrics on `ui.port` in a granian of its own
    (settings from $PLANKEEPER_CONFIG and the environment, as a worker's)."""
    options = _options()
    return [sys.executable, "-m", "granian", "--interface", "wsgi", "--factory", "--workers", "1",
            "--blocking-threads", str(options["blocking_threads"]), "--backlog", str(options["backlog"]),
            "--workers-kill-timeout", str(KILL_SECONDS), "--respawn-failed-workers", "--log-level", "warning",
            "--host", settings.host, "--port", str(settings.ui.port), UI_APP]


def ui_app() -> Flask:
    """granian's factory for the UI port's listener (ui_listener_argv)."""
    setup_logging()
    settings = load_settings(os.environ.get("PLANKEEPER_CONFIG"), os.environ)
    return _ready(create_app(settings, serves="ui"))


def _options() -> dict:
    return {"interface": Interfaces.WSGI, "workers": 1, "blocking_threads": HTTP_THREADS, "backlog": 2048,
            "respawn_failed_workers": True, "workers_kill_timeout": KILL_SECONDS, "log_level": "warning",
            "log_dictconfig": _LOGGING}


def _web_process_app(settings: Settings, serves: str, parent: int) -> Flask:
    """Runs in the forked web process: the app, built there so its Redis connections are its own."""
    _die_with(parent)
    return _ready(create_app(settings, serves=serves))


def _ready(app: Flask) -> Flask:
    # Everything built so far lives as long as the process: out of the collector's sight, a full
    # collection scans only what requests make (it took 50-60 ms, stalling every request).
    gc.collect()
    gc.freeze()
    return app


def _die_with(parent: int) -> None:
    """Kill this process when `serve` dies, even by SIGKILL: an orphaned web process would keep the
    port and answer webhooks for a server that is gone. (Not SIGTERM: until granian's worker sets
    its own handlers, this process has the handlers of serve's granian, which would ignore it.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # serve died before the prctl
        os.kill(os.getpid(), signal.SIGKILL)
