"""End to end through a real `plankeeper serve`: the pull request's work tree is kept between
pushes, and `terraform init` runs only when what it depends on changed."""
from __future__ import annotations

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.support import github_pr_payload, tf_data

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
LOCK = '# This file is maintained automatically by "terraform init".\n# Manual edits may be lost.\n'


def latest_plan(fake, head: str) -> str:
    plans = [c["body"] for c in fake.comments(REPO, 7)
             if c["body"].startswith(f"**Plankeeper plan** for `{head[:7]}`")]
    assert len(plans) == 1, [c["body"][:80] for c in fake.comments(REPO, 7)]
    return plans[0]


def push(fake, git_repo, server, files: dict, message: str) -> str:
    git_repo.checkout("feature-7")
    head = git_repo.commit(files, message, branch="feature-7")
    fake.push(REPO, 7, head)
    assert server.deliver_github("pull_request", github_pr_payload("synchronize", fake, REPO, 7),
                                 WEBHOOK_SECRET).status_code == 202
    server.wait_jobs_idle()
    return head


def test_replans_skip_init_until_the_lock_file_changes(fake_github, git_repo, serve_factory):
    base = git_repo.commit({"README.md": "infra\n"}, "initial")
    head = git_repo.commit({"infra/app/main.tf": tf_data()}, "add app", branch="feature-7")
    git_repo.checkout("main")
    fake_github.add_repo(REPO, git_repo.clone_url)
    fake_github.add_pull(REPO, 7, head, "feature-7", "main", "alice", files=["infra/app/main.tf"], base_sha=base)
    server = serve_factory()
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    first = latest_plan(fake_github, head)
    assert "Plan: 1 to add" in first and "init ran: first init in this work tree" in first, server.log()

    head = push(fake_github, git_repo, server, {"infra/app/main.tf": tf_data(value="changed")}, "change a value")
    second = latest_plan(fake_github, head)
    assert "Plan: 1 to add" in second and '"changed"' in second, second
    assert "init skipped: lock file, backend and modules unchanged" in second, server.log()

    head = push(fake_github, git_repo, server, {"infra/app/.terraform.lock.hcl": LOCK}, "commit the lock file")
    third = latest_plan(fake_github, head)
    assert "Plan: 1 to add" in third and "init ran: the dependency lock file changed" in third, server.log()
