"""The RQ worker class: reports a job whose work-horse was killed (OOM, SIGKILL) at once.

RQ calls failure callbacks for exceptions and for abandoned jobs (a whole worker that died,
found by another worker's registry cleanup), but not when only the work-horse is killed.
"""
from __future__ import annotations

import logging

from rq import Worker

log = logging.getLogger(__name__)


class PlankeeperWorker(Worker):
    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        from bot.jobs import report_dead_job

        try:
            report_dead_job(job, "its worker process was killed", f"exit status {ret_val}")
        except Exception:
            log.exception("could not report killed job %s", job.id)
