"""bot/handlers/unlock.py: /unlock, and what closing a pull request releases; locks and plans set
up directly in Redis (no Terraform needed), the command through bot.dispatch."""
from __future__ import annotations

from bot import dispatch
from bot.models import PullRequestEvent
from bot.state import artifacts, audit, locks

APP, DB, OTHER = "infra/app::default", "infra/db::prod", "infra/other::default"


def hold(bench, number: int, *project_keys: str) -> None:
    """Pull request `number` holds the projects' locks and has a stored plan for each."""
    for key in project_keys:
        lock = locks.new_lock(bench.repo.id, key, number, f"https://github.com/acme/infra/pull/{number}", "alice")
        assert locks.try_lock(bench.redis, lock).pull_number == number
        plan_file = bench.tmp / f"plan-{number}-{key.replace('/', '_')}.tfplan"
        plan_file.write_bytes(b"plan bytes of " + key.encode())
        artifacts.save_plan(bench.redis, artifacts.PlanArtifact(
            bench.repo.id, number, key, None, "terraform", bench.head, "", "Plan: 1 to add."), plan_file)


def test_unlock_releases_the_pull_requests_locks_and_discards_its_plans(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    hold(bench, 7, APP, DB)
    hold(bench, 8, OTHER)

    assert bench.comment("/unlock", "alice", job_id="job-5") == "unlocked 2"
    assert bench.last_comment() == ("**Plankeeper unlock**: released 2 lock(s) and discarded 2 plan(s):"
                                    "\n- `infra/app` workspace `default`\n- `infra/db` workspace `prod`")
    assert locks.get_lock(bench.redis, bench.repo.id, APP) is None
    assert locks.get_lock(bench.redis, bench.repo.id, DB) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    # another pull request's lock and plan are not ours to release
    assert locks.get_lock(bench.redis, bench.repo.id, OTHER).pull_number == 8
    assert [p.project_key for p in artifacts.pull_plans(bench.redis, bench.repo.id, 8)] == [OTHER]
    [entry] = audit.entries(bench.redis, filters={"action": "unlock"})
    assert (entry["user"], entry["pull"], entry["commit"], entry["project"], entry["job_id"]) == (
        "alice", "7", pull.head_sha, f"{APP},{DB}", "job-5")


def test_unlock_with_nothing_held(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    hold(bench, 8, OTHER)
    assert bench.comment("/unlock", "alice") == "unlocked 0"
    assert bench.last_comment() == ("**Plankeeper unlock**: released 0 lock(s) and discarded 0 plan(s): "
                                    "none were held.")
    assert locks.get_lock(bench.redis, bench.repo.id, OTHER).pull_number == 8


def test_closing_a_pull_request_releases_it_quietly(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    hold(bench, 7, APP)
    with bench.job("job-6") as ctx:
        assert dispatch.handle(ctx, PullRequestEvent("d6", "closed", pull, "bob")) == "released 1 lock(s)"
    assert locks.get_lock(bench.redis, bench.repo.id, APP) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert bench.bot_comments() == []
    [entry] = audit.entries(bench.redis, filters={"action": "closed"})
    assert (entry["user"], entry["project"], entry["result"]) == ("bob", APP, "locks released")
