"""bot/render.py: comments compared against golden files in tests/golden/.

Regenerate after an intended change with `PLANKEEPER_UPDATE_GOLDEN=1 pytest tests/bot/test_render.py`
and review the diff.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot import render
from bot.models import ProjectOutcome, PullRequest, Repo
from bot.redact import Redactor
from runners.models import ApplyResult, PlanResult, Project, ResourceChange

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
PULL = PullRequest(Repo("github", "github.com", "acme/infra", "https://github.com/acme/infra.git"), 7, "alice",
                   "0123456789abcdef0123456789abcdef01234567", "feature", "main")
PLAN_OUTPUT = "Terraform will perform the following actions:\n\n  # terraform_data.x will be created\n"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PLANKEEPER_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed: rerun with PLANKEEPER_UPDATE_GOLDEN=1 and review"


def planned(dir_: str, changes: list[ResourceChange], summary: str) -> ProjectOutcome:
    result = PlanResult(ok=True, has_changes=bool(changes), summary=summary, changes=changes, output=PLAN_OUTPUT)
    return ProjectOutcome(Project(dir_), "planned" if changes else "no_changes", plan=result,
                          log_url="http://localhost:4141/jobs/j1")


def test_plan_comment_with_changes_no_changes_and_a_failure():
    outcomes = [
        planned("infra/app", [ResourceChange("terraform_data.x", "create"), ResourceChange("terraform_data.old", "delete"),
                              ResourceChange("terraform_data.y", "replace")], "Plan: 2 to add, 0 to change, 2 to destroy."),
        planned("infra/db", [], "No changes. Your infrastructure matches the configuration."),
        ProjectOutcome(Project("infra/net", "prod"), "failed",
                       plan=PlanResult(ok=False, failed_step="init", error="Fix the configuration and push.",
                                       output="Error: Unsupported argument"), log_url="http://localhost:4141/jobs/j2"),
    ]
    body = render.command_comment("plan", PULL, outcomes, running=False, limit=65536, redact=Redactor())
    assert body.startswith("**Plankeeper plan** for `0123456` · 3 projects: 1 with changes, 1 without, 1 failed")
    assert "🗑️ **delete**" in body and "⚠️ **replace**" in body
    golden("plan_mixed.md", body)


def test_apply_comment():
    outcome = ProjectOutcome(Project("infra/app"), "applied",
                             apply=ApplyResult(ok=True, summary="Apply complete! Resources: 1 added, 0 changed, 0 destroyed.",
                                               output="terraform_data.x: Creating..."),
                             log_url="http://localhost:4141/jobs/j3")
    body = render.command_comment("apply", PULL, [outcome], running=False, limit=65536, redact=Redactor())
    golden("apply_one.md", body)


def test_a_comment_over_the_limit_is_truncated_with_a_link_to_the_log():
    huge = planned("infra/app", [ResourceChange("terraform_data.x", "create")], "Plan: 1 to add, 0 to change, 0 to destroy.")
    huge.plan.output = "x" * 200_000
    body = render.command_comment("plan", PULL, [huge], running=False, limit=65536, redact=Redactor())
    assert len(body) <= 65536
    assert "output truncated" in body and "http://localhost:4141/jobs/j1" in body
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in body


def test_secrets_are_masked_last():
    leak = planned("infra/app", [ResourceChange("terraform_data.x", "create")], "Plan: 1 to add, 0 to change, 0 to destroy.")
    leak.plan.output = "token ghp_" + "a" * 36 + " and hunter2hunter2"
    body = render.command_comment("plan", PULL, [leak], running=False, limit=65536,
                                  redact=Redactor(secrets=["hunter2hunter2"]))
    assert "ghp_" not in body and "hunter2hunter2" not in body and "***" in body


@pytest.mark.parametrize("count", [1, 3])
def test_outdated_marking_is_idempotent(count):
    body = "**Plankeeper plan** for `abc`"
    for _ in range(count):
        body = render.mark_outdated(body, "https://example/comment/2")
    assert body.count("Outdated") == 2  # the banner and the summary line, once


def test_without_hints_no_comment_commands_are_suggested():
    """`plankeeper plan` on a local checkout: no pull request to comment /apply, /unlock or /plan on."""
    outcomes = [planned("infra/app", [ResourceChange("terraform_data.x", "create")],
                        "Plan: 1 to add, 0 to change, 0 to destroy.")]
    with_hints = render.command_comment("plan", PULL, outcomes, running=False, limit=65536, redact=Redactor())
    assert "To apply this project: `/apply -d infra/app`" in with_hints and "`/unlock`" in with_hints
    local = render.command_comment("plan", PULL, outcomes, running=False, limit=65536, redact=Redactor(),
                                   hints=False, footer="Apply it by hand.\n")
    assert "/apply" not in local and "/unlock" not in local
    assert local.endswith("---\nApply it by hand.\n")
