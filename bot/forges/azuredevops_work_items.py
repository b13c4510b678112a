"""Drift reports as Azure DevOps work items of a configurable type (Issue by default; Bug, Task...).

Work item descriptions are HTML: the report (Markdown, with Terraform's output) goes in escaped,
in a <pre>, so it reads as written and nothing in it is taken as markup. States differ between
processes (Basic: To Do/Done, Agile: Active/Closed...), so they are chosen by their category: a
report is (re)opened in the type's first "Proposed" state and closed in its first "Completed" one.

Every function here makes SDK calls and runs inside `Sdk.call` (the caller's retry and error).
"""
from __future__ import annotations

import html
from typing import Any

from azure.devops.v7_0.work_item_tracking.models import JsonPatchOperation

from bot.errors import ForgeError
from bot.forges.azuredevops_sdk import Sdk

OPEN_CATEGORY, CLOSED_CATEGORIES = "Proposed", ("Completed", "Removed")


class WorkItems:
    def __init__(self, sdk: Sdk, work_item_type: str):
        self._sdk = sdk
        self.type = work_item_type

    def write(self, project: str, title: str, body: str, work_item_id: str | None) -> str:
        """Update (and reopen) work item work_item_id, or open a new one when unset or gone."""
        fields = {"System.Title": title, "System.Description": as_html(body)}
        existing = self._find(project, work_item_id)
        if existing is None:
            created = self._sdk.work_items.create_work_item(_patch(fields), project, self.type)
            return str(created.id)
        if existing.fields.get("System.State") in self._states(project, CLOSED_CATEGORIES):
            fields["System.State"] = self._first_state(project, (OPEN_CATEGORY,))
        self._sdk.work_items.update_work_item(_patch(fields), existing.id, project=project)
        return str(existing.id)

    def close(self, project: str, work_item_id: int, comment: str) -> None:
        """Move it to the type's first Completed state, the comment in its discussion."""
        fields = {"System.State": self._first_state(project, ("Completed",))}
        if comment:
            fields["System.History"] = as_html(comment)
        self._sdk.work_items.update_work_item(_patch(fields), work_item_id, project=project)

    def _find(self, project: str, work_item_id: str | None) -> Any:
        if not (work_item_id and work_item_id.isdigit()):
            return None
        found = self._sdk.work_items.get_work_items([int(work_item_id)], project=project, error_policy="omit")
        return found[0] if found and found[0] is not None else None

    def _states(self, project: str, categories: tuple[str, ...]) -> list[str]:
        states = self._sdk.work_items.get_work_item_type_states(project, self.type)
        return [s.name for s in states if s.category in categories]

    def _first_state(self, project: str, categories: tuple[str, ...]) -> str:
        states = self._states(project, categories)
        if not states:
            raise ForgeError(f"Azure DevOps: work item type {self.type!r} of {project} has no state in category "
                             f"{categories[0]}: set azuredevops.work_item_type to a type that has one")
        return states[0]


def as_html(markdown: str) -> str:
    """Markdown kept as written, escaped: a work item field is HTML."""
    return f"<pre>{html.escape(markdown)}</pre>"


def _patch(fields: dict[str, str]) -> list[JsonPatchOperation]:
    return [JsonPatchOperation(op="add", path=f"/fields/{name}", value=value) for name, value in fields.items()]
