"""runners/workflows.py: custom workflow steps with the embedded Terraform, and workflow hooks."""
from __future__ import annotations

from pathlib import Path

from runners.repo_config import parse_repo_config
from runners.repo_config_schema import DEFAULT_WORKFLOW
from runners.workflows import WorkflowRunner, comment_args, run_hooks

TF = 'resource "terraform_data" "x" {\n  input = "hello"\n}\n'
STEP_ENV = {"PULL_NUM": "42", "PULL_AUTHOR": "alice", "PROJECT_NAME": "app", "HEAD_BRANCH_NAME": "feat/$(reboot)"}


def workflow(text: str, name: str = "w"):
    return parse_repo_config("version: 3\nworkflows:\n" + text).workflows[name]


def test_default_workflow_matches_terraform_runner(runner, make_root, tmp_path):
    root = make_root({"main.tf": TF})
    direct = runner.plan(root, "default", tmp_path / "a")
    wf = WorkflowRunner(runner, DEFAULT_WORKFLOW, STEP_ENV, timeout=120).plan(root, "default", tmp_path / "b")
    assert wf.ok and direct.ok
    assert (wf.has_changes, wf.summary, wf.changes) == (direct.has_changes, direct.summary, direct.changes)
    assert wf.summary == "Plan: 1 to add, 0 to change, 0 to destroy."
    assert wf.output == direct.output.replace(str(tmp_path / "a"), str(tmp_path / "b"))
    applied = WorkflowRunner(runner, DEFAULT_WORKFLOW, STEP_ENV, timeout=120).apply(root, "default", Path(wf.plan_file))
    assert applied.ok and applied.summary.startswith("Apply complete! Resources: 1 added")


def test_run_step_output_and_step_env(runner, make_root, tmp_path):
    root = make_root({"main.tf": TF})
    wf = workflow(
        "  w:\n    plan:\n      steps:\n"
        "      - env: {name: GREETING, value: hi}\n"
        "      - multienv: printf 'ONE=1\\nTWO=2\\n'\n"
        "      - init\n"
        "      - plan: {extra_args: [\"-var-file=none.tfvars -lock=false\"]}\n"
        "      - run: echo \"pull=$PULL_NUM dir=$DIR plan=$PLANFILE g=$GREETING $ONE$TWO branch=$HEAD_BRANCH_NAME\"\n"
        "      - run: {command: echo hidden-secret, output: hide}\n"
    )
    (root / "none.tfvars").write_text("")
    result = WorkflowRunner(runner, wf, STEP_ENV, timeout=120).plan(root, "default", tmp_path / "out", ("-refresh=false",))
    assert result.ok, result.error
    plan_file = str((tmp_path / "out" / "plan.tfplan").resolve())
    assert f"pull=42 dir={root} plan={plan_file} g=hi 12 branch=feat/$(reboot)" in result.output
    assert "hidden-secret" not in result.output
    assert result.has_changes and result.plan_file == plan_file and result.plan_json is not None


def test_failing_run_step_reports_the_step(runner, make_root, tmp_path):
    root = make_root({"main.tf": TF})
    wf = workflow("  w:\n    plan:\n      steps:\n      - run: echo checking && exit 3\n      - plan\n")
    result = WorkflowRunner(runner, wf, STEP_ENV, timeout=60).plan(root, "default", tmp_path / "out")
    assert not result.ok and result.failed_step == "run"
    assert "exit 3" in result.error and "checking" in result.output


def test_run_only_workflow_writing_planfile(runner, make_root, tmp_path):
    """A Terragrunt-style workflow: the run step itself calls the binary and writes $PLANFILE."""
    root = make_root({"main.tf": TF})
    tf = " ".join(runner.argv0)
    wf = workflow("  w:\n    plan:\n      steps:\n"
                  f"      - run: {tf} init -input=false -no-color >/dev/null && {tf} plan -input=false -no-color "
                  "-out=$PLANFILE\n"
                  "    apply:\n      steps:\n"
                  f"      - run: {tf} apply -input=false -no-color $PLANFILE\n")
    wr = WorkflowRunner(runner, wf, STEP_ENV, timeout=120)
    result = wr.plan(root, "default", tmp_path / "out")
    assert result.ok and result.has_changes and result.plan_file
    assert [c.address for c in result.changes] == ["terraform_data.x"]
    applied = wr.apply(root, "default", Path(result.plan_file))
    assert applied.ok and "Apply complete!" in applied.summary


def test_workspace_and_tf_workspace_not_leaked(runner, make_root, tmp_path):
    root = make_root({"main.tf": TF})
    wf = workflow("  w:\n    plan:\n      steps:\n      - init\n      - run: echo ws=$WORKSPACE tfws=${TF_WORKSPACE-unset}\n"
                  "      - plan\n")
    env = {**runner.env, "TF_WORKSPACE": "bad"}
    result = WorkflowRunner(runner, wf, STEP_ENV, timeout=120, parent_env=env).plan(root, "staging", tmp_path / "o")
    assert result.ok, result.error
    assert "ws=staging tfws=unset" in result.output


def test_comment_args_are_escaped():
    assert comment_args(["-target=a b"]) == "\\-\\t\\a\\r\\g\\e\\t\\=\\a\\ \\b"
    assert comment_args(["a", "b"]) == "\\a,\\b"


def test_pre_workflow_hook_runs_in_checkout(tmp_path):
    lines: list[str] = []
    result = run_hooks(["echo made > generated.tf && echo hook-ran $PULL_NUM"], tmp_path,
                       {"PATH": "/usr/bin:/bin", "PULL_NUM": "7"}, lines.append, timeout=30)
    assert result.ok and "hook-ran 7" in result.output and "hook-ran 7" in lines
    assert (tmp_path / "generated.tf").read_text() == "made\n"


def test_failing_hook_stops_and_names_itself(tmp_path):
    class Hook:
        def __init__(self, run, description=None):
            self.run, self.description = run, description

    result = run_hooks([Hook("exit 4", "generate config"), Hook("touch never")], tmp_path,
                       {"PATH": "/usr/bin:/bin"}, timeout=30)
    assert not result.ok and result.failed_hook == "generate config" and "exit 4" in result.error
    assert not (tmp_path / "never").exists()


def test_import_and_state_rm_stages(runner, make_root, tmp_path):
    """Default: init + the command; a workflow's `import` / `state_rm` stage runs its own steps."""
    root = make_root({"main.tf": TF})
    uid = "11111111-2222-3333-4444-555555555555"
    wf = workflow(
        "  w:\n    state_rm:\n      steps:\n      - run: echo before-rm\n      - init\n"
        "      - state_rm: {extra_args: [\"-lock=false\"]}\n"
    )
    imported = runner.import_resource(root, "default", "terraform_data.x", uid)
    assert imported.ok and imported.summary == "Import successful!", imported.error
    again = WorkflowRunner(runner, wf, STEP_ENV, timeout=120).import_resource(root, "default", "terraform_data.x",
                                                                                uid)
    assert not again.ok and again.failed_step == "import" and "already managed" in again.output
    removed = WorkflowRunner(runner, wf, STEP_ENV, timeout=120).state_rm(root, "default", ["terraform_data.x"])
    assert removed.ok, removed.error
    assert "before-rm" in removed.output and removed.summary.startswith("Successfully removed 1 resource")
    missing = runner.state_rm(root, "default", ["terraform_data.x"])
    assert not missing.ok and missing.failed_step == "state_rm" and "state rm" in missing.error


def test_version_and_policy_check_steps_run_and_an_import_step_outside_its_stage_fails(runner, make_root, tmp_path):
    root = make_root({"main.tf": TF})
    wf = workflow("  w:\n    plan:\n      steps:\n      - version\n      - init\n      - plan\n      - policy_check\n")
    result = WorkflowRunner(runner, wf, STEP_ENV, timeout=120).plan(root, "default", tmp_path / "out")
    assert result.ok, result.error
    assert result.output.startswith("Terraform v") and result.has_changes
    wf = workflow("  w:\n    plan:\n      steps:\n      - init\n      - import\n")
    result = WorkflowRunner(runner, wf, STEP_ENV, timeout=120).plan(root, "default", tmp_path / "out2")
    assert (result.ok, result.failed_step) == (False, "import")
    assert "runs only in a workflow's import stage" in result.error
