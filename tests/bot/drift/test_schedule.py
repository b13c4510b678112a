"""bot/scheduler.py: cron ticks queue each due drift check exactly once across schedulers
sharing one Redis; a scheduled check runs in a real RQ worker."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest
import redis
import yaml
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from bot import jobs, queueing
from bot.drift import schedule, status as drift_status
from bot.state import keys, repos
from bot.models import Repo
from bot.context import Runtime
from bot.settings import RepoDrift, RepoEntry
from bot.settings_loader import load_settings
from tests.bot.drift.test_check import FULL, KEY, REPO_ID, make_settings, state_value

REPO = Repo("github", "github.com", FULL, "/srv/git/infra.git")
NINE = datetime(2024, 5, 6, 9, 0, 12, tzinfo=timezone.utc)


@pytest.fixture
def redis_server(redis_db):
    """The shared real Redis (tests/conftest.py), shut down without redis-py's reconnect retries."""
    return redis_db


def _runtime(tmp_path, fake_github, redis_server, **kwargs) -> Runtime:
    return Runtime(make_settings(tmp_path, fake_github, f"unix://{redis_server.socket_file}", **kwargs), redis_server)


def _queued(r) -> list[str]:
    return queueing.queue(r).get_job_ids()


def test_two_servers_ticking_the_same_minute_queue_the_check_once(tmp_path, fake_github, redis_server):
    rt = _runtime(tmp_path, fake_github, redis_server, schedule="0 9 * * *")
    repos.remember_repo(redis_server, REPO)
    other_server = redis.Redis(unix_socket_path=redis_server.socket_file)  # its own connection, same Redis
    first, second = schedule.Scheduler(rt), schedule.Scheduler(Runtime(rt.settings, other_server))
    assert len(first.tick(NINE)) == 1
    assert second.tick(NINE.replace(second=40)) == []
    assert len(_queued(redis_server)) == 1
    assert first.tick(NINE.replace(minute=1)) == [] and second.tick(NINE.replace(minute=2)) == []  # not due
    job = jobs_record(redis_server, _queued(redis_server)[0])
    assert job["repo"] == REPO_ID and job["state"] == "queued" and job["event"] == "drift"


def jobs_record(r, job_id: str) -> dict:
    from bot.state import joblog

    return joblog.get_job(r, job_id)


def test_a_scheduler_that_slept_catches_up_without_duplicates(tmp_path, fake_github, redis_server):
    rt = _runtime(tmp_path, fake_github, redis_server, schedule="* * * * *")
    repos.remember_repo(redis_server, REPO)
    awake, sleepy = schedule.Scheduler(rt), schedule.Scheduler(rt)
    assert len(sleepy.tick(NINE)) == 1
    for minute in (1, 2, 3):
        assert len(awake.tick(NINE.replace(minute=minute))) == 1
    assert len(sleepy.tick(NINE.replace(minute=4))) == 1  # minutes 1-3 were claimed already
    assert len(_queued(redis_server)) == 5


def test_no_schedule_queues_nothing(tmp_path, fake_github, redis_server):
    rt = _runtime(tmp_path, fake_github, redis_server)
    repos.remember_repo(redis_server, REPO)
    assert schedule.Scheduler(rt).tick(NINE) == [] and _queued(redis_server) == []


def test_targets_come_from_events_server_repos_and_project_schedules(tmp_path, fake_github, redis_server):
    rt = _runtime(tmp_path, fake_github, redis_server)
    github = dataclasses.replace(rt.settings.github, api_url="https://api.github.com")
    settings = dataclasses.replace(rt.settings, github=github, repos=(
        RepoEntry(id="github.com/acme/listed", drift=RepoDrift(schedule="0 * * * *")),
        RepoEntry(id="/github.com/acme/.*/", drift=RepoDrift(remediate=True)),
        RepoEntry(id="gitlab.com/group/sub/proj", drift=RepoDrift(schedule="0 6 * * *")),
    ))
    repos.remember_repo(redis_server, REPO)
    redis_server.hset(keys.DRIFT_SCHEDULES.format(repo=REPO_ID), KEY, '{"schedule": "*/5 * * * *", "remediate": true}')
    found = {(t.repo.id, t.schedule, t.scope) for t in schedule.targets(settings, redis_server)}
    assert found == {("github.com/acme/listed", "0 * * * *", "*"), ("github.com/acme/infra", "*/5 * * * *", KEY),
                     ("gitlab.com/group/sub/proj", "0 6 * * *", "*")}


def test_repo_from_id_picks_the_forge_by_host(tmp_path, fake_github, redis_server):
    settings = make_settings(tmp_path, fake_github, None)
    github = dataclasses.replace(settings.github, api_url="https://api.github.com")
    settings = dataclasses.replace(settings, github=github)
    repo = schedule.repo_from_id("github.com/acme/infra", settings)
    assert (repo.forge, repo.clone_url) == ("github", "https://github.com/acme/infra.git")
    assert schedule.repo_from_id("gitlab.com/a/b/c", settings).forge == "gitlab"
    assert schedule.repo_from_id("git.example.org/a/b", settings) is None


def test_a_scheduled_check_runs_in_a_worker_and_reports_drift(tmp_path, fake_github, redis_server, infra):
    rt = _runtime(tmp_path, fake_github, redis_server, schedule="0 9 * * *")
    repos.remember_repo(redis_server, infra["repo"])
    (job_id,) = schedule.Scheduler(rt).tick(NINE)
    jobs.init_worker(rt.settings)
    SimpleWorker([queueing.queue(redis_server)], connection=redis_server, serializer=JSONSerializer).work(burst=True)
    record = jobs_record(redis_server, job_id)
    assert record["state"] == "succeeded" and record["summary"] == "1 project(s) checked: 1 drifted, 0 failed"
    assert drift_status.get_status(redis_server, REPO_ID, KEY)["drifted"] is True
    assert [i["state"] for i in fake_github.issues(FULL)] == ["open"]
    assert state_value(infra["state"]) == "rogue"


@pytest.fixture
def infra(tmp_path, git_repo, fake_github):
    from tests.bot.drift.test_check import apply_default_branch, change_out_of_band, main_tf

    state = tmp_path / "state" / "app.tfstate"
    state.parent.mkdir()
    git_repo.commit({"infra/app/main.tf": main_tf(state, "hello")}, "initial")
    fake_github.add_repo(FULL, git_repo.clone_url)
    apply_default_branch(git_repo, tmp_path)
    change_out_of_band(tmp_path, state, "rogue")
    return {"repo": Repo("github", "github.com", FULL, git_repo.clone_url), "state": state}


def test_a_check_that_crashes_is_recorded_failed_and_frees_remediations_lock(tmp_path, fake_github, redis_server):
    from bot.state import joblog, locks

    rt = _runtime(tmp_path, fake_github, redis_server)
    broken = dataclasses.replace(REPO, forge="svn")  # no forge client: the job raises
    locks.try_lock(redis_server, locks.new_lock(broken.id, KEY, drift_status.DRIFT_PULL, "", drift_status.ACTOR))
    job_id = schedule.enqueue_check(rt, broken, trigger="manual")
    jobs.init_worker(rt.settings)
    SimpleWorker([queueing.queue(redis_server)], connection=redis_server, serializer=JSONSerializer).work(burst=True)
    record = joblog.get_job(redis_server, job_id)
    assert record["state"] == "failed" and record["summary"] == "failed: ValueError"
    assert locks.get_lock(redis_server, broken.id, KEY) is None


@pytest.mark.parametrize("config, repo_id, clone_url", [
    ({"github": {"api_url": "https://ghe.acme.io/api/v3"}}, "ghe.acme.io/acme/infra", "https://ghe.acme.io/acme/infra.git"),
    ({"gitlab": {"url": "https://git.acme.io/gitlab"}}, "git.acme.io/group/sub/infra",
     "https://git.acme.io/gitlab/group/sub/infra.git"),
    ({"gitea": {"url": "http://gitea.acme.io:3000", "token": "t"}}, "gitea.acme.io:3000/acme/infra",
     "http://gitea.acme.io:3000/acme/infra.git"),
    ({}, "bitbucket.org/acme/infra", "https://bitbucket.org/acme/infra.git"),
    ({"bitbucket": {"url": "https://bitbucket.acme.io"}}, "bitbucket.acme.io/PLAT/infra",
     "https://bitbucket.acme.io/scm/plat/infra.git"),
    ({"azuredevops": {"org_url": "https://dev.azure.com/fabrikam", "token": "t"}},
     "dev.azure.com/fabrikam/Platform/infra", "https://dev.azure.com/fabrikam/Platform/_git/infra"),
    ({"azuredevops": {"org_url": "https://tfs.acme.io/tfs/Main", "token": "t"}},
     "tfs.acme.io/tfs/Main/Platform/infra", "https://tfs.acme.io/tfs/Main/Platform/_git/infra"),
])
def test_a_repo_never_seen_in_a_webhook_gets_its_forges_clone_url(tmp_path, config, repo_id, clone_url) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path, {})
    repo = schedule.repo_from_id(repo_id, settings)
    assert repo is not None and repo.clone_url == clone_url
