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
from pathlib import Path
from typing import Optional, Sequence

from bot import __version__
from bot.errors import SettingsError

log = logging.getLogger("plankeeper")
RESPAWN_SECONDS = 3  # a dead worker is replaced within this; also the pace of a crash loop


def _load(config: Optional[str], **overrides):
    from bot.settings import load_settings

    path = config or os.environ.get("PLANKEEPER_CONFIG")
    settings = load_settings(path, os.environ)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(settings, **changes) if changes else settings


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.embedded_redis import EmbeddedRedis
    from bot.settings import validate_for_serve

    settings = _load(args.config, host=args.host, port=args.port, workers=args.workers)
    validate_for_serve(settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    embedded = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(Path(settings.data_dir))
        settings = dataclasses.replace(settings, redis_url=embedded.start())
    workers = _spawn_workers(args.config, settings)
    from bot.scheduler import start_thread

    _, stop_scheduler = start_thread(settings)  # drift checks on their cron; exactly once across servers
    stopping = {"flag": False}
    threading.Thread(target=_supervise, args=(workers, args.config, settings, stopping), daemon=True).start()

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
        _drain(workers, settings.terraform.timeout)
        if embedded:
            embedded.stop()
    return 0


class _Stop(SystemExit):
    """Raised by the SIGTERM handler; waitress' loop re-raises SystemExit from any handler
    (asyncore swallows ordinary exceptions) and shuts its task threads down."""


def _serve_http(settings) -> None:
    from waitress.server import create_server

    from bot.app import create_app

    app = create_app(settings)
    server = create_server(app, host=settings.host, port=settings.port, threads=16, connection_limit=1000,
                           backlog=2048, channel_timeout=60, ident="plankeeper")
    log.info("plankeeper %s listening on http://%s:%s", __version__, settings.host, settings.port)
    print(f"plankeeper {__version__} listening on http://{settings.host}:{settings.port}", flush=True)
    try:
        server.run()
    finally:
        server.close()


def _spawn_workers(config: Optional[str], settings) -> list[subprocess.Popen]:
    env = dict(os.environ, PLANKEEPER_REDIS_URL=settings.redis_url)
    argv = [sys.executable, "-m", "bot.cli", "worker"] + (["--config", config] if config else [])
    return [subprocess.Popen(argv, env=env) for _ in range(settings.workers)]


def _supervise(workers: list[subprocess.Popen], config: Optional[str], settings, stopping: dict) -> None:
    """Start a worker again when one exits on its own (killed, or quit on a Redis error such
    as a full disk): otherwise the server would keep taking webhooks that nothing runs."""
    while not stopping["flag"]:
        time.sleep(RESPAWN_SECONDS)
        for i, proc in enumerate(workers):
            if proc.poll() is not None and not stopping["flag"]:
                log.warning("worker %s exited with %s: starting another", proc.pid, proc.returncode)
                workers[i] = _spawn_workers(config, dataclasses.replace(settings, workers=1))[0]


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
    from rq.serializers import JSONSerializer

    from bot import jobs, queueing
    from bot.worker import PlankeeperWorker, preload

    settings = _load(args.config)
    if not settings.redis_url:
        raise SettingsError("redis_url: `plankeeper worker` needs an external Redis (redis://host:6379/0)")
    rt = jobs.init_worker(settings)
    preload()
    worker = PlankeeperWorker([queueing.queue(rt.redis)], connection=rt.redis, serializer=JSONSerializer)
    worker.work(burst=args.burst, logging_level="INFO", with_scheduler=False)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from bot.local import local_plan

    settings = _load(args.config)
    return local_plan(settings, Path(args.repo), args.base, args.head, args.dir or [], args.project or [])


def cmd_check(args: argparse.Namespace) -> int:
    from bot.local import check_repo

    settings = _load(args.config)
    return check_repo(settings, Path(args.repo), args.base, args.head)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"plankeeper {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plankeeper", description="Pull requests as the control plane for infrastructure")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="web receiver, workers and (by default) an embedded Redis")
    serve.add_argument("--config")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="an RQ worker against redis_url")
    worker.add_argument("--config")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(func=cmd_worker)
    plan = sub.add_parser("plan", help="plan a local checkout and print the comment (exit 0 no changes, 2 changes, 1 error)")
    plan.add_argument("--config")
    plan.add_argument("--repo", default=".")
    plan.add_argument("--base", default=None, help="base ref (default: the default branch's merge base)")
    plan.add_argument("--head", default="HEAD")
    plan.add_argument("-d", "--dir", action="append")
    plan.add_argument("-p", "--project", action="append")
    plan.set_defaults(func=cmd_plan)
    check = sub.add_parser("check", help="validate the repo config and list projects")
    check.add_argument("--config")
    check.add_argument("--repo", default=".")
    check.add_argument("--base", default=None)
    check.add_argument("--head", default=None)
    check.set_defaults(func=cmd_check)
    version = sub.add_parser("version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from bot.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"plankeeper: configuration error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
