"""End to end through a real `plankeeper serve`: GitLab merge requests get plan notes,
`/apply`, merge-to-deploy and lock release, like GitHub pull requests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest
import requests

from tests.e2e.conftest import BOT_LOGIN, GITLAB_WEBHOOK_SECRET
from tests.support import GitRepo, tf_data
from tests.support_gitlab import (
    MR_HOOK, NOTE_HOOK, deliver_gitlab, gitlab_mr_payload, gitlab_note_payload)

pytestmark = pytest.mark.e2e
PROJECT = "acme/infra"
IID = 1
PLAN_SUMMARY = "Plan: 1 to add, 0 to change, 0 to destroy."
APPLY_SUMMARY = "Apply complete! Resources: 1 added, 0 changed, 0 destroyed."


def _main_tf(state_path: Path) -> str:
    """A project whose state lives outside the job's work dir, so a test can read it afterwards."""
    backend = f'terraform {{\n  backend "local" {{\n    path = "{state_path}"\n  }}\n}}\n\n'
    return backend + tf_data()


def _open_mr(fake, repo: GitRepo, files: dict, iid: int = IID,
             fork: Optional[GitRepo] = None) -> str:
    """Commit files on feature-<iid>, publish refs/merge-requests/<iid>/head as GitLab does,
    and open the merge request in the fake. With `fork`, the source branch lives only in the
    fork's repository (project "mallory/infra"), as for a merge request from a fork."""
    base = repo.commit({"README.md": "infra\n"}, "initial")
    head = repo.commit(files, "add app", branch=f"feature-{iid}")
    repo.git("push", "-q", "origin", f"{head}:refs/merge-requests/{iid}/head")
    repo.checkout("main")
    pid = fake.add_project(PROJECT, repo.clone_url)
    source = None
    if fork is not None:
        repo.git("push", "-q", fork.clone_url, "main", f"feature-{iid}")
        repo.git("push", "-q", "origin", "--delete", f"feature-{iid}")
        source = fake.add_project("mallory/infra", fork.clone_url)
    fake.add_mr(pid, iid, head, f"feature-{iid}", "main", "alice", files=list(files), base_sha=base,
                source_project_id=source)
    fake.set_access(pid, "alice", 30)
    return head


def _merge(fake, repo: GitRepo, iid: int = IID) -> str:
    """Merge feature-<iid> into main for real (a merge commit pushed to the bare repo)."""
    repo.git("merge", "-q", "--no-ff", "-m", f"Merge branch 'feature-{iid}'", f"feature-{iid}")
    repo.git("push", "-q", "origin", "HEAD:refs/heads/main")
    merge_sha = repo.git("rev-parse", "HEAD")
    fake.mark_merged(PROJECT, iid, merge_sha)
    return merge_sha


def _notes(fake, prefix: str = "") -> list[dict]:
    return [n for n in fake.notes(PROJECT, IID) if n["body"].startswith(prefix)]


def _states(fake, sha: str, context: str) -> list[str]:
    return [s["status"] for s in fake.statuses(PROJECT, sha) if s["name"] == context]


def _state_resources(state: Path) -> list[str]:
    return [f"{r['type']}.{r['name']}" for r in json.loads(state.read_text())["resources"]]


def _deliver(server, event: str, payload: dict, expect: int = 202) -> dict:
    answer = deliver_gitlab(server, event, payload, GITLAB_WEBHOOK_SECRET)
    assert answer.status_code == expect, answer.text
    return answer.json()


def _event_jobs(jobs: list[dict]) -> list[dict]:
    """Jobs queued by webhooks (a run adds a job per project and a finalizing one)."""
    return [j for j in jobs if j.get("event") not in ("project", "finalize")]


def _get(server, path: str):
    return requests.get(f"{server.url}{path}", timeout=5).json()


def test_merge_request_plan_apply_merge_releases_locks(fake_gitlab, git_repo, gitlab_serve_factory,
                                                       tmp_path):
    state = tmp_path / "state" / "terraform.tfstate"
    head = _open_mr(fake_gitlab, git_repo, {"infra/app/main.tf": _main_tf(state)})
    server = gitlab_serve_factory()

    _deliver(server, MR_HOOK, gitlab_mr_payload("open", fake_gitlab, PROJECT, IID))
    server.wait_jobs_idle()
    plans = _notes(fake_gitlab, "**Plankeeper plan**")
    assert len(plans) == 1, server.log()
    assert PLAN_SUMMARY in plans[0]["body"] and "/apply -d infra/app" in plans[0]["body"]
    assert _states(fake_gitlab, head, "plankeeper/plan") == ["pending", "success"]
    assert [lock["pull_number"] for lock in _get(server, "/api/locks")] == [IID]

    # a label-only update (no oldrev) is answered at once and plans nothing
    labels = {"labels": {"previous": [], "current": [{"id": 1, "title": "infra"}]}}
    update = gitlab_mr_payload("update", fake_gitlab, PROJECT, IID, changes=labels)
    answer = _deliver(server, MR_HOOK, update, expect=200)
    assert answer["outcome"] == "ignored", answer
    # the bot's own note is never taken as a command
    own_note = gitlab_note_payload(fake_gitlab, PROJECT, IID, "/apply", BOT_LOGIN)
    answer = _deliver(server, NOTE_HOOK, own_note, expect=200)
    assert answer["outcome"] == "ignored", answer
    assert len(_event_jobs(_get(server, "/api/jobs?limit=200"))) == 1  # neither was queued

    _deliver(server, NOTE_HOOK, gitlab_note_payload(fake_gitlab, PROJECT, IID, "/apply", "alice"))
    server.wait_jobs_idle()
    refusal = fake_gitlab.notes(PROJECT, IID)[-1]["body"]
    assert "Apply refused" in refusal and "needs 1 approval" in refusal, refusal
    assert not state.exists()

    fake_gitlab.approve(PROJECT, IID, "bob")
    fake_gitlab.set_access(PROJECT, "bob", 30)  # a Developer: only approvals by writers count
    _deliver(server, NOTE_HOOK, gitlab_note_payload(fake_gitlab, PROJECT, IID, "/apply", "alice"))
    server.wait_jobs_idle()
    applies = _notes(fake_gitlab, "**Plankeeper apply**")
    assert len(applies) == 1 and APPLY_SUMMARY in applies[0]["body"], server.log()
    assert _states(fake_gitlab, head, "plankeeper/apply") == ["pending", "success"]
    assert _state_resources(state) == ["terraform_data.x"]
    commands = [n for n in _notes(fake_gitlab, "/apply") if n["author"] == "alice"]
    assert [n["award_emoji"] for n in commands] == [["eyes"], ["eyes"]]
    assert _get(server, "/api/locks"), "the lock is held until the merge request is merged"

    notes_before_merge = len(fake_gitlab.notes(PROJECT, IID))
    _merge(fake_gitlab, git_repo)
    _deliver(server, MR_HOOK, gitlab_mr_payload("merge", fake_gitlab, PROJECT, IID))
    server.wait_jobs_idle()
    assert _get(server, "/api/locks") == []
    assert len(fake_gitlab.notes(PROJECT, IID)) == notes_before_merge  # apply_on_merge is off


def test_merge_to_deploy_applies_on_the_merge_commit(fake_gitlab, git_repo, gitlab_serve_factory,
                                                     tmp_path):
    state = tmp_path / "state" / "terraform.tfstate"
    _open_mr(fake_gitlab, git_repo, {"infra/app/main.tf": _main_tf(state)})
    server = gitlab_serve_factory({"defaults": {"apply_on_merge": True}})
    _deliver(server, MR_HOOK, gitlab_mr_payload("open", fake_gitlab, PROJECT, IID))
    server.wait_jobs_idle()
    assert len(_notes(fake_gitlab, "**Plankeeper plan**")) == 1, server.log()
    fake_gitlab.approve(PROJECT, IID, "bob")  # apply_requirements (approved) must hold at the merge
    fake_gitlab.set_access(PROJECT, "bob", 30)

    merge_sha = _merge(fake_gitlab, git_repo)
    _deliver(server, MR_HOOK, gitlab_mr_payload("merge", fake_gitlab, PROJECT, IID))
    server.wait_jobs_idle()
    applies = _notes(fake_gitlab, "**Plankeeper apply**")
    assert len(applies) == 1, server.log()
    assert merge_sha[:7] in applies[0]["body"] and APPLY_SUMMARY in applies[0]["body"]
    assert _states(fake_gitlab, merge_sha, "plankeeper/apply")[0] == "pending"
    assert _states(fake_gitlab, merge_sha, "plankeeper/apply")[-1] == "success"
    assert _state_resources(state) == ["terraform_data.x"]
    assert _get(server, "/api/locks") == []


def test_wrong_token_is_refused_and_nothing_is_queued(fake_gitlab, git_repo, gitlab_serve_factory):
    _open_mr(fake_gitlab, git_repo, {"infra/app/main.tf": tf_data()})
    server = gitlab_serve_factory()
    payload = gitlab_mr_payload("open", fake_gitlab, PROJECT, IID)
    for token in ("wrong-token", None):
        answer = deliver_gitlab(server, MR_HOOK, payload, token, event_uuid="delivery-1")
        assert answer.status_code == 401, answer.text
        assert "X-Gitlab-Token" in answer.json()["error"]
    assert _get(server, "/api/jobs?limit=200") == []
    assert fake_gitlab.requests == []
    # a refused delivery is not remembered: GitLab's retry with the right token is queued, once
    first = deliver_gitlab(server, MR_HOOK, payload, GITLAB_WEBHOOK_SECRET, "delivery-1")
    assert first.status_code == 202, first.text
    again = deliver_gitlab(server, MR_HOOK, payload, GITLAB_WEBHOOK_SECRET, "delivery-1")
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate", again.text
    assert len(_event_jobs(server.wait_jobs_idle())) == 1
    assert len(_notes(fake_gitlab, "**Plankeeper plan**")) == 1, server.log()


def test_approval_applies_when_apply_on_approval(fake_gitlab, git_repo, gitlab_serve_factory,
                                                 tmp_path):
    state = tmp_path / "state" / "terraform.tfstate"
    _open_mr(fake_gitlab, git_repo, {"infra/app/main.tf": _main_tf(state)})
    server = gitlab_serve_factory({"defaults": {"apply_on_approval": True}})
    _deliver(server, MR_HOOK, gitlab_mr_payload("open", fake_gitlab, PROJECT, IID))
    server.wait_jobs_idle()
    fake_gitlab.approve(PROJECT, IID, "bob")
    fake_gitlab.set_access(PROJECT, "bob", 30)  # Developer: a reader's approval applies nothing
    approved = gitlab_mr_payload("approved", fake_gitlab, PROJECT, IID, user="bob")
    _deliver(server, MR_HOOK, approved)
    server.wait_jobs_idle()
    applies = _notes(fake_gitlab, "**Plankeeper apply**")
    assert len(applies) == 1 and APPLY_SUMMARY in applies[0]["body"], server.log()
    assert _state_resources(state) == ["terraform_data.x"]


@pytest.mark.parametrize("allow_fork_prs", [False, True])
def test_merge_request_from_a_fork_is_planned_only_when_allowed(fake_gitlab, git_repo,
                                                               gitlab_serve_factory, tmp_path,
                                                               allow_fork_prs):
    fork = GitRepo(tmp_path, name="fork")
    head = _open_mr(fake_gitlab, git_repo, {"infra/app/main.tf": tf_data()}, fork=fork)
    server = gitlab_serve_factory({"allow_fork_prs": allow_fork_prs})
    _deliver(server, MR_HOOK, gitlab_mr_payload("open", fake_gitlab, PROJECT, IID))
    server.wait_jobs_idle()
    plans = _notes(fake_gitlab, "**Plankeeper plan**")
    if allow_fork_prs:
        assert len(plans) == 1 and PLAN_SUMMARY in plans[0]["body"], server.log()
        assert _states(fake_gitlab, head, "plankeeper/plan") == ["pending", "success"]
    else:
        assert plans == [] and _get(server, "/api/locks") == []
        assert any("allow_fork_prs" in n["body"] for n in fake_gitlab.notes(PROJECT, IID))
        assert _states(fake_gitlab, head, "plankeeper/plan") == []


def test_a_merge_request_is_written_with_a_bang_in_every_message(fake_gitlab, git_repo, gitlab_serve_factory):
    """GitLab's vocabulary: `!1`, never `#1` (SPEC §8): the lock holder named to another merge
    request and to its `/apply`."""
    _open_mr(fake_gitlab, git_repo, {"infra/app/main.tf": tf_data()})
    head = git_repo.commit({"infra/app/main.tf": tf_data(value="rival")}, "rival", branch="feature-2")
    git_repo.git("push", "-q", "origin", f"{head}:refs/merge-requests/2/head")
    git_repo.checkout("main")
    fake_gitlab.add_mr(PROJECT, 2, head, "feature-2", "main", "bob", files=["infra/app/main.tf"],
                       base_sha=fake_gitlab.mr(PROJECT, IID)["diff_refs"]["base_sha"])
    fake_gitlab.set_access(PROJECT, "bob", 30)
    server = gitlab_serve_factory({"defaults": {"apply_requirements": []}})
    _deliver(server, MR_HOOK, gitlab_mr_payload("open", fake_gitlab, PROJECT, IID))
    server.wait_jobs_idle()
    _deliver(server, MR_HOOK, gitlab_mr_payload("open", fake_gitlab, PROJECT, 2, user="bob"))
    server.wait_jobs_idle()
    _deliver(server, NOTE_HOOK, gitlab_note_payload(fake_gitlab, PROJECT, 2, "/apply", "bob"))
    server.wait_jobs_idle()
    mine = [n["body"] for n in fake_gitlab.notes(PROJECT, 2) if n["author"] == BOT_LOGIN]
    locked = next(b for b in mine if "**Plankeeper plan**" in b)
    assert "locked by [!1](https://gitlab.example.com/acme/infra/-/merge_requests/1)" in locked, locked
    assert all("#1" not in b for b in mine), mine
