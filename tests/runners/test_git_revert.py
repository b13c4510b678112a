"""RepoCache.revert_plan and revert_and_push (GitOps rollback) against real local repositories."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from runners.git import GitError, NothingToRevert, RepoCache, RevertConflict, RevertPlan

PARENT = {"PATH": "/usr/bin:/bin"}
AUTHOR = ("plankeeper-bot", "plankeeper-bot@users.noreply.example.com")


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "cache", PARENT)


def pull_request(work: Path, gitrun, commit, files_per_commit: list[dict], branch: str = "feature") -> str:
    """Commits on a branch off main, pushed; returns the branch head."""
    gitrun(work, "checkout", "-q", "-b", branch, "main")
    for files in files_per_commit:
        commit(work, files, f"change {sorted(files)}")
    gitrun(work, "push", "-q", "origin", branch)
    gitrun(work, "checkout", "-q", "main")
    return gitrun(work, "rev-parse", branch)


def base_checkout(cache: RepoCache, bare: Path, work: Path, gitrun, dest: Path) -> Path:
    gitrun(work, "push", "-q", "origin", "main")
    cache.checkout(str(bare), gitrun(work, "rev-parse", "main"), dest)
    return dest


def test_merge_commit_is_reverted_against_its_first_parent_and_pushed(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}, {"app/vars.tf": "x\n"}])
    gitrun(work, "merge", "-q", "--no-ff", "-m", "Merge pull request #7", "feature")
    merge = gitrun(work, "rev-parse", "HEAD")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    plan = cache.revert_plan(repo, merge, head)
    assert plan == RevertPlan("merge", (merge,)) and plan.mainline == 1
    pushed = cache.revert_and_push(repo, str(bare), "plankeeper/revert-7-abc", plan, "Revert #7", AUTHOR)
    assert gitrun(bare, "rev-parse", "refs/heads/plankeeper/revert-7-abc") == pushed
    assert gitrun(bare, "rev-parse", f"{pushed}^") == merge  # on top of the base head
    assert gitrun(bare, "ls-tree", "-r", "--name-only", pushed) == "README.md"
    assert gitrun(bare, "log", "-1", "--format=%an <%ae>|%s", pushed) == \
        "plankeeper-bot <plankeeper-bot@users.noreply.example.com>|Revert #7"
    assert gitrun(bare, "rev-parse", "main") == merge  # the base branch itself is untouched


def test_squash_merge_reverts_its_one_commit(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}, {"app/main.tf": "v2\n"}])
    gitrun(work, "merge", "-q", "--squash", "feature")
    gitrun(work, "commit", "-q", "-m", "Add app (#7)")
    squashed = gitrun(work, "rev-parse", "HEAD")
    commit(work, {"other.txt": "later\n"}, "later work on main")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    plan = cache.revert_plan(repo, squashed, head)
    assert plan == RevertPlan("squash", (squashed,)) and plan.mainline is None
    pushed = cache.revert_and_push(repo, str(bare), "revert-sq", plan, "Revert #7", AUTHOR)
    assert sorted(gitrun(bare, "ls-tree", "-r", "--name-only", pushed).split()) == ["README.md", "other.txt"]


def test_rebase_merge_reverts_each_rebased_commit_newest_first(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}, {"app/vars.tf": "x\n"}])
    commit(work, {"other.txt": "main moved\n"}, "main moved")
    gitrun(work, "checkout", "-q", "-b", "rebased", "feature")
    gitrun(work, "rebase", "-q", "main")
    gitrun(work, "checkout", "-q", "main")
    gitrun(work, "merge", "-q", "--ff-only", "rebased")
    tip = gitrun(work, "rev-parse", "HEAD")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    plan = cache.revert_plan(repo, tip, head)
    assert plan.kind == "rebase" and plan.commits == (tip, gitrun(work, "rev-parse", "HEAD~1"))
    pushed = cache.revert_and_push(repo, str(bare), "revert-rb", plan, "Revert #7", AUTHOR)
    assert sorted(gitrun(bare, "ls-tree", "-r", "--name-only", pushed).split()) == ["README.md", "other.txt"]


def test_fast_forward_merge_reverts_the_pull_requests_own_commits(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    base = gitrun(work, "rev-parse", "main")
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}, {"app/vars.tf": "x\n"}])
    gitrun(work, "merge", "-q", "--ff-only", "feature")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    plan = cache.revert_plan(repo, head, head, base)
    assert plan.kind == "fast-forward" and len(plan.commits) == 2 and plan.commits[0] == head
    pushed = cache.revert_and_push(repo, str(bare), "revert-ff", plan, "Revert", AUTHOR)
    assert gitrun(bare, "ls-tree", "-r", "--name-only", pushed) == "README.md"


def test_conflict_names_the_files_and_pushes_nothing(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}])
    gitrun(work, "merge", "-q", "--no-ff", "-m", "Merge #7", "feature")
    merge = gitrun(work, "rev-parse", "HEAD")
    commit(work, {"app/main.tf": "v2 on top\n"}, "someone changed it again")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    with pytest.raises(RevertConflict) as err:
        cache.revert_and_push(repo, str(bare), "revert-x", cache.revert_plan(repo, merge, head), "Revert", AUTHOR)
    assert err.value.files == ("app/main.tf",)
    assert "app/main.tf" in str(err.value)
    assert "revert-x" not in gitrun(bare, "branch", "--list")


def test_nothing_left_to_revert(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}])
    gitrun(work, "merge", "-q", "--no-ff", "-m", "Merge #7", "feature")
    merge = gitrun(work, "rev-parse", "HEAD")
    gitrun(work, "revert", "--no-edit", "-m", "1", "HEAD")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    with pytest.raises(NothingToRevert):
        cache.revert_and_push(repo, str(bare), "revert-y", cache.revert_plan(repo, merge, head), "Revert", AUTHOR)


def test_an_existing_branch_is_never_overwritten(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}])
    gitrun(work, "merge", "-q", "--no-ff", "-m", "Merge #7", "feature")
    merge = gitrun(work, "rev-parse", "HEAD")
    gitrun(work, "push", "-q", "origin", "feature:refs/heads/plankeeper/revert-7")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    with pytest.raises(GitError, match="branch plankeeper/revert-7 already exists"):
        cache.revert_and_push(repo, str(bare), "plankeeper/revert-7", cache.revert_plan(repo, merge, head),
                              "Revert", AUTHOR)
    assert gitrun(bare, "rev-parse", "plankeeper/revert-7") == head


def test_a_commit_not_on_the_base_is_refused(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}])
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    with pytest.raises(GitError, match="not on the base branch"):
        cache.revert_plan(repo, head, head)
    with pytest.raises(GitError, match="not in the repository"):
        cache.revert_plan(repo, "0123456789abcdef0123456789abcdef01234567")


def test_push_credentials_stay_off_disk(tmp_path, cache, upstream, commit, gitrun):
    work, bare = upstream
    head = pull_request(work, gitrun, commit, [{"app/main.tf": "v1\n"}])
    gitrun(work, "merge", "-q", "--no-ff", "-m", "Merge #7", "feature")
    merge = gitrun(work, "rev-parse", "HEAD")
    repo = base_checkout(cache, bare, work, gitrun, tmp_path / "ws")
    cache.revert_and_push(repo, f"file://{bare}", "revert-z", cache.revert_plan(repo, merge, head), "Revert",
                          AUTHOR, auth=("x-access-token", "s3cr3t-token"))
    for root in (repo, tmp_path / "cache"):
        for dirpath, _, files in os.walk(root):
            for name in files:
                assert b"s3cr3t" not in (Path(dirpath) / name).read_bytes()
    other = base_checkout(cache, bare, work, gitrun, tmp_path / "ws2")
    with pytest.raises(GitError) as err:
        cache.revert_and_push(other, "http://user:s3cr3t-token@127.0.0.1:9/r.git", "revert-w",
                              RevertPlan("merge", (merge,)), "Revert", AUTHOR)
    assert "s3cr3t" not in str(err.value)
