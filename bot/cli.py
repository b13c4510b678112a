"""The `plankeeper` command: serve, worker, plan, check, version."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bot import __version__, datadir, web
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
    children = _spawn_workers(args.config, settings)
    split = settings.ui.port is not None and settings.ui.port != settings.port
    if split:  # the UI, API and /metrics in a web server of their own: nothing there holds up a webhook
        children.append(_Child("the UI listener", web.ui_listener_argv(settings), _child_env(args.config, settings)).start())
    _, stop_scheduler = start_thread(settings)  # drift checks on their cron; exactly once across servers
    _, stop_reconciler = start_reconciler(settings)  # sweeps for missed webhooks: at start, then each interval
    stopping: dict = {"flag": False, "exit_code": 0}
    threading.Thread(target=_supervise, args=(children, stopping), daemon=True).start()
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
        if split:
            _announce(settings.host, settings.ui.port, "web UI, API and /metrics")
        _announce(settings.host, settings.port, "webhooks (/events)" if split else "")
        web.serve(settings, "events" if split else "all", settings.port)  # granian takes SIGTERM and SIGINT from here
    except _Stop:
        pass
    finally:
        stopping["flag"] = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("stopping: draining %d worker(s) (running jobs finish first)", settings.workers)
        stop_scheduler.set()
        stop_reconciler.set()
        _drain(children, settings.terraform.timeout)
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
    """Raised by the SIGTERM handler serve has until granian's own takes over."""


def _announce(host: str, port: int, what: str) -> None:
    suffix = f" for {what}" if what else ""
    log.info("plankeeper %s listening on http://%s:%s%s", __version__, host, port, suffix)
    print(f"plankeeper {__version__} listening on http://{host}:{port}{suffix}", flush=True)


@dataclasses.dataclass
class _Child:
    """A process serve runs beside its web server (a worker, the UI port's listener), and starts
    again when it exits on its own."""

    what: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None

    def start(self) -> "_Child":
        self.proc = subprocess.Popen(self.argv, env=self.env)
        return self


def _child_env(config: str | None, settings) -> dict[str, str]:
    return dict(os.environ, PLANKEEPER_REDIS_URL=settings.redis_url, **({"PLANKEEPER_CONFIG": config} if config else {}))


def _spawn_workers(config: str | None, settings) -> list[_Child]:
    argv = [sys.executable, "-m", "bot.cli", "worker"] + (["--config", config] if config else [])
    return [_Child("worker", argv, _child_env(config, settings)).start() for _ in range(settings.workers)]


def _supervise(children: list[_Child], stopping: dict) -> None:
    """Start a child again when one exits on its own (killed, or a worker that quit on a Redis
    error such as a full disk): otherwise the server would keep taking webhooks that nothing runs."""
    while not stopping["flag"]:
        time.sleep(RESPAWN_SECONDS)
        for child in children:
            if child.proc.poll() is not None and not stopping["flag"]:
                log.warning("%s %s exited with %s: starting another", child.what, child.proc.pid,
                            child.proc.returncode)
                child.start()


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


def _drain(children: list[_Child], timeout: int) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)  # RQ warm shutdown: the running job finishes
    deadline = time.time() + timeout
    for child in children:
        try:
            child.proc.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            child.proc.kill()


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
