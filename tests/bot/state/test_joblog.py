"""bot/state/joblog.py: a job's log is bounded per line and per job, after redaction."""
from __future__ import annotations

import pytest

from bot.state import joblog


def _texts(r, job_id: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in joblog.read_log(r, job_id)]


def test_a_one_megabyte_line_is_cut_with_a_note(redis_db):
    log = joblog.JobLog(redis_db, "j", lambda s: s)
    log("x" * (1024 * 1024))
    log("next")
    first, second = joblog.read_log(redis_db, "j")
    assert len(first.encode()) < joblog.MAX_LINE_BYTES + 100
    assert first.endswith(f" … (line cut at {joblog.MAX_LINE_BYTES} bytes of {1024 * 1024 + 9})")
    assert second.endswith(" next")


def test_a_line_is_redacted_before_it_is_cut(redis_db):
    secret = "s3cret-" + "v" * 40
    log = joblog.JobLog(redis_db, "j", lambda s: s.replace(secret, "***"))
    # the secret straddles the cut: cutting first would leave its start unmasked
    log("a" * (joblog.MAX_LINE_BYTES - 20) + secret + "b" * 100)
    assert "s3cret" not in joblog.read_log(redis_db, "j")[0]


def test_multibyte_characters_are_not_split(redis_db):
    joblog.JobLog(redis_db, "j", lambda s: s)("é" * joblog.MAX_LINE_BYTES)
    line = joblog.read_log(redis_db, "j")[0]
    assert "\ufffd" not in line and "line cut at" in line


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setattr(joblog, "MAX_LOG_LINES", 5)
    monkeypatch.setattr(joblog, "MAX_LOG_BYTES", 1000)


def test_a_log_stops_at_its_line_limit_with_one_note(redis_db, small_limits):
    log = joblog.JobLog(redis_db, "j", lambda s: s)
    for n in range(20):
        log.with_prefix("[a] ")(f"line {n}")
    texts = _texts(redis_db, "j")
    assert texts[:4] == [f"[a] line {n}" for n in range(4)]
    assert len(texts) == 5 and texts[4].startswith("… (log cut here: a job's log keeps at most 5 lines")


def test_a_log_stops_at_its_byte_limit_with_one_note(redis_db, small_limits):
    log = joblog.JobLog(redis_db, "j", lambda s: s)
    log("a" * 600)
    log("b" * 600)
    log("c")
    texts = _texts(redis_db, "j")
    assert len(texts) == 2 and texts[0] == "a" * 600 and texts[1].startswith("… (log cut here")
