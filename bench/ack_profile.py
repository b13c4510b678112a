"""Where the CPU of one webhook acknowledgement goes: each step timed alone, then the whole view
under cProfile, its own time grouped by library.

Run: python3 bench/ack_profile.py [--n 2000] [--top 25]

In process, against a real embedded Redis, through the WSGI app (no HTTP server: the server's
share is what `bench/run.py`'s one-at-a-time ack adds to the "whole view" figure here).
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import logging
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bot import events, metrics, queueing  # noqa: E402
from bot.app import create_app  # noqa: E402
from bot.embedded_redis import EmbeddedRedis  # noqa: E402
from bot.logs import setup_logging  # noqa: E402
from bot.settings import GitHubSettings, Settings  # noqa: E402
from bot.signatures import sign_github, verify_github  # noqa: E402
from tests.support import fixture  # noqa: E402

SECRET = "bench-secret"
GROUPS = (("rq", "/rq/"), ("redis-py", "/redis/"), ("flask+werkzeug", "/flask/"), ("flask+werkzeug", "/werkzeug/"),
          ("json", "/json/"), ("logging", "/logging/"), ("hmac+hashlib", "hmac"), ("hashlib", "hashlib"),
          ("plankeeper", "/bot/"), ("socket I/O", "socket"))


def per_call_us(fn: Callable[[], object], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        fn()
    return round((time.process_time() - started) / n * 1e6, 1)


def wsgi_environ(body: bytes, delivery: str) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/events", "SERVER_NAME": "bench", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
            "HTTP_X_GITHUB_EVENT": "pull_request", "HTTP_X_GITHUB_DELIVERY": delivery,
            "HTTP_X_HUB_SIGNATURE_256": sign_github(SECRET, body)}


def call_view(app, body: bytes) -> int:
    status: list[str] = []
    out = app(wsgi_environ(body, str(uuid.uuid4())), lambda s, h, exc=None: status.append(s))
    b"".join(out)
    return int(status[0].split()[0])


def steps(app, settings: Settings, body: bytes, n: int) -> dict[str, float]:
    """Microseconds of CPU per call of each step of the view, alone."""
    r = app.config["RUNTIME"].redis
    sig = sign_github(SECRET, body)
    source = next(s for s in events.SOURCES if s.forge == "github")
    payload = json.loads(body)
    event = source.read("pull_request", payload, "d", settings)
    log = logging.getLogger("bot.webhooks")
    counters = metrics.delivery_counters("pull_request")
    return {
        "HMAC-SHA256 of the body": per_call_us(lambda: verify_github(SECRET, body, sig), n),
        "json.loads of the body": per_call_us(lambda: json.loads(body), n),
        "orjson.loads of the body": per_call_us(lambda: orjson.loads(body), n),
        "payload -> event": per_call_us(lambda: source.read("pull_request", payload, "d", settings), n),
        "delivery claim (SET NX)": per_call_us(lambda: queueing.claim_delivery(r, str(uuid.uuid4())), n),
        "sweep claim (SET NX)": per_call_us(lambda: queueing.claim_delivery(r, str(uuid.uuid4())), n),
        "webhook counter (HINCRBY)": per_call_us(lambda: metrics.count_webhook(r, "pull_request", "queued"), n),
        "one log line (JSON)": per_call_us(lambda: log.info("queued job %s for %s", "d-x", "acme/infra"), n),
        "RQ enqueue + job record": per_call_us(
            lambda: queueing.enqueue_event(r, event, 300, job_id=f"d-{uuid.uuid4()}"), n),
        "all five in one script": per_call_us(lambda: queueing.accept_event(
            r, dataclasses.replace(event, delivery_id=str(uuid.uuid4())), 300, counters), n),
        "whole view (WSGI, no server)": per_call_us(lambda: call_view(app, body), n),
    }


def profile(app, body: bytes, n: int) -> pstats.Stats:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call_view(app, body)
    profiler.disable()
    return pstats.Stats(profiler)


def by_group(stats: pstats.Stats, n: int) -> dict[str, float]:
    """Own time (µs per ack) of every function, summed by the library it is in."""
    totals: dict[str, float] = {}
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename if filename != "~" else name
        group = next((g for g, marker in GROUPS if marker in where), "other (stdlib, builtins)")
        totals[group] = totals.get(group, 0.0) + tottime
    return {g: round(t / n * 1e6, 1) for g, t in sorted(totals.items(), key=lambda kv: -kv[1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="plankeeper-ack-"))
    redis_server = EmbeddedRedis(base)
    settings = Settings(data_dir=base, redis_url=redis_server.start(), github=GitHubSettings(webhook_secret=SECRET))
    devnull = open(os.devnull, "w")  # noqa: SIM115 -- the log lines' cost counts, not where they go
    setup_logging(stream=devnull)
    try:
        app = create_app(settings, serves="events")
        body = json.dumps(fixture("github", "pull_request.synchronize")).encode()
        assert call_view(app, body) == 202
        print(f"payload {len(body)} bytes; µs of CPU per call, {args.n} calls each:")
        for step, us in steps(app, settings, body, args.n).items():
            print(f"  {step:<32} {us:>8}")
        stats = profile(app, body, args.n)
        print("\nwhole view under cProfile, own time by library (µs per ack; profiling inflates it):")
        for group, us in by_group(stats, args.n).items():
            print(f"  {group:<32} {us:>8}")
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    finally:
        redis_server.stop()
        devnull.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
