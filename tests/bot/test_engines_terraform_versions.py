"""bot/engines.py: a project's pinned Terraform version comes from terraform.binaries, else is
downloaded once into data_dir/terraform-versions (a local release mirror stands in for
releases.hashicorp.com), and runs in the job's sandbox."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.engines import TERRAFORM_VERSIONS, runner_for
from bot.errors import UserFacingError
from bot.models import OutcomeStatus
from bot.runs import store
from bot.settings import TerraformSettings
from bot.settings_loader import load_settings
from runners.models import Project
from runners.repo_config_schema import EffectiveProject
from runners.workspace import create_workspace
from tests.runners.release_mirror import Mirror

MAIN = 'resource "terraform_data" "x" {\n  input = "one"\n}\n'


@pytest.fixture
def mirror():
    served = Mirror()
    served.publish("terraform", "1.2.3")
    served.publish("opentofu", "1.8.1")
    yield served
    served.close()


@pytest.fixture
def host(tmp_path: Path, mirror: Mirror):
    def make(**terraform: object):
        options = {"binary": "auto", "timeout": 120, "download_url": mirror.url,
                   "tofu_download_url": mirror.url, **terraform}
        settings = dataclasses.replace(load_settings(None, {}), data_dir=tmp_path / "data",
                                       terraform=TerraformSettings(**options))
        return settings, create_workspace(tmp_path / "data" / "work", "job-1")
    return make


def _root(tmp_path: Path, text: str = MAIN) -> Path:
    root = tmp_path / "repo" / "infra"
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.tf").write_text(text)
    return root


def test_a_pinned_version_is_downloaded_once_and_plans(host, mirror: Mirror, tmp_path: Path) -> None:
    settings, workspace = host()
    effective = EffectiveProject(Project("infra"), terraform_version="1.2.3")
    runner = runner_for(effective.project, settings, workspace, effective)
    binary = settings.data_dir / TERRAFORM_VERSIONS / "terraform" / "1.2.3" / "terraform"
    assert runner.argv0 == [str(binary)]
    assert runner.version() == "Terraform v1.2.3"  # what /version shows

    # in the job's sandbox when bubblewrap works here: the checkout and out dir are in its work dir
    plan = runner.plan(_root(workspace.root), "default", workspace.root / "out")
    assert plan.ok, plan.error + plan.output
    assert [c.address for c in plan.changes] == ["terraform_data.x"]

    other = create_workspace(settings.data_dir / "work", "job-2")
    assert runner_for(effective.project, settings, other, effective).argv0 == [str(binary)]
    assert len(mirror.zip_requests()) == 1


def test_an_exact_required_version_picks_the_release(host, mirror: Mirror, tmp_path: Path) -> None:
    settings, workspace = host()
    root = _root(tmp_path, 'terraform {\n  required_version = "= 1.2.3"\n}\n')
    runner = runner_for(Project("infra"), settings, workspace, project_dir=root)
    assert runner.version() == "Terraform v1.2.3"
    # a constraint leaves terraform.binary's choice alone
    (root / "main.tf").write_text('terraform {\n  required_version = ">= 1.0"\n}\n')
    assert "terraform-versions" not in " ".join(runner_for(Project("infra"), settings, workspace,
                                                           project_dir=root).argv0)
    assert len(mirror.zip_requests()) == 1


def test_opentofu_downloads_from_its_own_url(host, mirror: Mirror) -> None:
    settings, workspace = host()
    effective = EffectiveProject(Project("."), terraform_version="1.8.1", terraform_distribution="opentofu")
    assert runner_for(effective.project, settings, workspace, effective).version() == "OpenTofu v1.8.1"
    assert any(p.startswith("/v1.8.1/tofu_1.8.1_") for p in mirror.zip_requests())


def test_terraform_binaries_win_over_download(host, mirror: Mirror, tmp_path: Path) -> None:
    settings, workspace = host(binaries={"~> 1.2.0": "/opt/terraform-1.2/terraform"})
    effective = EffectiveProject(Project("."), terraform_version="1.2.3")
    assert runner_for(effective.project, settings, workspace, effective).argv0 == ["/opt/terraform-1.2/terraform"]
    root = _root(tmp_path, 'terraform {\n  required_version = "1.2.3"\n}\n')
    assert runner_for(Project("infra"), settings, workspace, project_dir=root).argv0 == [
        "/opt/terraform-1.2/terraform"]
    settings, workspace = host(binary="embedded")  # an explicit binary ignores required_version
    assert "terraform-versions" not in " ".join(runner_for(Project("infra"), settings, workspace,
                                                           project_dir=root).argv0)
    assert mirror.requests == []


def test_a_failed_download_fails_the_project_with_a_clear_message(host, mirror: Mirror) -> None:
    mirror.publish("terraform", "1.2.3", checksum="cd" * 32)
    settings, workspace = host()
    effective = EffectiveProject(Project("."), terraform_version="1.2.3")
    message = r"^Cannot install terraform 1\.2\.3: checksum mismatch for http://.*terraform\.download\)\.$"
    with pytest.raises(UserFacingError, match=message) as err:
        runner_for(effective.project, settings, workspace, effective)
    assert err.value.title == "Terraform download failed"

    missing = EffectiveProject(Project("."), terraform_version="9.9.9")
    with pytest.raises(UserFacingError, match=r"9\.9\.9.*HTTP 404"):
        runner_for(missing.project, settings, workspace, missing)
    constraint = EffectiveProject(Project("."), terraform_version="~> 1.5")
    with pytest.raises(UserFacingError, match=r"terraform\.binaries.*only an exact version"):
        runner_for(constraint.project, settings, workspace, constraint)


def test_download_off_keeps_the_missing_binary_message(host, mirror: Mirror, tmp_path: Path) -> None:
    settings, workspace = host(download=False)
    effective = EffectiveProject(Project("."), terraform_version="1.2.3")
    with pytest.raises(UserFacingError, match=r"terraform\.binaries") as err:
        runner_for(effective.project, settings, workspace, effective)
    assert err.value.title == "Missing Terraform version"
    root = _root(tmp_path, 'terraform {\n  required_version = "1.2.3"\n}\n')
    assert runner_for(Project("infra"), settings, workspace, project_dir=root).argv0  # auto's choice
    assert mirror.requests == []


# --- through the jobs: /version and /plan of a pull request whose repo config pins a version ----

PINNED = "version: 3\nprojects:\n- dir: infra/app\n  terraform_version: 1.2.3\n"


def _bench(bench_factory, mirror: Mirror):
    bench = bench_factory(terraform=TerraformSettings(timeout=120, download_url=mirror.url))
    bench.open_pull()
    bench.push_commit({"plankeeper.yaml": PINNED})
    return bench


def test_version_and_plan_use_the_downloaded_release(bench_factory, mirror: Mirror) -> None:
    bench = _bench(bench_factory, mirror)
    assert bench.comment("/version", "alice") == "replied: version"
    assert bench.last_comment().splitlines()[2] == "- `infra/app`: Terraform v1.2.3"

    assert bench.comment("/plan", "alice", job_id="job-2").startswith("planning 1 project(s)")
    bench.work()
    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-2-plan"))
    assert outcome.status is OutcomeStatus.PLANNED, outcome
    assert len(mirror.zip_requests()) == 1  # /version installed it, /plan's job reused it


def test_a_checksum_mismatch_fails_the_project(bench_factory, mirror: Mirror) -> None:
    mirror.publish("terraform", "1.2.3", checksum="ef" * 32)
    bench = _bench(bench_factory, mirror)
    bench.comment("/plan", "alice")
    bench.work()
    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-1-plan"))
    assert outcome.status is OutcomeStatus.FAILED
    assert "Cannot install terraform 1.2.3: checksum mismatch" in outcome.plan.error
    assert "checksum mismatch" in bench.last_comment()
