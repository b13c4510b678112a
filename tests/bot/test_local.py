"""bot/local.py: `plankeeper check` and `plankeeper plan` on a local checkout with a repo config."""
from __future__ import annotations

import pytest

from bot.local import check_repo, local_plan
from bot.settings import load_settings
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
                    "repos:\n- id: /.*/\n  allow_custom_workflows: true\n")
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
