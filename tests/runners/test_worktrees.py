"""runners/worktrees.py against real git repositories: one kept tree per pull request, updated
in place, leased by one job at a time, never given to another pull request, removed on close
and past the limits."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from runners.git import RepoCache
from runners.incremental_init import InitRecord
from runners.worktrees import TreeLimits, WorkTrees, shared_git_dir
from tests.support import GitRepo

REPO = "github.com/acme/infra"
FILES = {f"stacks/s{i:02d}/main.tf": f"# stack {i}\n" for i in range(40)}


class Lab:
    def __init__(self, tmp_path: Path, limits: TreeLimits | None = None):
        self.tmp = tmp_path
        self.git = GitRepo(tmp_path / "git")
        self.head = self.git.commit({**FILES, "README.md": "hello\n"}, "initial")
        self.trees = WorkTrees(tmp_path / "trees", RepoCache(tmp_path / "cache", {"PATH": "/usr/bin:/bin"}),
                               limits or TreeLimits())
        self.jobs = 0

    def job_dir(self) -> Path:
        self.jobs += 1
        work = self.tmp / "work" / f"job{self.jobs}"
        work.mkdir(parents=True)
        return work / "repo"

    def checkout(self, key: str = "pull-7", sha: str = "", repo: str = REPO, release: bool = True):
        lease = self.trees.lease(repo, key, self.job_dir())
        assert lease is not None
        self.trees.check_out(lease, self.git.clone_url, sha or self.head)
        lease.ready = True
        if release:
            self.trees.release(lease)
        return lease

    def kept_tree(self, key: str = "pull-7", repo: str = REPO) -> Path:
        return self.trees.slot(repo, key) / "tree"


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def stamps(root: Path) -> dict[str, tuple[int, int]]:
    """inode and modification time of every file of the checkout (not .git)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_second_checkout_writes_only_the_changed_files(lab):
    first = lab.checkout()
    assert not first.reused
    before = stamps(lab.kept_tree())
    time.sleep(0.01)  # a rewritten file would get a later mtime
    head = lab.git.commit({"stacks/s01/main.tf": "# changed\n", "stacks/s02/main.tf": None,
                           "stacks/new/main.tf": "# new\n"}, "change")
    second = lab.checkout(sha=head, release=False)
    assert second.reused
    after = stamps(second.tree)
    unchanged = set(before) - {"stacks/s01/main.tf", "stacks/s02/main.tf"}
    assert {f: after[f] for f in unchanged} == {f: before[f] for f in unchanged}  # not written again
    assert after["stacks/s01/main.tf"] != before["stacks/s01/main.tf"]
    assert (second.tree / "stacks/s01/main.tf").read_text() == "# changed\n"
    assert not (second.tree / "stacks/s02").exists() and (second.tree / "stacks/new/main.tf").exists()
    rev = subprocess.run(["git", "rev-parse", "HEAD", "origin/main"], cwd=second.tree, capture_output=True,
                         text=True, check=True).stdout.split()
    assert rev == [head, head]  # git works where the tree was moved, and knows origin/ as a clone does


def test_untracked_files_go_but_recorded_terraform_dirs_stay(lab):
    lease = lab.checkout(release=False)
    for rel in ("stacks/s01/.terraform/modules/modules.json", "stacks/s01/.terraform.lock.hcl",
                "stacks/s03/.terraform/providers/p", "stacks/s04/junk.txt", "stacks/s05/.terraform.lock.hcl"):
        (lease.tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (lease.tree / rel).write_text("x")
    lease.records.put("stacks/s01", InitRecord(({"lock": "x"},)))  # an init of ours made stacks/s01/.terraform
    lab.trees.release(lease)
    again = lab.checkout(release=False)
    assert again.kept == ("stacks/s01",)
    assert (again.tree / "stacks/s01/.terraform/modules/modules.json").exists()
    assert (again.tree / "stacks/s01/.terraform.lock.hcl").exists()
    for gone in ("stacks/s03/.terraform", "stacks/s04/junk.txt", "stacks/s05/.terraform.lock.hcl"):
        assert not (again.tree / gone).exists(), gone


def test_a_terraform_dir_the_commit_brings_is_not_kept(lab):
    lease = lab.checkout(release=False)
    (lease.tree / "stacks/s01/.terraform").mkdir()
    lease.records.put("stacks/s01", InitRecord(({"lock": "x"},)))
    lease.records.put("stacks/s02", InitRecord(({"lock": "x"},)))
    (lease.tree / "stacks/s02/.terraform").symlink_to("/etc")  # what a plan could leave behind
    lab.trees.release(lease)
    head = lab.git.commit({"stacks/s01/.terraform/providers/evil": "#!/bin/sh\n"}, "bring a provider")
    again = lab.checkout(sha=head, release=False)
    assert again.kept == () and again.records.kept_dirs() == []  # init decides anew for both
    assert not os.path.lexists(again.tree / "stacks/s02/.terraform")  # else the checkout would be refused
    assert (again.tree / "stacks/s01/.terraform/providers/evil").exists()  # init removes what came with it


def test_a_busy_tree_is_not_shared(lab):
    holder = lab.checkout(release=False)
    assert lab.trees.lease(REPO, "pull-7", lab.job_dir()) is None  # the caller checks out afresh
    lab.trees.release(holder)
    assert lab.checkout().reused


def test_another_pull_request_or_repository_never_gets_the_tree(lab):
    lease = lab.checkout(release=False)
    (lease.tree / "planted.sh").write_text("echo from pull request 7\n")
    lab.trees.release(lease)
    for key, repo in (("pull-8", REPO), ("pull-7", "github.com/acme/other")):
        other = lab.checkout(key=key, repo=repo, release=False)
        assert not other.reused and not (other.tree / "planted.sh").exists()
        assert other.slot != lease.slot
        lab.trees.release(other)
    assert not (lab.kept_tree() / "planted.sh").exists()  # removed when 7's job gave its tree back


def test_what_a_job_left_is_removed_when_it_gives_the_tree_back(lab):
    lease = lab.checkout(release=False)
    (lease.tree / "stacks/s01/leftover.txt").write_text("from the plan\n")
    lab.trees.release(lease)
    assert not (lab.kept_tree() / "stacks/s01/leftover.txt").exists()
    assert json.loads((lease.slot / "meta.json").read_text())["cleaned"] is True  # the next checkout needs no clean
    again = lab.checkout(release=False)
    assert again.reused and json.loads((again.slot / "meta.json").read_text())["cleaned"] is False  # in use now


def test_closing_removes_the_tree_and_gits_record_of_it(lab):
    lab.checkout()
    mirror = next((lab.tmp / "cache").glob("*.git"))
    assert list((mirror / "worktrees").iterdir())
    assert lab.trees.remove(REPO, "pull-7")
    assert not lab.trees.slot(REPO, "pull-7").exists() and not list((mirror / "worktrees").iterdir())
    assert not lab.checkout().reused


def test_closing_while_a_job_has_the_tree_drops_it_at_release(lab):
    lease = lab.checkout(release=False)
    assert not lab.trees.remove(REPO, "pull-7")
    lab.trees.release(lease)
    assert not lab.kept_tree().exists()
    assert not lab.checkout().reused  # reopened: a fresh tree


def test_an_unfinished_checkout_is_not_kept(lab):
    lease = lab.trees.lease(REPO, "pull-7", lab.job_dir())
    lab.trees.check_out(lease, lab.git.clone_url, lab.head)
    lab.trees.release(lease)  # never marked ready (e.g. refused for a symlink out)
    assert not lab.kept_tree().exists()


def test_least_recently_used_trees_go_past_the_limits(tmp_path):
    lab = Lab(tmp_path, TreeLimits(max_trees=2))
    for number in (1, 2, 3):
        lab.checkout(key=f"pull-{number}")
    assert not lab.kept_tree("pull-1").exists()
    assert lab.kept_tree("pull-2").exists() and lab.kept_tree("pull-3").exists()
    meta = lab.trees.slot(REPO, "pull-2") / "meta.json"
    data = json.loads(meta.read_text())
    assert data["size"] > 0
    meta.write_text(json.dumps(dict(data, used_at=time.time() - 15 * 86400)))  # unused for 15 days
    assert lab.trees.prune() == [lab.trees.slot(REPO, "pull-2")]


def test_the_size_limit(tmp_path):
    lab = Lab(tmp_path, TreeLimits(max_bytes=1))
    lab.checkout()
    assert not lab.kept_tree().exists()


def test_shared_git_dir_is_the_mirror(lab, tmp_path):
    lease = lab.checkout(release=False)
    assert shared_git_dir(lease.tree) == next((tmp_path / "cache").glob("*.git"))
    clone = tmp_path / "clone"
    lab.trees.cache.checkout(lab.git.clone_url, lab.head, clone)
    assert shared_git_dir(clone) is None
    os.chmod(lease.tree / "stacks", 0o500)  # a job made a directory unwritable: still removed
    lab.trees.remove(REPO, "pull-7")
    lab.trees.release(lease)
    assert not lease.tree.exists()
