"""bot/handlers/help.py: /help [COMMAND] replies with the usage, to anyone who may comment."""
from __future__ import annotations

from bot import commands
from bot.state import audit
from tests.support_jobs import FULL


def test_help_replies_with_the_usage_of_every_command(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    assert bench.comment("/help", "alice") == "replied: help"
    body = bench.last_comment()
    assert body == commands.usage()
    for name in commands.COMMANDS:
        assert f"/{name}" in body
    assert audit.entries(bench.redis, filters={"action": "command"})[0]["detail"] == "/help"


def test_help_on_one_command(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    assert bench.comment("/help apply", "alice") == "replied: help"
    body = bench.last_comment()
    assert body.startswith("Usage of `/apply`:") and "--queue" in body and "/plan [-d DIR]" not in body


def test_help_needs_no_write_permission(fake, bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    fake.set_permission(FULL, "reader", "read")
    assert bench.comment("/help", "reader") == "replied: help"
    assert bench.last_comment() == commands.usage()
    assert bench.comment("/unlock", "reader") == "refused: unlock refused"  # whereas a write command is refused
