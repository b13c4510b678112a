"""End to end: /metrics of a live `plankeeper serve`, parsed with prometheus-client's own text
parser, counts exactly what a plan and an apply did (counters live in Redis, so the web
process reports what the worker processes counted)."""
from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_ui import deliver_comment, deliver_opened, open_pull

pytestmark = pytest.mark.e2e


def scrape(server) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of every sample /metrics exposes."""
    answer = requests.get(f"{server.url}/metrics", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_a_plan_and_an_apply(fake_github, git_repo, serve_factory, tmp_path):
    open_pull(fake_github, git_repo, tmp_path)
    server = serve_factory({"defaults": {"apply_requirements": []}})
    before = scrape(server)
    assert value(before, "plankeeper_queue_depth") == 0 and value(before, "plankeeper_locks_held") == 0
    deliver_opened(server, fake_github)
    server.wait_jobs_idle()
    after_plan = scrape(server)
    assert value(after_plan, "plankeeper_webhooks_total", event="pull_request", outcome="queued") == 1
    assert value(after_plan, "plankeeper_jobs_total", kind="pull_request", state="succeeded") == 1
    assert value(after_plan, "plankeeper_locks_held") == 1
    deliver_comment(server, fake_github, "/apply")
    refused = requests.post(f"{server.url}/events", data=b"{}", timeout=5,
                            headers={"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "bad-signature"})
    assert refused.status_code == 401
    server.wait_jobs_idle()
    samples = scrape(server)
    assert value(samples, "plankeeper_webhooks_total", event="pull_request", outcome="queued") == 1
    assert value(samples, "plankeeper_webhooks_total", event="issue_comment", outcome="queued") == 1
    assert value(samples, "plankeeper_webhooks_total", event="issue_comment", outcome="unauthorized") == 1
    for kind in ("pull_request", "comment"):
        assert value(samples, "plankeeper_jobs_total", kind=kind, state="started") == 1
        assert value(samples, "plankeeper_jobs_total", kind=kind, state="succeeded") == 1
        assert value(samples, "plankeeper_jobs_total", kind=kind, state="failed") == 0
        assert value(samples, "plankeeper_job_duration_seconds_count", kind=kind) == 1
        assert value(samples, "plankeeper_job_duration_seconds_bucket", kind=kind, le="+Inf") == 1
        assert 0 < value(samples, "plankeeper_job_duration_seconds_sum", kind=kind) < 120
    for kind in ("plan_project", "apply_project"):  # the runs' per-project jobs
        assert value(samples, "plankeeper_jobs_total", kind=kind, state="succeeded") == 1
        assert value(samples, "plankeeper_job_duration_seconds_count", kind=kind) == 1
    assert value(samples, "plankeeper_queue_depth") == 0
    assert value(samples, "plankeeper_locks_held") == 1  # applied, but held until the pull request merges
    applies = requests.get(f"{server.url}/api/audit?action=apply", timeout=5).json()
    assert [a["result"] for a in applies] == ["success"], server.log()
