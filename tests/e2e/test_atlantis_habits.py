"""End to end through a real `plankeeper serve`: Atlantis keys that change what the bot posts and
how it merges (silence_pr_comments, automerge with a method and branch deletion, plan_requirements)."""
from __future__ import annotations

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.support import github_comment_payload, github_pr_payload, tf_data

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
SILENCED = "version: 3\nprojects:\n- dir: infra/app\n  silence_pr_comments: [plan]\n"


def open_pull(fake, repo, files: dict) -> str:
    base = repo.commit({"README.md": "infra\n"}, "initial")
    head = repo.commit(files, "change", branch="feature-7")
    repo.checkout("main")
    fake.add_repo(REPO, repo.clone_url)
    fake.add_pull(REPO, 7, head, "feature-7", "main", "alice", files=list(files), base_sha=base)
    fake.set_permission(REPO, "alice", "write")
    return head


def bot_bodies(fake) -> list[str]:
    return [c["body"] for c in fake.comments(REPO, 7) if c["user"] == "plankeeper-bot"]


def test_a_silenced_plan_sets_its_status_and_automerge_squashes_and_deletes_the_branch(fake_github, git_repo,
                                                                                       serve_factory):
    head = open_pull(fake_github, git_repo, {"infra/app/main.tf": tf_data(), "atlantis.yaml": SILENCED})
    server = serve_factory({"defaults": {"apply_requirements": [], "automerge": True,
                                         "delete_source_branch_on_merge": True}})
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    assert bot_bodies(fake_github) == [], server.log()
    plan_states = [s["state"] for s in fake_github.statuses(REPO, head) if s["context"] == "plankeeper/plan"]
    assert plan_states == ["pending", "success"]

    server.deliver_github("issue_comment", github_comment_payload(fake_github, REPO, 7,
                                                                  "/apply --auto-merge-method squash", "alice"),
                          WEBHOOK_SECRET)
    server.wait_jobs_idle()
    bodies = bot_bodies(fake_github)
    assert any(b.startswith("**Plankeeper apply**") for b in bodies), bodies  # apply is not silenced
    assert bodies[-1] == ("**Plankeeper** merged this pull request (squash) and deleted `feature-7`: every planned "
                          "project applied.")
    pull = fake_github.pull(REPO, 7)
    assert (pull.merged, pull.merge_method) == (True, "squash")
    assert "feature-7" not in fake_github.repos[REPO].branches


def test_plan_requirements_keep_an_unapproved_pull_request_unplanned(fake_github, git_repo, serve_factory):
    head = open_pull(fake_github, git_repo, {"infra/app/main.tf": tf_data()})
    server = serve_factory({"defaults": {"plan_requirements": ["approved"]}})
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    [body] = bot_bodies(fake_github)
    assert "plan requirements (`approved`) do not hold" in body and "needs 1 approval, has 0" in body
    assert [s["state"] for s in fake_github.statuses(REPO, head) if s["context"] == "plankeeper/plan"][-1] == "failure"
