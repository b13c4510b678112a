"""The Terraform CLI configuration file (TF_CLI_CONFIG_FILE) the bot gives every Terraform it runs.

Its explicit provider_installation block turns off Terraform's implied local mirrors, among them
`terraform.d/plugins` in the working directory: without it, a pull request could commit a
"provider" there and Terraform would run it during plan, with no network needed. And no command
asks checkpoint-api.hashicorp.com whether a newer Terraform exists (`disable_checkpoint`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def cli_config_text(mirrors: Sequence[Path] = ()) -> str:
    """A Terraform CLI configuration with an explicit provider_installation: providers come from
    the mirrors (read-only directories the operator fills) or their registries, never from the
    implied local mirrors such as a repository's own `terraform.d/plugins`."""
    blocks = "".join(f"  filesystem_mirror {{\n    path = {json.dumps(str(m))}\n  }}\n" for m in mirrors)
    return ("# Written by Plankeeper for every Terraform it runs (TF_CLI_CONFIG_FILE).\n"
            "disable_checkpoint = true\n"  # no call to HashiCorp's version check from every command
            f"provider_installation {{\n{blocks}  direct {{}}\n}}\n")


def write_cli_config(path: Path, mirrors: Sequence[Path] = ()) -> Path:
    """Write cli_config_text(mirrors) to path unless it already holds exactly that (atomically,
    so that concurrent jobs never read half a file); returns path."""
    text = cli_config_text(mirrors)
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(text, encoding="utf-8")
    os.chmod(temp, 0o644)
    os.replace(temp, path)
    return path
