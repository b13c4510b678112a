"""bot/handlers/deploy.py: merge-to-deploy after a real /plan and a real merge commit in git:
the reviewed plan is compared with a fresh plan of the merge commit, applied only if they agree."""
from __future__ import annotations

from bot import dispatch
from bot.handlers import HANDLERS
from bot.handlers.apply import project_of
from bot.handlers.deploy import describe_difference, merged_pull
from bot.models import Command, OutcomeStatus, ProjectOutcome, PullRequestEvent, RunKind
from bot.runs import store
from bot.runs.model import Run
from bot.settings import ProjectDefaults
from bot.state import artifacts, audit, deployments, locks
from runners.models import ResourceChange
from tests.support import tf_data

STATUS = "plankeeper/apply"
KEY = "infra/app::default"
ON_MERGE = ProjectDefaults(apply_requirements=(), apply_on_merge=True)


def planned(bench_factory, **settings):
    bench = bench_factory(**settings)
    bench.open_pull()
    bench.comment("/plan", "alice", job_id="job-1")
    bench.work()
    assert [p.project_key for p in artifacts.pull_plans(bench.redis, bench.repo.id, 7)] == [KEY]
    return bench


def test_a_merge_whose_plan_is_the_reviewed_one_is_applied(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ON_MERGE)
    merged = bench.merge()
    assert merged.state == "merged" and merged.merge_sha not in (None, bench.head)
    with bench.job("job-2") as ctx:
        summary = dispatch.handle(ctx, PullRequestEvent("d2", "merged", merged, "alice"))
    assert summary == "merge-to-deploy of 1 project(s) in run job-2-deploy"
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-2-deploy"))
    assert outcome.status is OutcomeStatus.APPLIED and outcome.apply.ok
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) == merged.merge_sha
    body = bench.last_comment()
    assert body.startswith(f"**Plankeeper apply** for `{merged.merge_sha[:7]}` · 1 project: 1 applied, 0 failed")
    assert bench.statuses(merged.merge_sha, STATUS)[-1] == ("success", "1 project: 1 applied, 0 failed")
    [applied] = audit.entries(bench.redis, filters={"action": "apply"})
    assert (applied["result"], applied["commit"]) == ("success (merge-to-deploy)", merged.merge_sha)
    # finish released the pull request: no lock, no plan left
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    [released] = audit.entries(bench.redis, filters={"action": "merged"})
    assert released["project"] == KEY


def test_a_merge_whose_plan_changed_is_refused_and_names_the_difference(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ON_MERGE)
    bench.commit_to_base({"infra/app/extra.tf": tf_data("y", "from main")})  # main moved meanwhile
    merged = bench.merge()
    reviewed = artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY)
    deploy = merged_pull(merged)
    run = Run(id="job-2-deploy", kind=RunKind.DEPLOY, pull=deploy, command=Command("apply"), actor="alice",
              projects=[project_of(reviewed)], coordinator_job="job-2")
    outcome = ProjectOutcome(run.projects[0], OutcomeStatus.RUNNING)
    with bench.job("job-2-deploy-p0") as ctx:
        HANDLERS["deploy"].project(ctx, run, outcome)

    assert outcome.status is OutcomeStatus.FAILED and outcome.apply is None
    assert outcome.message == (
        "The plan on the merge commit differs from the reviewed plan, so nothing was applied:\n"
        "- now also: create `terraform_data.y`\n\nOpen a pull request to review the new changes.")
    assert sorted(c.address for c in outcome.plan.changes) == ["terraform_data.x", "terraform_data.y"]
    [refused] = audit.entries(bench.redis, filters={"action": "apply_refused"})
    assert (refused["result"], refused["commit"]) == ("plan changed after merge", merged.merge_sha)
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) is None
    assert audit.entries(bench.redis, filters={"action": "apply"}) == []
    # the reviewed plan is untouched (finish discards it with the pull request's locks)
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY).sha256 == reviewed.sha256


def test_describe_difference_lists_both_directions() -> None:
    reviewed = [ResourceChange("a.x", "create"), ResourceChange("a.y", "update")]
    now = [ResourceChange("a.x", "create"), ResourceChange("a.y", "replace")]
    assert describe_difference(reviewed, now) == "- now also: replace `a.y`\n- no longer: update `a.y`"
    assert describe_difference(reviewed, list(reversed(reviewed))) == ""


def test_without_apply_on_merge_a_merge_only_releases(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=()))  # apply_on_merge off
    merged = bench.merge()
    comments = len(bench.comments())
    with bench.job("job-2") as ctx:
        assert dispatch.handle(ctx, PullRequestEvent("d2", "merged", merged, "alice")) == "released 1 lock(s)"
    assert len(bench.comments()) == comments
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) is None
