"""End to end: an unchanged atlantis.yaml with a custom workflow (`run` step) and a server-side
pre-workflow hook, through `plankeeper serve`."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.support import github_comment_payload, github_pr_payload, tf_data

pytestmark = pytest.mark.e2e
REPO = "acme/infra"

ATLANTIS_YAML = """\
version: 3
projects:
  - name: app
    dir: infra/app
    workflow: custom
    autoplan:
      when_modified: ["*.tf"]
  - name: db
    dir: infra/db
    autoplan:
      enabled: false
workflows:
  custom:
    plan:
      steps:
        - run: echo "custom step for $PROJECT_NAME in $REPO_REL_DIR of pull $PULL_NUM"
        - init
        - plan:
            extra_args: ["-lock=false"]
"""


def test_atlantis_yaml_custom_workflow_and_pre_workflow_hook(fake_github, git_repo, serve_factory):
    base = git_repo.commit({"README.md": "x\n", "atlantis.yaml": ATLANTIS_YAML}, "initial")
    head = git_repo.commit({"infra/app/main.tf": tf_data(), "infra/db/main.tf": tf_data("db")}, "add",
                           branch="feature")
    git_repo.checkout("main")
    fake_github.add_repo(REPO, git_repo.clone_url)
    fake_github.add_pull(REPO, 3, head, "feature", "main", "alice",
                         files=["infra/app/main.tf", "infra/db/main.tf"], base_sha=base)
    server = serve_factory({"repos": [{
        "id": "/.*/", "allow_custom_workflows": True, "allowed_overrides": ["workflow"],
        "pre_workflow_hooks": [{"run": "echo pre-hook saw $HEAD_BRANCH_NAME", "description": "say hello"}],
    }]})
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 3), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    plans = [c["body"] for c in fake_github.comments(REPO, 3) if c["body"].startswith("**Plankeeper plan**")]
    assert len(plans) == 1, server.log()
    body = plans[0]
    # db has autoplan disabled: only app is planned, under its project name
    assert "`app` · dir: `infra/app`" in body and "infra/db" not in body
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in body
    assert "/apply -p app" in body
    jobs = requests.get(f"{server.url}/api/jobs?limit=50", timeout=5).json()
    logs = "\n".join(line for job in jobs
                     for line in requests.get(f"{server.url}/api/jobs/{job['id']}/log", timeout=5).json()["lines"])
    assert "pre-hook saw feature" in logs
    assert "custom step for app in infra/app of pull 3" in logs

    # `/plan -p db` plans the project autoplan skipped, by name
    server.deliver_github("issue_comment", github_comment_payload(fake_github, REPO, 3, "/plan -p db"),
                          WEBHOOK_SECRET)
    server.wait_jobs_idle()
    latest = [c["body"] for c in fake_github.comments(REPO, 3) if c["body"].startswith("**Plankeeper plan**")][-1]
    assert "`db` · dir: `infra/db`" in latest and "1 with changes" in latest


def test_a_broken_repo_config_is_reported_with_file_line_and_key(fake_github, git_repo, serve_factory):
    broken = "version: 3\nprojects:\n  - dir: infra/app\n    workspace: a/b\n"
    base = git_repo.commit({"README.md": "x\n"}, "initial")
    head = git_repo.commit({"atlantis.yaml": broken, "infra/app/main.tf": tf_data()}, "add", branch="feature")
    git_repo.checkout("main")
    fake_github.add_repo(REPO, git_repo.clone_url)
    fake_github.add_pull(REPO, 4, head, "feature", "main", "alice", files=["atlantis.yaml", "infra/app/main.tf"],
                         base_sha=base)
    server = serve_factory()
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 4), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    bodies = [c["body"] for c in fake_github.comments(REPO, 4)]
    assert any("atlantis.yaml:4" in b and "workspace" in b for b in bodies), bodies
    assert not any(b.startswith("**Plankeeper plan**") for b in bodies)
    assert fake_github.statuses(REPO, head)[-1]["state"] == "failure"
