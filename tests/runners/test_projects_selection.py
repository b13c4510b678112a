"""runners/projects.py with a repo config: when_modified, modules, depends_on, autodiscover."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from runners.projects import PathMatcher, select_for_changes
from runners.repo_config import parse_repo_config
from runners.repo_config_merge import merge_with_server
from bot.settings import Settings

RESOLVED = Settings().repo_settings("github.com/acme/infra")
RESOURCE = 'resource "terraform_data" "x" {\n  input = "a"\n}\n'
ROOTS, MODULES = 220, 10


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def uses(source: str) -> str:
    return f'module "m" {{\n  source = "{source}"\n}}\n'


def effective(text: str, resolved=RESOLVED):
    config = parse_repo_config(text)
    return config, merge_with_server(config, resolved)


def selected_dirs(text: str, changed: list[str], root: Path, autoplan: bool = True, base_branch=None) -> list[str]:
    config, eps = effective(text)
    return [ep.project.dir for ep in select_for_changes(eps, changed, root, config.autodiscover, autoplan, base_branch)]


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory) -> Path:
    """220 roots; root i uses modules/m{i % 10}; m0-m4 use modules/common; m9 is used by nobody else."""
    root = tmp_path_factory.mktemp("mono")
    files = {"modules/common/main.tf": RESOURCE}
    for m in range(MODULES):
        files[f"modules/m{m}/main.tf"] = RESOURCE + (uses("../common") if m < 5 else "")
    for i in range(ROOTS):
        files[f"stacks/r{i:03}/main.tf"] = uses(f"../../modules/m{i % MODULES}")
    return write(root, files)


def mono_config() -> str:
    return "version: 3\nprojects:\n" + "".join(f"- dir: stacks/r{i:03}\n" for i in range(ROOTS))


def test_module_change_plans_exactly_its_users(monorepo):
    dirs = selected_dirs(mono_config(), ["modules/m3/main.tf"], monorepo)
    assert dirs == [f"stacks/r{i:03}" for i in range(ROOTS) if i % MODULES == 3]
    assert len(dirs) == 22


def test_nested_module_change_plans_users_of_users(monorepo):
    dirs = selected_dirs(mono_config(), ["modules/common/main.tf"], monorepo)
    assert dirs == [f"stacks/r{i:03}" for i in range(ROOTS) if i % MODULES < 5]


def test_module_change_without_config_discovers_the_same_roots(monorepo):
    dirs = selected_dirs("version: 3\n", ["modules/m7/main.tf", "README.md"], monorepo)
    assert dirs == [f"stacks/r{i:03}" for i in range(ROOTS) if i % MODULES == 7]


def test_root_change_plans_that_root_only(monorepo):
    assert selected_dirs(mono_config(), ["stacks/r005/main.tf", "docs/x.md"], monorepo) == ["stacks/r005"]


@pytest.mark.parametrize("patterns,changed,expected", [
    (["**/*.tf*"], ["a/main.tf"], True),
    (["**/*.tf*"], ["a/sub/x.tfvars"], True),
    (["**/*.tf*"], ["a/readme.md"], False),
    (["**/*.tf*"], ["ab/main.tf"], False),
    (["*.tf"], ["a/main.tf"], True),
    (["*.tf"], ["a/sub/main.tf"], False),
    (["**/*.tf", "!**/test/**"], ["a/test/x.tf"], False),
    (["**/*.tf", "!**/test/**"], ["a/test/x.tf", "a/y.tf"], True),
    (["!x.tf", "*.tf"], ["a/x.tf"], True),  # the last matching pattern decides
    (["../modules/**/*.tf"], ["modules/net/main.tf"], True),
    (["../../escape/*.tf"], ["escape/x.tf"], False),
    (["config"], ["a/config/deep/file.json"], True),  # a dir pattern covers what is below it
    (["file?.txt"], ["a/file1.txt"], True),
    (["file[0-3].txt"], ["a/file7.txt"], False),
])
def test_when_modified_globs_are_relative_to_the_project_dir(patterns, changed, expected):
    matcher = PathMatcher(patterns, "a")
    assert matcher.any_match(sorted(changed)) is expected


def test_default_when_modified_covers_terragrunt_and_lock_files(tmp_path):
    text = "version: 3\nprojects: [{dir: a}]\n"
    assert selected_dirs(text, ["a/terragrunt.hcl"], tmp_path) == ["a"]
    assert selected_dirs(text, ["a/.terraform.lock.hcl"], tmp_path) == ["a"]
    assert selected_dirs(text, ["a/notes.hcl"], tmp_path) == []
    assert selected_dirs(text, ["a/main.tofu"], tmp_path) == ["a"]  # OpenTofu's own files


def test_autoplan_disabled_skipped_on_autoplan_only(tmp_path):
    text = "version: 3\nprojects: [{dir: a, autoplan: {enabled: false}}, {dir: b}]\n"
    assert selected_dirs(text, ["a/x.tf", "b/x.tf"], tmp_path) == ["b"]
    assert selected_dirs(text, ["a/x.tf", "b/x.tf"], tmp_path, autoplan=False) == ["a", "b"]


def test_depends_on_pulls_in_dependents(tmp_path):
    text = ("version: 3\nprojects:\n- {dir: net, name: net}\n- {dir: db, name: db, depends_on: [net]}\n"
            "- {dir: app, name: app, depends_on: [db]}\n- {dir: other, name: other}\n")
    assert selected_dirs(text, ["net/main.tf"], tmp_path) == ["net", "db", "app"]
    assert selected_dirs(text, ["db/main.tf"], tmp_path) == ["db", "app"]


def test_branch_regex_limits_projects(tmp_path):
    text = "version: 3\nprojects: [{dir: a, branch: /^main$/}, {dir: b}]\n"
    assert selected_dirs(text, ["a/x.tf", "b/x.tf"], tmp_path, base_branch="release") == ["b"]
    assert selected_dirs(text, ["a/x.tf", "b/x.tf"], tmp_path, base_branch="main") == ["a", "b"]


def test_autodiscover_modes(tmp_path):
    write(tmp_path, {"a/main.tf": RESOURCE, "b/main.tf": RESOURCE, "sandbox/c/main.tf": RESOURCE})
    changed = ["a/main.tf", "b/main.tf", "sandbox/c/main.tf"]
    configured = "projects: [{dir: a, name: a}]\n"
    assert selected_dirs("version: 3\n" + configured, changed, tmp_path) == ["a"]  # auto: configured only
    assert selected_dirs("version: 3\n", changed, tmp_path) == ["a", "b", "sandbox/c"]  # auto, none configured
    enabled = "version: 3\nautodiscover: {mode: enabled, ignore_paths: ['sandbox/**']}\n" + configured
    assert selected_dirs(enabled, changed, tmp_path) == ["a", "b"]
    assert selected_dirs("version: 3\nautodiscover: {mode: disabled}\n", changed, tmp_path) == []


def test_selection_is_fast_on_1000_projects(tmp_path):
    text = "version: 3\nprojects:\n" + "".join(f"- dir: team{i % 20}/stack{i}\n" for i in range(1000))
    config, eps = effective(text)
    changed = [f"team{j % 20}/stack{j}/main.tf" for j in range(0, 1000, 2)]
    started = time.perf_counter()
    chosen = select_for_changes(eps, changed, tmp_path, config.autodiscover)
    elapsed = time.perf_counter() - started
    assert len(chosen) == 500
    assert elapsed < 1.0  # the 200 ms target is measured by bench/selection.py; CI machines vary
