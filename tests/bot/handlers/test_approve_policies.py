"""bot/handlers/approve_policies.py: the handler's path only; bot.policies is covered by
tests/bot/test_policies.py (failed sets, owners, approvals)."""
from __future__ import annotations

from bot.state import audit


def test_approve_policies_with_nothing_waiting(bench_factory) -> None:
    bench = bench_factory()
    bench.open_pull()
    assert bench.comment("/approve_policies", "alice") == "nothing approved"
    assert bench.last_comment() == ("**Plankeeper approve_policies**\n\n"
                                    "No failed policy check waits for approval on the current plans.\n")
    assert audit.entries(bench.redis, filters={"action": "approve_policies"}) == []
