"""Load on `POST /events` of a real `plankeeper serve --workers 0`: 2,000 signed deliveries,
50 at a time; every one acknowledged and queued exactly once, nothing lost."""
from __future__ import annotations

import pytest
from rq.serializers import JSONSerializer
from rq import Queue

from bench.webhook_load import make_delivery, send
from bot import queueing
from bot.state import joblog
from tests.conftest import WEBHOOK_SECRET
from tests.support import GitRepo, github_pr_payload, tf_data

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
DELIVERIES, CONCURRENCY = 2000, 50


def _pulls(fake, tmp_path, count: int = 20) -> list[int]:
    repo = GitRepo(tmp_path / "git")
    base = repo.commit({"README.md": "infra\n"}, "initial")
    head = repo.commit({"infra/app/main.tf": tf_data()}, "app", branch="feature")
    fake.add_repo(REPO, repo.clone_url)
    for number in range(1, count + 1):
        fake.add_pull(REPO, number, head, "feature", "main", "alice", files=["infra/app/main.tf"], base_sha=base)
    return list(range(1, count + 1))


def test_2000_signed_deliveries_50_at_a_time_are_all_queued_once(fake_github, serve_factory, tmp_path):
    numbers = _pulls(fake_github, tmp_path)
    server = serve_factory({"workers": 0})
    payloads = [github_pr_payload("synchronize", fake_github, REPO, n) for n in numbers]
    deliveries = [make_delivery("pull_request", payloads[i % len(payloads)], WEBHOOK_SECRET)
                  for i in range(DELIVERIES)]
    result = send(server.url, deliveries, concurrency=CONCURRENCY)
    latency = result.percentiles_ms()
    print(f"\nack latency over {DELIVERIES} deliveries at {CONCURRENCY} concurrent: {latency}, "
          f"wall {result.wall:.2f}s")
    assert result.errors == []
    assert result.statuses == {202: DELIVERIES}
    sent = {d.delivery_id for d in deliveries}
    assert {a["job_id"] for a in result.answers.values()} == {queueing.job_id_for(d) for d in sent}
    r = server.redis()
    assert Queue(queueing.QUEUE_NAME, connection=r, serializer=JSONSerializer).count == DELIVERIES
    records = joblog.recent_jobs(r, limit=DELIVERIES + 10)
    assert {j["delivery"] for j in records if j.get("state") == "queued"} == sent
    assert "Traceback" not in server.log()
