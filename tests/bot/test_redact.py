"""bot.redact: token formats, secret values, a real plan's sensitive values, job log masking."""
from __future__ import annotations

import base64
import os
import sys
from types import SimpleNamespace

import pytest

from bot.state import joblog, keys
from bot.redact import (
    MASK,
    Redactor,
    encodings,
    is_secret_name,
    learn_plan_secrets,
    mask_log,
    sensitive_values,
    settings_secrets,
    terraform_env_secrets,
)
from bot.settings import Settings
from runners.embedded_terraform import embedded_argv
from runners.environment import minimal_env
from runners.terraform import TerraformRunner

GITHUB_TOKEN = "ghp_" + "a1B2" * 9
DB_PASSWORD = "hunter2-correct-horse"
API_KEY = "k3y-value-from-tfvars"

ROOT = f'''
variable "db_password" {{
  type      = string
  sensitive = true
}}
variable "region" {{
  default = "eu-west-1"
}}
variable "settings" {{
  type      = map(string)
  sensitive = true
  default   = {{ api_key = "{API_KEY}" }}
}}
resource "terraform_data" "db" {{
  input = {{ password = var.db_password, region = var.region }}
}}
output "password" {{
  value     = var.db_password
  sensitive = true
}}
'''


def test_known_token_formats_are_masked() -> None:
    redact = Redactor()
    for token in (GITHUB_TOKEN, "glpat-" + "x" * 20, "AKIA" + "A" * 16, "xoxb-1234567890-abc",
                  "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"):
        assert redact(f"before {token} after") == f"before {MASK} after"


def test_exact_values_are_masked_but_short_ones_are_not() -> None:
    redact = Redactor(["s3cr3t-value", "abc"])
    assert redact("x=s3cr3t-value abc") == f"x={MASK} abc"


def test_added_secrets_mask_each_line_of_a_multiline_value() -> None:
    redact = Redactor()
    redact.add_secrets(["first-line-secret\nsecond-line-secret", 42])
    assert redact("a second-line-secret b") == f"a {MASK} b"
    assert redact("first-line-secret\nsecond-line-secret") == MASK


def test_simple_encodings_of_a_secret_are_masked() -> None:
    secret = ">>>???~~~pass1"  # its base64 has + and /, its URL-safe base64 - and _
    raw = secret.encode()
    redact = Redactor([secret])
    forms = [secret[::-1], raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode(), base64.b64encode(raw + b"\n").decode(),
             (raw + b"\n").hex()]
    forms += [f.rstrip("=") for f in forms if f.endswith("=")]
    assert len(set(forms)) == len(forms) >= 9
    for form in forms:
        assert redact(f"leak: {form} end") == f"leak: {MASK} end", form
    assert redact(base64.b64encode(raw).decode()) == MASK  # padding is not left behind


def test_encodings_of_short_secrets_are_not_masked() -> None:
    redact = Redactor(["short7!"])  # 7 characters: masked as it is, but not its encodings
    assert redact("short7!") == MASK
    encoded = "!7trohs " + base64.b64encode(b"short7!").decode()
    assert redact(encoded) == encoded
    assert set(encodings("eight888")) >= {"888thgie", b"eight888".hex(), base64.b64encode(b"eight888").decode()}


def test_secret_environment_names() -> None:
    assert all(map(is_secret_name, ["AWS_SECRET_ACCESS_KEY", "TF_VAR_db_password", "ARM_CLIENT_SECRET",
                                    "GOOGLE_CREDENTIALS", "aws_session_token"]))
    assert not any(map(is_secret_name, ["PATH", "AWS_REGION", "TF_VAR_region"]))


def test_terraform_env_secrets_are_the_passed_through_secret_values() -> None:
    parent = {"AWS_SECRET_ACCESS_KEY": "aws-secret-value", "TF_VAR_db_password": DB_PASSWORD,
              "AWS_REGION": "eu-west-1", "PLANKEEPER_GITHUB__TOKEN": "not-passed-anyway", "MY_TOKEN": "not-passed"}
    assert sorted(terraform_env_secrets(parent)) == sorted(["aws-secret-value", DB_PASSWORD])


def test_settings_secrets_include_the_terraform_env_secrets() -> None:
    os.environ["TF_VAR_test_redact_password"] = "from-the-environment-123"
    try:
        values = settings_secrets(Settings())
    finally:
        del os.environ["TF_VAR_test_redact_password"]
    assert "from-the-environment-123" in values


@pytest.fixture(scope="module")
def plan_json(tmp_path_factory) -> dict:
    """`terraform show -json` of a real plan with sensitive variables, attributes and outputs."""
    tmp = tmp_path_factory.mktemp("plan")
    root = tmp / "root"
    root.mkdir()
    (root / "main.tf").write_text(ROOT)
    (root / "secrets.auto.tfvars").write_text(f'db_password = "{DB_PASSWORD}"\n')
    (tmp / "home").mkdir()
    (tmp / "tmp").mkdir()
    env = minimal_env({"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}, tmp / "home", tmp / "tmp")
    result = TerraformRunner(embedded_argv(), env, timeout=120).plan(root, "default", tmp / "out")
    assert result.ok, result.error
    assert DB_PASSWORD not in result.output  # Terraform hides it itself: "(sensitive value)"
    return result.plan_json


def test_sensitive_values_of_a_real_plan(plan_json: dict) -> None:
    values = sensitive_values(plan_json)
    assert DB_PASSWORD in values and API_KEY in values
    assert "eu-west-1" not in values  # not sensitive
    assert sensitive_values(None) == []


def test_learn_plan_secrets_masks_result_log_and_later_lines(plan_json: dict, redis_db) -> None:
    redact = Redactor()
    log = joblog.JobLog(redis_db, "job-1", redact)
    log(f"run step printed {DB_PASSWORD}")  # streamed before the plan's values were known
    result = SimpleNamespace(plan_json=plan_json, output=f"leak: {DB_PASSWORD}", error="", summary="Plan: 1 to add")
    ctx = SimpleNamespace(redact=redact, redis=redis_db, job_id="job-1")
    learn_plan_secrets(ctx, result)
    log(f"later {API_KEY}")
    lines = joblog.read_log(redis_db, "job-1")
    assert DB_PASSWORD not in result.output and MASK in result.output
    assert not any(DB_PASSWORD in line or API_KEY in line for line in lines), lines
    assert len(lines) == 2 and lines[0].endswith(f"run step printed {MASK}")


def test_mask_log_leaves_clean_lines_alone(redis_db) -> None:
    redis_db.rpush(keys.JOB_LOG.format("j"), "clean line", "has s3cr3t-value")
    assert mask_log(redis_db, "j", Redactor(["s3cr3t-value"])) == 1
    assert joblog.read_log(redis_db, "j") == ["clean line", f"has {MASK}"]


def test_values_with_regex_metacharacters_are_matched_literally() -> None:
    redact = Redactor(["a+b(c)*[d]?"])
    assert redact("x a+b(c)*[d]? y") == f"x {MASK} y"
