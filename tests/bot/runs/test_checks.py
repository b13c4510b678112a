"""bot/runs/checks.py and CommandReport on a forge with checks: what a command's check run says
(pure), and its life on the fake GitHub as an App (created in progress, completed, failed when
the job dies), with older plan comments minimized instead of edited."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.context import JobContext
from bot.forges.base import FAILURE, NEUTRAL, PENDING, SUCCESS
from bot.forges.github import GitHubForge
from bot.models import OutcomeStatus, ProjectOutcome, PullRequest, Repo
from bot.redact import Redactor
from bot.runs import checks
from bot.runs.report import CommandReport, fail_pending, pending_statuses
from bot.settings import Settings
from bot.state import keys
from bot.state.joblog import JobLog
from runners.models import PlanResult, Project, ResourceChange
from tests.fakes.github import FakeGitHub
from tests.support_app import APP_ID, APP_LOGIN, app_github, app_keys

FULL, HEAD = "acme/infra", "d" * 40
REPO = Repo("github", "github.com", FULL, "https://github.com/acme/infra.git")
PULL = PullRequest(REPO, 7, "alice", HEAD, "feature", "main")
LOG = "http://pk/jobs/j1"
PLAN_LINE = "Plan: 1 to add, 0 to change, 0 to destroy."


def planned(dir_: str = "infra/app", output: str = "  + resource \"terraform_data\" \"x\"") -> ProjectOutcome:
    plan = PlanResult(ok=True, has_changes=True, summary=PLAN_LINE, output=output,
                      changes=[ResourceChange("terraform_data.x", "create")])
    return ProjectOutcome(Project(dir_), OutcomeStatus.PLANNED, plan=plan, log_url=LOG)


def unchanged(dir_: str = "infra/db") -> ProjectOutcome:
    plan = PlanResult(ok=True, summary="No changes. Your infrastructure matches the configuration.", output="ok")
    return ProjectOutcome(Project(dir_), OutcomeStatus.NO_CHANGES, plan=plan, log_url=LOG)


def report(state: str, outcomes: list[ProjectOutcome], command: str = "plan", **kw: object):
    return checks.check_report(f"plankeeper/{command}", command, state, "the overview", outcomes, pull=PULL,
                               job_url=LOG, comment_url="https://github.com/acme/infra/pull/7#c1", **kw)


# ---------------------------------------------------------------- what a check run says


def test_a_plan_with_changes_succeeds_with_an_apply_button() -> None:
    check = report(SUCCESS, [planned(), unchanged()])
    assert (check.name, check.state, check.title, check.external_id, check.details_url) == (
        "plankeeper/plan", SUCCESS, "the overview", "pull:7", LOG)
    assert check.actions == (checks.APPLY_BUTTON,)
    assert len(checks.APPLY_BUTTON.label) <= 20 and len(checks.APPLY_BUTTON.description) <= 40
    assert check.summary.splitlines()[:4] == [
        "| Project | Workspace | Result | Summary |", "|---|---|---|---|",
        f"| `infra/app` | `default` | 📝 changes | {PLAN_LINE} |",
        "| `infra/db` | `default` | ✅ no changes | No changes. Your infrastructure matches the configuration. |"]
    assert "[The comment on the pull request](https://github.com/acme/infra/pull/7#c1)" in check.summary
    assert "dir: `infra/app`" in check.text and 'terraform_data" "x"' in check.text and PLAN_LINE in check.text
    assert "/apply -d" not in check.text  # the button is the way to apply here


@pytest.mark.parametrize("state, outcomes, expected", [
    (SUCCESS, [unchanged()], SUCCESS),  # nothing to apply: no button
    (FAILURE, [planned()], FAILURE),  # a failed plan (another project, a policy) is not applied from here
    (PENDING, [planned()], PENDING),
    (SUCCESS, [], NEUTRAL),  # no project changed
])
def test_no_apply_button_unless_a_successful_plan_has_changes(state: str, outcomes: list, expected: str) -> None:
    check = report(state, outcomes)
    assert (check.state, check.actions) == (expected, ())


def test_an_apply_check_run_never_has_the_button() -> None:
    assert report(SUCCESS, [planned()], command="apply").actions == ()


def test_in_progress_has_the_table_but_no_text_yet() -> None:
    queued = ProjectOutcome(Project("infra/app"), OutcomeStatus.QUEUED, log_url=LOG)
    check = report(PENDING, [queued])
    assert "| `infra/app` | `default` | ⏳ queued |  |" in check.summary and check.text == ""


def test_a_command_stopped_before_any_project_says_why_in_the_summary() -> None:
    check = report(FAILURE, [], details="The repo config is invalid: `projects[0].dir` is missing.")
    assert (check.state, check.summary, check.text) == (
        FAILURE, "The repo config is invalid: `projects[0].dir` is missing.", "")


def test_long_output_is_cut_within_the_limit_with_the_log_link() -> None:
    check = report(SUCCESS, [planned(output="+ line\n" * 20000), planned("infra/b", output="- x\n" * 20000)])
    assert len(check.text) <= checks.TEXT_LIMIT
    assert check.text.count(f"the full output is in the [job log]({LOG})") == 2


def test_table_cells_cannot_break_the_table_and_secrets_are_masked() -> None:
    failed = ProjectOutcome(Project("infra/a|b"), OutcomeStatus.FAILED, message="token s3cr3t | more\nsecond line",
                            log_url=LOG)
    check = report(FAILURE, [failed], redact=Redactor(["s3cr3t"]))
    row = check.summary.splitlines()[2]
    assert row == "| `infra/a\\|b` | `default` | ❌ failed | token *** \\| more |", row
    assert "s3cr3t" not in check.summary + check.text


# ---------------------------------------------------------------- on the fake GitHub, as an App


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with app_github() as server:
        server.add_repo(FULL, REPO.clone_url)
        server.add_pull(FULL, 7, HEAD, "feature", "main", "alice")
        yield server


@pytest.fixture
def job(fake: FakeGitHub, redis_db):
    forge = GitHubForge(fake.api_url, app_id=APP_ID, private_key=app_keys()[0], write_interval=0,
                        sleep=lambda s: None)

    def context(job_id: str = "j1") -> JobContext:
        redact = Redactor()
        return JobContext(Settings(public_url="http://pk"), redis_db, forge, job_id,
                          JobLog(redis_db, job_id, redact), redact)
    return context


def bot_runs(fake: FakeGitHub, name: str = "plankeeper/plan") -> list[dict]:
    return [r for r in fake.check_runs(FULL, HEAD) if r["name"] == name]


def test_a_run_is_one_check_run_from_start_to_finish(fake: FakeGitHub, job, redis_db) -> None:
    ctx = job()
    report_ = CommandReport(ctx, PULL, "plan")
    report_.start([ProjectOutcome(Project("infra/app"), OutcomeStatus.QUEUED)])
    [run] = bot_runs(fake)
    running = "1 project: 0 with changes, 0 without, 0 failed (1 still running)"
    assert (run["status"], run["output"]["title"]) == ("in_progress", running)
    assert pending_statuses(redis_db, "j1") == {"plankeeper/plan": HEAD}
    report_.finish([planned()])
    [run] = bot_runs(fake)
    assert (run["status"], run["conclusion"], run["details_url"]) == ("completed", "success", "http://pk/jobs/j1")
    assert run["output"]["title"] == "1 project: 1 with changes, 0 without, 0 failed"
    assert [a["identifier"] for a in run["actions"]] == ["apply"]
    assert fake.statuses(FULL, HEAD) == []
    assert pending_statuses(redis_db, "j1") == {} and not redis_db.exists(keys.JOB_CHECK_RUNS.format("j1"))


def test_a_job_that_dies_fails_the_check_run_it_left_in_progress(fake: FakeGitHub, job, redis_db) -> None:
    CommandReport(job(), PULL, "apply").start([ProjectOutcome(Project("infra/app"), OutcomeStatus.QUEUED)])
    fail_pending(job().forge, redis_db, "j1", REPO, "Plankeeper job failed: its worker died", "http://pk/jobs/j1")
    [run] = bot_runs(fake, "plankeeper/apply")
    assert (run["status"], run["conclusion"], run["output"]["title"]) == (
        "completed", "failure", "Plankeeper job failed: its worker died")


def test_no_project_changed_is_a_neutral_check_run(fake: FakeGitHub, job) -> None:
    CommandReport(job(), PULL, "plan").status(SUCCESS, "No Terraform or Kubernetes project changed")
    [run] = bot_runs(fake)
    assert (run["conclusion"], run["output"]["title"]) == ("neutral", "No Terraform or Kubernetes project changed")


def test_an_older_plan_comment_is_minimized_not_edited(fake: FakeGitHub, job) -> None:
    first = CommandReport(job("j1"), PULL, "plan")
    first.finish([planned()])
    second = CommandReport(job("j2"), PULL, "plan")
    second.finish([planned()])
    comments = fake.comments(FULL, 7)
    assert [c["user"] for c in comments] == [APP_LOGIN, APP_LOGIN]
    assert fake.minimized(FULL, 7) == {int(first.comment_id): "OUTDATED"}
    assert not comments[0]["body"].startswith("> ⚠️ **Outdated:**")
    assert len(bot_runs(fake)) == 2  # each command run its own check run
