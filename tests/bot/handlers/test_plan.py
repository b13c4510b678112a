"""bot/handlers/plan.py: /plan and autoplan, through bot.dispatch and the run's jobs (JobBench.work),
asserting on what the fake GitHub got and on the locks and plans in Redis."""
from __future__ import annotations

from bot import dispatch
from bot.handlers import HANDLERS, Request, Trigger
from bot.models import Command, OutcomeStatus, PullRequestEvent
from bot.runs import store
from bot.settings import Hook, ProjectDefaults, RepoEntry, StatusSettings
from bot.state import artifacts, keys, locks
from runners.models import ResourceChange
from tests.support import tf_data
from tests.support_jobs import FULL

STATUS = "plankeeper/plan"
KEY = "infra/app::default"


def test_autoplan_of_a_pull_request_that_changes_no_project(fake, bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    fake.set_files(FULL, 7, ["README.md", "docs/notes.md"])
    with bench.job() as ctx:
        assert dispatch.handle(ctx, PullRequestEvent("d1", "opened", pull, "alice")) == "no projects changed"
    assert bench.statuses(pull.head_sha, STATUS) == [("success", "No Terraform or Kubernetes project changed")]
    assert bench.bot_comments() == []  # autoplan says nothing on the pull request then
    assert bench.redis.get(keys.ACTIVE_RUN.format(repo=bench.repo.id, number=7)) is None  # no run
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None


def test_plan_comment_that_matches_no_project_is_refused(fake, bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    fake.set_files(FULL, 7, ["README.md"])
    assert bench.comment("/plan", "alice") == "nothing to plan"
    assert bench.last_comment().startswith("**Nothing to plan**\n\nNo project matches")
    assert bench.statuses(pull.head_sha, STATUS) == [("failure", "Nothing to plan")]


def test_start_returns_a_run_of_the_changed_projects(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    with bench.job("job-9") as ctx:
        new = HANDLERS["plan"].start(ctx, Request(pull, Command("plan"), "bob", Trigger.COMMENT))
    assert [p.key for p in new.run.projects] == [KEY]
    assert (new.run.id, new.run.kind, new.run.actor, new.run.autoplan) == ("job-9-plan", "plan", "bob", False)
    assert new.dependencies() == [[]]
    assert bench.bot_comments() == []  # start only decides; the engine posts


def test_plan_locks_the_project_and_stores_the_plan(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    assert bench.comment("/plan", "alice") == "planning 1 project(s) in run job-1-plan"
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.PLANNED
    assert outcome.plan.changes == [ResourceChange("terraform_data.x", "create")]
    lock = locks.get_lock(bench.redis, bench.repo.id, KEY)
    assert (lock.pull_number, lock.user) == (7, "alice")
    [plan] = artifacts.pull_plans(bench.redis, bench.repo.id, 7)
    assert (plan.project_key, plan.head_sha, plan.job_id) == (KEY, pull.head_sha, "job-1-plan-p0")
    assert plan.changes == [ResourceChange("terraform_data.x", "create")]
    assert plan.summary == "Plan: 1 to add, 0 to change, 0 to destroy."
    with bench.job("reader") as ctx:  # the stored bytes match the recorded SHA-256
        assert artifacts.write_plan_file(bench.redis, plan, ctx.workspace.resolve("check")).stat().st_size > 0
    assert "To apply this project: `/apply -d infra/app`" in bench.last_comment()
    assert bench.statuses(pull.head_sha, STATUS)[-1] == ("success", "1 project: 1 with changes, 0 without, 0 failed")


def test_a_project_locked_by_another_pull_request_is_not_planned(bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    other = locks.new_lock(bench.repo.id, KEY, 8, "https://github.com/acme/infra/pull/8", "bob")
    assert locks.try_lock(bench.redis, other) == other
    bench.comment("/plan", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.LOCKED and outcome.plan is None
    assert outcome.message.startswith("🔒 This project is locked by [#8](https://github.com/acme/infra/pull/8) (@bob).")
    assert outcome.message in bench.last_comment()
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert locks.get_lock(bench.redis, bench.repo.id, KEY).pull_number == 8
    assert bench.statuses(pull.head_sha, STATUS)[-1] == ("failure", "1 project: 0 with changes, 0 without, 1 failed")


def test_a_failing_plan_stores_nothing(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    head = bench.push_commit({"infra/app/main.tf": 'resource "terraform_data" "x" {\n  input = \n}\n'})
    bench.comment("/plan", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.FAILED and not outcome.plan.ok
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    body = bench.last_comment()
    assert body.startswith(f"**Plankeeper plan** for `{head[:7]}` · 1 project: 0 with changes, 0 without, 1 failed")
    assert "Fix the failing project(s) and push, or comment `/plan` to retry." in body
    assert bench.statuses(head, STATUS)[-1][0] == "failure"


def test_a_newer_plan_marks_the_older_comment_outdated(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.comment("/plan", "alice", job_id="job-1")
    bench.work()
    bench.push_commit({"infra/app/main.tf": tf_data(value="changed")})
    bench.comment("/plan", "alice", job_id="job-2")
    bench.work()

    first, second = bench.bot_comments()
    assert first["body"].startswith("> ⚠️ **Outdated:**")
    assert second["body"].startswith("**Plankeeper plan**")
    [plan] = artifacts.pull_plans(bench.redis, bench.repo.id, 7)
    assert plan.job_id == "job-2-plan-p0"  # the newer plan replaced the older one


def test_a_failing_post_workflow_hook_is_reported_and_the_plan_stands(bench_factory) -> None:
    bench = bench_factory(repos=(RepoEntry(id="github.com/acme/infra",
                                           post_workflow_hooks=(Hook(run="echo hook-says-no; exit 3"),)),))
    bench.open_pull()
    bench.comment("/plan", "alice")
    bench.work()

    plan_comment, hook_comment = bench.bot_comments()
    assert plan_comment["body"].startswith("**Plankeeper plan**")
    assert hook_comment["body"].startswith("**Post-workflow hook failed**")
    assert "hook-says-no" in hook_comment["body"]
    assert [p.project_key for p in artifacts.pull_plans(bench.redis, bench.repo.id, 7)] == [KEY]


def test_repo_config_keys_not_honoured_are_named_in_the_plan_comment(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.push_commit({"atlantis.yaml": "version: 3\nemoji_reaction: rocket\nprojects:\n- dir: /infra/app\n"})
    bench.comment("/plan -d infra/app", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.PLANNED  # the leading slash of the dir is stripped, as Atlantis does
    assert ("⚠️ Repo config keys Plankeeper does not honour:\n- `atlantis.yaml:2: emoji_reaction: ignored"
            in bench.last_comment())


def test_a_var_file_outside_the_repository_fails_the_project(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.push_commit({"infra/app/dev.tfvars": "\n"})
    bench.comment("/plan -- -var-file=../../../outside.tfvars -var-file dev.tfvars", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.FAILED and outcome.plan.failed_step == "setup"
    assert "`-var-file`: path '../../../outside.tfvars' leaves the repository" in outcome.plan.error
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []


def test_a_var_file_inside_the_repository_is_used(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.push_commit({"infra/app/main.tf": 'variable "v" {}\n' + tf_data(value="${var.v}"),
                       "infra/common.tfvars": 'v = "from-common"\n'})
    bench.comment("/plan -- -var-file=../common.tfvars", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.PLANNED, outcome.plan.error
    assert "from-common" in bench.last_comment()


APPLIED_STATE = """{
  "version": 4, "terraform_version": "1.5.7", "serial": 1,
  "lineage": "8f7a1c2e-0000-4000-8000-000000000001", "outputs": {},
  "resources": [{"mode": "managed", "type": "terraform_data", "name": "x",
                 "provider": "provider[\\"terraform.io/builtin/terraform\\"]",
                 "instances": [{"schema_version": 0, "sensitive_attributes": [],
                                "attributes": {"id": "0b6a3c8e-1111-2222-3333-444455556666",
                                               "input": {"value": "hello", "type": "string"},
                                               "output": {"value": "hello", "type": "string"},
                                               "triggers_replace": null}}]}]
}
"""


def test_plan_destroy_plans_the_destruction_of_an_applied_resource(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.push_commit({"infra/app/terraform.tfstate": APPLIED_STATE})  # local state: x is applied
    bench.comment("/plan -- -destroy", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.PLANNED, outcome.plan.error
    assert outcome.plan.changes == [ResourceChange("terraform_data.x", "delete")]
    [plan] = artifacts.pull_plans(bench.redis, bench.repo.id, 7)
    assert plan.summary == "Plan: 0 to add, 0 to change, 1 to destroy."


def test_a_repo_config_generated_by_a_pre_workflow_hook_is_used_by_the_project_jobs(bench_factory) -> None:
    generate = ("printf 'version: 3\\nemoji_reaction: eyes\\nprojects:\\n- name: generated\\n  dir: infra/app\\n'"
                " > atlantis.yaml")
    bench = bench_factory(repos=(RepoEntry(id="github.com/acme/infra", pre_workflow_hooks=(Hook(run=generate),)),))
    bench.open_pull()
    assert bench.comment("/plan", "alice") == "planning 1 project(s) in run job-1-plan"
    run = store.load(bench.redis, "job-1-plan")
    assert (run.repo_config_file, run.repo_config_override) == (
        "atlantis.yaml", "version: 3\nemoji_reaction: eyes\nprojects:\n- name: generated\n  dir: infra/app\n")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert (outcome.project.name, outcome.status) == ("generated", OutcomeStatus.PLANNED)
    assert "generated" in bench.last_comment()
    assert "atlantis.yaml:2: emoji_reaction: ignored" in bench.last_comment()  # the project job read it too


def test_statuses_prefix_names_the_commit_status_contexts(bench_factory) -> None:
    bench = bench_factory(statuses=StatusSettings(prefix="atlantis"))
    pull = bench.open_pull()
    bench.comment("/plan", "alice")
    bench.work()
    assert [s for s, _ in bench.statuses(pull.head_sha, "atlantis/plan")] == ["pending", "success"]
    assert bench.statuses(pull.head_sha, STATUS) == []  # no plankeeper/plan: a rule for Atlantis' name works


def test_checkout_strategy_merge_plans_the_head_merged_into_the_base(bench_factory) -> None:
    bench = bench_factory(checkout_strategy="merge")
    pull = bench.open_pull()
    bench.commit_to_base({"infra/app/extra.tf": tf_data("y")})  # on main after the branch was cut
    bench.comment("/plan", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.PLANNED
    assert sorted(c.address for c in outcome.plan.changes) == ["terraform_data.x", "terraform_data.y"]
    assert bench.statuses(pull.head_sha, STATUS)[-1][0] == "success"


def test_checkout_strategy_branch_plans_the_head_alone(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.commit_to_base({"infra/app/extra.tf": tf_data("y")})
    bench.comment("/plan", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert [c.address for c in outcome.plan.changes] == ["terraform_data.x"]


def test_checkout_strategy_merge_conflict_names_the_files(bench_factory) -> None:
    bench = bench_factory(checkout_strategy="merge")
    pull = bench.open_pull()
    bench.commit_to_base({"infra/app/main.tf": tf_data("x", "from main")})
    assert bench.comment("/plan", "alice") == "failed: Merge conflict"
    assert bench.last_comment().startswith("**Merge conflict**")
    assert "`infra/app/main.tf`" in bench.last_comment()
    assert bench.statuses(pull.head_sha, STATUS) == [("failure", "Merge conflict")]


def test_a_hook_that_links_the_repo_config_out_of_the_checkout_is_refused(bench_factory) -> None:
    link = "ln -s /etc/hostname atlantis.yaml"
    bench = bench_factory(repos=(RepoEntry(id="github.com/acme/infra", pre_workflow_hooks=(Hook(run=link),)),))
    bench.open_pull()
    assert bench.comment("/plan", "alice") == "failed: Repo config refused"
    assert "resolves through a symlink to outside the repository" in bench.last_comment()


def test_plan_requirements_refuse_the_plan_saying_which_and_what_to_do(fake, bench_factory) -> None:
    bench = bench_factory(defaults=ProjectDefaults(plan_requirements=("approved",)))
    pull = bench.open_pull()
    bench.comment("/plan", "alice")
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.FAILED and outcome.plan is None
    assert "Not planned: this project's plan requirements (`approved`) do not hold" in outcome.message
    assert "- needs 1 approval, has 0" in outcome.message and "comment `/plan`" in outcome.message
    assert "needs 1 approval, has 0" in bench.last_comment()
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert bench.statuses(pull.head_sha, STATUS)[-1][0] == "failure"

    fake.add_review(FULL, 7, "bob")
    fake.set_permission(FULL, "bob", "write")
    bench.comment("/plan", "alice", job_id="job-2")
    bench.work()
    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-2-plan"))
    assert outcome.status is OutcomeStatus.PLANNED


def test_autoplan_honours_plan_requirements_too(bench_factory) -> None:
    bench = bench_factory(defaults=ProjectDefaults(plan_requirements=("approved",)))
    pull = bench.open_pull()
    with bench.job() as ctx:
        dispatch.handle(ctx, PullRequestEvent("d1", "opened", pull, "alice"))
    bench.work()
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert "plan requirements (`approved`) do not hold" in bench.last_comment()


def test_silence_pr_comments_plan_posts_no_comment_but_sets_the_status(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    head = bench.push_commit({"atlantis.yaml": "version: 3\nprojects:\n- dir: infra/app\n  silence_pr_comments: [plan]\n"})
    assert bench.comment("/plan", "alice") == "planning 1 project(s) in run job-1-plan"
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.PLANNED
    assert bench.bot_comments() == []
    assert bench.statuses(head, STATUS) == [("pending", ("1 project: 0 with changes, 0 without, 0 failed "
                                                         "(1 still running)")),
                                            ("success", "1 project: 1 with changes, 0 without, 0 failed")]


def test_a_silenced_project_locked_by_another_pull_request_is_still_reported(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.push_commit({"atlantis.yaml": "version: 3\nsilence_pr_comments: [plan]\nprojects:\n- dir: infra/app\n"})
    locks.try_lock(bench.redis, locks.new_lock(bench.repo.id, KEY, 8, "https://example.com/pull/8", "bob"))
    bench.comment("/plan", "alice")
    bench.work()

    [comment] = bench.bot_comments()
    assert "locked by" in comment["body"] and "#8" in comment["body"]
