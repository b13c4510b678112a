"""bot/runs/model.py and store.py: the ordering of project jobs and run records in Redis."""
from __future__ import annotations

from bot.runs import store
from bot.runs.model import Run, dependencies
from bot.models import Command, ProjectOutcome, PullRequest, Repo
from runners.models import PlanResult, Project, ResourceChange

PULL = PullRequest(Repo("github", "github.com", "acme/infra", "/tmp/x.git"), 7, "alice", "a" * 40, "f", "main")


def make_run(*projects: Project) -> Run:
    return Run(id="job-plan", kind="plan", pull=PULL, command=Command("plan"), actor="alice",
                    projects=list(projects))


def test_parallel_projects_have_no_dependencies():
    run = make_run(Project("a"), Project("b"), Project("c"))
    assert dependencies(run, True, [0, 0, 0], [(), (), ()]) == [[], [], []]


def test_sequential_projects_wait_for_the_previous_one():
    run = make_run(Project("a"), Project("b"), Project("c"))
    assert dependencies(run, False, [0, 0, 0], [(), (), ()]) == [[], [0], [1]]


def test_execution_order_groups_wait_for_the_whole_previous_group():
    run = make_run(Project("a"), Project("b"), Project("c"), Project("d"))
    assert dependencies(run, True, [0, 0, 1, 2], [(), (), (), ()]) == [[], [], [0, 1], [2]]


def test_depends_on_names_other_projects():
    run = make_run(Project("net", name="network"), Project("app", name="app"))
    assert dependencies(run, True, [0, 0], [(), ("network", "unknown")]) == [[], [0]]


def test_run_and_outcomes_round_trip_through_redis(redis_db):
    run = make_run(Project("a", name="a"), Project("b", "prod"))
    store.save(redis_db, run)
    plan = PlanResult(ok=True, has_changes=True, summary="Plan: 1 to add, 0 to change, 0 to destroy.",
                      changes=[ResourceChange("terraform_data.x", "create")], plan_json={"secret": "dropped"})
    store.save_outcome(redis_db, run.id, 0, ProjectOutcome(run.projects[0], "planned", plan=plan))
    loaded = store.load(redis_db, run.id)
    assert loaded.projects == run.projects and loaded.pull == PULL
    first, second = store.outcomes(redis_db, loaded)
    assert first.plan.changes == [ResourceChange("terraform_data.x", "create")]
    assert first.plan.plan_json is None  # never stored: it holds sensitive values
    assert second.status == "queued"
