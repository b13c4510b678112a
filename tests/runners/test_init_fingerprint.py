"""runners/init_fingerprint.py: every change that must force `terraform init` changes the
fingerprint (naming the part), and changes init does not depend on leave it alone."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from runners.init_fingerprint import PART_NAMES, fingerprint

ROOT = '''terraform {
  required_version = ">= 1.0"
  backend "local" {
    path = "state.tfstate"
  }
}

module "net" {
  source = "../../modules/net"
}

module "consul" {
  source  = "hashicorp/consul/aws"
  version = "0.1.0"
}

variable "name" {
  default = "a"
}

resource "terraform_data" "x" {
  input = var.name
}
'''
NET = 'module "sub" {\n  source = "../sub"\n}\n\nresource "terraform_data" "n" {}\n'
SUB = 'terraform {\n  required_version = ">= 1.0"\n}\n\nresource "terraform_data" "s" {}\n'
LOCK = '# This file is maintained automatically by "terraform init".\nprovider "registry.terraform.io/x/y" {}\n'
BINARY = ["/bin/sh", "-c", "terraform"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {"infra/app/main.tf": ROOT, "infra/app/.terraform.lock.hcl": LOCK, "modules/net/main.tf": NET,
             "modules/sub/main.tf": SUB, "README.md": "hello\n"}
    for rel, text in files.items():
        (tmp_path / "repo" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / rel).write_text(text)
    return tmp_path / "repo"


def of(repo: Path, argv0=BINARY, args=(), env=None):
    return fingerprint(repo / "infra/app", repo, argv0, args, env or {"TF_CLI_CONFIG_FILE": ""})


def edit(repo: Path, rel: str, old: str | None, new: str | None) -> None:
    path = repo / rel
    if new is None:
        path.unlink()
    elif old is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new)
    else:
        text = path.read_text()
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new))


FORCING = [
    ("lock file edited", "lock", ("infra/app/.terraform.lock.hcl", "x/y", "x/z")),
    ("lock file removed", "lock", ("infra/app/.terraform.lock.hcl", "", None)),
    ("backend setting", "backend", ("infra/app/main.tf", '"state.tfstate"', '"other.tfstate"')),
    ("backend type", "backend", ("infra/app/main.tf", 'backend "local" {\n    path = "state.tfstate"\n  }',
                                 'cloud {\n    organization = "acme"\n  }')),
    ("root module source", "modules", ("infra/app/main.tf", '"../../modules/net"', '"../../modules/sub"')),
    ("registry module version", "modules", ("infra/app/main.tf", '"0.1.0"', '"0.2.0"')),
    ("new module call", "modules", ("infra/app/main.tf", "variable", 'module "more" {\n  source = "./x"\n}\n\nvariable')),
    ("nested local module call", "modules", ("modules/sub/main.tf", "resource", 'module "deep" {\n  source = "git::https://e.com/m.git"\n}\nresource')),
    ("local module's required_version", "requirements", ("modules/sub/main.tf", ">= 1.0", ">= 1.5")),
    ("new provider in a local module", "requirements", ("modules/net/main.tf", 'resource "terraform_data" "n" {}', 'resource "random_id" "n" {}')),
    ("provider block", "requirements", ("infra/app/main.tf", "variable", 'provider "aws" {\n  region = "x"\n}\n\nvariable')),
    ("required_providers", "requirements", ("infra/app/main.tf", 'required_version = ">= 1.0"',
                                            'required_version = ">= 1.0"\n  required_providers {\n    aws = { source = "hashicorp/aws" }\n  }')),
    ("a .tf.json module call", "modules", ("infra/app/extra.tf.json", None, '{"module": {"j": {"source": "./j"}}}')),
]


@pytest.mark.parametrize("why,part,change", FORCING, ids=[f[0] for f in FORCING])
def test_each_change_init_depends_on_changes_its_part(repo, why, part, change):
    before = of(repo)
    assert before.always_init == "" and set(before.parts) == set(PART_NAMES)
    edit(repo, *change)
    after = of(repo)
    assert after.always_init == ""
    assert after.changed(before.parts)[:1] == [part], (why, after.changed(before.parts))


KEEPING = [
    ("resource attribute", ("infra/app/main.tf", "input = var.name", 'input = "${var.name}-b"')),
    ("variable default", ("infra/app/main.tf", 'default = "a"', 'default = "b"')),
    ("comment and layout", ("infra/app/main.tf", "terraform {\n", "# the settings\nterraform   {\n\n")),
    ("another resource of a known provider", ("modules/net/main.tf", "{}", '{}\nresource "terraform_data" "m" {}')),
    ("a new variable", ("modules/sub/main.tf", "resource", 'variable "v" {}\nresource')),
    ("a tfvars file", ("infra/app/terraform.tfvars", None, 'name = "c"\n')),
    ("a file elsewhere", ("README.md", "hello", "bye")),
]


@pytest.mark.parametrize("why,change", KEEPING, ids=[k[0] for k in KEEPING])
def test_changes_init_does_not_depend_on_keep_the_fingerprint(repo, why, change):
    before = of(repo)
    edit(repo, *change)
    assert of(repo).parts == before.parts, why


def test_the_binary_and_its_upgrade_in_place(repo, tmp_path):
    program = tmp_path / "terraform"
    program.write_text("#!/bin/sh\n")
    before = of(repo, argv0=[str(program)])
    assert of(repo, argv0=[str(program)]).parts == before.parts
    assert of(repo, argv0=["/usr/bin/env"]).changed(before.parts) == ["binary"]
    program.write_text("#!/bin/sh\n# a newer release\n")
    os.utime(program, ns=(1, 1))
    assert of(repo, argv0=[str(program)]).changed(before.parts) == ["binary"]


def test_tf_environment_and_cli_configuration(repo, tmp_path):
    config = tmp_path / "terraform.tfrc"
    config.write_text("provider_installation {\n  direct {}\n}\n")
    env = {"TF_CLI_CONFIG_FILE": str(config), "TF_VAR_x": "1", "TF_TOKEN_example_com": "t", "PULL_NUM": "7"}
    before = of(repo, env=env)
    unrelated = dict(env, TF_VAR_x="2", TF_TOKEN_example_com="u", PULL_NUM="8", TF_LOG="trace")
    assert of(repo, env=unrelated).parts == before.parts
    assert of(repo, env=dict(env, TF_REGISTRY_CLIENT_TIMEOUT="30")).changed(before.parts) == ["options"]
    config.write_text('provider_installation {\n  filesystem_mirror {\n    path = "/m"\n  }\n}\n')
    assert of(repo, env=env).changed(before.parts) == ["options"]


ALWAYS = [
    ("init arguments", {"args": ["-backend-config=prod.hcl"]}, "the init step has extra arguments"),
    ("TF_CLI_ARGS_init", {"env": {"TF_CLI_ARGS_init": "-upgrade"}}, "TF_CLI_ARGS_init is set"),
    ("TF_CLI_ARGS", {"env": {"TF_CLI_ARGS": "-no-color"}}, "TF_CLI_ARGS is set"),
    ("TF_DATA_DIR", {"env": {"TF_DATA_DIR": "/tmp/x"}}, "TF_DATA_DIR is set"),
]


@pytest.mark.parametrize("why,given,reason", ALWAYS, ids=[a[0] for a in ALWAYS])
def test_inputs_outside_the_files_always_init(repo, why, given, reason):
    found = of(repo, **given)
    assert found.always_init == reason and found.parts == {}


UNKNOWABLE = [
    ("backend reads a variable", ("infra/app/main.tf", '"state.tfstate"', "var.state"), "reads a variable"),
    ("module source is an expression", ("infra/app/main.tf", '"hashicorp/consul/aws"', 'local.src'), "is an expression"),
    ("module version template", ("infra/app/main.tf", '"0.1.0"', '"${var.v}"'), "is an expression"),
    ("local module outside the repository", ("modules/net/main.tf", '"../sub"', '"../../../elsewhere"'),
     "outside the repository"),
]


@pytest.mark.parametrize("why,change,reason", UNKNOWABLE, ids=[u[0] for u in UNKNOWABLE])
def test_what_the_files_cannot_tell_always_inits(repo, why, change, reason):
    edit(repo, *change)
    assert reason in of(repo).always_init


def test_files_that_are_not_the_repositorys_are_never_read(repo, tmp_path):
    secret = tmp_path / "secret.tf"
    secret.write_text('terraform {\n  backend "s3" {}\n}\n')
    (repo / "infra/app/evil.tf").symlink_to(secret)
    assert "resolves outside the repository" in of(repo).always_init
    (repo / "infra/app/evil.tf").unlink()
    os.mkfifo(repo / "infra/app/pipe.tf")  # reading it would block the job
    assert "not a regular file" in of(repo).always_init
