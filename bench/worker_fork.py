"""What a job costs before its function runs: RQ's forked work-horse (our PlankeeperWorker) vs
SimpleWorker (no fork), on empty jobs, with the worker's imports loaded as `plankeeper worker` has.

Run: python3 bench/worker_fork.py [--jobs 200]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import redis  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bot.embedded_redis import EmbeddedRedis  # noqa: E402
from bot.worker import PlankeeperWorker  # noqa: E402 -- imports bot.jobs and everything a job uses

EMPTY_JOB = "time.time"


def per_job_ms(worker_class, r: redis.Redis, jobs: int) -> float:
    q = Queue(f"fork-bench-{worker_class.__name__}", connection=r, serializer=JSONSerializer)
    for _ in range(jobs):
        q.enqueue_call(EMPTY_JOB, result_ttl=60)
    worker = worker_class([q], connection=r, serializer=JSONSerializer)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING", with_scheduler=False)
    return round((time.perf_counter() - started) / jobs * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="plankeeper-fork-")))
    r = redis.Redis.from_url(server.start())
    try:
        rss = psutil.Process().memory_info().rss / 2**20
        forked = per_job_ms(PlankeeperWorker, r, args.jobs)
        simple = per_job_ms(SimpleWorker, r, args.jobs)
        print(f"worker RSS {rss:.0f} MiB; ms per empty job: forked work-horse {forked}, SimpleWorker {simple}, "
              f"so fork + horse set-up ≈ {forked - simple:.1f} ms a job")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
