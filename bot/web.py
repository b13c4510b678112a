"""serve's web listeners, on granian: HTTP is parsed and answered in Rust, the Flask app runs in a
web process that granian forks from `serve` (and forks again when it dies), on HTTP_THREADS
request threads. A `ui.port` of its own is `python -m bot.web`, a child of serve's.

Chosen by measurement (`bench/wsgi_servers.py`, README "Benchmarks"): with the same app, the
same Redis and 2,000 webhooks at 50 in flight, granian acked at p99 ~60 ms and ~1,100/s where
waitress, the server before it, gave ~85 ms and ~800/s; waitress' Python HTTP parser and the
GIL hand-offs of its I/O loop were a third of the web process' CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
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
from runners.process import signal_when_parent_dies

# Per listener: a UI with every live log tail open (each holds a thread) still has one for
# webhooks. Not more: the app is CPU under one GIL.
HTTP_THREADS = MAX_STREAMS + 1
# On SIGTERM granian waits for running requests this long: a live log tail can run for as long
# as its job, and must not hold up a restart.
KILL_SECONDS = 5
# granian's own lines go through the root logger, as JSON like every other line
_LOGGING = {"version": 1, "disable_existing_loggers": False,
            "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}}}


def serve(settings: Settings, serves: str, port: int) -> None:
    """Serve create_app(settings, serves=serves) on settings.host:port until SIGTERM or SIGINT,
    then stop the web process and return. granian answers SystemExit(1) when the web process
    keeps dying at start."""
    parent = os.getpid()
    server = Server("plankeeper", address=settings.host, port=port, interface=Interfaces.WSGI, workers=1,
                    blocking_threads=HTTP_THREADS, backlog=2048, respawn_failed_workers=True,
                    workers_kill_timeout=KILL_SECONDS, log_level="warning", log_dictconfig=_LOGGING)
    server.serve(target_loader=lambda: _web_process_app(settings, serves, parent), wrap_loader=False)


def ui_listener_argv(settings: Settings) -> list[str]:
    """The command that serves the UI, API and /metrics on `ui.port`, as a child of this process
    that dies with it (its settings from $PLANKEEPER_CONFIG and the environment, as a worker's)."""
    return [sys.executable, "-m", "bot.web", "--parent", str(os.getpid()), "--host", settings.host,
            "--port", str(settings.ui.port)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.web", description="serve's listener for a ui.port of its own")
    parser.add_argument("--parent", type=int, required=True, help="serve's pid: this process dies with it")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with(args.parent)
    setup_logging()
    settings = load_settings(os.environ.get("PLANKEEPER_CONFIG"), os.environ)
    serve(dataclasses.replace(settings, host=args.host), "ui", args.port)
    return 0


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
    if not signal_when_parent_dies(signal.SIGKILL):
        raise OSError("prctl(PR_SET_PDEATHSIG) failed: this process would outlive serve")
    if os.getppid() != parent:  # serve died before the prctl
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
