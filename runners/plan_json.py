"""Reading `terraform show -json`: the changes a plan makes, their values in canonical form
(what merge-to-deploy compares), and drift (changes made outside Terraform)."""
from __future__ import annotations

import hashlib
import json
from typing import Optional, Sequence

from runners.models import ResourceChange


def _action(actions: Sequence[str]) -> Optional[str]:
    kinds = set(actions)
    if kinds == {"delete", "create"}:
        return "replace"
    if kinds <= {"no-op"}:
        return None
    return actions[0] if len(actions) == 1 else "-".join(actions)


def _changed(entries: Optional[Sequence[dict]]) -> list[tuple[dict, str]]:
    """(entry, action) of each entry that changes something (no-ops left out), in order."""
    found = []
    for rc in entries or ():
        action = _action(rc.get("change", {}).get("actions", []))
        if action:
            found.append((rc, action))
    return found


def _changes(entries: Sequence[dict]) -> list[ResourceChange]:
    return [ResourceChange(address=rc.get("address", "?"), action=action, digest=values_digest(_values(rc)))
            for rc, action in _changed(entries)]


def resource_changes(plan_json: dict) -> list[ResourceChange]:
    """Resources the plan changes (no-ops left out), in Terraform's order, each with the digest
    of its values."""
    return _changes(plan_json.get("resource_changes", []))


# A change's values in canonical form: what merge-to-deploy compares attribute by attribute.
# Unknown ("known after apply") and sensitive values become markers, a sensitive one keeping
# only the SHA-256 of its value, so the form can be stored and shown without the secret.
MARKER = "__plankeeper__"
UNKNOWN = {MARKER: "unknown"}


def change_values(plan_json: dict) -> list[dict]:
    """{"before": ..., "after": ...} of each change resource_changes(plan_json) lists, in the
    same order, in canonical form (see values_digest)."""
    return [_values(rc) for rc, _ in _changed(plan_json.get("resource_changes", []))]


def values_digest(values: dict) -> str:
    """SHA-256 of canonical values: equal digests mean equal before and after values."""
    return hashlib.sha256(_canonical_json(values).encode()).hexdigest()


def sensitive_marker(value: object) -> dict:
    return {MARKER: "sensitive", "sha256": hashlib.sha256(_canonical_json(value).encode()).hexdigest()}


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _values(rc: dict) -> dict:
    change = rc.get("change") or {}
    return {"before": _canonical(change.get("before"), None, change.get("before_sensitive")),
            "after": _canonical(change.get("after"), change.get("after_unknown"), change.get("after_sensitive"))}


def _has_unknown(unknown: object) -> bool:
    if unknown is True:
        return True
    if isinstance(unknown, dict):
        return any(_has_unknown(v) for v in unknown.values())
    if isinstance(unknown, list):
        return any(_has_unknown(v) for v in unknown)
    return False


def _canonical(value: object, unknown: object, sensitive: object) -> object:
    """value with its unknown leaves (after_unknown: true) as UNKNOWN and its sensitive ones
    (before_/after_sensitive: true) as sensitive_marker; Terraform leaves unknown attributes
    out of `after`, they come back here as UNKNOWN."""
    if unknown is True:
        return UNKNOWN
    if sensitive is True:
        return sensitive_marker(value)
    if isinstance(value, dict) or (value is None and isinstance(unknown, dict) and _has_unknown(unknown)):
        known = value if isinstance(value, dict) else {}
        unknowns = unknown if isinstance(unknown, dict) else {}
        secrets = sensitive if isinstance(sensitive, dict) else {}
        names = set(known) | {k for k, v in unknowns.items() if _has_unknown(v)}
        return {k: _canonical(known.get(k), unknowns.get(k), secrets.get(k)) for k in sorted(names)}
    if isinstance(value, list):
        unknowns = unknown if isinstance(unknown, list) else []
        secrets = sensitive if isinstance(sensitive, list) else []
        return [_canonical(value[i] if i < len(value) else None, unknowns[i] if i < len(unknowns) else None,
                           secrets[i] if i < len(secrets) else None) for i in range(max(len(value), len(unknowns)))]
    return value


def drift_changes(plan_json: dict) -> list[ResourceChange]:
    """Resources that changed outside Terraform since the last apply ("resource_drift")."""
    return _changes(plan_json.get("resource_drift", []))
