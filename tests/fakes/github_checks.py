"""FakeGitHub's Checks API and GraphQL endpoint, as GitHub answers them.

Check runs (docs.github.com/rest/checks/runs): only a GitHub App may write them (a personal
token gets 403 "You must authenticate via a GitHub App."), and only the App that created a
check run may update it; `conclusion` completes it; output summary and text are at most
65,535 characters, actions at most 3 with label and identifier up to 20 characters and a
description up to 40 (422 otherwise). Listing a commit's check runs keeps the latest per name
unless `filter=all`, and pages with `total_count` + `check_runs`.

GraphQL (`POST /api/graphql`, or `/graphql` on github.com): the `minimizeComment` mutation as
PyGithub's `graphql_named_mutation` sends it, answering exactly the fields asked for; anything
else gets GraphQL's error answer (HTTP 200 with `errors`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, g, jsonify, request

from tests.fakes import github_payloads as payloads

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub, FakeRepo

OUTPUT_LIMIT = 65535
STATUSES = ("queued", "in_progress", "completed")
CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out")
ACTION_LIMITS = {"label": 20, "identifier": 20, "description": 40}
CLASSIFIERS = ("SPAM", "ABUSE", "OFF_TOPIC", "OUTDATED", "DUPLICATE", "RESOLVED")
MINIMIZED_FIELDS = ("isMinimized", "minimizedReason")
_MUTATION = re.compile(r"\s*mutation\b[^{]*\{\s*(\w+)\s*\(\s*input\s*:\s*\$input\s*\)\s*\{(.*)\}\s*\}\s*", re.DOTALL)
_SELECTION = re.compile(r"\s*minimizedComment\s*\{([^{}]*)\}\s*")
_HEX_SHA = re.compile(r"[0-9a-f]{40}")


def register_check_routes(api: Blueprint, fake: FakeGitHub, repo_or_404: Callable[[str, str], FakeRepo],
                          repo_body: Callable[[FakeRepo], dict],
                          error: Callable[..., Response], invalid: Callable[..., Response]) -> None:
    """The Checks API on the REST blueprint (its gatekeeper has authenticated the caller)."""

    def as_json(repo: FakeRepo, run: dict) -> dict:
        return payloads.check_run_json(repo_body(repo), run, fake.check_run_pulls(repo, run["head_sha"]))

    def app_only() -> Response | None:
        if g.kind != "installation":
            return error(403, "You must authenticate via a GitHub App.")
        return None

    @api.post("/repos/<owner>/<name>/check-runs")
    def create_check_run(owner: str, name: str) -> Any:
        repo = repo_or_404(owner, name)
        refused = app_only()
        if refused:
            return refused
        data = request.get_json(silent=True) or {}
        missing = [f for f in ("name", "head_sha") if not isinstance(data.get(f), str) or not data[f]]
        if missing:
            return invalid(*({"resource": "CheckRun", "code": "missing_field", "field": f} for f in missing))
        if not _HEX_SHA.fullmatch(data["head_sha"]):
            return invalid({"resource": "CheckRun", "code": "invalid", "field": "head_sha",
                            "message": f"No commit found for SHA: {data['head_sha']}"})
        problem = _check_fields_problem(data)
        if problem:
            return invalid(problem)
        run = fake.record_check_run(repo.full_name, data["head_sha"], data["name"], fake.app_id, fake.app_slug)
        _apply_fields(run, data)
        return as_json(repo, run), 201

    @api.get("/repos/<owner>/<name>/check-runs/<int:run_id>")
    def get_check_run(owner: str, name: str, run_id: int) -> Any:
        repo = repo_or_404(owner, name)
        run = fake.find_check_run(repo.full_name, run_id)
        return as_json(repo, run) if run else error(404, "Not Found")

    @api.patch("/repos/<owner>/<name>/check-runs/<int:run_id>")
    def update_check_run(owner: str, name: str, run_id: int) -> Any:
        repo = repo_or_404(owner, name)
        refused = app_only()
        if refused:
            return refused
        run = fake.find_check_run(repo.full_name, run_id)
        if run is None:
            return error(404, "Not Found")
        if run["app_id"] != fake.app_id:
            return error(403, "Resource not accessible by integration")
        data = request.get_json(silent=True) or {}
        problem = _check_fields_problem(data)
        if problem:
            return invalid(problem)
        _apply_fields(run, data)
        return as_json(repo, run)

    @api.get("/repos/<owner>/<name>/commits/<ref>/check-runs")
    def list_check_runs(owner: str, name: str, ref: str) -> Any:
        repo = repo_or_404(owner, name)
        runs = list(repo.check_runs.get(ref, []))
        wanted_name, wanted_status = request.args.get("check_name"), request.args.get("status")
        runs = [r for r in runs if (wanted_name is None or r["name"] == wanted_name)
                and (wanted_status is None or r["status"] == wanted_status)]
        if request.args.get("filter", "latest") == "latest":
            latest: dict[str, dict] = {}
            for run in runs:  # recorded oldest first: the last one of a name wins
                latest[run["name"]] = run
            runs = list(latest.values())
        runs.sort(key=lambda r: r["id"], reverse=True)
        per_page = max(1, min(int(request.args.get("per_page", 30)), 100))
        number = max(1, int(request.args.get("page", 1)))
        chosen = runs[(number - 1) * per_page: number * per_page]
        response = jsonify({"total_count": len(runs), "check_runs": [as_json(repo, r) for r in chosen]})
        if number * per_page < len(runs):
            query = "&".join(f"{k}={v}" for k, v in {**request.args.to_dict(), "page": number + 1}.items())
            response.headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
        return response


def _check_fields_problem(data: dict) -> dict | None:
    """The 422 error of a check run create or update body, None when GitHub would take it."""
    if "status" in data and data["status"] not in STATUSES:
        return {"resource": "CheckRun", "code": "invalid", "field": "status"}
    if data.get("conclusion") is not None and data["conclusion"] not in CONCLUSIONS:
        return {"resource": "CheckRun", "code": "invalid", "field": "conclusion"}
    if data.get("status") == "completed" and not data.get("conclusion"):
        return {"resource": "CheckRun", "code": "missing_field", "field": "conclusion"}
    output = data.get("output")
    if output is not None:
        if not isinstance(output, dict) or not output.get("title") or not output.get("summary"):
            return {"resource": "CheckRun", "code": "missing_field", "field": "output"}
        for key in ("summary", "text"):
            if len(output.get(key) or "") > OUTPUT_LIMIT:
                return {"resource": "CheckRun", "code": "custom", "field": f"output.{key}",
                        "message": f"{key} is too long (maximum is {OUTPUT_LIMIT} characters)"}
    actions = data.get("actions")
    if actions is not None:
        if not isinstance(actions, list) or len(actions) > 3:
            return {"resource": "CheckRun", "code": "invalid", "field": "actions",
                    "message": "actions: at most 3"}
        for action in actions:
            for key, limit in ACTION_LIMITS.items():
                value = action.get(key) if isinstance(action, dict) else None
                if not isinstance(value, str) or not value or len(value) > limit:
                    return {"resource": "CheckRun", "code": "invalid", "field": f"actions.{key}",
                            "message": f"{key} is missing or longer than {limit} characters"}
    return None


def _apply_fields(run: dict, data: dict) -> None:
    for key in ("name", "details_url", "external_id", "status", "actions", "started_at"):
        if key in data:
            run[key] = data[key]
    if data.get("conclusion"):  # a conclusion completes the run, whatever status says
        run.update(conclusion=data["conclusion"], status="completed",
                   completed_at=data.get("completed_at") or payloads.now_iso())
    if data.get("output") is not None:
        run["output"] = {k: data["output"].get(k) for k in ("title", "summary", "text")}
    run["history"].append((run["status"], run["conclusion"]))


# ---------------------------------------------------------------------------- GraphQL


def register_graphql(app: Flask, fake: FakeGitHub, path: str,
                     identify: Callable[[str], tuple[str, str | None] | None]) -> None:
    """POST `path`: GitHub's GraphQL endpoint, with the one mutation the bot sends."""

    @app.post(path)
    def graphql() -> Any:
        who = identify(request.headers.get("Authorization", ""))
        if who is None or who[0] == "app":
            return _graphql_error(401, "This endpoint requires you to be authenticated.")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _graphql_error(400, "Problems parsing JSON")
        variables = body.get("variables") if isinstance(body.get("variables"), dict) else {}
        with fake.lock:
            fake.graphql_calls.append({"query": body["query"], "variables": variables, "viewer": who[1]})
            return jsonify(_answer(fake, body["query"], variables))


def _answer(fake: FakeGitHub, query: str, variables: dict) -> dict:
    mutation = _MUTATION.fullmatch(query)
    if mutation is None:
        return _errors("this fake GitHub answers only `mutation (...) { minimizeComment(input: $input) { ... } }`")
    name, selection = mutation.groups()
    if name != "minimizeComment":
        return _errors(f"Field '{name}' doesn't exist on type 'Mutation'")
    fields = _SELECTION.fullmatch(selection)
    asked = fields.group(1).split() if fields else []
    unknown = [f for f in asked if f not in MINIMIZED_FIELDS]
    if not asked or unknown:
        return _errors(f"Field '{(unknown or [selection.strip()])[0]}' doesn't exist on type 'Minimizable'")
    given = variables.get("input") if isinstance(variables.get("input"), dict) else {}
    classifier, subject = given.get("classifier"), given.get("subjectId")
    if classifier not in CLASSIFIERS:
        return _errors(f"Variable $input of type MinimizeCommentInput! was provided invalid value for "
                       f"classifier (Expected \"{classifier}\" to be one of: {', '.join(CLASSIFIERS)})")
    comment = fake.comment_by_node_id(subject if isinstance(subject, str) else "")
    if comment is None:
        return {"data": {name: None}, "errors": [{
            "type": "NOT_FOUND", "path": [name], "locations": [{"line": 1, "column": 1}],
            "message": f"Could not resolve to a node with the global id of '{subject}'"}]}
    comment["minimized"] = classifier
    values = {"isMinimized": True, "minimizedReason": classifier.lower().replace("_", "-")}
    return {"data": {name: {"minimizedComment": {f: values[f] for f in asked}}}}


def _errors(message: str) -> dict:
    return {"errors": [{"message": message, "locations": [{"line": 1, "column": 1}]}]}


def _graphql_error(status: int, message: str) -> Response:
    response = jsonify({"message": message, "documentation_url": "https://docs.github.com/graphql"})
    response.status_code = status
    return response
