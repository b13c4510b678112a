"""Faults through a real `plankeeper serve` (bounded, loopback only): killed workers, a
restarted Redis, a failing forge API, a hanging Terraform, a full disk, a redelivery storm.

After each: no lock, saved plan or queued job is lost, no status is left pending, and the pull
request is told what happened.
"""
from __future__ import annotations

import json

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from bench.webhook_load import make_delivery, send
from tests.conftest import WEBHOOK_SECRET
from tests.e2e.test_github_apply import Scenario, root_module
from tests.support import (Server, answers, forked_web_process, free_port, github_comment_payload, github_pr_payload,
                           runs_under, wait_for)

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
NO_APPROVAL = {"defaults": {"apply_requirements": []}}
SLOW_PLAN = {"repos": [{"id": "/.*/", "workflow": "slow",
                        "workflows": {"slow": {"plan": {"steps": [{"run": "sleep 12"}, "init", "plan"]}}}}]}


def deliver(server, fake, number: int, body: str = "", user: str = "alice", action: str = "opened"):
    if body:
        answer = server.deliver_github("issue_comment", github_comment_payload(fake, REPO, number, body, user),
                                       WEBHOOK_SECRET)
    else:
        answer = server.deliver_github("pull_request", github_pr_payload(action, fake, REPO, number), WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def open_pull(scenario: Scenario, number: int, project: str = "app", sleep: int = 0, value: str = "hello") -> str:
    """A pull request changing infra/<project>, whose state lives outside the work dir."""
    repo, fake = scenario.repo, scenario.fake
    state = scenario.state.parent / f"{project}.tfstate"
    repo.checkout("main")
    head = repo.commit({f"infra/{project}/main.tf": root_module(state, value, sleep)}, f"pr {number}",
                       branch=f"feature-{number}")
    repo.checkout("main")
    fake.add_pull(REPO, number, head, f"feature-{number}", "main", "alice", files=[f"infra/{project}/main.tf"],
                  base_sha=scenario.base)
    fake.set_permission(REPO, "alice", "write")
    return head


def running_project_job(server, title_prefix: str) -> dict:
    def find():
        jobs = requests.get(f"{server.url}/api/jobs?limit=200", timeout=5).json()
        hits = [j for j in jobs if j.get("state") == "running" and j.get("pid")
                and j.get("title", "").startswith(title_prefix)]
        return hits[0] if hits else None

    return wait_for(find, timeout=90, what=f"a running '{title_prefix}' job")  # type: ignore[return-value]


def kill_worker_of(job: dict) -> list[int]:
    """SIGKILL the job's work-horse and the RQ worker that forked it; returns their pids."""
    horse = psutil.Process(int(job["pid"]))
    worker = horse.parent()
    assert worker is not None and "worker" in " ".join(worker.cmdline()), worker
    for proc in (worker, horse):
        proc.send_signal(signal.SIGKILL)
    return [worker.pid, horse.pid]


def final_states(fake, head: str, context: str) -> list[str]:
    return [s["state"] for s in fake.statuses(REPO, head) if s["context"] == context]


def assert_nothing_pending(fake, *heads: str) -> None:
    """Every status context's latest state is final."""
    for head in heads:
        latest: dict[str, str] = {}
        for status in fake.statuses(REPO, head):
            latest[status["context"]] = status["state"]
        assert "pending" not in latest.values(), (head, latest)


def locks_of(server) -> list[tuple[int, str]]:
    return sorted((lock["pull_number"], lock["project_key"])
                  for lock in requests.get(f"{server.url}/api/locks", timeout=5).json())


@pytest.fixture
def scenario(fake_github, git_repo, tmp_path):
    return Scenario(fake_github, git_repo, tmp_path)


def test_worker_killed_mid_plan_is_reported_and_the_replan_works(scenario, fake_github, serve_factory):
    head = open_pull(scenario, 7)
    server = serve_factory(SLOW_PLAN)
    deliver(server, fake_github, 7)
    job = running_project_job(server, "plan ")
    wait_for(lambda: runs_under(int(job["pid"]), "sleep 12"), timeout=60, what="the plan inside its `sleep 12` step")
    killed = kill_worker_of(job)
    deliver(server, fake_github, 7, "/plan")  # queued while its worker is dead: must still run
    # The failure may be followed at once by the re-plan's pending status: look in the history.
    wait_for(lambda: "failure" in final_states(fake_github, head, "plankeeper/plan")
             and "stopped because" in scenario.comments(7, "**Plankeeper plan**")[0], timeout=120,
             what="the dead plan reported")
    server.wait_jobs_idle(timeout=180)
    dead = [b for b in scenario.comments(7) if "stopped because" in b]
    assert len(dead) == 1 and "worker" in dead[0] and "Locks and saved plans are kept" in dead[0], dead
    assert dead[0].startswith("> ⚠️ **Outdated:**")  # superseded by the re-plan below
    assert "1 with changes" in scenario.comments(7, "**Plankeeper plan**")[-1]
    assert final_states(fake_github, head, "plankeeper/plan")[-1] == "success"
    assert locks_of(server) == [(7, "infra/app::default")]
    assert all(not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE for pid in killed)
    assert_nothing_pending(fake_github, head)


def test_worker_killed_mid_apply_keeps_lock_and_plan_and_apply_again_completes(scenario, fake_github,
                                                                                serve_factory):
    head = open_pull(scenario, 7, sleep=10)
    server = serve_factory({**NO_APPROVAL, "terraform": {"timeout": 15}})  # apply mutex: 3 x 15 s
    deliver(server, fake_github, 7)
    server.wait_jobs_idle()
    deliver(server, fake_github, 7, "/apply")
    job = running_project_job(server, "apply ")
    wait_for(lambda: "🔄 running" in (scenario.comments(7, "**Plankeeper apply**") or [""])[-1], timeout=60)
    wait_for(lambda: runs_under(int(job["pid"]), "sleep 10"), timeout=60,
             what="the apply inside its provisioner's `sleep 10`")
    kill_worker_of(job)
    wait_for(lambda: final_states(fake_github, head, "plankeeper/apply")[-1:] == ["failure"], timeout=120,
             what="the dead apply reported")
    server.wait_jobs_idle(timeout=120)
    body = scenario.comments(7, "**Plankeeper apply**")[-1]
    assert "stopped because" in body and "Locks and saved plans are kept" in body, body
    assert locks_of(server) == [(7, "infra/app::default")]
    # Terraform got SIGINT with its job (runners.process): it either wrote nothing or recorded the
    # half-made resource as tainted, never as applied.
    state = json.loads(scenario.state.read_text()) if scenario.state.exists() and scenario.state.read_text().strip() else {}
    instances = [i for r in state.get("resources", []) for i in r["instances"]]
    assert all(i.get("status") == "tainted" for i in instances), instances
    # The saved plan survived: apply it again. The killed job's Terraform got SIGINT (it dies with
    # its job) and its apply mutex was released; if that Terraform stopped gracefully after writing
    # state, Terraform calls the saved plan stale, and the way on is what a user would do: /plan.
    for _ in range(4):
        deliver(server, fake_github, 7, "/apply")
        server.wait_jobs_idle(timeout=120)
        body = scenario.comments(7, "**Plankeeper apply**")[-1]
        if "Apply complete!" in body:
            break
        assert "stale" in body.lower() or "Another apply of this project is running right now" in body, body
        deliver(server, fake_github, 7, "/plan")
        server.wait_jobs_idle(timeout=120)
    assert "Apply complete! Resources: 1 added" in body
    assert scenario.state_values() == ["hello"]
    assert_nothing_pending(fake_github, head)


def test_embedded_redis_restarted_mid_job_keeps_locks_plans_and_queued_jobs(scenario, fake_github,
                                                                           serve_factory):
    held = open_pull(scenario, 9, project="db")
    slow = open_pull(scenario, 7, project="app", sleep=15)
    queued = open_pull(scenario, 8, project="web")
    server = serve_factory({**NO_APPROVAL, "workers": 1, "terraform": {"timeout": 30}})
    for number in (9, 7):
        deliver(server, fake_github, number)
    server.wait_jobs_idle()
    assert locks_of(server) == [(7, "infra/app::default"), (9, "infra/db::default")]
    deliver(server, fake_github, 7, "/apply")
    job = running_project_job(server, "apply ")
    deliver(server, fake_github, 8)  # one worker, busy: this waits in the queue (202: it is in Redis)
    wait_for(lambda: runs_under(int(job["pid"]), "sleep 15"), timeout=60,
             what="PR 7's apply inside its provisioner's `sleep 15`")
    r = server.redis()
    r.shutdown(save=True)  # Redis goes away mid-apply (appendonly: nothing acknowledged is lost)
    server.stop()
    server.start()
    server.wait_jobs_idle(timeout=180)
    assert (8, "infra/web::default") in locks_of(server), server.log()  # the queued job ran
    assert "1 with changes" in scenario.comments(8, "**Plankeeper plan**")[-1]
    assert {(7, "infra/app::default"), (9, "infra/db::default")} <= set(locks_of(server))
    apply_7 = scenario.comments(7, "**Plankeeper apply**")
    assert apply_7 and ("Apply complete!" in apply_7[-1] or "stopped because" in apply_7[-1]), apply_7
    deliver(server, fake_github, 9, "/apply")  # its plan was saved before the restart
    server.wait_jobs_idle(timeout=120)
    assert "Apply complete! Resources: 1 added" in scenario.comments(9, "**Plankeeper apply**")[-1]
    assert_nothing_pending(fake_github, held, slow, queued)


def test_forge_5xx_is_retried_and_403_with_retry_after_fails_clearly(scenario, fake_github, serve_factory):
    head = open_pull(scenario, 7)
    server = serve_factory()
    comments_path = rf"^/repos/{REPO}/issues/7/comments$"
    fake_github.inject_failures(comments_path, [500, 502])
    deliver(server, fake_github, 7)
    server.wait_jobs_idle()
    posts = [p for m, p in fake_github.requests if m == "POST" and p == f"/repos/{REPO}/issues/7/comments"]
    assert len(posts) == 3  # 500, 502, then created
    assert "1 with changes" in scenario.comments(7, "**Plankeeper plan**")[-1]
    assert final_states(fake_github, head, "plankeeper/plan")[-1] == "success"
    # Rate limited for good on statuses: four attempts honouring Retry-After, then a clear failure.
    fake_github.inject_failures(rf"^/repos/{REPO}/statuses/", [403] * 40, retry_after=1)
    started = time.time()
    deliver(server, fake_github, 7, "/plan")
    server.wait_jobs_idle(timeout=180)
    assert time.time() - started >= 6  # pending, then final status: each waited Retry-After: 1 three times
    latest = scenario.comments(7, "**Plankeeper plan**")[-1]
    assert "1 with changes" in latest  # the plan itself ran and is shown
    assert "The commit status could not be set (GitHub: set status plankeeper/plan" in latest, latest
    assert "failed: HTTP 403 after 4 attempts)" in latest
    status_posts = [p for m, p in fake_github.requests if m == "POST" and p.startswith(f"/repos/{REPO}/statuses/")]
    assert len(status_posts) == 2 + 8  # the first plan's two, then 4 attempts for each of the next two


def test_hanging_terraform_is_killed_by_the_timeout_and_the_comment_says_so(scenario, fake_github,
                                                                            serve_factory):
    head = open_pull(scenario, 7, sleep=47)
    server = serve_factory({**NO_APPROVAL, "terraform": {"timeout": 8}})
    deliver(server, fake_github, 7)
    server.wait_jobs_idle()
    assert final_states(fake_github, head, "plankeeper/plan")[-1] == "success"
    started = time.time()
    deliver(server, fake_github, 7, "/apply")
    server.wait_jobs_idle(timeout=60)
    assert time.time() - started < 40
    body = scenario.comments(7, "**Plankeeper apply**")[-1]
    assert "timed out after 8s" in body and "terraform.timeout" in body, body
    assert final_states(fake_github, head, "plankeeper/apply")[-1] == "failure"
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-2:] == ["sleep", "47"]
                 or (p.info["cmdline"] or [])[-1:] == ["sleep 47"]]
    assert leftovers == []  # the whole process group went, not just terraform
    assert locks_of(server) == [(7, "infra/app::default")]
    assert_nothing_pending(fake_github, head)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a 1.1 GiB tmpfs as a full data_dir")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1100m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    ballast = directory / "ballast"
    with open(ballast, "wb") as out:
        try:
            while True:
                out.write(b"\0" * (8 << 20))
                out.flush()
        except OSError:
            pass
    return ballast


def test_disk_full_in_data_dir_loses_no_delivery_and_recovers(scenario, fake_github, serve_factory, small_disk):
    head = open_pull(scenario, 7)
    server = serve_factory({"data_dir": str(small_disk / "data")})
    ballast = _fill(small_disk)
    payload = github_pr_payload("opened", fake_github, REPO, 7)
    first = server.deliver_github("pull_request", payload, WEBHOOK_SECRET, delivery="disk-full-1")
    # 202: queued (in Redis' memory; its append-only file catches up once there is room);
    # otherwise not acknowledged, so the forge's redelivery must be accepted.
    assert first.status_code == 202 or first.status_code >= 500, first.text
    # The fault under test, not a wait for a condition: the disk stays full for 3 s while serve runs.
    # Workers that meet it (Redis refuses writes) exit and serve starts others; whether any worker
    # took the job by then depends on the first answer, so there is nothing more specific to wait on.
    time.sleep(3)
    ballast.unlink()
    r = server.redis()

    def redis_takes_writes() -> bool:  # Redis retries its append-only file writes each second
        info = r.info("persistence")
        return info.get("aof_last_write_status") == "ok" and info.get("rdb_last_bgsave_status") == "ok"

    wait_for(redis_takes_writes, timeout=30, what="Redis to write to disk again after the ballast went")
    again = server.deliver_github("pull_request", payload, WEBHOOK_SECRET, delivery="disk-full-1")
    assert again.json()["outcome"] == ("duplicate" if first.status_code == 202 else "queued"), again.text
    jobs = server.wait_jobs_idle(timeout=240)  # a job a dying worker took is queued again after ~1 min
    assert [j["state"] for j in jobs if j.get("delivery") == "disk-full-1"] in (["succeeded"], ["failed"])
    if not scenario.comments(7, "**Plankeeper plan**"):  # it ran while the disk was full: told so
        assert scenario.comments(7, "**Not enough disk space**"), scenario.comments(7)
        assert final_states(fake_github, head, "plankeeper/plan") in ([], ["failure"])
        deliver(server, fake_github, 7, "/plan")
        server.wait_jobs_idle(timeout=120)
    assert len(scenario.comments(7, "**Plankeeper plan**")) == 1, scenario.comments(7)  # data_dir needs 1 GiB free (bot.disk)
    assert "1 with changes" in scenario.comments(7, "**Plankeeper plan**")[-1], scenario.comments(7)
    assert final_states(fake_github, head, "plankeeper/plan")[-1] == "success"
    assert_nothing_pending(fake_github, head)


def test_1000_redeliveries_of_one_delivery_run_one_job(scenario, fake_github, serve_factory):
    head = open_pull(scenario, 7)
    server = serve_factory()
    payload = github_pr_payload("opened", fake_github, REPO, 7)
    delivery = make_delivery("pull_request", payload, WEBHOOK_SECRET, delivery_id="the-one-delivery")
    result = send(server.url, [delivery] * 1000, concurrency=50)
    assert result.errors == [] and result.statuses == {202: 1, 200: 999}, result.statuses
    jobs = server.wait_jobs_idle()
    assert [j for j in jobs if j.get("delivery") == "the-one-delivery"] != []
    assert len([j for j in jobs if j.get("event") == "pull_request"]) == 1
    assert len(scenario.comments(7, "**Plankeeper plan**")) == 1, scenario.comments(7)  # data_dir needs 1 GiB free (bot.disk)
    assert final_states(fake_github, head, "plankeeper/plan") == ["pending", "success"]


def web_process(server) -> psutil.Process | None:
    return forked_web_process(psutil.Process(server.proc.pid))


def test_killed_web_process_is_replaced_and_dies_with_serve(scenario, fake_github, tmp_path):
    (tmp_path / "web").mkdir()
    ui_port = free_port()
    server = Server(tmp_path / "web", {"workers": 0, "ui": {"port": ui_port},
                                       "github": {"api_url": fake_github.api_url, "token": "t",
                                                  "webhook_secret": WEBHOOK_SECRET}}).start()
    try:
        first = web_process(server)
        assert first is not None
        first.send_signal(signal.SIGKILL)  # as the OOM killer would
        wait_for(lambda: (web := web_process(server)) and web.pid != first.pid, timeout=30,
                 what="granian to fork another web process")
        scenario.open_pull(7)
        wait_for(lambda: _acked(server, fake_github, 7), timeout=30, what="the new web process to ack a webhook")
        wait_for(lambda: answers(f"http://127.0.0.1:{ui_port}/healthz"), timeout=30, what="the UI port")

        web_side = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
                    if "redis-server" not in " ".join(p.cmdline())]  # the web process, the UI listener and its own
        assert len(web_side) == 3, [p.cmdline() for p in web_side]
        server.proc.send_signal(signal.SIGKILL)  # serve itself gone: nothing of it may keep a port
        server.proc.wait(10)
        wait_for(lambda: not any(_alive(p) for p in web_side), timeout=10, what="the web side to die with serve")
        for url in (server.url, f"http://127.0.0.1:{ui_port}"):
            assert not answers(f"{url}/healthz"), url
    finally:
        if server.stop() == -signal.SIGKILL:
            server.redis().shutdown(nosave=True)  # the embedded Redis outlives a serve killed by SIGKILL


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _acked(server, fake, number: int) -> bool:
    try:
        answer = server.deliver_github("pull_request", github_pr_payload("opened", fake, REPO, number), WEBHOOK_SECRET)
    except requests.ConnectionError:
        return False
    return answer.status_code == 202
