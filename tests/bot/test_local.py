"""bot/local.py: `plankeeper check` and `plankeeper plan` on a local checkout with a repo config."""
from __future__ import annotations

import pytest

from bot.local import check_repo, local_footer, local_plan
from bot.models import ProjectOutcome
from bot.settings_loader import load_settings
from runners.models import PlanResult, Project
from tests.support import GitRepo, tf_data

CONFIG = """version: 3
projects:
- name: app
  dir: app
  workflow: echo
- name: db
  dir: db
  autoplan: {enabled: false}
workflows:
  echo:
    plan:
      steps:
      - init
      - plan
      - run: echo "custom step for $PROJECT_NAME pull=$PULL_NUM dir=$REPO_REL_DIR"
"""


@pytest.fixture
def settings(tmp_path):
    path = tmp_path / "server.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\nterraform: {{binary: embedded}}\n"
                    "repos:\n- id: /.*/\n  allow_custom_workflows: true\n  allowed_overrides: [workflow]\n")
    return load_settings(path, {})


@pytest.fixture
def repo(tmp_path):
    repo = GitRepo(tmp_path)
    repo.commit({"atlantis.yaml": CONFIG, "app/main.tf": tf_data(), "db/main.tf": tf_data("y")}, "base")
    repo.commit({"app/main.tf": tf_data(value="changed"), "db/main.tf": tf_data("y", "changed")}, "change",
                branch="feature")
    return repo


def test_check_lists_projects_and_what_would_plan(settings, repo, capsys):
    assert check_repo(settings, repo.work, "main", "feature") == 0
    out = capsys.readouterr().out
    assert "Config: atlantis.yaml (valid)" in out
    assert "app: app (workspace default, engine terraform, workflow echo, autoplan on)" in out
    assert "db: db (workspace default, engine terraform, workflow default, autoplan off)" in out
    would = out.split("would autoplan:")[1]
    assert "app: app" in would and "db: db" not in would


def test_check_bad_config_exits_1_with_file_line_key(settings, repo, capsys):
    (repo.work / "atlantis.yaml").write_text("version: 3\nprojects:\n- dir: a\n  autoplan: {enabeld: true}\n")
    assert check_repo(settings, repo.work, None, None) == 1
    err = capsys.readouterr().err
    assert "atlantis.yaml:4: projects[0].autoplan.enabeld: unknown key (did you mean enabled?)" in err


def test_check_names_the_keys_it_accepts_but_does_not_honour(settings, repo, capsys):
    (repo.work / "atlantis.yaml").write_text("version: 2\npolicies: {owners: {users: [alice]}}\n"
                                             "projects:\n- dir: /app\n")
    assert check_repo(settings, repo.work, None, None) == 0
    out = capsys.readouterr().out
    assert "Config: atlantis.yaml (valid)\nWarning: atlantis.yaml:2: policies: ignored: Plankeeper takes policy sets" in out
    assert "- app (workspace default" in out


def test_check_refuses_custom_workflows_the_server_forbids(tmp_path, repo, capsys):
    assert check_repo(load_settings(None, {}), repo.work, None, None) == 1
    assert "allow_custom_workflows" in capsys.readouterr().err


def test_local_plan_uses_the_repo_config_and_workflow(settings, repo, capsys):
    code = local_plan(settings, repo.work, "main", "feature", [], [])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "custom step for app pull=0 dir=app" in out
    assert "1 project: 1 with changes" in out and "### `db`" not in out  # db: autoplan disabled


def test_local_plan_p_selects_by_name(settings, repo, capsys):
    assert local_plan(settings, repo.work, "main", "feature", [], ["db"]) == 2
    assert "custom step" not in capsys.readouterr().out
    assert local_plan(settings, repo.work, "main", "feature", [], ["nope"]) == 1
    assert "No project named `nope`" in capsys.readouterr().err


def test_local_plan_says_how_to_apply_instead_of_pull_request_commands(settings, repo, capsys):
    assert local_plan(settings, repo.work, "main", "feature", [], []) == 2
    out = capsys.readouterr().out
    assert "To apply this project" not in out and "/unlock" not in out
    assert "To apply every planned project" not in out
    assert out.rstrip().endswith(
        "Local plan: nothing was saved or locked, and `plankeeper plan` cannot apply. To apply, open a pull "
        "request from this branch and comment `/apply` there once Plankeeper has planned it, or run "
        "`terraform apply` (`tofu apply`) yourself in each project directory with changes.")


def test_local_footer_after_a_failure_or_no_changes():
    failed = ProjectOutcome(Project("a"), "failed", plan=PlanResult(ok=False, failed_step="init"))
    unchanged = ProjectOutcome(Project("b"), "no_changes", plan=PlanResult(ok=True))
    kube = ProjectOutcome(Project("k", engine="kubectl"), "planned", plan=PlanResult(ok=True, has_changes=True))
    assert local_footer([failed, unchanged]) == "Fix the failing project(s) and run `plankeeper plan` again.\n"
    assert local_footer([unchanged]) == ""
    assert "run `kubectl apply` yourself" in local_footer([unchanged, kube])


def test_check_names_every_key_it_accepts_but_does_not_fully_honour(settings, repo, capsys):
    (repo.work / "atlantis.yaml").write_text(
        "version: 3\nemoji_reaction: thumbsup\nparallel_policy_check: true\n"
        "projects:\n- dir: app\n  custom_policy_check: true\n  repo_locks: {mode: disabled}\n"
        "- dir: 'stacks/*'\n"
        "workflows:\n  w:\n    policy_check:\n      steps: [policy_check]\n    plan:\n      steps:\n"
        "      - run: {command: make plan, shell: bash}\n")
    assert check_repo(settings, repo.work, None, None) == 0
    warned = [line.split(": ")[2] for line in capsys.readouterr().out.splitlines() if line.startswith("Warning:")]
    assert sorted(warned) == sorted(["emoji_reaction", "parallel_policy_check", "projects[0].custom_policy_check",
                                     "projects[0].repo_locks.mode", "workflows.w.policy_check",
                                     "workflows.w.plan.steps[0].run.shell", "projects[1].dir"])
