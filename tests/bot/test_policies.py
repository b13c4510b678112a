"""bot.policies: Rego evaluated with regopy, results and approvals in a real Redis, owners
(users and GitHub teams) asked of the fake GitHub through the real GitHubForge."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot import policies
from bot.state import artifacts, audit
from bot.forges.github import GitHubForge
from bot.models import ProjectOutcome, PullRequest, Repo
from bot.redact import Redactor
from bot.render import overview, project_section
from bot.settings import PolicySet, PolicySettings, RepoEntry, Settings
from runners.models import PlanResult, Project
from tests.fakes.github import FakeGitHub

DATA = Path(__file__).resolve().parent.parent / "data" / "policies"
FULL = "acme/infra"
TOKEN = "ghp_" + "t0k3n" * 8
PROJECT = "infra/app::default"


def change(address: str, actions: list[str], value: object = "hello") -> dict:
    kind, name = address.split(".")
    return {"address": address, "type": kind, "name": name, "change": {"actions": actions, "after": {"input": value}}}


FORBIDDEN_PLAN = {"resource_changes": [change("terraform_data.x", ["create"], "forbidden-value")]}
CLEAN_PLAN = {"resource_changes": [change("terraform_data.good", ["create"])]}


def test_deny_fires_with_its_message() -> None:
    assert policies.evaluate_set(DATA / "deny", FORBIDDEN_PLAN) == (["terraform_data.x holds a forbidden value"], [])
    assert policies.evaluate_set(DATA / "deny", CLEAN_PLAN) == ([], [])


def test_warn_is_reported_apart() -> None:
    assert policies.evaluate_set(DATA / "warn", FORBIDDEN_PLAN) == ([], ["terraform_data.x: give it a descriptive name"])


def test_a_directory_loads_every_module_but_tests_and_reads_violation_objects() -> None:
    plan = {"resource_changes": [change("terraform_data.a", ["delete"]), change("terraform_data.b", ["create"]),
                                 change("terraform_data.c", ["create"])]}
    failures, _ = policies.evaluate_set(DATA / "multi", plan)
    assert failures == ["deletions need a separate pull request", "too many resources in one plan"]


def test_bad_rego_names_the_file_and_line() -> None:
    with pytest.raises(policies.PolicyError) as caught:
        policies.evaluate_set(DATA / "broken", CLEAN_PLAN)
    assert f"{DATA / 'broken' / 'bad.rego'}:4:" in str(caught.value)
    assert "does not compile" in str(caught.value)


def test_missing_path_and_empty_dir_fail(tmp_path: Path) -> None:
    with pytest.raises(policies.PolicyError, match="does not exist"):
        policies.evaluate_set(tmp_path / "nope", CLEAN_PLAN)
    with pytest.raises(policies.PolicyError, match="holds no .rego file"):
        policies.evaluate_set(tmp_path, CLEAN_PLAN)


def test_evaluate_keeps_going_after_an_error_and_marks_failures() -> None:
    sets = (PolicySet("broken", DATA / "broken"), PolicySet("deny", DATA / "deny", ("alice",)),
            PolicySet("warn", DATA / "warn"))
    results = policies.evaluate(sets, FORBIDDEN_PLAN)
    assert [r["name"] for r in policies.failed(results)] == ["broken", "deny"]
    assert results[1]["owners"] == ["alice"] and results[2]["warnings"]
    assert "bad.rego" in policies.describe(results[0])


# -- storage, approvals, /approve_policies ------------------------------------------------------

@pytest.fixture
def fake():
    with FakeGitHub(token=TOKEN) as server:
        server.add_repo(FULL, "https://github.com/acme/infra.git")
        server.add_pull(FULL, 7, "a" * 40, "feature", "main", "alice", files=["infra/app/main.tf"], base_sha="b" * 40)
        yield server


@pytest.fixture
def ctx(fake, redis_db, tmp_path: Path):
    sets = (PolicySet("deny", DATA / "deny", ("carol", "team:acme/security")), PolicySet("warn", DATA / "warn"))
    settings = Settings(policies=PolicySettings(sets))
    lines: list[str] = []
    forge = GitHubForge(fake.api_url, token=TOKEN, write_interval=0, sleep=lambda s: None)
    return SimpleNamespace(redis=redis_db, settings=settings, forge=forge,
                           redact=Redactor(), job_id="job-1", log=lines.append, lines=lines)


@pytest.fixture
def pull(ctx) -> PullRequest:
    return ctx.forge.pull_request(Repo("github", "github.com", FULL, "https://github.com/acme/infra.git"), 7)


def stored_plan(ctx, pull: PullRequest, tmp_path: Path, content: bytes) -> artifacts.PlanArtifact:
    path = tmp_path / f"plan-{len(content)}.tfplan"
    path.write_bytes(content)
    artifact = artifacts.PlanArtifact(repo_id=pull.repo.id, pull_number=pull.number, project_key=PROJECT,
                                      project_name=None, engine="terraform", head_sha=pull.head_sha, sha256="",
                                      summary="Plan: 1 to add, 0 to change, 0 to destroy.")
    return artifacts.save_plan(ctx.redis, artifact, path)


def test_a_failed_deny_blocks_until_an_owner_approves(ctx, pull, fake, tmp_path: Path) -> None:
    plan = stored_plan(ctx, pull, tmp_path, b"plan one")
    results = policies.check_plan(ctx, pull, PROJECT, FORBIDDEN_PLAN, plan.sha256, "alice")
    assert [r["name"] for r in policies.failed(results)] == ["deny"]
    refusal = policies.apply_refusal(ctx, pull, [plan], "alice")
    assert "policy set deny failed: terraform_data.x holds a forbidden value" in refusal
    assert "/approve_policies" in refusal

    assert policies.approve(ctx, pull, "mallory") == "nothing approved"
    assert "@mallory is not an owner of: `deny`" in fake.comments(FULL, 7)[-1]["body"]
    assert policies.apply_refusal(ctx, pull, [plan], "alice")

    fake.add_team_member("acme", "security", "dave")
    assert policies.approve(ctx, pull, "dave") == "approved 1 policy set(s)"
    assert "Every failed policy check is approved" in fake.comments(FULL, 7)[-1]["body"]
    assert policies.apply_refusal(ctx, pull, [plan], "alice") == ""

    actions = [e["action"] for e in audit.entries(ctx.redis)]
    assert actions[:3] == ["approve_policies", "apply_refused", "apply_refused"] and "policy_check" in actions


def test_a_new_plan_clears_the_approval(ctx, pull, tmp_path: Path) -> None:
    first = stored_plan(ctx, pull, tmp_path, b"plan one")
    policies.check_plan(ctx, pull, PROJECT, FORBIDDEN_PLAN, first.sha256, "alice")
    assert policies.approve(ctx, pull, "Carol") == "approved 1 policy set(s)"  # user names ignore case
    second = stored_plan(ctx, pull, tmp_path, b"plan two, same problem")
    policies.check_plan(ctx, pull, PROJECT, FORBIDDEN_PLAN, second.sha256, "alice")
    assert "policy set deny failed" in policies.apply_refusal(ctx, pull, [second], "alice")
    assert policies.approved_sets(ctx.redis, pull.repo.id, 7, PROJECT, first.sha256) == set()


def test_passing_and_warning_sets_do_not_block(ctx, pull, tmp_path: Path) -> None:
    plan = stored_plan(ctx, pull, tmp_path, b"clean")
    results = policies.check_plan(ctx, pull, PROJECT, {"resource_changes": [change("terraform_data.x", ["create"])]},
                                  plan.sha256, "alice")
    assert results[1]["warnings"] and not policies.failed(results)
    assert policies.apply_refusal(ctx, pull, [plan], "alice") == ""
    assert policies.approve(ctx, pull, "carol") == "nothing approved"


def test_a_plan_without_policy_results_is_refused_when_policies_are_configured(ctx, pull, tmp_path: Path) -> None:
    plan = stored_plan(ctx, pull, tmp_path, b"unchecked")
    assert "did not run on this plan" in policies.apply_refusal(ctx, pull, [plan], "alice")
    ctx.settings = replace(ctx.settings, policies=PolicySettings(()))
    assert policies.apply_refusal(ctx, pull, [plan], "alice") == ""


def test_a_repository_with_policy_check_off_is_not_checked(ctx, pull, tmp_path: Path) -> None:
    ctx.settings = replace(ctx.settings, repos=(RepoEntry(id="/github.com/acme/.*/", policy_check=False),))
    plan = stored_plan(ctx, pull, tmp_path, b"forbidden but unchecked")
    assert policies.check_plan(ctx, pull, PROJECT, FORBIDDEN_PLAN, plan.sha256, "alice") == []
    assert policies.stored_results(ctx.redis, pull.repo.id, 7, PROJECT) is None
    assert policies.apply_refusal(ctx, pull, [plan], "alice") == ""
    other = replace(pull, repo=replace(pull.repo, full_name="other/infra"))
    assert policies.sets_for(ctx.settings, other.repo.id)  # the other repositories still are


def test_a_project_with_policy_check_off_is_recorded_as_checked(ctx, pull, tmp_path: Path) -> None:
    plan = stored_plan(ctx, pull, tmp_path, b"forbidden, project opted out")
    assert policies.check_plan(ctx, pull, PROJECT, FORBIDDEN_PLAN, plan.sha256, "alice", enabled=False) == []
    assert policies.apply_refusal(ctx, pull, [plan], "alice") == ""


def test_messages_are_masked_before_they_are_stored(ctx, pull, tmp_path: Path) -> None:
    plan = stored_plan(ctx, pull, tmp_path, b"masked")
    ctx.redact.add_secrets(["forbidden-value"])
    secret_plan = {"resource_changes": [dict(change("terraform_data.x", ["create"], "forbidden-value"),
                                             address="terraform_data.forbidden-value")]}
    policies.check_plan(ctx, pull, PROJECT, secret_plan, plan.sha256, "alice")
    _, results = policies.stored_results(ctx.redis, pull.repo.id, 7, PROJECT)
    assert results[0]["failures"] == ["terraform_data.*** holds a forbidden value"]


def test_the_plan_comment_shows_each_set() -> None:
    results = policies.evaluate((PolicySet("deny", DATA / "deny", ("carol",)), PolicySet("warn", DATA / "warn"),
                                 PolicySet("broken", DATA / "broken")), FORBIDDEN_PLAN)
    outcome = ProjectOutcome(Project("infra/app"), "planned", plan=PlanResult(ok=True, has_changes=True),
                             policies=results)
    text = project_section("plan", outcome)
    assert "**📝 changes · ❌ policy failed**" in text
    assert "- ❌ `deny` failed:\n  - terraform_data.x holds a forbidden value" in text
    assert "- ✅ `warn` passed with warnings:\n  - ⚠️ terraform_data.x: give it a descriptive name" in text
    assert "- ❌ `broken` could not be evaluated: policy " in text and "bad.rego:4:" in text
    assert "a policy owner (carol) comments `/approve_policies`" in text
    assert overview("plan", [outcome], running=False).endswith(", 1 blocked by policy")
    clean = ProjectOutcome(Project("infra/app"), "planned", policies=[dict(results[1])])
    assert "policy failed" not in project_section("plan", clean) and "blocked" not in overview("plan", [clean], False)


def test_a_plan_without_json_is_recorded_as_checked(ctx, pull, tmp_path: Path) -> None:
    plan = stored_plan(ctx, pull, tmp_path, b"kubectl manifests")
    assert policies.check_plan(ctx, pull, PROJECT, None, plan.sha256, "alice") == []
    assert policies.apply_refusal(ctx, pull, [plan], "alice") == ""
