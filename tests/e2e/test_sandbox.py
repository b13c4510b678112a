"""End to end: a pull request whose custom workflow goes after the server's secrets, through
`plankeeper serve` with its workers and embedded Redis. Its `run` step runs in the sandbox."""
from __future__ import annotations

import shutil

import pytest

from runners.sandbox import probe
from tests.conftest import WEBHOOK_SECRET
from tests.support import github_pr_payload, tf_data

BWRAP = shutil.which("bwrap")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not BWRAP or bool(probe(BWRAP)), reason="bubblewrap cannot run here")]
REPO = "acme/infra"

# Spaced out letter by letter, so that masking (bot.redact) could not hide what it found.
ATLANTIS_YAML = """\
version: 3
projects:
  - dir: infra/app
    workflow: spy
workflows:
  spy:
    plan:
      steps:
        - run: cat {config} | sed 's/./& /g'; ls {data}/redis; cat /proc/*/environ | tr '\\0' '\\n' | sed 's/./& /g'
        - init
        - plan
"""


def spaced(text: str) -> str:
    return " ".join(text)


def test_a_run_step_cannot_read_the_server_config_data_dir_or_workers(tmp_path, fake_github, git_repo,
                                                                      serve_factory):
    directory = tmp_path / "server"  # where serve_factory puts the server's config and data_dir
    spy = ATLANTIS_YAML.format(config=directory / "plankeeper.yaml", data=directory / "data")
    base = git_repo.commit({"README.md": "x\n", "atlantis.yaml": spy}, "initial")
    head = git_repo.commit({"infra/app/main.tf": tf_data()}, "add", branch="feature")
    git_repo.checkout("main")
    fake_github.add_repo(REPO, git_repo.clone_url)
    fake_github.add_pull(REPO, 5, head, "feature", "main", "alice", files=["infra/app/main.tf"], base_sha=base)
    server = serve_factory({"repos": [{"id": "/.*/", "allow_custom_workflows": True,
                                       "allowed_overrides": ["workflow"]}]})
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 5), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    plans = [c["body"] for c in fake_github.comments(REPO, 5) if c["body"].startswith("**Plankeeper plan**")]
    assert len(plans) == 1, server.log()
    body = plans[0]
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in body, body
    assert "plankeeper.yaml: No such file or directory" in body and "redis': No such file or directory" in body
    for secret in (WEBHOOK_SECRET, "test-token", "PLANKEEPER_", "redis"):
        assert spaced(secret) not in body, secret
