"""Webhook load driver shared by the load test and the benchmark: signed GitHub deliveries
POSTed to `/events` from N threads (one keep-alive connection each), with per-request latency.

Fails only by returning the errors it saw (status codes other than the expected ones,
connection errors); the caller decides what is acceptable.
"""
from __future__ import annotations

import http.client
import json
import queue
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Optional
from urllib.parse import urlsplit

from bot.signatures import sign_github


@dataclass
class Delivery:
    event: str
    body: bytes
    delivery_id: str
    signature: str


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    statuses: dict[int, int] = field(default_factory=dict)
    answers: dict[str, dict] = field(default_factory=dict)  # delivery id -> JSON answer
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0

    def percentiles_ms(self) -> dict[str, float]:
        """p50/p99/max of the acknowledgement latency, in milliseconds."""
        if not self.latencies:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
        return {"p50": round(statistics.median(ordered) * 1000, 2), "p99": round(p99 * 1000, 2),
                "max": round(ordered[-1] * 1000, 2)}


def make_delivery(event: str, payload: dict, secret: str, delivery_id: Optional[str] = None) -> Delivery:
    body = json.dumps(payload).encode()
    return Delivery(event, body, delivery_id or str(uuid.uuid4()), sign_github(secret, body))


def send(url: str, deliveries: Iterable[Delivery], concurrency: int = 50, timeout: float = 30) -> LoadResult:
    """POST every delivery to `<url>/events` from `concurrency` threads; returns what happened."""
    work: "queue.Queue[Optional[Delivery]]" = queue.Queue()
    for item in deliveries:
        work.put(item)
    for _ in range(concurrency):
        work.put(None)
    result, lock = LoadResult(), threading.Lock()
    parts = urlsplit(url)
    started = time.perf_counter()
    threads = [threading.Thread(target=_worker, args=(parts.hostname, parts.port, work, result, lock, timeout))
               for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall = time.perf_counter() - started
    return result


def _worker(host: str, port: int, work: "queue.Queue[Optional[Delivery]]", result: LoadResult,
            lock: threading.Lock, timeout: float) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    while True:
        item = work.get()
        if item is None:
            conn.close()
            return
        headers = {"X-GitHub-Event": item.event, "X-GitHub-Delivery": item.delivery_id,
                   "Content-Type": "application/json", "X-Hub-Signature-256": item.signature}
        begin = time.perf_counter()
        try:
            conn.request("POST", "/events", body=item.body, headers=headers)
            response = conn.getresponse()
            text = response.read()
            elapsed = time.perf_counter() - begin
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            with lock:
                result.errors.append(f"{item.delivery_id}: {type(exc).__name__}: {exc}")
            continue
        with lock:
            result.latencies.append(elapsed)
            result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
            try:
                result.answers[item.delivery_id] = json.loads(text)
            except ValueError:
                result.errors.append(f"{item.delivery_id}: HTTP {response.status}, not JSON: {text[:200]!r}")
