"""bot/dispatch.py, as an attacker would try it: replayed and forged comments, commands on
closed pull requests, readers' approvals, approvals of an older commit, `/plan -- ARGS`."""
from __future__ import annotations

from bot import dispatch
from bot.models import CheckRunEvent, CommentEvent, ReviewEvent
from bot.settings import ProjectDefaults
from bot.state import artifacts, audit
from tests.support_jobs import FULL

KEY = "infra/app::default"


def test_a_replayed_command_runs_once_whatever_the_delivery_id(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    comment_id = bench.fake.add_comment(FULL, 7, "/unlock", "alice")
    first = CommentEvent("delivery-1", bench.repo, 7, str(comment_id), "/unlock", "alice")
    replay = CommentEvent("delivery-2", bench.repo, 7, str(comment_id), "/unlock", "alice")
    with bench.job("job-1") as ctx:
        assert dispatch.handle(ctx, first).startswith("unlocked")
    replies = len(bench.bot_comments())
    with bench.job("job-2") as ctx:
        assert dispatch.handle(ctx, replay) == f"ignored: comment {comment_id} was already acted on"
    assert len(bench.bot_comments()) == replies
    [ignored] = audit.entries(bench.redis, filters={"action": "command_ignored"})
    assert "already acted on" in ignored["result"]


def test_a_comment_that_differs_on_the_forge_or_is_gone_is_not_run(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    comment_id = bench.fake.add_comment(FULL, 7, "looks good", "alice")
    forged_body = CommentEvent("d1", bench.repo, 7, str(comment_id), "/apply", "alice")
    forged_author = CommentEvent("d2", bench.repo, 7, str(comment_id), "looks good", "mallory")
    missing = CommentEvent("d3", bench.repo, 7, "999999", "/apply", "alice")
    with bench.job() as ctx:
        assert dispatch.handle(ctx, forged_body) == f"ignored: comment {comment_id} differs on the forge from the delivered one"
        assert dispatch.handle(ctx, missing) == "ignored: comment 999999 no longer exists"
        assert dispatch.handle(ctx, forged_author) == "ignored: not a command"
    assert bench.bot_comments() == []


def test_commands_on_a_closed_pull_request_are_refused_with_a_reply(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.fake.set_state(FULL, 7, closed=True)
    assert bench.comment("/plan", "alice") == "refused: plan refused"
    assert "This pull request is closed" in bench.last_comment()
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []


def test_plan_with_extra_arguments_needs_write_access(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    bench.fake.set_permission(FULL, "reader", "read")
    assert bench.comment("/plan -- -refresh=false", "reader") == "refused: plan refused"
    assert "needs write permission" in bench.last_comment()
    assert bench.comment("/plan", "reader").startswith("planning 1 project(s)")


def _planned(bench) -> None:
    bench.open_pull()
    assert bench.comment("/plan", "alice").startswith("planning")
    bench.work()
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None


def test_an_approval_by_a_reader_applies_nothing(bench_factory) -> None:
    bench = bench_factory(defaults=ProjectDefaults(apply_on_approval=True, apply_requirements=("approved",)))
    _planned(bench)
    bench.fake.set_permission(FULL, "reader", "read")
    bench.fake.add_review(FULL, 7, "reader")
    with bench.job("job-r") as ctx:
        summary = dispatch.handle(ctx, ReviewEvent("d-r", bench.pull(), "reader", "approved", "r-1", bench.pull().head_sha))
    assert summary == "ignored: approval by @reader, who may not apply"
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None
    [refused] = audit.entries(bench.redis, filters={"action": "apply_refused"})
    assert refused["user"] == "reader" and "write permission" in refused["result"]
    # a writer who is not the author, approving through /apply, finds no approval from the reader
    assert bench.comment("/apply", "alice") == "refused: Apply refused"
    assert "needs 1 approval, has 0" in bench.last_comment()


def test_an_approval_of_an_older_commit_or_replayed_applies_nothing(bench_factory) -> None:
    bench = bench_factory(defaults=ProjectDefaults(apply_on_approval=True, apply_requirements=("approved",)))
    _planned(bench)
    bench.fake.set_permission(FULL, "bob", "write")
    head = bench.pull().head_sha
    older = "0" * 40
    with bench.job("job-o") as ctx:
        stale = dispatch.handle(ctx, ReviewEvent("d-o", bench.pull(), "bob", "approved", "r-old", older))
    assert stale == f"ignored: the approval is of {older[:7]}, the head is {head[:7]}"
    bench.fake.add_review(FULL, 7, "bob", commit_id=older)  # on GitHub, too: it approves another commit
    assert bench.comment("/apply", "alice") == "refused: Apply refused"
    bench.fake.add_review(FULL, 7, "bob")
    event = ReviewEvent("d-1", bench.pull(), "bob", "approved", "r-2", head)
    with bench.job("job-a") as ctx:
        assert dispatch.handle(ctx, event).startswith("applying 1 project(s)")
    with bench.job("job-b") as ctx:
        assert dispatch.handle(ctx, ReviewEvent("d-2", bench.pull(), "bob", "approved", "r-2", head)) == \
            "ignored: approval r-2 was already acted on"


# ---------------------------------------------------------------- buttons on check runs


def _click(bench, command: str, sender: str, check_id: str = "check_run:5", head: str = "") -> str:
    event = CheckRunEvent(f"d-{check_id}-{sender}", bench.repo, 7, head or bench.pull().head_sha, command, sender,
                          check_id)
    with bench.job(f"job-{command}-{sender}") as ctx:
        return dispatch.handle(ctx, event)


def test_the_apply_button_is_apply_by_the_clicker_once(bench_factory) -> None:
    bench = bench_factory(defaults=ProjectDefaults(apply_requirements=()))
    _planned(bench)
    bench.fake.set_permission(FULL, "reader", "read")
    assert _click(bench, "apply", "reader") == "refused: apply refused"
    assert "@reader cannot `/apply` here: it needs write permission" in bench.last_comment()
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None
    assert _click(bench, "apply", "alice").startswith("applying 1 project(s)")
    clicks = audit.entries(bench.redis, filters={"action": "command"})
    assert [(e["user"], e["detail"]) for e in clicks[:2]] == [
        ("alice", "/apply (Apply button of check_run:5)"), ("reader", "/apply (Apply button of check_run:5)")]
    replies = len(bench.bot_comments())
    assert _click(bench, "apply", "alice") == "ignored: check_run:5 Apply by @alice was already acted on"
    assert len(bench.bot_comments()) == replies


def test_the_apply_button_of_an_older_commit_is_refused(bench_factory) -> None:
    bench = bench_factory(defaults=ProjectDefaults(apply_requirements=()))
    _planned(bench)
    head = bench.pull().head_sha
    assert _click(bench, "apply", "alice", head="0" * 40) == "refused: the check run is not on the head"
    assert f"Apply on the check run of 0000000, but the head is now {head[:7]}" in bench.last_comment()
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None


def test_rerun_plans_again_as_the_clicker(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    assert _click(bench, "plan", "alice", "check_suite:9").startswith("planning 1 project(s)")
    bench.work()
    assert _click(bench, "plan", "alice", "check_suite:9").startswith("planning 1 project(s)")  # re-run re-runs
    bench.work()
    assert _click(bench, "plan", "alice", head="0" * 40).startswith("ignored: Re-run of 0000000")
