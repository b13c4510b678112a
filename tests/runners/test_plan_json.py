"""runners/plan_json.py: changes, canonical values and drift read from `terraform show -json`."""
from __future__ import annotations

from runners.models import ResourceChange
from runners.plan_json import (
    UNKNOWN,
    change_values,
    drift_changes,
    resource_changes,
    sensitive_marker,
    values_digest,
)

PLAN_JSON = {
    "resource_changes": [
        {"address": "a.new", "change": {"actions": ["create"]}},
        {"address": "a.same", "change": {"actions": ["no-op"]}},
        {"address": "a.edit", "change": {"actions": ["update"]}},
        {"address": "a.swap", "change": {"actions": ["delete", "create"]}},
        {"address": "a.cbd", "change": {"actions": ["create", "delete"]}},
        {"address": "a.gone", "change": {"actions": ["delete"]}},
        {"address": "data.a.b", "change": {"actions": ["read"]}},
    ],
    "resource_drift": [{"address": "a.edit", "change": {"actions": ["update"]}}],
}


def test_resource_changes_mapping() -> None:
    assert [(c.address, c.action) for c in resource_changes(PLAN_JSON)] == [
        ("a.new", "create"),
        ("a.edit", "update"),
        ("a.swap", "replace"),
        ("a.cbd", "replace"),
        ("a.gone", "delete"),
        ("data.a.b", "read"),
    ]
    assert drift_changes(PLAN_JSON) == [ResourceChange("a.edit", "update")]
    assert resource_changes({}) == [] and drift_changes({}) == []


def _update(after: dict, after_unknown: dict, after_sensitive: dict) -> dict:
    return {"resource_changes": [{"address": "a.x", "change": {
        "actions": ["update"], "before": {"name": "old", "password": "p1", "tags": ["a"]}, "before_sensitive":
        {"password": True}, "after": after, "after_unknown": after_unknown, "after_sensitive": after_sensitive}}]}


def test_change_values_are_canonical_with_unknown_and_sensitive_values_as_markers() -> None:
    plan = _update({"name": "new", "password": "p2", "tags": ["a", None]}, {"id": True, "tags": [False, True]},
                   {"password": True, "tags": [False, False]})
    [values] = change_values(plan)
    assert values == {
        "before": {"name": "old", "password": sensitive_marker("p1"), "tags": ["a"]},
        "after": {"id": UNKNOWN, "name": "new", "password": sensitive_marker("p2"), "tags": ["a", UNKNOWN]},
    }
    assert "p1" not in str(values) and "p2" not in str(values)  # only their hashes
    [change] = resource_changes(plan)
    assert change.digest == values_digest(values) and len(change.digest) == 64
    # no-ops are left out of both, so values stay aligned with the changes
    assert len(change_values(PLAN_JSON)) == len(resource_changes(PLAN_JSON))


def test_the_digest_changes_with_any_value_and_only_with_values() -> None:
    def digest(after: dict, unknown: dict | None = None, sensitive: dict | None = None) -> str:
        sensitive = {"password": True} if sensitive is None else sensitive
        return resource_changes(_update(after, unknown or {}, sensitive))[0].digest

    base = digest({"name": "new", "password": "p2"})
    assert digest({"password": "p2", "name": "new"}) == base  # key order does not matter
    assert digest({"name": "other", "password": "p2"}) != base
    assert digest({"name": "new", "password": "p3"}) != base  # a sensitive value, by its hash
    assert digest({"name": "new", "password": "p2"}, {"id": True}) != base  # a new unknown attribute
    assert digest({"name": "new", "password": "p2"}, sensitive={}) != base  # no longer sensitive
    # equality of ResourceChange ignores the digest (address and action only)
    assert ResourceChange("a.x", "update", digest="1") == ResourceChange("a.x", "update", digest="2")
