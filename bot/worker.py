"""The RQ worker class: reports a job whose work-horse was killed (OOM, SIGKILL) at once.

RQ calls failure callbacks for exceptions and for abandoned jobs (a whole worker that died,
found by another worker's registry cleanup), but not when only the work-horse is killed.

RQ's defaults find a job whose whole worker died (SIGKILL, lost machine) only after its
heartbeat lapses (60 s grace) and the next registry cleanup (every 10 minutes, and an idle
worker blocks ~400 s in its dequeue): the pull request would wait that long to hear of it.
These settings bring it under a minute for a few more Redis calls per running job.
"""
from __future__ import annotations

import logging

from rq import Worker
from rq.serializers import JSONSerializer

from bot import queueing
from bot.jobs import init_worker, report_dead_job
from bot.settings import Settings

log = logging.getLogger(__name__)


HEARTBEAT_SECONDS = 5  # a running job's heartbeat period
HEARTBEAT_GRACE = 15  # a job whose heartbeat is this late is abandoned (RQ: 60)
WORKER_TTL = 35  # an idle worker wakes every WORKER_TTL - 15 s, so cleanup runs while idle
CLEANUP_SECONDS = 15  # registry cleanup period (RQ: 600)
STUCK = "Job was stuck in intermediate queue."  # RQ's reason for a job popped by a worker that then died


class PlankeeperWorker(Worker):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("job_monitoring_interval", HEARTBEAT_SECONDS)
        kwargs.setdefault("maintenance_interval", CLEANUP_SECONDS)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        super().__init__(*args, **kwargs)

    def request_stop(self, signum, frame):
        # RQ stops an idle worker only by raising StopRequested from this signal handler. A signal
        # that lands while a finalizer runs (a redis Pipeline's __del__, seen in the suite) has that
        # exception printed and dropped, and the worker went on idling until serve killed it; the
        # flag is what the work loop checks at its next turn.
        self._stop_requested = True
        super().request_stop(signum, frame)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return super().get_heartbeat_ttl(job, working_time) - 60 + HEARTBEAT_GRACE

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        try:  # first: RQ then queues the jobs that depend on it (a run's finalizing job reads the report)
            report_dead_job(job, "its worker process was killed", f"exit status {ret_val}")
        except Exception:
            log.exception("could not report killed job %s", job.id)
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        # A worker took the job off the queue and died (or lost Redis) before starting it: nothing
        # ran, so queue it again at the front rather than fail it silently (RQ's default).
        if exc_string == STUCK:
            log.warning("job %s was taken by a worker that stopped before starting it: queued again", job.id)
            queue._enqueue_job(job, at_front=True)
            return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)


def run_worker(settings: Settings, burst: bool = False) -> None:
    """Take jobs from the queue until stopped (or, with burst, until it is empty)."""
    rt = init_worker(settings)
    worker = PlankeeperWorker([queueing.queue(rt.redis)], connection=rt.redis, serializer=JSONSerializer)
    worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
