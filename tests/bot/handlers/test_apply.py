"""bot/handlers/apply.py: /apply and apply on approval, after a real /plan, through bot.dispatch
and the run's jobs; what the fake GitHub got, and the plans, locks, leases and audit in Redis."""
from __future__ import annotations

from bot import dispatch
from bot.handlers import HANDLERS
from bot.handlers.apply import apply_lease
from bot.models import Command, OutcomeStatus, ProjectOutcome, ReviewEvent, RunKind
from bot.runs import store
from bot.runs.model import Run
from bot.settings import Hook, ProjectDefaults, RepoEntry
from bot.state import artifacts, audit, deployments, keys, leases, locks
from runners.models import Project
from tests.support_jobs import FULL

STATUS = "plankeeper/apply"
KEY = "infra/app::default"
NO_REQUIREMENTS = ProjectDefaults(apply_requirements=())


def planned(bench_factory, **settings):
    """A bench whose pull request #7 was planned by alice (job-1): one stored plan, locked."""
    bench = bench_factory(**settings)
    bench.open_pull()
    assert bench.comment("/plan", "alice", job_id="job-1") == "planning 1 project(s) in run job-1-plan"
    bench.work()
    assert [p.project_key for p in artifacts.pull_plans(bench.redis, bench.repo.id, 7)] == [KEY]
    return bench


def apply_outcome(bench, run_id: str = "job-2-apply") -> ProjectOutcome:
    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, run_id))
    return outcome


def test_plan_then_apply_applies_and_forgets_the_plan(fake, bench_factory) -> None:
    bench = planned(bench_factory)  # default requirements: approved, mergeable
    plan = artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY)
    fake.add_review(FULL, 7, "bob")
    fake.set_permission(FULL, "bob", "write")
    assert bench.comment("/apply", "alice", job_id="job-2") == "applying 1 project(s) in run job-2-apply"
    bench.work()

    outcome = apply_outcome(bench)
    assert outcome.status is OutcomeStatus.APPLIED and outcome.apply.ok
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) == bench.head
    [deployment] = deployments.history(bench.redis, bench.repo.id)
    assert (deployment.via, deployment.result, deployment.commit, deployment.pull, deployment.user,
            deployment.project, deployment.plan_sha256, deployment.job_id, deployment.pull_url) == (
        "comment", "success", bench.head, 7, "alice", KEY, plan.sha256, "job-2-apply-p0", bench.pull().url)
    [entry] = audit.entries(bench.redis, filters={"action": "apply"})
    assert (entry["user"], entry["project"], entry["plan_sha256"], entry["result"], entry["job_id"]) == (
        "alice", KEY, plan.sha256, "success", "job-2-apply-p0")
    body = bench.last_comment()
    assert body.startswith(f"**Plankeeper apply** for `{bench.head[:7]}` · 1 project: 1 applied, 0 failed")
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in body
    assert bench.statuses(bench.head, STATUS) == [
        ("pending", "1 project: 0 applied, 0 failed (1 still running)"),
        ("success", "1 project: 1 applied, 0 failed")]
    assert locks.get_lock(bench.redis, bench.repo.id, KEY).pull_number == 7  # held until merged or closed
    assert fake.pull(FULL, 7).merged is False  # automerge is off by default


def test_apply_without_a_plan_is_refused(bench_factory) -> None:
    bench = bench_factory(defaults=NO_REQUIREMENTS)
    bench.open_pull()
    assert bench.comment("/apply", "alice") == "refused: Nothing to apply"
    assert bench.last_comment().startswith("**Nothing to apply**\n\nThere is no plan to apply for this selection")
    assert bench.statuses(bench.head, STATUS) == []


def test_a_plan_of_an_older_head_is_refused(bench_factory) -> None:
    bench = planned(bench_factory, defaults=NO_REQUIREMENTS)
    new_head = bench.push_commit({"infra/app/extra.tf": "# more\n"})
    assert bench.comment("/apply", "alice", job_id="job-2") == "refused: Apply refused"
    assert bench.last_comment().startswith(
        f"**Apply refused**\n\nThe plan is for {bench.head[:7]}, head is {new_head[:7]}: comment `/plan`.")
    assert bench.redis.exists(keys.RUN.format("job-2-apply")) == 0  # no run started
    assert [p.head_sha for p in artifacts.pull_plans(bench.redis, bench.repo.id, 7)] == [bench.head]
    assert audit.entries(bench.redis, filters={"action": "apply"}) == []
    assert bench.statuses(new_head, STATUS) == []


def test_the_authors_own_approval_does_not_count(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=("approved",)))
    fake.add_review(FULL, 7, "alice")
    assert bench.comment("/apply", "alice", job_id="job-2") == "refused: Apply refused"
    assert "Apply requirements do not hold:\n- needs 1 approval, has 0" in bench.last_comment()
    [refusal] = audit.entries(bench.redis, filters={"action": "apply_refused"})
    assert (refusal["user"], refusal["result"]) == ("alice", "needs 1 approval, has 0")
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None

    fake.add_review(FULL, 7, "bob")
    fake.set_permission(FULL, "bob", "write")
    assert bench.comment("/apply", "alice", job_id="job-3") == "applying 1 project(s) in run job-3-apply"
    bench.work()
    assert apply_outcome(bench, "job-3-apply").status is OutcomeStatus.APPLIED


def test_apply_on_approval_ignores_the_authors_approval(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=("approved",), apply_on_approval=True))
    comments = len(bench.comments())
    fake.add_review(FULL, 7, "alice")
    with bench.job("job-2") as ctx:
        summary = dispatch.handle(ctx, ReviewEvent("d2", bench.pull(), "alice", "approved"))
    assert summary == "not applied: needs 1 approval, has 0"
    assert len(bench.comments()) == comments  # an approval that does not apply stays quiet

    fake.add_review(FULL, 7, "bob")
    fake.set_permission(FULL, "bob", "write")
    with bench.job("job-3") as ctx:
        summary = dispatch.handle(ctx, ReviewEvent("d3", bench.pull(), "bob", "approved"))
    assert summary == "applying 1 project(s) in run job-3-apply"
    bench.work()
    assert apply_outcome(bench, "job-3-apply").status is OutcomeStatus.APPLIED
    assert audit.entries(bench.redis, filters={"action": "apply"})[0]["user"] == "bob"
    assert store.load(bench.redis, "job-3-apply").via == "approval"  # the run carries its trigger
    [deployment] = deployments.history(bench.redis)
    assert (deployment.via, deployment.user, deployment.result) == ("approval", "bob", "success")


def test_a_failed_apply_is_a_deployment_that_leaves_the_live_commit(bench_factory) -> None:
    bench = planned(bench_factory, defaults=NO_REQUIREMENTS)
    deployments.record_last_applied(bench.redis, bench.repo.id, KEY, "0" * 40)
    plan = artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY)
    bench.redis.hset(keys.PLAN.format(repo=bench.repo.id, number=7, project=KEY), "file", b"tampered")
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()

    assert apply_outcome(bench).status is OutcomeStatus.FAILED
    [deployment] = deployments.history(bench.redis)
    assert (deployment.via, deployment.result, deployment.plan_sha256) == ("comment", "failed: verify", plan.sha256)
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) == "0" * 40


def test_an_apply_of_the_same_project_running_elsewhere_skips_it(bench_factory) -> None:
    bench = planned(bench_factory, defaults=NO_REQUIREMENTS)
    lease_key = keys.APPLY_MUTEX.format(repo=bench.repo.id, project=KEY)
    assert leases.Lease(bench.redis, lease_key, "drift-job-1").acquire()
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()

    outcome = apply_outcome(bench)
    assert (outcome.status, outcome.message) == (OutcomeStatus.SKIPPED,
                                                 "Another apply of this project is running right now.")
    assert outcome.apply is None
    assert "Another apply of this project is running right now." in bench.last_comment()
    assert leases.Lease(bench.redis, lease_key, "x").holder() == "drift-job-1"
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None  # kept for a later /apply
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) is None


def test_apply_project_takes_and_returns_the_apply_lease(bench_factory) -> None:
    bench = planned(bench_factory, defaults=NO_REQUIREMENTS)
    pull = bench.pull()
    run = Run(id="direct-apply", kind=RunKind.APPLY, pull=pull, command=Command("apply"), actor="alice",
              projects=[Project("infra/app")])
    outcome = ProjectOutcome(run.projects[0], OutcomeStatus.RUNNING)
    with bench.job("apply-job") as ctx:
        HANDLERS["apply"].project(ctx, run, outcome)
        assert apply_lease(ctx, bench.repo.id, KEY).holder() is None  # released after the apply
    assert outcome.status is OutcomeStatus.APPLIED
    # Applied once: a second apply of the same plan finds nothing to apply.
    again = ProjectOutcome(run.projects[0], OutcomeStatus.RUNNING)
    with bench.job("apply-job-2") as ctx:
        HANDLERS["apply"].project(ctx, run, again)
    assert (again.status, again.message) == (OutcomeStatus.SKIPPED,
                                             "This plan was already applied (or discarded) by another job.")


def test_a_project_locked_by_another_pull_request_is_not_applied(bench_factory) -> None:
    bench = planned(bench_factory, defaults=NO_REQUIREMENTS)
    locks.force_unlock(bench.redis, bench.repo.id, KEY)
    locks.try_lock(bench.redis, locks.new_lock(bench.repo.id, KEY, 8, "https://github.com/acme/infra/pull/8", "bob"))
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()

    outcome = apply_outcome(bench)
    assert outcome.status is OutcomeStatus.LOCKED
    assert outcome.message == ("🔒 Locked by [#8](https://github.com/acme/infra/pull/8) (@bob): "
                               "comment `/apply --queue` to wait for it.")
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None
    assert bench.statuses(bench.head, STATUS)[-1] == ("failure", "1 project: 0 applied, 1 failed")


def test_automerge_after_every_planned_project_applied(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=(), automerge=True))
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()

    assert apply_outcome(bench).status is OutcomeStatus.APPLIED
    assert fake.pull(FULL, 7).merged is True
    assert bench.last_comment() == "**Plankeeper** merged this pull request (merge): every planned project applied."
    assert fake.pull(FULL, 7).merge_method == "merge" and "feature" in fake.repos[FULL].branches


def test_automerge_with_the_commands_method_deletes_the_branch_when_the_server_says_so(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=(), automerge=True,
                                                           delete_source_branch_on_merge=True))
    bench.comment("/apply --auto-merge-method squash", "alice", job_id="job-2")
    bench.work()

    assert (fake.pull(FULL, 7).merged, fake.pull(FULL, 7).merge_method) == (True, "squash")
    assert "feature" not in fake.repos[FULL].branches
    assert bench.last_comment() == ("**Plankeeper** merged this pull request (squash) and deleted `feature`: "
                                    "every planned project applied.")


def test_the_repo_config_turns_automerge_on_with_its_method_and_a_projects_branch_deletion(fake, bench_factory) -> None:
    config = ("version: 3\nautomerge: true\nautomerge_method: rebase\nprojects:\n- dir: infra/app\n"
              "  delete_source_branch_on_merge: true\n")
    bench = with_config(bench_factory, config, defaults=ProjectDefaults(
        apply_requirements=(), allowed_overrides=("automerge", "delete_source_branch_on_merge")))
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()

    assert (fake.pull(FULL, 7).merged, fake.pull(FULL, 7).merge_method) == (True, "rebase")
    assert "feature" not in fake.repos[FULL].branches


def test_auto_merge_disabled_keeps_the_pull_request_open(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=(), automerge=True))
    bench.comment("/apply --auto-merge-disabled", "alice", job_id="job-2")
    bench.work()
    assert apply_outcome(bench).status is OutcomeStatus.APPLIED and fake.pull(FULL, 7).merged is False


def with_config(bench_factory, config: str, **settings):
    """A bench whose pull request #7 also commits `atlantis.yaml`, planned by alice (job-1)."""
    bench = bench_factory(**settings)
    bench.open_pull()
    bench.push_commit({"atlantis.yaml": config})
    assert bench.comment("/plan", "alice", job_id="job-1") == "planning 1 project(s) in run job-1-plan"
    bench.work()
    return bench


def test_undiverged_is_asked_of_git_against_the_base_branch(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=("undiverged",)))
    tip = bench.commit_to_base({"README.md": "the base moved on\n"})
    assert fake.pull(FULL, 7).mergeable_state == "clean"  # the forge does not say "behind"
    bench.comment("/apply", "alice", job_id="job-2")

    body = bench.last_comment()
    assert "Apply requirements do not hold" in body
    assert f"diverged: `main` is at {tip[:7]}, which the head {bench.head[:7]} does not contain" in body
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None  # nothing applied


def test_an_undiverged_pull_request_applies(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=("undiverged",)))
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()
    assert apply_outcome(bench).status is OutcomeStatus.APPLIED


def test_silence_pr_comments_apply_posts_no_comment_and_sets_the_status(fake, bench_factory) -> None:
    bench = with_config(bench_factory, "version: 3\nsilence_pr_comments: [apply]\nprojects:\n- dir: infra/app\n",
                        defaults=NO_REQUIREMENTS)
    comments = len(bench.comments())
    assert bench.comment("/apply", "alice", job_id="job-2") == "applying 1 project(s) in run job-2-apply"
    bench.work()

    assert apply_outcome(bench).status is OutcomeStatus.APPLIED
    assert [b for b in bench.comments()[comments:] if "Plankeeper apply" in b] == []
    assert bench.statuses(bench.pull().head_sha, STATUS)[-1] == ("success", "1 project: 1 applied, 0 failed")


def test_apply_reads_the_config_a_hook_generated_for_the_plan_without_running_the_hook(fake, bench_factory,
                                                                                      tmp_path) -> None:
    runs = tmp_path / "hook-runs"
    generate = (f"echo ran >> {runs}/log && printf 'version: 3\\nprojects:\\n- dir: infra/app\\n  workflow: gen\\n"
                "workflows:\\n  gen:\\n    apply:\\n      steps:\\n      - run: echo applied-by-the-generated-workflow"
                "\\n      - apply\\n' > atlantis.yaml")
    repo = RepoEntry(id="github.com/acme/infra", pre_workflow_hooks=(Hook(run=generate),), allow_custom_workflows=True)
    bench = planned(bench_factory, repos=(repo,), sandbox_paths=(f"{runs}:rw",),
                    defaults=ProjectDefaults(apply_requirements=(), allowed_overrides=("workflow",)))
    assert (runs / "log").read_text() == "ran\n"
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()

    outcome = apply_outcome(bench)
    assert outcome.status is OutcomeStatus.APPLIED, outcome.apply
    assert "applied-by-the-generated-workflow" in outcome.apply.output
    assert (runs / "log").read_text() == "ran\n"  # the hook did not run again
