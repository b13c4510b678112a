"""End to end through a real `plankeeper serve`: GitHub pull requests get plan comments."""
from __future__ import annotations

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.support import github_comment_payload, github_pr_payload, tf_data

pytestmark = pytest.mark.e2e
REPO = "acme/infra"


def _open_pull(fake, repo, files, number=7, message="add app"):
    base = repo.commit({"README.md": "infra\n"}, "initial")
    head = repo.commit(files, message, branch=f"feature-{number}")
    repo.checkout("main")
    fake.add_repo(REPO, repo.clone_url)
    fake.add_pull(REPO, number, head, f"feature-{number}", "main", "alice", files=list(files), base_sha=base)
    return head


def _plan_comments(fake, number=7):
    return [c for c in fake.comments(REPO, number) if c["body"].startswith("**Plankeeper plan**")]


def test_opened_pull_request_gets_plan_comment_and_status(fake_github, git_repo, serve_factory):
    head = _open_pull(fake_github, git_repo, {"infra/app/main.tf": tf_data()})
    server = serve_factory()
    answer = server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()
    comments = _plan_comments(fake_github)
    assert len(comments) == 1, server.log()
    body = comments[0]["body"]
    assert "1 project: 1 with changes, 0 without, 0 failed" in body
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in body
    assert "`terraform_data.x`" in body and "➕ create" in body
    assert "/apply -d infra/app" in body
    statuses = fake_github.statuses(REPO, head)
    assert [s["state"] for s in statuses if s["context"] == "plankeeper/plan"] == ["pending", "success"]
    # an autoplan answers no comment, so nothing is reacted to
    assert all(c["reactions"] == [] for c in fake_github.comments(REPO, 7))


def test_pull_request_touching_no_terraform_gets_no_plan(fake_github, git_repo, serve_factory):
    _open_pull(fake_github, git_repo, {"docs/readme.md": "hello\n"})
    server = serve_factory()
    assert server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7),
                                 WEBHOOK_SECRET).status_code == 202
    server.wait_jobs_idle()
    assert _plan_comments(fake_github) == []


def test_plan_comment_with_dir_plans_just_that_project(fake_github, git_repo, serve_factory):
    _open_pull(fake_github, git_repo, {"infra/app/main.tf": tf_data(), "infra/db/main.tf": tf_data("db")})
    server = serve_factory({"defaults": {"autoplan": False}})
    payload = github_comment_payload(fake_github, REPO, 7, "/plan -d infra/app", user="alice")
    assert server.deliver_github("issue_comment", payload, WEBHOOK_SECRET).status_code == 202
    server.wait_jobs_idle()
    comments = _plan_comments(fake_github)
    assert len(comments) == 1, server.log()
    assert "dir: `infra/app`" in comments[0]["body"] and "infra/db" not in comments[0]["body"]
    command = [c for c in fake_github.comments(REPO, 7) if c["body"] == "/plan -d infra/app"][0]
    assert command["reactions"] == ["eyes"]


def test_second_push_replans_and_marks_old_comment_outdated(fake_github, git_repo, serve_factory):
    _open_pull(fake_github, git_repo, {"infra/app/main.tf": tf_data()})
    server = serve_factory()
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    git_repo.checkout("feature-7")
    new_head = git_repo.commit({"infra/app/main.tf": tf_data(value="changed")}, "change", branch="feature-7")
    fake_github.push(REPO, 7, new_head)
    server.deliver_github("pull_request", github_pr_payload("synchronize", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    comments = _plan_comments(fake_github)
    outdated = [c for c in fake_github.comments(REPO, 7) if c["body"].startswith("> ⚠️ **Outdated:**")]
    assert len(comments) == 1 and len(outdated) == 1, server.log()
    assert new_head[:7] in comments[0]["body"]


def test_terraform_syntax_error_fails_with_terraforms_error(fake_github, git_repo, serve_factory):
    head = _open_pull(fake_github, git_repo, {"infra/app/main.tf": 'resource "terraform_data" "x" {\n  input = \n}\n'})
    server = serve_factory()
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    body = _plan_comments(fake_github)[0]["body"]
    assert "❌ failed" in body and "0 with changes, 0 without, 1 failed" in body
    assert "Error" in body
    states = [s["state"] for s in fake_github.statuses(REPO, head) if s["context"] == "plankeeper/plan"]
    assert states[-1] == "failure"


def test_unreachable_clone_url_is_reported(fake_github, git_repo, serve_factory, tmp_path):
    head = _open_pull(fake_github, git_repo, {"infra/app/main.tf": tf_data()})
    fake_github.repos[REPO].clone_url = str(tmp_path / "missing.git")
    server = serve_factory()
    server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    server.wait_jobs_idle()
    bodies = [c["body"] for c in fake_github.comments(REPO, 7)]
    assert any("Checkout failed" in b and "missing.git" in b for b in bodies), bodies
    assert fake_github.statuses(REPO, head)[-1]["state"] == "failure"
