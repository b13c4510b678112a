"""The listing calls the sweep for missed webhooks uses (bot.reconcile), on both forges, through
PyGithub and python-gitlab against the fakes (real HTTP): open pull requests, recently merged or
closed ones, a commit's statuses, the comments since a time."""
from __future__ import annotations

import time
from typing import Iterator

import pytest

from bot.forges.github import GitHubForge
from bot.forges.gitlab import GitLabForge
from bot.models import Repo
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab

FULL = "acme/infra"
TOKEN = "ghp_listing-token"
SHA = [f"{n:040x}" for n in range(1, 10)]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=TOKEN) as server:
        server.add_repo(FULL, "https://github.com/acme/infra.git")
        for number in (3, 4, 5, 6):
            server.add_pull(FULL, number, SHA[number], f"feature-{number}", "main", "alice", draft=number == 6)
        yield server


@pytest.fixture
def gh(github: FakeGitHub) -> GitHubForge:
    return GitHubForge(github.api_url, token=TOKEN, bot_login="plankeeper-bot", write_interval=0,
                       sleep=lambda s: None)


GH_REPO = Repo("github", "github.com", FULL, "https://github.com/acme/infra.git")


def test_github_open_and_recently_closed_pull_requests(github: FakeGitHub, gh: GitHubForge) -> None:
    before = time.time() - 1
    github.set_state(FULL, 4, closed=True, merged=True)
    github.set_state(FULL, 5, closed=True)
    opened = gh.open_pull_requests(GH_REPO)
    assert [(p.number, p.state, p.is_draft) for p in opened] == [(3, "open", False), (6, "open", True)]
    assert all(p.updated_at > time.time() - 300 and p.ref == f"#{p.number}" for p in opened)  # set when opened
    closed = {p.number: p for p in gh.recently_closed_pull_requests(GH_REPO, before)}
    assert (closed[4].state, closed[4].merge_sha) == ("merged", github.pull(FULL, 4).merge_commit_sha)
    assert (closed[5].state, closed[5].merge_sha) == ("closed", None)
    assert gh.recently_closed_pull_requests(GH_REPO, time.time() + 5) == []
    # A list item carries no `merged`: reading it must not fetch each pull request again.
    assert not [p for m, p in github.requests if m == "GET" and p.startswith(f"/repos/{FULL}/pulls/")]


def test_github_statuses_latest_per_context_and_check_runs(github: FakeGitHub, gh: GitHubForge) -> None:
    github.add_status(FULL, SHA[3], "plankeeper/plan", "pending", creator="plankeeper-bot")
    github.add_status(FULL, SHA[3], "plankeeper/plan", "success", creator="plankeeper-bot")
    github.add_status(FULL, SHA[3], "ci/test", "error")
    github.add_check_run(FULL, SHA[3], "lint", status="in_progress", conclusion=None)
    assert gh.statuses(GH_REPO, SHA[3]) == {"plankeeper/plan": "success", "ci/test": "failure", "lint": "pending"}
    assert gh.statuses(GH_REPO, SHA[4]) == {}


def test_github_comments_since(github: FakeGitHub, gh: GitHubForge) -> None:
    old = github.add_comment(FULL, 3, "/plan", "alice")
    with github.lock:
        github.all_comments[old].update(created_at="2020-01-01T00:00:00Z", updated_at="2020-01-01T00:00:00Z")
    since = time.time() - 1
    first = github.add_comment(FULL, 3, "/apply", "bob")
    github.add_comment(FULL, 4, "/plan", "alice")  # another pull request
    pull = gh.pull_request(GH_REPO, 3)
    comments = gh.comments_since(pull, since)
    assert [(c.id, c.author, c.body) for c in comments] == [(str(first), "bob", "/apply")]
    assert [c.body for c in gh.comments_since(pull, 0)] == ["/plan", "/apply"]


# ---------------------------------------------------------------------------- GitLab


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


@pytest.fixture
def gl_repo(gitlab: FakeGitLab) -> Repo:
    pid = gitlab.add_project(FULL, "https://gitlab.example.com/acme/infra.git")
    for iid in (3, 4, 5):
        gitlab.add_mr(pid, iid, SHA[iid], f"feature-{iid}", "main", "alice", ["a.tf"], SHA[0])
    return Repo("gitlab", "gitlab.example.com", FULL, "https://gitlab.example.com/acme/infra.git", forge_id=pid)


@pytest.fixture
def gl(gitlab: FakeGitLab) -> GitLabForge:
    return GitLabForge(gitlab.url, gitlab.token, bot_login="plankeeper-bot", sleep=lambda s: None)


def test_gitlab_open_and_recently_closed_merge_requests(gitlab: FakeGitLab, gl: GitLabForge, gl_repo: Repo) -> None:
    before = time.time() - 1
    gitlab.mark_merged(gl_repo.forge_id, 4, SHA[8])
    gitlab.set_state(gl_repo.forge_id, 5, "closed")
    opened = gl.open_pull_requests(gl_repo)
    assert [(p.number, p.state, p.ref) for p in opened] == [(3, "open", "!3")]
    assert opened[0].updated_at >= before
    closed = {p.number: p for p in gl.recently_closed_pull_requests(gl_repo, before)}
    assert (closed[4].state, closed[4].merge_sha, closed[5].state) == ("merged", SHA[8], "closed")
    assert gl.recently_closed_pull_requests(gl_repo, time.time() + 5) == []


def test_gitlab_statuses_latest_per_name(gitlab: FakeGitLab, gl: GitLabForge, gl_repo: Repo) -> None:
    gitlab.set_status(gl_repo.forge_id, SHA[3], "plankeeper/plan", "pending")
    gitlab.set_status(gl_repo.forge_id, SHA[3], "plankeeper/plan", "success")
    gitlab.set_status(gl_repo.forge_id, SHA[3], "ci", "failed")
    gitlab.set_status(gl_repo.forge_id, SHA[3], "manual-job", "skipped")
    assert gl.statuses(gl_repo, SHA[3]) == {"plankeeper/plan": "success", "ci": "failure", "manual-job": "skipped"}


def test_gitlab_comments_since_leave_out_system_notes(gitlab: FakeGitLab, gl: GitLabForge, gl_repo: Repo) -> None:
    old = gitlab.add_note(gl_repo.forge_id, 3, "/plan", "alice")
    note = next(n for n in gitlab.mr(gl_repo.forge_id, 3)["_notes"] if n["id"] == old)
    note.update(created_at="2020-01-01T00:00:00.000Z", updated_at="2020-01-01T00:00:00.000Z")
    since = time.time() - 1
    first = gitlab.add_note(gl_repo.forge_id, 3, "/apply", "bob")
    system = gitlab.add_note(gl_repo.forge_id, 3, "added 1 commit", "alice")
    next(n for n in gitlab.mr(gl_repo.forge_id, 3)["_notes"] if n["id"] == system)["system"] = True
    second = gitlab.add_note(gl_repo.forge_id, 3, "/plan -d x", "carol")
    pull = gl.pull_request(gl_repo, 3)
    comments = gl.comments_since(pull, since)
    assert [(c.id, c.author, c.body) for c in comments] == [(str(first), "bob", "/apply"),
                                                            (str(second), "carol", "/plan -d x")]
    assert len(gl.comments_since(pull, 0)) == 3
