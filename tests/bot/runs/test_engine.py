"""bot/runs/engine.py: a run started by a handler, its project jobs and its finalizing job, on a
real Redis and the fake GitHub, with the queued RQ jobs run in this process (JobBench.work)."""
from __future__ import annotations

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from bot import handlers, jobs, queueing
from bot.errors import UserFacingError
from bot.handlers.base import Handler
from bot.models import (
    Command,
    OutcomeStatus,
    ProjectOutcome,
    PullRequest,
    PullRequestEvent,
    RunKind,
)
from bot.runs import engine, report, store
from bot.runs.model import NewRun, Run
from bot.settings import TerraformSettings
from bot.state import artifacts, joblog, keys, leases, locks
from bot.forges.github import GitHubForge
from runners.models import Project, ResourceChange
from runners.process import Session
from runners.repo_config_schema import EffectiveProject
from tests.support import tf_data
from tests.support_jobs import FULL

PLAN_STATUS = "plankeeper/plan"


class JobKilled(BaseException):
    """Ends a job mid-project past every `except Exception`, as a killed work-horse would."""


class Scripted(Handler):
    """A handler whose `project` does what `script` says for each project dir: "ok" plans,
    "refuse" raises a UserFacingError, "crash" raises a bug, "die" ends the job. It records what it was called with."""

    name = "plan"

    def __init__(self, script: dict[str, str]):
        self.script = script
        self.called: list[str] = []
        self.finished: list[list[OutcomeStatus]] = []

    def project(self, ctx, run: Run, outcome: ProjectOutcome) -> None:
        self.called.append(outcome.project.dir)
        action = self.script[outcome.project.dir]
        if action == "refuse":
            raise UserFacingError(f"Project {outcome.project.dir} needs a `backend` block.", title="Bad project")
        if action == "crash":
            raise RuntimeError("KeyError deep inside: token=hunter2")
        if action == "die":  # what no handler catches: the job itself ends here, as if killed
            raise JobKilled(outcome.project.dir)
        outcome.status = OutcomeStatus.PLANNED

    def finish(self, ctx, run: Run, outcomes: list[ProjectOutcome]) -> None:
        self.finished.append([o.status for o in outcomes])


@pytest.fixture
def scripted(monkeypatch):
    """Register a Scripted handler for runs of kind "plan" for this test only."""
    def install(script: dict[str, str]) -> Scripted:
        handler = Scripted(script)
        monkeypatch.setitem(handlers.HANDLERS, "plan", handler)
        return handler
    return install


def start_run(bench, pull: PullRequest, dirs: list[str], run_id: str = "run-1", parallel: bool = True,
              abort_on_fail: bool = False, kind: RunKind = RunKind.PLAN) -> Run:
    projects = [Project(d) for d in dirs]
    run = Run(id=run_id, kind=kind, pull=pull, command=Command(kind.report_command), actor="alice",
              projects=projects, coordinator_job=f"{run_id}-coordinator", abort_on_fail=abort_on_fail)
    with bench.job(f"{run_id}-coordinator") as ctx:
        summary = engine.start(ctx, NewRun(run, [EffectiveProject(p) for p in projects], parallel=parallel))
    assert summary.endswith(f"{len(dirs)} project(s) in run {run_id}")
    return store.load(bench.redis, run_id)


def outcomes_of(bench, run_id: str) -> list[ProjectOutcome]:
    return store.outcomes(bench.redis, store.load(bench.redis, run_id))


def active_run(bench, number: int = 7) -> bytes | None:
    return bench.redis.get(keys.ACTIVE_RUN.format(repo=bench.repo.id, number=number))


# -- a plan of one project, end to end ------------------------------------------------------

def test_a_plan_run_end_to_end(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    assert bench.comment("/plan", "alice") == "planning 1 project(s) in run job-1-plan"

    # Before any project job ran: one comment, the project queued, the status pending.
    [posted] = bench.bot_comments()
    assert posted["body"].startswith(f"**Plankeeper plan** for `{bench.head[:7]}` · 1 project: "
                                     "0 with changes, 0 without, 0 failed (1 still running)")
    assert "### dir: `infra/app` · workspace: `default`" in posted["body"]
    assert "⏳ queued" in posted["body"] and "_Running: this comment updates" in posted["body"]
    assert bench.statuses(bench.head, PLAN_STATUS) == [
        ("pending", "1 project: 0 with changes, 0 without, 0 failed (1 still running)")]
    run = store.load(bench.redis, "job-1-plan")
    assert run.comment_id == str(posted["id"]) and run.coordinator_job == "job-1"
    assert [o.status for o in store.outcomes(bench.redis, run)] == [OutcomeStatus.QUEUED]
    assert active_run(bench) == b"job-1-plan-final"
    assert store.active_finalize_job(bench.redis, bench.repo.id, 7) == "job-1-plan-final"

    bench.work()

    # The same comment, now final with the plan; nothing else posted.
    [final] = bench.bot_comments()
    assert final["id"] == posted["id"]
    body = final["body"]
    assert body.startswith(f"**Plankeeper plan** for `{bench.head[:7]}` · 1 project: 1 with changes, 0 without, "
                           "0 failed\n")
    assert "still running" not in body and "⏳" not in body
    assert "| ➕ create | `terraform_data.x` |" in body
    assert "`Plan: 1 to add, 0 to change, 0 to destroy.`" in body
    assert "To apply every planned project: `/apply`" in body
    [outcome] = store.outcomes(bench.redis, run)
    assert outcome.status is OutcomeStatus.PLANNED and outcome.status.is_final
    assert outcome.plan.changes == [ResourceChange("terraform_data.x", "create")]
    assert outcome.log_url.endswith("/jobs/job-1-plan-p0")
    assert bench.statuses(bench.head, PLAN_STATUS) == [
        ("pending", "1 project: 0 with changes, 0 without, 0 failed (1 still running)"),
        ("success", "1 project: 1 with changes, 0 without, 0 failed")]
    assert active_run(bench) is None
    assert store.active_finalize_job(bench.redis, bench.repo.id, 7) is None
    # What the project job did stays: the plan stored for this head, the project locked by #7.
    [plan] = artifacts.pull_plans(bench.redis, bench.repo.id, 7)
    assert (plan.project_key, plan.head_sha) == ("infra/app::default", bench.head)
    assert locks.get_lock(bench.redis, bench.repo.id, "infra/app::default").pull_number == 7


# -- execute_project: errors -----------------------------------------------------------------

def test_user_errors_and_bugs_fail_their_project_only(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "refuse", "b": "crash", "c": "ok"})
    run = start_run(bench, pull, ["a", "b", "c"])
    bench.work()

    a, b, c = outcomes_of(bench, run.id)
    assert (a.status, a.message) == (OutcomeStatus.FAILED, "Project a needs a `backend` block.")
    assert (b.status, b.message) == (OutcomeStatus.FAILED,
                                     f"Internal error (job `{run.project_job_id(1)}`): see the server log.")
    assert c.status is OutcomeStatus.PLANNED
    assert sorted(handler.called) == ["a", "b", "c"]
    assert handler.finished == [[OutcomeStatus.FAILED, OutcomeStatus.FAILED, OutcomeStatus.PLANNED]]
    [comment] = bench.bot_comments()
    assert "Project a needs a `backend` block." in comment["body"]
    assert f"Internal error (job `{run.project_job_id(1)}`)" in comment["body"]
    assert "hunter2" not in comment["body"] and "KeyError" not in comment["body"]  # the bug stays in the log
    assert bench.statuses(pull.head_sha, PLAN_STATUS)[-1] == (
        "failure", "3 projects: 1 with changes, 0 without, 2 failed")


def test_execute_project_records_the_outcome_it_returns(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    scripted({"a": "refuse"})
    run = start_run(bench, pull, ["a"])
    with bench.job("direct-job") as ctx:
        outcome = engine.execute_project(ctx, run, 0)
    assert (outcome.status, outcome.message) == (OutcomeStatus.FAILED, "Project a needs a `backend` block.")
    assert outcome.log_url.endswith("/jobs/direct-job")
    [stored] = outcomes_of(bench, run.id)
    assert (stored.status, stored.message, stored.log_url) == (outcome.status, outcome.message, outcome.log_url)


@pytest.mark.parametrize("abort_on_fail", [True, False])
def test_abort_on_fail_skips_the_projects_after_a_failure(bench_factory, scripted, abort_on_fail) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "refuse", "b": "ok", "c": "ok"})
    run = start_run(bench, pull, ["a", "b", "c"], parallel=False, abort_on_fail=abort_on_fail)
    bench.work()

    statuses = [(o.status, o.message) for o in outcomes_of(bench, run.id)]
    if abort_on_fail:
        assert handler.called == ["a"]
        assert statuses == [(OutcomeStatus.FAILED, "Project a needs a `backend` block."),
                            (OutcomeStatus.SKIPPED, "Skipped: a project it waits for failed."),
                            (OutcomeStatus.SKIPPED, "Skipped: a project it waits for failed.")]
    else:
        assert handler.called == ["a", "b", "c"]  # sequential: in order, each after the previous one
        assert [s for s, _ in statuses] == [OutcomeStatus.FAILED, OutcomeStatus.PLANNED, OutcomeStatus.PLANNED]
    assert handler.finished == [[s for s, _ in statuses]]
    assert active_run(bench) is None


# -- project_died ----------------------------------------------------------------------------

def test_project_died_fails_the_outcome_and_frees_the_dead_jobs_apply_lease(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    run = start_run(bench, pull, ["infra/app", "infra/db"], kind=RunKind.APPLY)
    dead, other = run.project_job_id(0), "drift-job-3"
    app_key = keys.APPLY_MUTEX.format(repo=bench.repo.id, project="infra/app::default")
    db_key = keys.APPLY_MUTEX.format(repo=bench.repo.id, project="infra/db::default")
    assert leases.Lease(bench.redis, app_key, dead).acquire()
    assert leases.Lease(bench.redis, db_key, other).acquire()

    with bench.job("failure-callback") as ctx:
        engine.project_died(ctx, run, 0, dead, "its worker died")
        engine.project_died(ctx, run, 1, run.project_job_id(1), "it timed out")

    app, db = outcomes_of(bench, run.id)
    assert app.status is OutcomeStatus.FAILED
    assert app.message.startswith(f"Internal error (job `{dead}`): the job stopped because its worker died.")
    assert db.status is OutcomeStatus.FAILED and "because it timed out" in db.message
    assert bench.redis.get(app_key) is None  # the dead job's lease: freed at once
    assert leases.Lease(bench.redis, db_key, other).holder() == other  # another job's: kept
    [comment] = bench.bot_comments()  # refreshed at once, whatever the throttle
    assert f"Internal error (job `{dead}`)" in comment["body"]
    assert "**Plankeeper apply**" in comment["body"]


# -- finish ----------------------------------------------------------------------------------

def test_finish_fails_the_projects_whose_job_never_finished(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "ok", "b": "ok"})
    run = start_run(bench, pull, ["a", "b"])
    with bench.job(run.project_job_id(0)) as ctx:
        assert engine.execute_project(ctx, run, 0).status is OutcomeStatus.PLANNED
    assert active_run(bench) == run.finalize_job_id.encode()

    with bench.job(run.finalize_job_id) as ctx:  # project b's job never recorded anything
        summary = engine.finish(ctx, run)

    assert summary == "2 projects: 1 with changes, 0 without, 1 failed"
    assert handler.called == ["a"]
    assert handler.finished == [[OutcomeStatus.PLANNED, OutcomeStatus.FAILED]]
    [comment] = bench.bot_comments()
    assert f"Its job (`{run.project_job_id(1)}`) stopped before finishing: comment the command again." \
        in comment["body"]
    assert "still running" not in comment["body"]
    assert bench.statuses(pull.head_sha, PLAN_STATUS)[-1] == ("failure", summary)
    assert active_run(bench) is None


def test_a_dead_finalizing_job_still_makes_the_comment_and_status_final(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "ok"})
    run = start_run(bench, pull, ["a"])
    with bench.job(run.project_job_id(0)) as ctx:
        engine.execute_project(ctx, run, 0)
    assert report.pending_statuses(bench.redis, run.coordinator_job)  # the coordinator left it pending

    with bench.job("failure-callback") as ctx:
        engine.finish_died(ctx, run, run.finalize_job_id, "its worker died")

    assert handler.finished == []  # what follows a run is not retried
    [comment] = bench.bot_comments()
    assert "still running" not in comment["body"]
    assert f"finalizing job (`{run.finalize_job_id}`) stopped because its worker died" in comment["body"]
    assert bench.statuses(pull.head_sha, PLAN_STATUS)[-1][0] == "success"
    assert report.pending_statuses(bench.redis, run.coordinator_job) == {}
    assert active_run(bench) is None


# -- in place: the event's job runs its run's projects ---------------------------------------

def test_a_one_project_plan_runs_in_its_events_job_with_one_checkout(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    event = PullRequestEvent("delivery-1", "opened", pull, "alice")
    job_id = queueing.enqueue_event(bench.redis, event, bench.settings.terraform.timeout)
    bench.work()  # one worker: the event's job plans in place; the finalizing job has nothing left

    run_id = f"{job_id}-plan"
    [comment] = bench.bot_comments()
    assert "1 with changes" in comment["body"] and "still running" not in comment["body"]
    assert bench.statuses(pull.head_sha, PLAN_STATUS)[-1] == ("success", "1 project: 1 with changes, 0 without, 0 failed")
    assert not Job.exists(f"{run_id}-p0", connection=bench.redis)  # no forked job for the project
    project = joblog.get_job(bench.redis, f"{run_id}-p0")
    assert (project["state"], project["summary"], project["title"]) == ("succeeded", "planned", "plan infra/app")
    assert joblog.get_job(bench.redis, job_id)["summary"] == "1 project: 1 with changes, 0 without, 0 failed"
    assert joblog.get_job(bench.redis, f"{run_id}-final")["summary"] == "finished by the run's last project"
    checkouts = [line for j in (job_id, f"{run_id}-p0") for line in joblog.read_log(bench.redis, j)
                 if "checking out" in line]
    assert len(checkouts) == 1, checkouts  # the project used its coordinator's checkout
    assert any("saved plan" in line for line in joblog.read_log(bench.redis, f"{run_id}-p0"))  # its own log
    assert active_run(bench) is None


def test_a_jobs_projects_share_one_terraform_session_started_before_they_are_selected(bench_factory,
                                                                                      monkeypatch) -> None:
    bench = bench_factory(terraform=TerraformSettings(binary="embedded"))  # sessions are the embedded one's
    bench.open_pull()
    bench.fake.push(FULL, 7, bench.push_commit({"infra/db/main.tf": tf_data("db")}),
                    files=["infra/app/main.tf", "infra/db/main.tf"])
    events: list[str] = []
    sessions: list[Session] = []
    start_session, changed_files = Session.__init__, GitHubForge.changed_files

    def session_started(self, *args, **kwargs) -> None:
        events.append("session started")
        sessions.append(self)
        start_session(self, *args, **kwargs)

    def files_read(self, pull):
        events.append("changed files read")
        return changed_files(self, pull)

    monkeypatch.setattr(Session, "__init__", session_started)
    monkeypatch.setattr(GitHubForge, "changed_files", files_read)
    queueing.enqueue_event(bench.redis, PullRequestEvent("delivery-1", "opened", bench.pull(), "alice"),
                           bench.settings.terraform.timeout)
    bench.work()  # one worker: both projects planned in the event's job

    [comment] = bench.bot_comments()
    assert "2 with changes" in comment["body"], comment["body"]
    assert events == ["session started", "changed files read"]  # loading while the projects were chosen
    assert sessions[0].ended and sessions[0].proc.returncode is not None  # closed with the job


def test_a_coordinator_that_died_in_place_is_reported_on_the_runs_comment(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "ok"})
    event = PullRequestEvent("delivery-1", "opened", pull, "alice")
    coordinator = queueing.enqueue_event(bench.redis, event, bench.settings.terraform.timeout)
    run = start_run(bench, pull, ["a"], run_id="run-1")
    run.coordinator_job = coordinator
    store.save(bench.redis, run)
    # What engine.start records when the event's job takes the project in place, and it got as far
    # as starting it before its worker was killed:
    assert store.claim_project(bench.redis, run.id, 0, coordinator)
    store.save_lane(bench.redis, run.id, [0])
    joblog.record_job(bench.redis, coordinator, run=run.id)
    store.save_outcome(bench.redis, run.id, 0, ProjectOutcome(run.projects[0], OutcomeStatus.RUNNING))
    Job.fetch(coordinator, connection=bench.redis).cancel()  # its worker is gone: nothing runs it again

    jobs.init_worker(bench.settings)
    jobs.report_dead_job(Job.fetch(coordinator, connection=bench.redis, serializer=JSONSerializer),
                         "its worker died")
    bench.work()  # the project's own job finds it taken; the finalizing job finishes the run

    assert handler.called == []
    [comment] = bench.bot_comments()  # the run's comment says it, no other comment
    assert ("Internal error (job `run-1-p0`): the job stopped because its worker died. Locks and saved plans "
            "are kept") in comment["body"]
    assert "still running" not in comment["body"]
    assert bench.statuses(pull.head_sha, PLAN_STATUS)[-1][0] == "failure"
    assert joblog.get_job(bench.redis, "run-1-p0")["state"] == "failed"
    assert active_run(bench) is None


def coordinator_ran_first_of_lane(bench, run: Run, lane: list[int]) -> None:
    """What engine.start leaves with two workers (the projects no other waits for in the
    coordinator's lane, the first claimed by it, the others claimed when it gets to them), once
    the coordinator has run that first project."""
    store.save_lane(bench.redis, run.id, lane)
    assert store.claim_project(bench.redis, run.id, lane[0], run.coordinator_job)
    with bench.job(run.coordinator_job) as ctx:
        engine.execute_project(engine.lane_context(ctx, run, lane[0]), run, lane[0])


def test_a_project_job_takes_what_is_left_of_the_coordinators_lane(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "ok", "b": "ok", "c": "ok"})
    run = start_run(bench, pull, ["a", "b", "c"])
    coordinator_ran_first_of_lane(bench, run, [0, 1, 2])

    bench.work()  # p0's job: its project taken, it takes b and c; p1's and p2's find them taken

    assert handler.called == ["a", "b", "c"]  # each once
    assert [store.project_owner(bench.redis, run.id, i) for i in (1, 2)] == [run.project_job_id(0)] * 2
    for i in (1, 2):  # each under its own job id: its log link and the UI's record
        assert joblog.get_job(bench.redis, run.project_job_id(i))["state"] == "succeeded"
        assert Job.fetch(run.project_job_id(i), connection=bench.redis, serializer=JSONSerializer).return_value() \
            == f"run in place by {run.project_job_id(0)}"
    assert Job.fetch(run.project_job_id(0), connection=bench.redis,
                     serializer=JSONSerializer).return_value() == "2 more in place"
    [comment] = bench.bot_comments()
    assert "3 with changes" in comment["body"] and "still running" not in comment["body"]
    assert joblog.get_job(bench.redis, run.finalize_job_id)["summary"] == "finished by the run's last project"
    assert active_run(bench) is None


def test_a_job_short_of_time_leaves_the_rest_of_the_lane_to_the_projects_own_jobs(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "ok", "b": "ok", "c": "ok"})
    run = start_run(bench, pull, ["a", "b", "c"])
    coordinator_ran_first_of_lane(bench, run, [0, 1, 2])
    # the project jobs' RQ timeouts hold one project's steps less than a whole project (as when a
    # job waited for its turn): none has time to take another project
    for i in range(3):
        job = Job.fetch(run.project_job_id(i), connection=bench.redis, serializer=JSONSerializer)
        job.timeout = bench.settings.terraform.timeout * (jobs.PROJECT_STEPS - 1)
        job.save()

    bench.work()

    assert handler.called == ["a", "b", "c"]
    assert [store.project_owner(bench.redis, run.id, i) for i in (1, 2)] == [run.project_job_id(1), run.project_job_id(2)]
    [comment] = bench.bot_comments()
    assert "3 with changes" in comment["body"] and "still running" not in comment["body"]


def test_a_project_job_that_died_in_the_lane_fails_only_what_it_had_not_finished(bench_factory, scripted) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    handler = scripted({"a": "ok", "b": "ok", "c": "die"})
    run = start_run(bench, pull, ["a", "b", "c"])
    coordinator_ran_first_of_lane(bench, run, [1, 2])  # a is a job's only (as a project that waits for another)

    # p0's job plans a, takes c from the lane and dies planning it: RQ fails the job and calls
    # its failure callback; the finalizing job then runs
    bench.work()

    assert handler.called == ["b", "a", "c"]
    a, b, c = outcomes_of(bench, run.id)
    assert (a.status, b.status) == (OutcomeStatus.PLANNED, OutcomeStatus.PLANNED)  # its own, finished: kept
    assert c.status is OutcomeStatus.FAILED
    assert c.message.startswith(f"Internal error (job `{run.project_job_id(2)}`): the job stopped because "
                                "of an internal error.")
    assert joblog.get_job(bench.redis, run.project_job_id(2))["state"] == "failed"
    [comment] = bench.bot_comments()
    assert "still running" not in comment["body"] and "2 with changes" in comment["body"], comment["body"]
    assert bench.statuses(pull.head_sha, PLAN_STATUS)[-1][0] == "failure"
    assert active_run(bench) is None


@pytest.mark.parametrize("deps, order", [
    ([[], [], []], [0, 1, 2]),
    ([[], [0], [1]], [0, 1, 2]),
    ([[2], [], []], [1, 2, 0]),  # depends_on a later project
    ([[1], [0]], [0, 1]),  # a cycle keeps index order
])
def test_run_order_puts_every_project_after_those_it_waits_for(deps, order) -> None:
    assert engine.run_order(deps) == order
