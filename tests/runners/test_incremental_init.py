"""runners/incremental_init.py with the real embedded Terraform: in a kept tree, init is skipped
while nothing it depends on changed and runs (on a kept or a fresh .terraform) otherwise."""
from __future__ import annotations

import platform
import zipfile
from pathlib import Path

import pytest

from runners.embedded_terraform import embedded_argv
from runners.incremental_init import ASKED, FIRST, MISSING, SKIPPED, InitRecords
from runners.repo_config_schema import Step, Workflow
from runners.terraform import TerraformRunner
from runners.workflows import WorkflowRunner

APP = '''terraform {
  backend "local" {
    path = "state.tfstate"
  }
}

module "m" {
  source = "../../modules/m"
}

resource "terraform_data" "x" {
  input = "hello"
}
'''
MODULE = 'resource "terraform_data" "y" {\n  input = "m"\n}\n'


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel, text in {"infra/app/main.tf": APP, "modules/m/main.tf": MODULE}.items():
        (tmp_path / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / rel).write_text(text)
    return tmp_path / "tree"


@pytest.fixture
def records(tmp_path: Path, tree: Path) -> InitRecords:
    return InitRecords(tmp_path / "init", tree)


class Jobs:
    """Each call is a new job (a new runner) planning infra/app in the same kept tree."""

    def __init__(self, tf_env, records, tmp_path):
        self.tf_env, self.records, self.tmp, self.count = tf_env, records, tmp_path, 0

    def runner(self) -> TerraformRunner:
        return TerraformRunner(embedded_argv(), self.tf_env, timeout=120, init_records=self.records)

    def plan(self, workspace="default", runner=None):
        self.count += 1
        lines: list[str] = []
        result = (runner or self.runner()).plan(self.records.tree / "infra/app", workspace,
                                                self.tmp / f"out{self.count}", on_line=lines.append)
        assert result.ok, (result.error, result.output)
        return result, lines


@pytest.fixture
def jobs(tf_env, records, tmp_path) -> Jobs:
    return Jobs(tf_env, records, tmp_path)


def data_dir(tree: Path) -> Path:
    return tree / "infra/app/.terraform"


def test_second_plan_skips_init_and_plans_the_same(jobs, tree):
    first, _ = jobs.plan()
    assert first.init_note == FIRST and first.summary == "Plan: 2 to add, 0 to change, 0 to destroy."
    (tree / "infra/app/main.tf").write_text(APP.replace('"hello"', '"changed"'))  # a plan-only change
    second, lines = jobs.plan()
    assert second.init_note == SKIPPED and second.summary == first.summary
    assert any("terraform init: skipped" in line for line in lines)
    assert not any(line.startswith("$ terraform init -input") for line in lines)


def test_lock_file_change_runs_init_on_the_kept_data_dir(jobs, tree):
    jobs.plan()
    kept = data_dir(tree).stat().st_ino
    (tree / "infra/app/.terraform.lock.hcl").write_text("# This file is maintained automatically.\n")
    result, lines = jobs.plan()
    assert result.init_note == "init ran: the dependency lock file changed"
    assert any(line.startswith("$ terraform init -input") for line in lines)
    assert data_dir(tree).stat().st_ino == kept  # providers and modules stay; init updates them
    assert jobs.plan()[0].init_note == SKIPPED  # what init wrote is on record too


def test_backend_change_starts_from_an_empty_data_dir(jobs, tree):
    jobs.plan()
    (data_dir(tree) / "marker").write_text("from the first init")
    (tree / "infra/app/main.tf").write_text(APP.replace('"state.tfstate"', '"other.tfstate"'))
    result, _ = jobs.plan()  # on the kept .terraform, init would stop: "Backend configuration changed"
    assert result.init_note == "init ran: the backend configuration changed"
    assert not (data_dir(tree) / "marker").exists()


def test_module_source_change_runs_init(jobs, tree):
    jobs.plan()
    (tree / "modules/n").mkdir()
    (tree / "modules/n/main.tf").write_text(MODULE.replace('"y"', '"z"'))
    (tree / "infra/app/main.tf").write_text(APP.replace("modules/m", "modules/n"))
    result, _ = jobs.plan()
    assert result.init_note == "init ran: module sources changed"
    assert "terraform_data.z" in result.output


def test_a_data_dir_that_came_with_the_repository_is_removed(jobs, tree):
    data_dir(tree).mkdir()
    (data_dir(tree) / "providers").write_text("a pull request's own provider")
    result, lines = jobs.plan()
    assert result.init_note == FIRST and not (data_dir(tree) / "providers").exists()
    assert "$ removing .terraform that came with the repository" in lines


def test_a_plan_that_asks_for_init_gets_it(jobs, tree):
    jobs.plan()
    (data_dir(tree) / "modules" / "modules.json").unlink()  # the records cannot see this
    result, lines = jobs.plan()
    assert result.init_note == ASKED and "$ the plan asks for terraform init: running it" in lines
    assert jobs.plan()[0].init_note == SKIPPED


def test_failed_init_leaves_no_record(jobs, tree, records):
    (tree / "infra/app/main.tf").write_text(APP.replace("modules/m", "modules/missing"))
    failed = jobs.runner().plan(tree / "infra/app", "default", tree.parent / "out-failed")
    assert not failed.ok and failed.failed_step == "init" and failed.init_note == FIRST
    assert records.kept_dirs() == []
    (tree / "infra/app/main.tf").write_text(APP)
    assert jobs.plan()[0].init_note == FIRST


def test_a_kept_data_dir_forgets_the_workspace_it_had_selected(jobs, tree):
    jobs.plan(workspace="staging")
    assert (data_dir(tree) / "environment").read_text().strip() == "staging"
    result, _ = jobs.plan()  # without the file Terraform uses the default workspace
    assert result.init_note == SKIPPED and not (data_dir(tree) / "environment").exists()
    assert jobs.plan(workspace="staging")[0].init_note == SKIPPED
    assert (data_dir(tree) / "environment").read_text().strip() == "staging"


def test_without_records_init_always_runs(tf_env, tree, tmp_path):
    runner = TerraformRunner(embedded_argv(), tf_env, timeout=120)
    for i in range(2):
        result = runner.plan(tree / "infra/app", "default", tmp_path / f"o{i}")
        assert result.ok and result.init_note == ""


def workflow_runner(jobs: Jobs, *steps: Step) -> WorkflowRunner:
    terraform = jobs.runner()
    return WorkflowRunner(terraform, Workflow("custom", plan=steps, source="repo"), {}, 120, terraform.env)


def test_a_workflow_init_step_is_skipped_like_the_default_one(jobs):
    steps = (Step("init"), Step("plan"))
    assert jobs.plan(runner=workflow_runner(jobs, *steps))[0].init_note == FIRST
    assert jobs.plan(runner=workflow_runner(jobs, *steps))[0].init_note == SKIPPED


@pytest.mark.parametrize("steps,reason", [
    ((Step("init", extra_args=("-upgrade",)), Step("plan")), "the init step has extra arguments"),
    ((Step("env", name="TF_CLI_ARGS_init", value="-upgrade"), Step("init"), Step("plan")),
     "TF_CLI_ARGS_init is set"),
])
def test_a_custom_init_always_runs(jobs, steps, reason):
    for _ in range(2):
        result, lines = jobs.plan(runner=workflow_runner(jobs, *steps))
        assert result.init_note == f"init ran: {reason}"
        assert any(line.startswith("$ terraform init -input") for line in lines)


def test_a_root_with_nothing_to_install_skips_init_too(jobs, tree):
    (tree / "infra/app/main.tf").write_text('resource "terraform_data" "x" {\n  input = "a"\n}\n')
    assert jobs.plan()[0].init_note == FIRST
    assert not data_dir(tree).exists()  # init made no .terraform: that is what is on record
    assert jobs.plan()[0].init_note == SKIPPED
    data_dir(tree).mkdir()  # something else made one
    result, lines = jobs.plan()
    assert result.init_note == MISSING and "$ removing .terraform that came with the repository" in lines


def fake_provider_mirror(tmp_path: Path) -> Path:
    """A packed filesystem mirror holding provider test/fake 1.0.0 for this machine."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    mirror = tmp_path / "mirror"
    package = mirror / f"registry.terraform.io/test/fake/terraform-provider-fake_1.0.0_linux_{arch}.zip"
    package.parent.mkdir(parents=True)
    with zipfile.ZipFile(package, "w") as archive:
        info = zipfile.ZipInfo("terraform-provider-fake_v1.0.0")
        info.external_attr = 0o755 << 16
        archive.writestr(info, "#!/bin/sh\nexit 1\n")
    return mirror


def test_a_kept_tree_holds_its_providers_not_links_to_a_jobs_cache(tf_env, tree, records, tmp_path):
    config = tmp_path / "terraform.tfrc"  # the mirror alone: no registry is reachable from the tests
    config.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{fake_provider_mirror(tmp_path)}"\n'
                      '  }\n}\n')
    main = 'terraform {\n  required_providers {\n    fake = {\n      source  = "test/fake"\n      version = "1.0.0"\n    }\n  }\n}\n'
    (tree / "infra/app/main.tf").write_text(main)
    clone = tmp_path / "clone"
    (clone / "infra/app").mkdir(parents=True)
    (clone / "infra/app/main.tf").write_text(main)
    for root, kept in ((tree, records), (clone, None)):
        runner = TerraformRunner(embedded_argv(), tf_env, timeout=120, plugin_cache_dir=tmp_path / "job-cache",
                                 cli_config=config, init_records=kept)
        assert runner.init(root / "infra/app").ok
    installed = ".terraform/providers/registry.terraform.io/test/fake/1.0.0"
    assert not any(p.is_symlink() for p in (tree / "infra/app" / installed).rglob("*"))  # moves with the tree
    assert any(p.is_symlink() for p in (clone / "infra/app" / installed).rglob("*"))  # a fresh clone: the job's cache
