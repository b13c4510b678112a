"""Through real `plankeeper serve` processes: webhooks missed while the server was down are caught
up by the sweep at start (one serve with its embedded Redis, and two web processes sharing one
external Redis), each exactly once; and the embedded Redis killed outright (as the OOM killer
would) is started again by serve on its data: locks and saved plans are there, `/apply` works.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from tests.e2e.test_faults import deliver, final_states, locks_of, open_pull
from tests.e2e.test_github_apply import Scenario
from tests.e2e.test_scaleout import Cluster
from tests.support import Server, wait_for

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
ON_MERGE = {"defaults": {"apply_requirements": [], "apply_on_merge": True}}


@pytest.fixture
def scenario(fake_github, git_repo, tmp_path):
    return Scenario(fake_github, git_repo, tmp_path)


def missed_while_down(scenario: Scenario, fake, web: list[Server]) -> tuple[str, str]:
    """PR 7 planned (apply_on_merge); then every web process stops, PR 7 is merged and PR 8
    opened: no webhook reaches the bot. Returns (PR 7's merge commit, PR 8's head)."""
    for server in web:
        server.stop()
    merge_sha = scenario.merge(7)
    head_8 = open_pull(scenario, 8, "db")
    return merge_sha, head_8


def caught_up(scenario: Scenario, fake, merge_sha: str, head_8: str, jobs: list[dict]) -> None:
    """PR 8 planned once, PR 7 deployed once, each by an event job the sweep queued."""
    assert final_states(fake, head_8, "plankeeper/plan") == ["pending", "success"]
    assert len(scenario.comments(8, "**Plankeeper plan**")) == 1
    assert final_states(fake, merge_sha, "plankeeper/apply") == ["pending", "success"]
    applies = scenario.comments(7, "**Plankeeper apply**")
    assert len(applies) == 1 and "Apply complete! Resources: 1 added" in applies[0], applies
    assert scenario.state_values() == ["hello"]
    swept = [j for j in jobs if j.get("delivery", "").startswith("sweep:")]
    assert sorted(j["delivery"] for j in swept) == [f"sweep:github.com/{REPO}#7:merged",
                                                    f"sweep:github.com/{REPO}#8:plan:{head_8}"], swept
    assert all(j["state"] == "succeeded" for j in swept), swept


def test_a_pull_request_opened_and_one_merged_while_down_are_caught_up_at_start(scenario, fake_github,
                                                                                serve_factory):
    scenario.open_pull(7)
    server = serve_factory(ON_MERGE)
    deliver(server, fake_github, 7)
    server.wait_jobs_idle()
    assert len(scenario.comments(7, "**Plankeeper plan**")) == 1
    merge_sha, head_8 = missed_while_down(scenario, fake_github, [server])
    started = time.time()
    server.start()
    wait_for(lambda: final_states(fake_github, merge_sha, "plankeeper/apply")[-1:] == ["success"]
             and final_states(fake_github, head_8, "plankeeper/plan")[-1:] == ["success"], timeout=120,
             what="PR 8 planned and PR 7 deployed by the start sweep")
    caught_up(scenario, fake_github, merge_sha, head_8, server.wait_jobs_idle())
    assert time.time() - started < 60
    assert locks_of(server) == [(8, "infra/db::default")]  # PR 7's lock went with its deploy
    # Started again: nothing is missed any more, nothing runs twice.
    sweeps = len(sweep_jobs(server.wait_jobs_idle()))
    server.stop()
    server.start()
    wait_for(lambda: len(sweep_jobs(server.wait_jobs_idle())) == sweeps + 1, timeout=60,
             what="the second start's sweep")
    jobs = server.wait_jobs_idle()
    assert sweep_jobs(jobs)[0]["summary"] == "nothing missed", sweep_jobs(jobs)
    caught_up(scenario, fake_github, merge_sha, head_8, jobs)


def sweep_jobs(jobs: list[dict]) -> list[dict]:
    """The sweep jobs (one per repository and sweep), newest first, each finished."""
    found = [j for j in jobs if j.get("event") == "reconcile"]
    assert all(j["state"] == "succeeded" for j in found), found
    return found


class _OnMergeCluster(Cluster):
    def config(self, name: str) -> dict:
        config = super().config(name)
        config["defaults"] = dict(ON_MERGE["defaults"])
        config["terraform"]["timeout"] = 60
        config["sandbox_paths"] = [f"{self.tmp / 'state'}:rw"]  # the local backends' state, as serve_factory
        return config


@pytest.fixture
def cluster(tmp_path, fake_github):
    c = _OnMergeCluster(tmp_path, fake_github)
    yield c
    c.stop()


def test_two_web_processes_on_one_redis_catch_up_once(scenario, fake_github, cluster):
    scenario.open_pull(7)
    web = [cluster.start_server("web-a"), cluster.start_server("web-b")]
    for i in range(2):
        cluster.start_worker(f"worker-{i}")
    wait_for(lambda: len(cluster.live_workers()) == 2, timeout=30, what="two registered workers")
    deliver(web[0], fake_github, 7)
    cluster.wait_idle()
    merge_sha, head_8 = missed_while_down(scenario, fake_github, web)
    # Both come back at once: each asks for its start sweep; what is missed runs once.
    threads = [threading.Thread(target=s.start) for s in web]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: final_states(fake_github, merge_sha, "plankeeper/apply")[-1:] == ["success"]
             and final_states(fake_github, head_8, "plankeeper/plan")[-1:] == ["success"], timeout=120,
             what="PR 8 planned and PR 7 deployed by a start sweep")
    jobs = cluster.wait_idle()
    caught_up(scenario, fake_github, merge_sha, head_8, jobs)
    assert 1 <= len(sweep_jobs(jobs)) <= 2


def test_embedded_redis_killed_between_plan_and_apply_is_restarted_on_its_data(scenario, fake_github,
                                                                                serve_factory):
    scenario.open_pull(7)
    server = serve_factory({"defaults": {"apply_requirements": []}})
    deliver(server, fake_github, 7)
    server.wait_jobs_idle()
    assert locks_of(server) == [(7, "infra/app::default")]
    r = server.redis()
    assert r.exists("pk:plan:github.com/acme/infra#7:infra/app::default")
    time.sleep(1.5)  # appendfsync everysec: what was written is on disk
    pid = int(r.info("server")["process_id"])
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would

    def back() -> bool:
        try:
            health = requests.get(f"{server.url}/healthz", timeout=2)
        except requests.RequestException:
            return False
        return health.status_code == 200 and health.json()["workers"] >= 2

    wait_for(back, timeout=30, what="serve to restart its Redis and the workers to reconnect")
    assert server.proc.poll() is None, server.log()
    assert int(server.redis().info("server")["process_id"]) != pid
    wait_for(lambda: "the embedded Redis is back" in server.log(), timeout=10, what="serve to say so")
    assert locks_of(server) == [(7, "infra/app::default")]  # held throughout
    deliver(server, fake_github, 7, "/apply")
    server.wait_jobs_idle(timeout=120)
    applies = scenario.comments(7, "**Plankeeper apply**")
    assert len(applies) == 1 and "Apply complete! Resources: 1 added" in applies[0], server.log()
    assert scenario.state_values() == ["hello"]
    assert locks_of(server) == [(7, "infra/app::default")]  # until the merge
