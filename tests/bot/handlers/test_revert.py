"""bot/handlers/revert.py: /revert on a merged pull request opens a pull request that reverts it,
through bot.dispatch against the fake GitHub whose repository is a real git repo (pushes land)."""
from __future__ import annotations

import subprocess

from bot import dispatch
from bot.handlers import HANDLERS
from bot.models import PullRequestEvent
from bot.state import audit, reverts
from tests.support import tf_data
from tests.support_jobs import FULL


def branches(bench) -> list[str]:
    out = subprocess.run(["git", "for-each-ref", "--format=%(refname:short)", "refs/heads/"], cwd=bench.git.bare,
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def tree(bench, ref: str) -> dict[str, str]:
    files = bench.git.git("ls-tree", "-r", "--name-only", ref).split()
    return {f: bench.git.git("show", f"{ref}:{f}") for f in files}


def test_revert_of_a_merge_commit_opens_a_pull_request_that_undoes_it(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    merged = bench.merge()
    before = bench.git.git("rev-parse", "main~1")  # main before the merge

    assert bench.comment("/revert", "alice") == "opened #8"

    branch = f"plankeeper/revert-7-{merged.merge_sha[:7]}"
    assert branch in branches(bench)
    bench.git.git("fetch", "-q", "origin", branch)
    assert tree(bench, "FETCH_HEAD") == tree(bench, before)  # the merge undone
    assert bench.git.git("rev-parse", "FETCH_HEAD~1") == merged.merge_sha  # on top of the base head
    message = bench.git.git("log", "-1", "--format=%an|%B", "FETCH_HEAD")
    assert message.startswith("plankeeper-bot|Revert #7: Pull request 7")
    assert f"This reverts commit {merged.merge_sha}." in message

    revert = fake.pull(FULL, 8)
    assert (revert.title, revert.head_ref, revert.base_ref, revert.author) == (
        "Revert #7: Pull request 7", branch, "main", "plankeeper-bot")
    assert revert.body.startswith("Reverts #7\n") and f"merge commit `{merged.merge_sha[:7]}`" in revert.body
    assert "Requested by @alice with `/revert` on #7." in revert.body
    assert [f["filename"] for f in revert.files] == ["infra/app/main.tf"]

    reply = bench.last_comment()
    assert reply.startswith("**Plankeeper revert**: opened [#8](") and f"`{branch}`" in reply
    record = reverts.of_revert_pull(bench.redis, bench.repo.id, 8)
    assert (record.original, record.kind, record.merged_commit, record.commits, record.actor) == (
        7, "merge", merged.merge_sha, (merged.merge_sha,), "alice")
    assert reverts.reverted_by(bench.redis, bench.repo.id, 7) == 8
    [entry] = audit.entries(bench.redis, filters={"action": "revert"})
    assert (entry["user"], entry["pull"], entry["commit"], entry["result"]) == ("alice", "7", merged.merge_sha,
                                                                                "opened #8")


def test_revert_of_a_squash_merge_reverts_the_squashed_commit(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.push_commit({"infra/app/vars.tf": "# more\n"})
    bench.git.checkout("main")
    bench.git.git("merge", "-q", "--squash", "feature")
    bench.git.git("commit", "-q", "-m", "Pull request 7 (#7)")
    squashed = bench.git.git("rev-parse", "HEAD")
    later = bench.git.commit({"docs/notes.md": "later\n"}, "later on main", branch="main")
    bench.git.checkout("feature")
    fake.set_state(FULL, 7, closed=True, merged=True)
    with fake.lock:
        fake.pull(FULL, 7).merge_commit_sha = squashed

    assert bench.comment("/revert", "alice") == "opened #8"

    bench.git.git("fetch", "-q", "origin", f"plankeeper/revert-7-{squashed[:7]}")
    assert sorted(tree(bench, "FETCH_HEAD")) == ["README.md", "docs/notes.md"]  # later work kept
    assert bench.git.git("rev-parse", "FETCH_HEAD~1") == later
    record = reverts.of_revert_pull(bench.redis, bench.repo.id, 8)
    assert (record.kind, record.commits) == ("squash", (squashed,))
    assert f"squashed commit `{squashed[:7]}`" in fake.pull(FULL, 8).body


def test_a_conflicting_revert_names_the_files_and_pushes_nothing(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.merge()
    bench.commit_to_base({"infra/app/main.tf": tf_data("x", "changed again")}, "later change")

    assert bench.comment("/revert", "alice") == "refused: Revert conflicts"

    reply = bench.last_comment()
    assert reply.startswith("**Revert conflicts**") and "- `infra/app/main.tf`" in reply
    assert "Nothing was pushed." in reply
    assert [b for b in branches(bench) if b.startswith("plankeeper/")] == []
    assert set(fake.repos[FULL].pulls) == {7}
    [entry] = audit.entries(bench.redis, filters={"action": "revert"})
    assert entry["result"] == "refused: Revert conflicts"


def test_revert_is_refused_on_an_open_pull_request(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    assert bench.comment("/revert", "alice") == "refused: revert refused"
    assert "#7 is not merged yet" in bench.last_comment()
    assert set(fake.repos[FULL].pulls) == {7}


def test_revert_is_refused_on_a_pull_request_closed_without_merging(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    fake.set_state(FULL, 7, closed=True, merged=False)
    assert bench.comment("/revert", "alice") == "refused: revert refused"
    assert "#7 was closed without being merged" in bench.last_comment()
    # other commands stay refused on a merged or closed pull request
    assert bench.comment("/plan", "alice") == "refused: plan refused"


def test_revert_needs_write_permission(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.merge()
    fake.set_permission(FULL, "mallory", "read")
    assert bench.comment("/revert", "mallory") == "refused: revert refused"
    assert "needs write permission" in bench.last_comment()
    assert set(fake.repos[FULL].pulls) == {7}


def test_a_second_revert_points_at_the_open_one(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.merge()
    assert bench.comment("/revert", "alice") == "opened #8"
    assert bench.comment("/revert", "alice") == "replied: #8 already reverts it"
    assert "#8 already rolls back #7" in bench.last_comment()
    assert set(fake.repos[FULL].pulls) == {7, 8}


def test_the_revert_pull_requests_plan_says_what_it_rolls_back(fake, bench_factory) -> None:
    bench = bench_factory()
    pull = bench.open_pull()
    reverts.record(bench.redis, reverts.Revert(repo=bench.repo.id, original=5, revert=7, merged_commit="abcdef1234",
                                               kind="merge", commits=("abcdef1234",), branch="feature", url="",
                                               actor="alice"))
    with bench.job() as ctx:
        dispatch.handle(ctx, PullRequestEvent("d1", "opened", pull, "alice"))
    bench.work()
    [plan] = [c for c in bench.comments() if c.startswith("**Plankeeper plan**")]
    assert plan.splitlines()[2].startswith("↩️ **Rolls back #5** (`abcdef1`)")


def test_revert_is_registered_with_write_permission() -> None:
    from bot import commands, permissions, settings
    assert HANDLERS["revert"].needs_permission and "revert" in permissions.WRITE_COMMANDS
    assert "revert" in commands.COMMANDS and "revert" in settings.COMMANDS
    assert commands.parse_comment("/revert").name == "revert"
    assert "/revert" in commands.usage() and "Usage of `/revert`" in commands.usage("revert")


def test_the_roll_back_job_opens_the_revert_like_the_command(fake, bench_factory) -> None:
    from bot import queueing
    from bot.state import joblog

    bench = bench_factory()
    bench.open_pull()
    merged = bench.merge()
    job_id = queueing.enqueue_revert(bench.redis, bench.repo, 7, "admin", "dep123", 60)
    bench.work()
    assert joblog.get_job(bench.redis, job_id)["state"] == "succeeded"
    assert joblog.get_job(bench.redis, job_id)["summary"] == "opened #8"
    assert fake.pull(FULL, 8).head_ref == f"plankeeper/revert-7-{merged.merge_sha[:7]}"
    assert "Requested by @admin from the Plankeeper UI." in fake.pull(FULL, 8).body
    assert bench.last_comment().startswith("**Plankeeper revert**: opened [#8](")
    # a refusal (here: one is open already... then a conflict) is replied on the pull request, the job fails
    bench.commit_to_base({"infra/app/main.tf": tf_data("x", "changed again")}, "later change")
    fake.set_state(FULL, 8, closed=True, merged=False)
    failing = queueing.enqueue_revert(bench.redis, bench.repo, 7, "admin", "dep123", 60)
    bench.work()
    assert joblog.get_job(bench.redis, failing)["state"] == "failed"
    assert joblog.get_job(bench.redis, failing)["summary"] == "failed: Revert conflicts"
    assert bench.last_comment().startswith("**Revert conflicts**")
