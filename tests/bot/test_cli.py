"""bot/cli.py: the argument parser (help on every option, --version) and the no-forge warning."""
from __future__ import annotations

import argparse

import pytest

from bot import __version__
from bot.cli import build_parser, main, no_forge_warning
from bot.settings_loader import load_settings


def test_version_flag_prints_the_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"plankeeper {__version__}\n"


def test_version_subcommand_says_the_same(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"plankeeper {__version__}\n"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_and_option_has_help_text():
    parser = build_parser()
    subcommands = _subcommands(parser)
    assert set(subcommands) == {"serve", "worker", "plan", "check", "version"}
    for name, sub in [("plankeeper", parser), *subcommands.items()]:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {'/'.join(action.option_strings)} has no help text"


def test_serve_warns_naming_the_settings_when_no_forge_is_configured():
    warning = no_forge_warning(load_settings(None, {}))
    assert warning is not None
    for name in ("PLANKEEPER_GITHUB__TOKEN", "PLANKEEPER_GITHUB__WEBHOOK_SECRET", "PLANKEEPER_GITLAB__TOKEN",
                 "PLANKEEPER_GITLAB__WEBHOOK_SECRET", "PLANKEEPER_GITEA__URL", "PLANKEEPER_GITEA__TOKEN",
                 "PLANKEEPER_GITEA__WEBHOOK_SECRET", "PLANKEEPER_BITBUCKET__TOKEN", "PLANKEEPER_AZUREDEVOPS__ORG_URL",
                 "PLANKEEPER_AZUREDEVOPS__WEBHOOK_PASSWORD"):
        assert name in warning


@pytest.mark.parametrize("environ", [
    {"PLANKEEPER_GITHUB__TOKEN": "t", "PLANKEEPER_GITHUB__WEBHOOK_SECRET": "s"},
    {"PLANKEEPER_GITLAB__TOKEN": "t", "PLANKEEPER_GITLAB__WEBHOOK_SECRET": "s"},
    {"PLANKEEPER_GITEA__URL": "https://codeberg.org", "PLANKEEPER_GITEA__TOKEN": "t",
     "PLANKEEPER_GITEA__WEBHOOK_SECRET": "s"},
    {"PLANKEEPER_BITBUCKET__TOKEN": "t", "PLANKEEPER_BITBUCKET__WEBHOOK_SECRET": "s"},
    {"PLANKEEPER_AZUREDEVOPS__ORG_URL": "https://dev.azure.com/acme", "PLANKEEPER_AZUREDEVOPS__TOKEN": "t",
     "PLANKEEPER_AZUREDEVOPS__WEBHOOK_USERNAME": "u", "PLANKEEPER_AZUREDEVOPS__WEBHOOK_PASSWORD": "p"},
])
def test_no_warning_once_a_forge_is_configured(environ):
    assert no_forge_warning(load_settings(None, environ)) is None
