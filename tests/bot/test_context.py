"""bot/context.py: JobContext checkouts use the pull request's kept work tree when they can."""
from __future__ import annotations

import dataclasses

from bot.context import MERGED_DIR, REPO_DIR, tree_key
from bot.handlers.unlock import release_pull_request
from bot.settings import WorkTreeSettings
from bot.state.joblog import read_log


def log_of(ctx) -> str:
    return "\n".join(read_log(ctx.redis, ctx.job_id))


def test_the_next_job_of_a_pull_request_updates_its_tree(bench_factory):
    bench = bench_factory()
    pull = bench.open_pull()
    with bench.job("job-1") as ctx:
        ctx.checkout(pull)
        assert not ctx.trees[REPO_DIR].reused and ctx.init_records(REPO_DIR) is not None
    with bench.job("job-2") as ctx:
        assert ctx.checkout(pull) == REPO_DIR
        assert ctx.trees[REPO_DIR].reused
        assert (ctx.workspace.resolve(REPO_DIR) / "infra/app/main.tf").exists()
        assert "updated the kept work tree of pull-7" in log_of(ctx)


def test_a_second_job_at_the_same_time_checks_out_afresh(bench_factory):
    bench = bench_factory()
    pull = bench.open_pull()
    with bench.job("job-1") as first, bench.job("job-2") as second:
        first.checkout(pull)
        second.checkout(pull)
        assert REPO_DIR not in second.trees and second.init_records(REPO_DIR) is None
        assert (second.workspace.resolve(REPO_DIR) / "infra/app/main.tf").exists()
        assert "in use by another job: checking out afresh" in log_of(second)
    with bench.job("job-3") as ctx:  # the first job gave its tree back
        ctx.checkout(pull)
        assert ctx.trees[REPO_DIR].reused


def test_another_pull_request_gets_a_tree_of_its_own(bench_factory):
    bench = bench_factory()
    seven, eight = bench.open_pull(7), bench.open_pull(8)
    with bench.job("job-1") as ctx:
        ctx.checkout(seven)
        (ctx.workspace.resolve(REPO_DIR) / "planted").write_text("from #7")
    with bench.job("job-2") as ctx:
        ctx.checkout(eight)
        assert not ctx.trees[REPO_DIR].reused
        assert not (ctx.workspace.resolve(REPO_DIR) / "planted").exists()


def test_closing_the_pull_request_removes_its_tree(bench_factory):
    bench = bench_factory()
    pull = bench.open_pull()
    with bench.job("job-1") as ctx:
        ctx.checkout(pull)
        slot = ctx.trees[REPO_DIR].slot
    assert (slot / "tree").is_dir()
    with bench.job("job-2") as ctx:
        release_pull_request(ctx, pull, "closed", "alice")
    assert not slot.exists()


def test_reuse_can_be_turned_off(bench_factory):
    bench = bench_factory(work_trees=WorkTreeSettings(reuse=False))
    pull = bench.open_pull()
    for job in ("job-1", "job-2"):
        with bench.job(job) as ctx:
            ctx.checkout(pull)
            assert ctx.trees == {} and ctx.init_records(REPO_DIR) is None
    assert not (bench.settings.data_dir / "trees").exists()


def test_which_tree_a_checkout_uses(bench_factory):
    pull = bench_factory().open_pull()
    api = dataclasses.replace(pull, number=0, head_ref="refs/heads/main")
    assert tree_key(pull, REPO_DIR) == "pull-7"
    assert tree_key(pull, MERGED_DIR) == "branch-main"  # a deploy of the merge commit: the base branch's
    assert tree_key(api, REPO_DIR) == "branch-main"  # an API run of a branch
    assert tree_key(dataclasses.replace(api, head_ref="a" * 40), REPO_DIR) is None  # of a commit: fresh
    assert tree_key(pull, "base") is None and tree_key(pull, "revert") is None
