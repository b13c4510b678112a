"""The `plankeeper` command: serve, worker, plan, check, version."""
from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from waitress.server import create_server

from bot import __version__, datadir
from bot.app import create_app
from bot.drift.schedule import start_thread
from bot.embedded_redis import EmbeddedRedis
from bot.engines import sandbox_status
from bot.errors import SettingsError
from bot.local import check_repo, local_plan
from bot.logs import setup_logging
from bot.reconcile.schedule import start_thread as start_reconciler
from bot.reconcile.schedule import sweep_soon
from bot.settings import validate_for_serve
from bot.settings_loader import load_settings
from bot.ui.api import MAX_STREAMS

log = logging.getLogger("plankeeper")
RESPAWN_SECONDS = 3  # a dead worker is replaced within this; also the pace of a crash loop
REDIS_CHECK_SECONDS = 1  # how often serve looks at its embedded Redis
REDIS_RESTARTS = 5  # restarts of the embedded Redis within REDIS_RESTART_WINDOW before serve gives up
REDIS_RESTART_WINDOW = 300  # seconds


def _load(config: str | None, **overrides):
    path = config or os.environ.get("PLANKEEPER_CONFIG")
    settings = load_settings(path, os.environ)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(settings, **changes) if changes else settings


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load(args.config, host=args.host, port=args.port, workers=args.workers)
    validate_for_serve(settings)
    warning = no_forge_warning(settings)
    if warning:
        log.warning(warning)  # a warning, not a refusal: trying the UI and API without a forge is fine
    _check_sandbox(settings)
    datadir.prepare(settings.data_dir)  # 0700, and a umask of 077 for us, Redis and the workers
    embedded = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(Path(settings.data_dir))
        settings = dataclasses.replace(settings, redis_url=embedded.start())
    workers = _spawn_workers(args.config, settings)
    _, stop_scheduler = start_thread(settings)  # drift checks on their cron; exactly once across servers
    _, stop_reconciler = start_reconciler(settings)  # sweeps for missed webhooks: at start, then each interval
    stopping: dict = {"flag": False, "exit_code": 0}
    threading.Thread(target=_supervise, args=(workers, args.config, settings, stopping), daemon=True).start()
    if embedded:
        threading.Thread(target=_supervise_redis, args=(embedded, settings, stopping), name="redis-supervisor",
                         daemon=True).start()

    def on_term(signum, frame):
        if not stopping["flag"]:
            stopping["flag"] = True
            raise _Stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        _serve_http(settings)
    except _Stop:
        log.info("stopping: draining %d worker(s) (running jobs finish first)", len(workers))
    finally:
        stopping["flag"] = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_scheduler.set()
        stop_reconciler.set()
        _drain(workers, settings.terraform.timeout)
        if embedded:
            embedded.stop()
    return stopping["exit_code"]


# What turns each forge on, as environment variables (each is also a key of its config section).
_FORGE_KEYS = {"github": ("TOKEN", "WEBHOOK_SECRET"), "gitlab": ("TOKEN", "WEBHOOK_SECRET"),
               "bitbucket": ("TOKEN", "WEBHOOK_SECRET"), "gitea": ("URL", "TOKEN", "WEBHOOK_SECRET"),
               "azuredevops": ("ORG_URL", "TOKEN", "WEBHOOK_USERNAME", "WEBHOOK_PASSWORD")}


def no_forge_warning(settings) -> str | None:
    """What to say when no forge is configured: webhooks are then refused (no webhook secret) or
    cannot be acted on (no token to read and comment on pull requests)."""
    if any(section.configured for section in settings.forges().values()):
        return None
    ways = "; ".join(f"{forge}: " + ", ".join(f"PLANKEEPER_{forge.upper()}__{key}" for key in keys)
                     for forge, keys in _FORGE_KEYS.items())
    return ("no forge is configured: webhooks to POST /events are refused or cannot be acted on until you "
            f"set one forge's keys (or the same keys of its section in the config file) — {ways}. "
            "A GitHub App uses github.app_id and github.private_key_file instead of the token.")


def _check_sandbox(settings) -> None:
    """Say loudly when jobs will run without a sandbox; refuse to start when `sandbox: bubblewrap`
    is set and bubblewrap does not work here."""
    kind, warning = sandbox_status(settings)
    if kind == "none" and settings.sandbox == "bubblewrap":
        raise SettingsError(warning)
    if warning:
        log.warning("SECURITY: %s", warning)


class _Stop(SystemExit):
    """Raised by the SIGTERM handler; waitress' loop re-raises SystemExit from any handler
    (asyncore swallows ordinary exceptions) and shuts its task threads down."""


# Per listener: a UI with every live log tail open (each holds a thread) still has one for
# webhooks. Not more: the app is CPU under one GIL, and with 16 threads some webhooks starved
# behind the others for ~400 ms in a burst (bench/run.py: max 406 ms at 16 threads, 132 at 5).
HTTP_THREADS = MAX_STREAMS + 1
# Threads waiting for the GIL wait up to this long (CPython's default is 5 ms); the request
# threads and waitress' I/O loop hand it to each other several times per webhook.
GIL_SWITCH_SECONDS = 0.001


def _serve_http(settings) -> None:
    """Serve /events and the UI on `port`, or, when `ui.port` is another port, /events (and
    /healthz) on `port` and the UI, API and /metrics on `ui.port`: one event loop, a thread
    pool per listener, so nothing done on the UI's port can hold up a webhook."""
    split = settings.ui.port is not None and settings.ui.port != settings.port
    events_app = create_app(settings, serves="events" if split else "all")
    shared_map: dict = {}  # both listeners in one asyncore loop, run by the main thread
    servers = [_listener(events_app, settings.host, settings.port, shared_map)]
    _announce(settings.host, settings.port, "webhooks (/events)" if split else "")
    if split:
        ui_app = create_app(settings, events_app.config["RUNTIME"], serves="ui")
        servers.append(_listener(ui_app, settings.host, settings.ui.port, shared_map))
        _announce(settings.host, settings.ui.port, "web UI, API and /metrics")
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    # waitress warns "Task queue depth is N" for every request that waits for a thread: in a burst,
    # a line per webhook (2,000 for bench/run.py's) and 4% of the web process' CPU.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Everything built so far lives as long as the process: out of the collector's sight, a
    # full collection scans only what requests make (it took 50-60 ms, stalling every request).
    gc.collect()
    gc.freeze()
    try:
        servers[0].run()
    finally:
        for server in servers:
            server.task_dispatcher.shutdown()
            server.close()


def _listener(app, host: str, port: int, shared_map: dict):
    return create_server(app, map=shared_map, host=host, port=port, threads=HTTP_THREADS, connection_limit=1000,
                         backlog=2048, channel_timeout=60, ident="plankeeper")


def _announce(host: str, port: int, what: str) -> None:
    suffix = f" for {what}" if what else ""
    log.info("plankeeper %s listening on http://%s:%s%s", __version__, host, port, suffix)
    print(f"plankeeper {__version__} listening on http://{host}:{port}{suffix}", flush=True)


def _spawn_workers(config: str | None, settings) -> list[subprocess.Popen]:
    env = dict(os.environ, PLANKEEPER_REDIS_URL=settings.redis_url)
    argv = [sys.executable, "-m", "bot.cli", "worker"] + (["--config", config] if config else [])
    return [subprocess.Popen(argv, env=env) for _ in range(settings.workers)]


def _supervise(workers: list[subprocess.Popen], config: str | None, settings, stopping: dict) -> None:
    """Start a worker again when one exits on its own (killed, or quit on a Redis error such
    as a full disk): otherwise the server would keep taking webhooks that nothing runs."""
    while not stopping["flag"]:
        time.sleep(RESPAWN_SECONDS)
        for i, proc in enumerate(workers):
            if proc.poll() is not None and not stopping["flag"]:
                log.warning("worker %s exited with %s: starting another", proc.pid, proc.returncode)
                workers[i] = _spawn_workers(config, dataclasses.replace(settings, workers=1))[0]


def _supervise_redis(embedded: EmbeddedRedis, settings, stopping: dict) -> None:
    """Start the embedded Redis again, on its socket and its append-only file, when its process
    dies (the OOM killer's SIGKILL): the web process and the workers reconnect to the same path
    (a worker that quit on the lost connection is replaced by _supervise), and a sweep catches up
    on the webhooks answered 500 meanwhile. When it will not come back, or keeps dying, stop
    serving with exit status 1 so the service manager restarts everything, rather than answer
    500 to every webhook."""
    restarts: list[float] = []
    while not stopping["flag"]:
        time.sleep(REDIS_CHECK_SECONDS)
        if stopping["flag"] or embedded.alive():
            continue
        restarts = [t for t in restarts if t > time.time() - REDIS_RESTART_WINDOW] + [time.time()]
        if len(restarts) > REDIS_RESTARTS:
            log.critical("the embedded Redis keeps dying or will not start (%d attempts in %d s): stopping with "
                         "exit status 1", len(restarts) - 1, REDIS_RESTART_WINDOW)
            stopping["exit_code"] = 1
            os.kill(os.getpid(), signal.SIGTERM)  # the main thread drains the workers and exits
            return
        log.error("the embedded Redis (pid %s) is gone: starting it again on %s", embedded.pid, embedded.socket)
        try:
            if not embedded.restart():
                return  # stopped meanwhile
        except Exception as exc:
            log.error("the embedded Redis did not start again: %s", exc)
            continue
        log.warning("the embedded Redis is back (pid %s), with its data from %s", embedded.pid, embedded.dir)
        try:
            sweep_soon(settings)
        except Exception:
            log.exception("could not queue a sweep for the webhooks missed while Redis was away")


def _drain(workers: list[subprocess.Popen], timeout: int) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # RQ warm shutdown: the running job finishes
    deadline = time.time() + timeout
    for proc in workers:
        try:
            proc.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            proc.kill()


def cmd_worker(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `serve`'s web process never runs jobs and stays lean without
    # the handlers, the run engine and the forge client libraries (PyGithub alone is ~200 ms, 15 MiB).
    from bot.worker import run_worker

    settings = _load(args.config)
    if not settings.redis_url:
        raise SettingsError("redis_url: `plankeeper worker` needs an external Redis (redis://host:6379/0)")
    _check_sandbox(settings)
    datadir.prepare(settings.data_dir)
    run_worker(settings, burst=args.burst)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    return local_plan(settings, Path(args.repo), args.base, args.head, args.dir or [], args.project or [])


def cmd_check(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    return check_repo(settings, Path(args.repo), args.base, args.head)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"plankeeper {__version__}")
    return 0


BASE_HELP = ("base ref (default: the merge base of the head with origin/HEAD, origin/main, origin/master, "
             "main or master, else the head's parent)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plankeeper", description="Pull requests as the control plane for infrastructure")
    parser.add_argument("--version", action="version", version=f"plankeeper {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "server settings file (YAML); default: $PLANKEEPER_CONFIG, else built-in defaults"
    serve = sub.add_parser("serve", help="web receiver, workers and (by default) an embedded Redis")
    serve.add_argument("--config", metavar="FILE", help=config_help)
    serve.add_argument("--host", metavar="HOST", help="address to listen on (overrides the `host` setting; default 127.0.0.1)")
    serve.add_argument("--port", type=int, metavar="PORT", help="port to listen on (overrides the `port` setting; default 4141)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="worker processes to start (overrides the `workers` setting; default 2); "
                            "0 = run `plankeeper worker` elsewhere")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="an RQ worker against redis_url")
    worker.add_argument("--config", metavar="FILE", help=config_help + "; needs redis_url")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(func=cmd_worker)
    plan = sub.add_parser("plan", help="plan a local checkout and print the comment (exit 0 no changes, 2 changes, 1 error)")
    plan.add_argument("--config", metavar="FILE", help=config_help)
    plan.add_argument("--repo", default=".", metavar="DIR", help="the git checkout to plan (default: the current directory)")
    plan.add_argument("--base", default=None, metavar="REF", help=BASE_HELP)
    plan.add_argument("--head", default="HEAD", metavar="REF", help="head ref to plan (default: HEAD)")
    plan.add_argument("-d", "--dir", action="append", metavar="DIR",
                      help="plan only this project directory (relative to the repo root); repeatable")
    plan.add_argument("-p", "--project", action="append", metavar="NAME",
                      help="plan only the project of this name in the repo config; repeatable")
    plan.set_defaults(func=cmd_plan)
    check = sub.add_parser("check", help="validate the repo config and list projects")
    check.add_argument("--config", metavar="FILE", help=config_help)
    check.add_argument("--repo", default=".", metavar="DIR", help="the git checkout to check (default: the current directory)")
    check.add_argument("--base", default=None, metavar="REF", help=BASE_HELP + "; used with --head")
    check.add_argument("--head", default=None, metavar="REF",
                       help="also list what a change from --base to this ref would autoplan")
    check.set_defaults(func=cmd_check)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"plankeeper: configuration error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
