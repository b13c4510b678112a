"""Which WSGI server acknowledges webhooks fastest: the same events app (bot.app.create_app,
a real embedded Redis) behind waitress, gunicorn (gthread), granian and cheroot, one web
process each, measured one after another with the same load.

Run: python3 bench/wsgi_servers.py [--runs 5] [--servers waitress,gunicorn,...]
(granian is serve's; the other contenders are not dependencies: `pip install waitress gunicorn cheroot` first)

For each server: 2,000 signed deliveries at 50 in flight (p50, p99, throughput) and 300 one at a
time (p50, and the server's CPU per ack from its process tree's CPU time). Medians of --runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import requests  # noqa: E402
from cheroot.wsgi import Server as CherootServer  # noqa: E402
from waitress.server import create_server  # noqa: E402

from bench.webhook_load import make_delivery, send  # noqa: E402
from bot.app import create_app  # noqa: E402
from bot.embedded_redis import EmbeddedRedis  # noqa: E402
from bot.logs import setup_logging  # noqa: E402
from bot.web import HTTP_THREADS  # noqa: E402
from bot.settings import GitHubSettings, Settings  # noqa: E402
from tests.support import fixture, free_port  # noqa: E402

SECRET = "bench-secret"
THREADS = int(os.environ.get("PLANKEEPER_BENCH_THREADS", str(HTTP_THREADS)))  # as serve runs them
SERVERS = ("waitress", "gunicorn", "granian", "cheroot")


def app_from_env():
    """The events app on PLANKEEPER_BENCH_REDIS (what each server process serves)."""
    setup_logging()
    settings = Settings(data_dir=Path(os.environ["PLANKEEPER_BENCH_DATA"]), redis_url=os.environ["PLANKEEPER_BENCH_REDIS"],
                        github=GitHubSettings(webhook_secret=SECRET))
    return create_app(settings, serves="events")


def serve(kind: str, port: int) -> None:
    """Serve app_from_env() with `kind` on 127.0.0.1:port until killed."""
    if kind == "waitress":  # as bot.cli serves it, but for the thread count
        create_server(app_from_env(), host="127.0.0.1", port=port, threads=THREADS, connection_limit=1000,
                      backlog=2048, channel_timeout=60).run()
    elif kind == "cheroot":
        CherootServer(("127.0.0.1", port), app_from_env(), numthreads=THREADS, request_queue_size=2048).start()


def argv(kind: str, port: int) -> list[str]:
    if kind == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", str(THREADS),
                "--backlog", "2048", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                "bench.wsgi_servers:app_from_env()"]
    if kind == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "1", "--blocking-threads",
                str(THREADS), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--factory",
                "bench.wsgi_servers:app_from_env"]
    return [sys.executable, str(Path(__file__)), "--serve", kind, "--port", str(port)]


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            requests.get(f"{url}/healthz", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("server did not answer")


def measure(kind: str, env: dict, runs: int) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(argv(kind, port), cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    body = fixture("github", "pull_request.synchronize")
    figures: dict[str, list[float]] = {"p50_ms": [], "p99_ms": [], "per_s": [], "one_p50_ms": [], "cpu_ms": []}
    try:
        wait_ready(url, proc)
        send(url, [make_delivery("pull_request", body, SECRET) for _ in range(200)], 10)  # warm up
        tree = psutil.Process(proc.pid)
        for _ in range(runs):
            burst = send(url, [make_delivery("pull_request", body, SECRET) for _ in range(2000)], 50)
            assert not burst.errors and burst.statuses == {202: 2000}, (burst.errors[:3], burst.statuses)
            ms = burst.percentiles_ms()
            figures["p50_ms"].append(ms["p50"])
            figures["p99_ms"].append(ms["p99"])
            figures["per_s"].append(2000 / burst.wall)
            before = cpu_seconds(tree)
            one = send(url, [make_delivery("pull_request", body, SECRET) for _ in range(300)], 1)
            figures["cpu_ms"].append((cpu_seconds(tree) - before) / 300 * 1000)
            figures["one_p50_ms"].append(one.percentiles_ms()["p50"])
    finally:
        proc.terminate()
        proc.wait(30)
    return {k: round(statistics.median(v), 2) for k, v in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    data = Path(tempfile.mkdtemp(prefix="plankeeper-wsgi-"))
    redis_server = EmbeddedRedis(data)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PLANKEEPER_BENCH_REDIS=redis_server.start(),
               PLANKEEPER_BENCH_DATA=str(data))
    results = {}
    try:
        for kind in args.servers.split(","):
            results[kind] = measure(kind, env, args.runs)
            print(kind, json.dumps(results[kind]), flush=True)
    finally:
        redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
