"""The pages write a GitLab merge request `!N` and a GitHub pull request `#N` (SPEC §8)."""
from __future__ import annotations

from bot.state import audit, locks


def test_locks_and_audit_entries_name_merge_requests_with_a_bang(make_client, redis_server) -> None:
    client = make_client()  # read-only: the unlock page explains, and still names the holder
    locks.try_lock(redis_server, locks.new_lock("gitlab.com/acme/infra", "app::default", 3, "", "bob"))
    locks.try_lock(redis_server, locks.new_lock("github.com/acme/infra", "app::default", 7, "", "alice"))
    audit.record(redis_server, "command", user="bob", repo="gitlab.com/acme/infra", pull=3, commit="a" * 40)
    overview = client.get("/").get_data(as_text=True)
    assert "!3" in overview and "#7" in overview and "#3" not in overview
    assert "!3" in client.get("/audit").get_data(as_text=True)
    page = client.get("/locks/unlock?repo=gitlab.com/acme/infra&project=app::default").get_data(as_text=True)
    assert "!3" in page and "#3" not in page
