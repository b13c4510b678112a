"""Fixtures of the job-layer tests (tests/bot/runs, tests/bot/handlers): the fake GitHub and a
JobBench on it (a pull request backed by a real git repo, JobContexts on a real Redis)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.github import FakeGitHub
from tests.support_jobs import JobBench

JOB_TOKEN = "ghp_" + "j0bs" * 9
JOB_BOT = "plankeeper-bot"


@pytest.fixture
def fake():
    with FakeGitHub(token=JOB_TOKEN, login=JOB_BOT) as server:
        yield server


@pytest.fixture
def bench_factory(fake, redis_db, tmp_path: Path):
    """JobBench(**settings); open its pull request with bench.open_pull()."""
    return lambda **settings: JobBench(fake, redis_db, tmp_path, token=JOB_TOKEN, bot=JOB_BOT, **settings)
