"""Prometheus metrics kept in Redis, so they are right across every web and worker process
on every machine (prometheus-client's multiprocess mode only covers one machine).

Counters and histogram buckets are Redis hashes; `/metrics` renders them with a custom
collector through prometheus-client's exposition format.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import redis
from bot.state import keys
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry
from prometheus_client.exposition import generate_latest

BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# The only `event` label values: the header is the sender's to choose, and every new value would
# be a new field in Redis and a new series on /metrics for as long as the counters live.
WEBHOOK_EVENTS = frozenset({
    "pull_request", "issue_comment", "pull_request_review", "ping", "push", "check_run", "check_suite",  # GitHub
    "Merge Request Hook", "Note Hook", "Push Hook",  # GitLab
    "git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged",  # Azure DevOps
    "ms.vss-code.git-pullrequest-comment-event",  # Azure DevOps
})
OTHER_EVENT = "other"


def _field(**labels: str) -> str:
    return json.dumps(labels, sort_keys=True)


def count_webhook(r: redis.Redis, event: str, outcome: str) -> None:
    """Count one delivery; an event name outside WEBHOOK_EVENTS (or none) counts as "other"."""
    r.hincrby(keys.METRICS_WEBHOOKS, _webhook_field(event, outcome), 1)


def _webhook_field(event: str, outcome: str) -> str:
    return _field(event=event if event in WEBHOOK_EVENTS else OTHER_EVENT, outcome=outcome)


@dataclass(frozen=True)
class DeliveryCounters:
    """Where a delivery that is queued, or a duplicate, is counted: for a write made elsewhere
    (bot.queueing counts it in the same round trip as the enqueue)."""

    key: str
    queued: str
    duplicate: str


def delivery_counters(event: str) -> DeliveryCounters:
    return _delivery_counters(event if event in WEBHOOK_EVENTS else OTHER_EVENT)


@functools.cache  # one per label value: WEBHOOK_EVENTS and "other"
def _delivery_counters(event: str) -> DeliveryCounters:
    return DeliveryCounters(keys.METRICS_WEBHOOKS, _webhook_field(event, "queued"), _webhook_field(event, "duplicate"))


def count_job(r: redis.Redis, kind: str, state: str, duration: float | None = None) -> None:
    pipe = r.pipeline()
    pipe.hincrby(keys.METRICS_JOBS, _field(kind=kind, state=state), 1)
    if duration is not None:
        for bound in BUCKETS:
            if duration <= bound:
                pipe.hincrby(keys.METRICS_JOB_DURATION, _field(kind=kind, le=str(bound)), 1)
        pipe.hincrby(keys.METRICS_JOB_DURATION, _field(kind=kind, le="+Inf"), 1)
        pipe.hincrbyfloat(keys.METRICS_JOB_DURATION, _field(kind=kind, le="sum"), duration)
    pipe.execute()


def set_drift(r: redis.Redis, repo: str, project: str, drifted: bool) -> None:
    r.hset(keys.METRICS_DRIFT, _field(repo=repo, project=project), 1 if drifted else 0)


class RedisCollector:
    def __init__(self, r: redis.Redis, queue_depth, locks_held):
        self._redis, self._queue_depth, self._locks_held = r, queue_depth, locks_held

    def _hash(self, key: str) -> list[tuple[dict, float]]:
        return [(json.loads(k), float(v)) for k, v in self._redis.hgetall(key).items()]

    def collect(self):
        webhooks = CounterMetricFamily("plankeeper_webhooks", "Webhooks received", labels=["event", "outcome"])
        for labels, value in self._hash(keys.METRICS_WEBHOOKS):
            webhooks.add_metric([labels["event"], labels["outcome"]], value)
        yield webhooks
        jobs = CounterMetricFamily("plankeeper_jobs", "Jobs finished or started, by state", labels=["kind", "state"])
        for labels, value in self._hash(keys.METRICS_JOBS):
            jobs.add_metric([labels["kind"], labels["state"]], value)
        yield jobs
        yield self._durations()
        yield GaugeMetricFamily("plankeeper_queue_depth", "Jobs waiting in the queue", value=self._queue_depth())
        yield GaugeMetricFamily("plankeeper_locks_held", "Project locks held", value=self._locks_held())
        drift = GaugeMetricFamily("plankeeper_drift_detected", "1 when the project drifted", labels=["repo", "project"])
        for labels, value in self._hash(keys.METRICS_DRIFT):
            drift.add_metric([labels["repo"], labels["project"]], value)
        yield drift

    def _durations(self) -> HistogramMetricFamily:
        by_kind: dict[str, dict[str, float]] = {}
        for labels, value in self._hash(keys.METRICS_JOB_DURATION):
            by_kind.setdefault(labels["kind"], {})[labels["le"]] = value
        family = HistogramMetricFamily("plankeeper_job_duration_seconds", "Job durations", labels=["kind"])
        for kind, values in by_kind.items():
            buckets = [(str(float(b)), values.get(str(b), 0.0)) for b in BUCKETS]
            buckets.append(("+Inf", values.get("+Inf", 0.0)))
            family.add_metric([kind], buckets, values.get("sum", 0.0))
        return family


def exposition(r: redis.Redis, queue_depth, locks_held) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(r, queue_depth, locks_held))
    return generate_latest(registry)
