"""runners/git.py against real local repositories."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runners import git as git_module
from runners.git import GitError, MergeConflict, RepoCache, strip_credentials

PARENT = {"PATH": "/usr/bin:/bin"}


def mirrors(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.git"))


def test_checkout_exact_sha_detached(tmp_path: Path, upstream, commit, gitrun) -> None:
    work, bare = upstream
    first = gitrun(work, "rev-parse", "HEAD")
    second = commit(work, {"infra/main.tf": "# v2\n"})
    gitrun(work, "push", "-q", "origin", "main")
    cache = RepoCache(tmp_path / "cache", PARENT)
    dest = tmp_path / "ws1"
    cache.checkout(str(bare), first, dest)
    assert gitrun(dest, "rev-parse", "HEAD") == first
    assert not (dest / "infra").exists()  # the older commit, not the branch tip
    assert (dest / "README.md").read_text() == "hello\n"
    dest2 = tmp_path / "ws2"
    cache.checkout(f"file://{bare}", second, dest2)
    assert (dest2 / "infra" / "main.tf").read_text() == "# v2\n"


def test_checkout_is_detached(tmp_path: Path, upstream, gitrun) -> None:
    work, bare = upstream
    sha = gitrun(work, "rev-parse", "HEAD")
    cache = RepoCache(tmp_path / "cache", PARENT)
    cache.checkout(str(bare), sha, tmp_path / "ws")
    with pytest.raises(Exception):
        gitrun(tmp_path / "ws", "symbolic-ref", "-q", "HEAD")  # no branch: detached


def test_second_checkout_reuses_the_mirror_and_fetches_new_commits(
    tmp_path: Path, upstream, commit, gitrun
) -> None:
    work, bare = upstream
    cache_dir = tmp_path / "cache"
    cache = RepoCache(cache_dir, PARENT)
    cache.checkout(str(bare), gitrun(work, "rev-parse", "HEAD"), tmp_path / "a")
    [mirror] = mirrors(cache_dir)
    marker = mirror / "objects" / "marker"
    marker.write_text("same mirror")
    # a pull request ref, as forges publish them, that no branch points to
    gitrun(work, "checkout", "-q", "-b", "feature")
    pr_sha = commit(work, {"app/main.tf": "# pr\n"})
    gitrun(work, "push", "-q", "origin", "feature:refs/pull/7/head")
    cache.checkout(str(bare), pr_sha, tmp_path / "b", refs=["refs/pull/7/head"])
    assert mirrors(cache_dir) == [mirror] and marker.exists()
    assert gitrun(tmp_path / "b", "rev-parse", "HEAD") == pr_sha
    assert gitrun(mirror, "rev-parse", "refs/pull/7/head") == pr_sha


def test_a_commit_a_small_fetch_left_loose_is_found_without_asking_git(
    tmp_path: Path, upstream, commit, gitrun, monkeypatch
) -> None:
    work, bare = upstream
    cache = RepoCache(tmp_path / "cache", PARENT)
    cache.checkout(str(bare), gitrun(work, "rev-parse", "HEAD"), tmp_path / "a")
    sha = commit(work, {"app/main.tf": "# next\n"})
    gitrun(work, "push", "-q", "origin", "main")

    def asked(*_args):
        raise AssertionError("git cat-file was run for a loose commit")

    monkeypatch.setattr(git_module, "_has_commit", asked)
    cache.checkout(str(bare), sha, tmp_path / "b")
    assert (tmp_path / "b" / "app" / "main.tf").read_text() == "# next\n"
    [mirror] = mirrors(tmp_path / "cache")
    assert git_module._is_loose_object(mirror, sha)
    assert not git_module._is_loose_object(mirror, "../" + sha[3:])  # only an object name is a path here
    assert not git_module._is_loose_object(mirror, sha.upper())


def test_changed_files_uses_merge_base_and_lists_renames(
    tmp_path: Path, upstream, commit, gitrun
) -> None:
    work, bare = upstream
    base = commit(work, {"old/a.tf": "a\n" * 20, "keep/b.tf": "b\n"})
    gitrun(work, "push", "-q", "origin", "main")
    gitrun(work, "checkout", "-q", "-b", "feature")
    (work / "new").mkdir()
    gitrun(work, "mv", "old/a.tf", "new/a.tf")
    gitrun(work, "commit", "-q", "-m", "rename")
    head = commit(work, {"keep/b.tf": "b2\n"})
    gitrun(work, "checkout", "-q", "main")
    main_tip = commit(work, {"unrelated/c.tf": "c\n"})  # only on the base branch
    gitrun(work, "push", "-q", "origin", "main", f"{head}:refs/heads/feature")
    cache = RepoCache(tmp_path / "cache", PARENT)
    dest = tmp_path / "ws"
    cache.checkout(str(bare), head, dest)
    assert cache.changed_files(dest, main_tip, head) == ["keep/b.tf", "new/a.tf", "old/a.tf"]
    assert base != main_tip
    with pytest.raises(GitError, match="deadbeef"):
        cache.changed_files(dest, "deadbeef", head)


def test_unreachable_url_is_a_clear_error(tmp_path: Path) -> None:
    cache = RepoCache(tmp_path / "cache", PARENT)
    url = f"file://{tmp_path}/nowhere.git"
    with pytest.raises(GitError, match="nowhere.git") as err:
        cache.checkout(url, "a" * 40, tmp_path / "ws")
    assert "could not fetch" in str(err.value)


def test_unknown_sha_is_a_clear_error(tmp_path: Path, upstream) -> None:
    _, bare = upstream
    cache = RepoCache(tmp_path / "cache", PARENT)
    with pytest.raises(GitError, match="commit 0123456789abcdef0123456789abcdef01234567 not found"):
        cache.checkout(str(bare), "0123456789abcdef0123456789abcdef01234567", tmp_path / "ws")


def test_credentials_never_reach_disk_or_messages(tmp_path: Path, upstream, gitrun) -> None:
    work, bare = upstream
    sha = gitrun(work, "rev-parse", "HEAD")
    cache_dir = tmp_path / "cache"
    cache = RepoCache(cache_dir, PARENT)
    cache.checkout(f"file://{bare}", sha, tmp_path / "ws", auth=("x-access-token", "s3cr3t-token"))
    for dirpath, _, files in os.walk(tmp_path / "ws"):
        for name in files:
            assert b"s3cr3t" not in (Path(dirpath) / name).read_bytes()
    for dirpath, _, files in os.walk(cache_dir):
        for name in files:
            assert b"s3cr3t" not in (Path(dirpath) / name).read_bytes()
    with pytest.raises(GitError) as err:
        cache.checkout("http://user:s3cr3t-token@127.0.0.1:9/r.git", sha, tmp_path / "ws2")
    assert "s3cr3t" not in str(err.value) and "127.0.0.1:9/r.git" in str(err.value)


def test_strip_credentials() -> None:
    text = "fatal: https://x:tok@github.com/a/b"
    assert strip_credentials(text) == "fatal: https://github.com/a/b"


def test_non_empty_destination_is_refused(tmp_path: Path, upstream, gitrun) -> None:
    work, bare = upstream
    dest = tmp_path / "ws"
    dest.mkdir()
    (dest / "junk").write_text("x")
    sha = gitrun(work, "rev-parse", "HEAD")
    with pytest.raises(GitError, match="not empty"):
        RepoCache(tmp_path / "c", PARENT).checkout(str(bare), sha, dest)


def test_missing_extra_ref_falls_back_to_heads(tmp_path: Path, upstream, gitrun) -> None:
    work, bare = upstream
    sha = gitrun(work, "rev-parse", "HEAD")
    cache = RepoCache(tmp_path / "cache", PARENT)
    cache.checkout(str(bare), sha, tmp_path / "ws", refs=["refs/merge-requests/3/head"])
    assert gitrun(tmp_path / "ws", "rev-parse", "HEAD") == sha


def test_merge_branch_merges_the_base_into_the_detached_head(tmp_path: Path, upstream, commit, gitrun) -> None:
    work, bare = upstream
    gitrun(work, "checkout", "-q", "-b", "feature")
    head = commit(work, {"infra/main.tf": "# head\n"})
    gitrun(work, "push", "-q", "origin", "feature")
    gitrun(work, "checkout", "-q", "main")
    base = commit(work, {"other.txt": "base\n", "README.md": "hello\n"})
    gitrun(work, "push", "-q", "origin", "main")
    cache = RepoCache(tmp_path / "cache", PARENT)
    dest = tmp_path / "ws"
    cache.checkout(str(bare), head, dest)
    assert cache.merge_branch(dest, str(bare), "main", ("bot", "bot@example.com")) == base
    assert (dest / "infra" / "main.tf").read_text() == "# head\n" and (dest / "other.txt").read_text() == "base\n"
    assert gitrun(dest, "log", "-1", "--format=%an <%ae>") == "bot <bot@example.com>"
    with pytest.raises(GitError):
        cache.merge_branch(dest, str(bare), "no-such-branch", ("bot", "bot@example.com"))


def test_merge_branch_conflict_names_the_files_and_leaves_the_head(tmp_path: Path, upstream, commit,
                                                                    gitrun) -> None:
    work, bare = upstream
    gitrun(work, "checkout", "-q", "-b", "feature")
    head = commit(work, {"infra/main.tf": "# head\n"})
    gitrun(work, "checkout", "-q", "main")
    commit(work, {"infra/main.tf": "# base\n"})
    gitrun(work, "push", "-q", "origin", "main", "feature")
    cache = RepoCache(tmp_path / "cache", PARENT)
    dest = tmp_path / "ws"
    cache.checkout(str(bare), head, dest)
    with pytest.raises(MergeConflict) as caught:
        cache.merge_branch(dest, str(bare), "main", ("bot", "bot@example.com"))
    assert caught.value.files == ["infra/main.tf"]
    assert gitrun(dest, "rev-parse", "HEAD") == head and (dest / "infra" / "main.tf").read_text() == "# head\n"


def test_diverged_from_names_the_base_tip_the_head_lacks(tmp_path: Path, upstream, commit, gitrun) -> None:
    work, bare = upstream
    gitrun(work, "checkout", "-q", "-b", "feature")
    head = commit(work, {"infra/main.tf": "# head\n"})
    gitrun(work, "push", "-q", "origin", "feature")
    cache = RepoCache(tmp_path / "cache", PARENT)
    dest = tmp_path / "ws"
    cache.checkout(str(bare), head, dest)
    assert cache.diverged_from(dest, str(bare), "main", head) is None  # main's tip is in the head

    gitrun(work, "checkout", "-q", "main")
    tip = commit(work, {"other.txt": "base moved\n"})
    gitrun(work, "push", "-q", "origin", "main")
    assert cache.diverged_from(dest, str(bare), "main", head) == tip
    with pytest.raises(GitError, match="no-such-branch"):
        cache.diverged_from(dest, str(bare), "no-such-branch", head)


def test_git_gets_the_filtered_environment_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PLANKEEPER_GITHUB__TOKEN", "ghp_probe")  # the worker's own secrets
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # nor does the worker's git setup leak in
    cache = RepoCache(tmp_path / "cache", dict(os.environ))
    out = git_module.run_git(tmp_path, ["-c", "alias.printenv=!env", "printenv"], cache.base_env, "print env")
    assert "ghp_probe" not in out and "GIT_DIR=" not in out
    lines = out.splitlines()
    assert "LC_ALL=C" in lines
    assert any(line.startswith("PATH=") and line.endswith(os.environ["PATH"]) for line in lines)  # git adds its own dir


def test_the_commit_checks_run_without_the_workers_environment(tmp_path: Path, upstream, gitrun, monkeypatch) -> None:
    work, bare = upstream
    head = gitrun(work, "rev-parse", "HEAD")
    cache = RepoCache(tmp_path / "cache", PARENT)
    dest = tmp_path / "ws"
    cache.checkout(str(bare), head, dest)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # a git run with the worker's env looks there
    assert cache.diverged_from(dest, str(bare), "main", head) is None  # merge-base --is-ancestor
    assert cache.revert_plan(dest, head).commits == (head,)  # cat-file -e, merge-base --is-ancestor, rev-list


def test_a_git_that_runs_past_the_timeout_is_killed_with_what_it_started(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(git_module, "FETCH_TIMEOUT", 1)
    marker = tmp_path / "still-running"
    hang = f"sh -c 'sleep 5; touch {marker}'"
    with pytest.raises(GitError, match="longer than 1 s"):
        git_module.run_git(tmp_path, ["-c", f"alias.hang=!{hang}", "hang"], {"PATH": os.environ["PATH"]}, "hang")
    time.sleep(5)
    assert not marker.exists()  # the grandchild shell died with git
