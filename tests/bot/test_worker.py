"""bot/worker.py's PlankeeperWorker against a real Redis: a stop request is kept even when the
exception RQ raises from its signal handler is lost."""
from __future__ import annotations

import signal
import time

import pytest
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer

from bot import queueing
from bot.worker import PlankeeperWorker


@pytest.fixture
def signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_an_idle_worker_whose_stop_exception_was_lost_still_stops(redis_db, signal_handlers) -> None:
    worker = PlankeeperWorker([queueing.queue(redis_db)], connection=redis_db, serializer=JSONSerializer)
    try:
        worker.request_stop(signal.SIGTERM, None)
    except StopRequested:
        pass  # what Python drops when the signal lands in a finalizer (`Exception ignored in ... __del__`)
    started = time.monotonic()
    # without the flag it waits on the empty queue (here until max_idle_time; in serve, forever)
    worker.work(burst=False, max_idle_time=10)
    assert time.monotonic() - started < 5
