"""What GitHubForge does only as a GitHub App: check runs (the REST Checks API, which GitHub
opens to Apps alone) and minimizing outdated comments (GraphQL `minimizeComment`, sent through
PyGithub's own requester: one HTTP client, one retry policy)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from github.Repository import Repository
from github.Requester import Requester

from bot.forges.base import FAILURE, NEUTRAL, PENDING, SUCCESS
from bot.models import CheckReport

CHECK_OUTPUT_LIMIT = 65535  # characters GitHub takes in a check run's output.summary and output.text
CLIPPED = "\n\n… cut at GitHub's limit."
CONCLUSIONS = (SUCCESS, FAILURE, NEUTRAL)
MINIMIZED_FIELDS = "minimizedComment { isMinimized minimizedReason }"


def check_run_fields(check: CheckReport, now: datetime | None = None) -> dict[str, Any]:
    """The fields of a check run create or update for `check` (everything but name and head_sha).

    Raises ValueError for a state other than pending, success, failure or neutral."""
    if check.state != PENDING and check.state not in CONCLUSIONS:
        raise ValueError(f"unknown check run state {check.state!r}")
    output = {"title": check.title, "summary": clip(check.summary or check.title)}
    if check.text:
        output["text"] = clip(check.text)
    fields: dict[str, Any] = {
        "status": "in_progress" if check.state == PENDING else "completed",
        "output": output,
        "actions": [{"label": a.label, "identifier": a.identifier, "description": a.description}
                    for a in check.actions],
    }
    if check.details_url:
        fields["details_url"] = check.details_url
    if check.external_id:
        fields["external_id"] = check.external_id
    if check.state != PENDING:
        fields.update(conclusion=check.state, completed_at=now or datetime.now(timezone.utc))
    return fields


def clip(text: str, limit: int = CHECK_OUTPUT_LIMIT) -> str:
    """text within GitHub's limit (the report layer keeps to it already; this is the last guard)."""
    return text if len(text) <= limit else text[: limit - len(CLIPPED)] + CLIPPED


def write_check_run(repository: Repository, sha: str, check: CheckReport, check_id: str | None) -> str:
    """Create the check run on sha, or update check_id; its id."""
    fields = check_run_fields(check)
    if check_id:
        repository.get_check_run(int(check_id)).edit(**fields)
        return check_id
    return str(repository.create_check_run(name=check.name, head_sha=sha, **fields).id)


def minimize_outdated(requester: Requester, node_id: str) -> bool:
    """Minimize the comment (GraphQL node id) with reason OUTDATED; whether GitHub says it is."""
    _, result = requester.graphql_named_mutation(
        "minimizeComment", {"subjectId": node_id, "classifier": "OUTDATED"}, MINIMIZED_FIELDS)
    return bool((result.get("minimizedComment") or {}).get("isMinimized"))
