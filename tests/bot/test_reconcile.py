"""bot/reconcile: the sweep for webhooks the forge never delivered, on a real Redis and the fake
GitHub with real git (JobBench): what it finds missed is queued as ordinary event jobs and run
once; what a webhook brought, what is planned or deployed already, and old comments are not.
And the schedule: one sweep per interval however many `serve` processes share the Redis."""
from __future__ import annotations

import json
import threading
from dataclasses import replace

from bot import queueing
from bot.app import create_app
from bot.models import PullRequestEvent
from bot.reconcile import schedule, sweep
from bot.settings import GitHubSettings, ProjectDefaults, ReconcileSettings, Settings
from bot.signatures import sign_github
from bot.state import artifacts, deployments, keys, locks, replay
from bot.state.repos import remember_repo
from tests.support import fixture, tf_data
from tests.support_jobs import FULL

KEY = "infra/app::default"
PLAN, APPLY = "plankeeper/plan", "plankeeper/apply"
ON_MERGE = ProjectDefaults(apply_requirements=(), apply_on_merge=True)


def sweep_now(bench) -> list[str]:
    return sweep.sweep_repo(bench.rt, bench.forge, bench.repo)


def status_reads(bench) -> list[str]:
    """The commit-status reads the bot made (each costs one forge call)."""
    return [p for m, p in bench.fake.requests if m == "GET" and p.endswith("/status")]


def plan_comments(bench, number: int = 7) -> list[str]:
    return [c["body"] for c in bench.bot_comments(number) if "**Plankeeper plan**" in c["body"]]


def planned(bench_factory, **settings):
    """A pull request planned by `/plan` (its comment handled as a webhook would be)."""
    bench = bench_factory(**settings)
    bench.open_pull()
    bench.comment("/plan", "alice")
    bench.work()
    assert [p.project_key for p in artifacts.pull_plans(bench.redis, bench.repo.id, 7)] == [KEY]
    return bench


# ---------------------------------------------------------------------------- open pull requests


def test_a_pull_request_opened_while_down_is_planned_once(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    [job_id] = sweep_now(bench)
    assert job_id.startswith("sweep-")
    bench.work()
    assert len(plan_comments(bench)) == 1
    assert bench.statuses(pull.head_sha, PLAN)[-1][0] == "success"
    assert locks.get_lock(bench.redis, bench.repo.id, KEY).pull_number == 7
    reads = len(status_reads(bench))
    assert sweep_now(bench) == [] and sweep_now(bench) == []
    assert len(status_reads(bench)) == reads  # a head seen once costs no forge call again
    # A push the webhook of which was missed too: the new head is planned, the old plan discarded.
    head = bench.push_commit({"infra/app/main.tf": tf_data("x", "changed")})
    assert len(sweep_now(bench)) == 1
    bench.work()
    assert len(plan_comments(bench)) == 2
    [plan] = artifacts.pull_plans(bench.redis, bench.repo.id, 7)
    assert plan.head_sha == head


def test_a_head_a_webhook_brought_or_that_is_planned_is_left_alone(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    queueing.claim_delivery(bench.redis, queueing.sweep_delivery_id(PullRequestEvent("x", "opened", pull, "alice")))
    assert sweep_now(bench) == [] and status_reads(bench) == []
    bench.fake.add_pull(FULL, 8, "c" * 40, "other", "main", "alice")
    bench.fake.add_status(FULL, "c" * 40, PLAN, "success", creator="plankeeper-bot")
    assert sweep_now(bench) == [] and len(status_reads(bench)) == 1
    assert sweep_now(bench) == [] and len(status_reads(bench)) == 1  # remembered as planned


def test_drafts_forks_and_repositories_without_autoplan_are_not_planned(bench_factory) -> None:
    bench = bench_factory()
    bench.fake.add_pull(FULL, 7, bench.head, "feature", "main", "alice", draft=True)
    bench.fake.add_pull(FULL, 8, bench.head, "feature", "main", "mallory", fork_full_name="mallory/infra")
    assert sweep_now(bench) == []
    bench.rt.settings = replace(bench.settings, defaults=ProjectDefaults(autoplan=False))
    bench.open_pull(9)
    assert sweep_now(bench) == [] and status_reads(bench) == []


def test_pull_requests_not_updated_within_the_window_cost_nothing(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    with bench.fake.lock:
        bench.fake.pull(FULL, 7).updated_at = "2020-01-01T00:00:00Z"  # before the first window
    assert sweep_now(bench) == []
    assert [p for m, p in bench.fake.requests if "/comments" in p or p.endswith("/status")] == []


# ---------------------------------------------------------------------------- comments


def test_a_missed_command_runs_once_before_the_autoplan(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.fake.add_comment(FULL, 7, "/help", "alice")
    queued = sweep_now(bench)
    assert len(queued) == 2
    bench.work()
    bodies = [c["body"] for c in bench.bot_comments()]
    assert len(bodies) == 2 and "/plan" in bodies[0] and bodies[1].startswith("**Plankeeper plan**"), bodies
    assert bench.fake.comments(FULL, 7)[0]["reactions"] == ["eyes"]
    assert sweep_now(bench) == []
    assert len(bench.bot_comments()) == 2


def test_old_answered_acted_on_and_plain_comments_are_not_replayed(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    bench.fake.add_status(FULL, pull.head_sha, PLAN, "success", creator="plankeeper-bot")
    bench.fake.add_comment(FULL, 7, "/plan", "alice")  # the bot answered after it
    bench.fake.add_comment(FULL, 7, "**Plankeeper plan** ...", "plankeeper-bot")
    acted = bench.fake.add_comment(FULL, 7, "/unlock", "alice")
    replay.first_time_command(bench.redis, bench.repo.id, 7, str(acted))
    bench.fake.add_comment(FULL, 7, "looks good to me", "bob")
    bench.fake.add_comment(FULL, 7, "/plan -w ../x", "alice")  # malformed: answered with the usage
    assert len(sweep_now(bench)) == 1
    bench.work()
    reply = bench.bot_comments()[-1]["body"]
    assert "workspace" in reply.lower() and "/plan" in reply, reply
    assert len(bench.bot_comments()) == 2 and sweep_now(bench) == []


def test_a_comment_a_webhook_brought_is_not_replayed(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    bench.fake.add_status(FULL, pull.head_sha, PLAN, "success", creator="plankeeper-bot")
    from_webhook = fixture("github", "issue_comment.created.on-pull-request")
    comment_id = bench.fake.add_comment(FULL, 7, "/help", "alice")
    from_webhook["comment"].update(id=comment_id, body="/help")
    from_webhook["comment"]["user"].update(login="alice", type="User")
    from_webhook["issue"]["number"] = 7
    from_webhook["repository"].update(full_name=FULL, html_url=f"https://github.com/{FULL}",
                                      clone_url=bench.git.clone_url)
    body = json.dumps(from_webhook).encode()
    settings = Settings(redis_url=bench.settings.redis_url,
                        github=GitHubSettings(api_url=bench.fake.api_url, token="t", webhook_secret="s"))
    answer = create_app(settings).test_client().post("/events", data=body, headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d-1", "Content-Type": "application/json",
        "X-Hub-Signature-256": sign_github("s", body)})
    assert answer.status_code == 202, answer.get_json()
    assert sweep_now(bench) == []


# ---------------------------------------------------------------------------- merged and closed


def test_a_pull_request_merged_while_down_is_deployed_once(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ON_MERGE)
    merged = bench.merge()
    assert len(sweep_now(bench)) == 1
    bench.work()
    assert bench.statuses(merged.merge_sha, APPLY)[-1] == ("success", "1 project: 1 applied, 0 failed")
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) == merged.merge_sha
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None
    assert sweep_now(bench) == []
    assert len([c for c in bench.bot_comments() if c["body"].startswith("**Plankeeper apply**")]) == 1


def test_a_merge_a_webhook_brought_or_deployed_already_is_not_deployed_again(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ON_MERGE)
    merged = bench.merge()
    bench.fake.add_status(FULL, merged.merge_sha, APPLY, "pending", creator="plankeeper-bot")  # deploying
    assert sweep_now(bench) == []
    bench.redis.delete(keys.DELIVERY.format(queueing.sweep_delivery_id(PullRequestEvent("", "merged", merged, ""))))
    with bench.fake.lock:
        bench.fake.repos[FULL].statuses.clear()
    queueing.claim_delivery(bench.redis, queueing.sweep_delivery_id(PullRequestEvent("gh", "merged", merged, "x")))
    assert sweep_now(bench) == []
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7)  # nothing ran


def test_a_merge_holding_no_plan_or_lock_costs_no_forge_call(bench_factory) -> None:
    bench = bench_factory(defaults=ON_MERGE)
    bench.open_pull()
    bench.fake.add_status(FULL, bench.head, PLAN, "success", creator="plankeeper-bot")
    bench.merge()
    assert sweep_now(bench) == [] and status_reads(bench) == []


def test_a_pull_request_closed_while_down_releases_its_lock_and_plans(bench_factory) -> None:
    bench = planned(bench_factory)
    bench.fake.set_state(FULL, 7, closed=True)
    assert len(sweep_now(bench)) == 1
    bench.work()
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert sweep_now(bench) == []


# ---------------------------------------------------------------------------- the schedule


def test_one_sweep_per_interval_however_many_processes(bench_factory) -> None:
    bench = bench_factory(reconcile=ReconcileSettings(interval=300))
    remember_repo(bench.redis, bench.repo)
    a, b = schedule.Reconciler(bench.rt), schedule.Reconciler(bench.rt)
    t = 1_800_000_000.0  # a multiple of 300
    assert len(a.tick(t - schedule.START_GRACE, now=t)) == 1
    assert b.tick(t + 0.5 - schedule.START_GRACE, now=t + 0.5) == []  # came up together: one sweep
    assert len(b.tick(t + 40 - schedule.START_GRACE, now=t + 40)) == 1  # came up later: its own
    assert len(a.tick(t + 300, now=t + 300.05)) == 1  # the next interval
    assert b.tick(t + 300, now=t + 300.3) == []


def test_the_sweep_job_queues_what_it_finds_and_targets_only_what_it_may(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    remember_repo(bench.redis, bench.repo)
    assert [r.id for r in schedule.sweep_targets(bench.settings, bench.redis)] == [bench.repo.id]
    for changed in ({"repo_allowlist": ("gitlab.com/*",)}, {"github": GitHubSettings()}):
        assert schedule.sweep_targets(replace(bench.settings, **changed), bench.redis) == []
    [job_id] = schedule.Reconciler(bench.rt).tick(0)
    bench.work()
    assert bench.statuses(pull.head_sha, PLAN)[-1][0] == "success"
    record = bench.redis.hgetall(keys.JOB.format(job_id))
    assert record[b"state"] == b"succeeded" and record[b"summary"].startswith(b"queued 1 missed event(s)")


def test_interval_zero_sweeps_at_start_only(bench_factory) -> None:
    bench = bench_factory(reconcile=ReconcileSettings(interval=0))
    remember_repo(bench.redis, bench.repo)
    stop = threading.Event()
    thread = threading.Thread(target=schedule.Reconciler(bench.rt).run, args=(stop,))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(queueing.queue(bench.redis).get_job_ids()) == 1
