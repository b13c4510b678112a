"""End to end through `plankeeper serve`: secrets printed by a `run` step during the plan and by
a local-exec during the apply never reach the comments, the job logs (/api/jobs/<id>/log) or
the audit log. Three kinds of secret: a sensitive variable's value only the plan knows (from a
tfvars file), a secret environment variable given to Terraform, a token-shaped string."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.e2e.test_github_apply import REPO, Scenario
from tests.support import github_comment_payload, github_pr_payload

pytestmark = pytest.mark.e2e
MASK = "***"
API_KEY = "plain-api-key-4815162342"  # only in the repo's tfvars: known from the plan's sensitive values
DB_PASSWORD = "env-db-password-2718281828"  # given to Terraform as TF_VAR_db_password
GITHUB_LIKE = "ghp_" + "Zq7" * 12  # token-shaped, printed by a local-exec during the apply
SECRETS = (API_KEY, DB_PASSWORD, GITHUB_LIKE)

LEAKY_WORKFLOW = {"repos": [{"id": "/.*/", "workflow": "leaky", "workflows": {"leaky": {"plan": {"steps": [
    "init", "plan", {"run": "echo tfvars: $(cat secrets.auto.tfvars); echo password: $TF_VAR_db_password"}]}}}}],
    "defaults": {"apply_requirements": []}}


def root(state) -> str:
    return f'''terraform {{
  backend "local" {{
    path = "{state}"
  }}
}}
variable "api_key" {{
  type      = string
  sensitive = true
}}
variable "db_password" {{
  type      = string
  sensitive = true
}}
resource "terraform_data" "x" {{
  input = {{ key = var.api_key, password = var.db_password }}
  provisioner "local-exec" {{
    command = "echo deploy token {GITHUB_LIKE}; echo password is $TF_VAR_db_password"
  }}
}}
output "api_key" {{
  value     = var.api_key
  sensitive = true
}}
'''


def test_secrets_never_reach_comments_logs_or_audit(fake_github, git_repo, tmp_path, serve_factory):
    scenario = Scenario(fake_github, git_repo, tmp_path)
    git_repo.checkout("main")
    head = git_repo.commit({"infra/app/main.tf": root(scenario.state),
                            "infra/app/secrets.auto.tfvars": f'api_key = "{API_KEY}"\n'}, "pr 7", branch="feature-7")
    fake_github.add_pull(REPO, 7, head, "feature-7", "main", "alice",
                         files=["infra/app/main.tf", "infra/app/secrets.auto.tfvars"], base_sha=scenario.base)
    fake_github.set_permission(REPO, "alice", "write")
    server = serve_factory(LEAKY_WORKFLOW, env={"TF_VAR_db_password": DB_PASSWORD})

    answer = server.deliver_github("pull_request", github_pr_payload("opened", fake_github, REPO, 7), WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()
    plan = scenario.comments(7, "**Plankeeper plan**")[-1]
    assert "1 with changes" in plan, plan
    assert f"tfvars: api_key = \"{MASK}\"" in plan and f"password: {MASK}" in plan  # printed, then masked

    answer = server.deliver_github("issue_comment", github_comment_payload(fake_github, REPO, 7, "/apply", "alice"),
                                   WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()
    apply = scenario.comments(7, "**Plankeeper apply**")[-1]
    assert "Apply complete! Resources: 1 added" in apply, apply
    assert f"deploy token {MASK}" in apply and f"password is {MASK}" in apply

    comments = "\n".join(c["body"] for c in fake_github.comments(REPO, 7))
    logs = "\n".join(line for job in requests.get(f"{server.url}/api/jobs?limit=200", timeout=5).json()
                     for line in requests.get(f"{server.url}/api/jobs/{job['id']}/log", timeout=5).json()["lines"])
    audit = requests.get(f"{server.url}/api/audit", timeout=5).text
    assert f"password: {MASK}" in logs and f"deploy token {MASK}" in logs
    for secret in SECRETS:
        assert secret not in comments, secret
        assert secret not in logs, secret
        assert secret not in audit, secret
        assert secret not in requests.get(f"{server.url}/", timeout=5).text
