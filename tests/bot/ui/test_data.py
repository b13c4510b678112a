"""Display helpers of the UI: durations, dates, job rows and audit matching."""
from __future__ import annotations

import pytest

from bot.state import locks
from bot.ui import data


@pytest.mark.parametrize("seconds, text", [(None, ""), (0.4, "0s"), (59, "59s"), (65, "1m 05s"),
                                           (3600 + 120, "1h 02m"), (3 * 86400 + 7200, "3d 2h")])
def test_durations_read_naturally(seconds, text):
    assert data.fmt_duration(seconds) == text


def test_days_parse_as_utc_and_bad_ones_say_the_format():
    assert data.parse_day("2024-01-02") == 1704153600
    assert data.parse_day("2024-01-02", end_of_day=True) == pytest.approx(1704153600 + 86400, abs=0.01)
    assert data.parse_day("") is None
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        data.parse_day("02/01/2024")


def test_running_job_duration_counts_up_and_finished_uses_the_recorded_one():
    assert data.job_duration({"started_at": "100"}, now=130) == 30
    assert data.job_duration({"started_at": "100", "ended_at": "110"}, now=999) == 10
    assert data.job_duration({"duration": "7.5", "started_at": "100"}) == 7.5
    assert data.job_duration({}) is None


def test_job_rows_find_the_pull_request_link_from_locks_or_other_jobs():
    held = [locks.Lock("r", "a::default", 7, "https://x/pull/7", "alice", 1.0)]
    jobs = [{"id": "1", "repo": "r", "pull": "7", "state": "running"},
            {"id": "2", "repo": "r", "pull": "8", "state": "failed"},
            {"id": "3", "repo": "r", "pull": "8", "state": "succeeded", "pull_url": "https://x/pull/8"}]
    rows = data.job_rows(jobs, data.pull_urls(jobs, held))
    assert [r["pull_link"] for r in rows] == ["https://x/pull/7", "https://x/pull/8", "https://x/pull/8"]
    assert [r["final"] for r in rows] == [False, True, True]


def test_audit_project_filter_matches_any_listed_project_or_its_dir():
    entry = {"project": "infra/app::default,infra/db::staging", "user": "Alice"}
    assert data._matches(entry, {"project": "infra/db::staging"})
    assert data._matches(entry, {"project": "infra/app"})
    assert not data._matches(entry, {"project": "infra"})
    assert data._matches(entry, {"user": "alice"}) and not data._matches(entry, {"user": "bob"})
