"""runners/projects.py: autodiscovery of changed Terraform projects."""
from __future__ import annotations

import json
import time
from pathlib import Path

from runners.models import Project
from runners.projects import discover_projects, module_users

RESOURCE = 'resource "terraform_data" "x" {\n  input = "a"\n}\n'


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def module(name: str, source: str) -> str:
    return f'module "{name}" {{\n  source = "{source}"\n  tags = {{ a = "b" }}\n}}\n'


def repo(tmp_path: Path) -> Path:
    return write(
        tmp_path / "repo",
        {
            "modules/net/main.tf": RESOURCE,
            "modules/app/main.tf": module("net", "../net"),  # a module using a module
            "envs/prod/main.tf": module("app", "../../modules/app"),
            "envs/prod/prod.tfvars": 'x = "1"\n',
            "envs/staging/main.tf.json": json.dumps(
                {"module": {"net": {"source": "../../modules/net"}}}
            ),
            "standalone/main.tf": RESOURCE + module("remote", "git::https://example.com/m.git"),
            "main.tf": RESOURCE,
            "envs/prod/.terraform/modules/app/main.tf": RESOURCE,
            "docs/readme.md": "not terraform",
        },
    )


def dirs(projects: list[Project]) -> list[str]:
    assert all(p.workspace == "default" for p in projects)
    return [p.dir for p in projects]


def test_root_change_is_that_root_only(tmp_path: Path) -> None:
    root = repo(tmp_path)
    assert dirs(discover_projects(root, ["envs/prod/main.tf"])) == ["envs/prod"]
    assert dirs(discover_projects(root, ["envs/prod/prod.tfvars"])) == ["envs/prod"]
    assert dirs(discover_projects(root, ["main.tf", "standalone/main.tf"])) == [".", "standalone"]


def test_module_change_plans_every_root_using_it(tmp_path: Path) -> None:
    root = repo(tmp_path)
    # net is used by staging directly and by prod through modules/app
    assert dirs(discover_projects(root, ["modules/net/main.tf"])) == ["envs/prod", "envs/staging"]
    assert dirs(discover_projects(root, ["modules/app/main.tf"])) == ["envs/prod"]


def test_ignores_non_terraform_cache_and_deleted_dirs(tmp_path: Path) -> None:
    root = repo(tmp_path)
    changed = [
        "docs/readme.md",
        "envs/prod/.terraform/modules/app/main.tf",
        "removed/main.tf",
        "envs/prod/main.tf",
        "envs/prod/prod.tfvars",
    ]
    assert dirs(discover_projects(root, changed)) == ["envs/prod"]


def test_unparseable_file_falls_back_to_regex(tmp_path: Path) -> None:
    root = write(
        tmp_path / "r",
        {
            "mod/main.tf": RESOURCE,
            "a/main.tf": module("m", "../mod") + "this is { not valid HCL\n",
        },
    )
    assert dirs(discover_projects(root, ["mod/main.tf"])) == ["a"]


def test_module_users(tmp_path: Path) -> None:
    assert module_users(repo(tmp_path)) == {
        "modules/net": {"modules/app", "envs/staging"},
        "modules/app": {"envs/prod"},
    }


def test_many_dirs_are_indexed_quickly(tmp_path: Path) -> None:
    files = {f"stacks/s{i}/main.tf": module("m", "../../modules/common") for i in range(150)}
    files["modules/common/main.tf"] = RESOURCE
    root = write(tmp_path / "big", files)
    discover_projects(root, ["stacks/s0/main.tf"])  # warm python-hcl2's parser cache
    started = time.monotonic()
    found = discover_projects(root, ["modules/common/main.tf"])
    assert len(found) == 150
    assert time.monotonic() - started < 5


def test_opentofu_files_make_a_project(tmp_path: Path) -> None:
    root = write(tmp_path, {"tofu/main.tofu": 'module "m" {\n  source = "../mod"\n}\n', "mod/main.tofu": RESOURCE,
                            "json/main.tofu.json": "{}", "docs/readme.md": "x"})
    assert dirs(discover_projects(root, ["tofu/main.tofu"])) == ["tofu"]
    assert dirs(discover_projects(root, ["json/main.tofu.json"])) == ["json"]
    assert dirs(discover_projects(root, ["mod/main.tofu"])) == ["tofu"]  # a module used from a .tofu root
    assert dirs(discover_projects(root, ["docs/readme.md"])) == []
