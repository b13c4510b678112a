"""bot/handlers/version.py: /version replies with the bot's version and the Terraform version."""
from __future__ import annotations

import re
import subprocess

from bot import __version__
from bot.settings import TerraformSettings
from runners.embedded_terraform import embedded_argv


def test_version_replies_with_the_bot_and_terraform_versions(bench_factory) -> None:
    bench = bench_factory(terraform=TerraformSettings(binary="embedded"))
    bench.open_pull()
    expected = subprocess.run([*embedded_argv(), "version"], capture_output=True, text=True, check=True
                              ).stdout.splitlines()[0]
    assert re.fullmatch(r"Terraform v\d+\.\d+\.\d+", expected), expected

    assert bench.comment("/version", "alice") == "replied: version"
    assert bench.last_comment() == f"**Plankeeper** {__version__}\n\n- default: {expected}"


def test_version_names_a_terraform_that_cannot_run(bench_factory) -> None:
    bench = bench_factory(terraform=TerraformSettings(binary="/nonexistent/terraform"))
    bench.open_pull()
    assert bench.comment("/version", "alice") == "replied: version"
    lines = bench.last_comment().splitlines()
    assert lines[0] == f"**Plankeeper** {__version__}"
    assert lines[2].startswith("- default: ") and "Terraform v" not in lines[2]
    assert "/nonexistent/terraform" in lines[2]


def test_version_lists_each_project_of_the_repo_config(bench_factory) -> None:
    bench = bench_factory(terraform=TerraformSettings(binary="embedded"))
    bench.open_pull()
    bench.push_commit({"plankeeper.yaml": "version: 3\nprojects:\n- name: app\n  dir: infra/app\n"
                                          "- dir: infra/db\n  workspace: prod\n"})
    assert bench.comment("/version", "alice") == "replied: version"
    lines = bench.last_comment().splitlines()
    assert [line.split(": ")[0] for line in lines[2:]] == ["- `app`", "- `infra/db (prod)`"]
    assert all(re.fullmatch(r"- `.+`: Terraform v\d+\.\d+\.\d+", line) for line in lines[2:]), lines
