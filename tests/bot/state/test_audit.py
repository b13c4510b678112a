"""bot/audit.py: an append-only stream, newest first, filtered and paged."""
from __future__ import annotations

import json

import pytest

from bot.state import audit


def test_entries_are_newest_first_and_filterable(redis_db):
    for n in range(5):
        audit.record(redis_db, "apply", user="alice" if n % 2 else "bob", repo="r", pull=n, result="success")
    newest = audit.entries(redis_db, limit=10)
    assert [e["pull"] for e in newest] == ["4", "3", "2", "1", "0"]
    assert [e["pull"] for e in audit.entries(redis_db, filters={"user": "alice"})] == ["3", "1"]


def test_paging_with_before(redis_db):
    for n in range(5):
        audit.record(redis_db, "command", user="u", pull=n)
    first = audit.entries(redis_db, limit=2)
    second = audit.entries(redis_db, limit=2, before=first[-1]["id"])
    assert [e["pull"] for e in first + second] == ["4", "3", "2", "1"]


def test_unknown_fields_are_refused(redis_db):
    with pytest.raises(ValueError):
        audit.record(redis_db, "apply", who="x")


def test_json_lines_export_is_one_object_per_line(redis_db):
    audit.record(redis_db, "apply", user="alice")
    lines = audit.as_json_lines(audit.entries(redis_db)).splitlines()
    assert json.loads(lines[0])["user"] == "alice" and len(lines) == 1
