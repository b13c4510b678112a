"""End to end through `plankeeper serve`: GitOps rollback. A merged and deployed pull request is
reverted with `/revert`; the revert pull request the bot opens is planned (saying what it rolls
back), approved, merged and deployed, and the Terraform state is back to what it was before."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.e2e.test_github_apply import REPO, Scenario, comment, opened
from tests.support import github_pr_payload

pytestmark = pytest.mark.e2e
ON_MERGE = {"defaults": {"apply_on_merge": True}}


@pytest.fixture
def scenario(fake_github, git_repo, tmp_path):
    return Scenario(fake_github, git_repo, tmp_path)


def deploy(server, fake, scenario, number: int) -> None:
    """Approve, merge (a real merge commit, pushed) and deliver the merge: merge-to-deploy runs."""
    fake.set_permission(REPO, "bob", "write")
    fake.add_review(REPO, number, "bob", "APPROVED")
    pull = fake.pull(REPO, number)
    if pull.head_ref.startswith("plankeeper/"):  # the bot pushed it: not a local branch of the test's work tree
        scenario.repo.checkout("main")
        scenario.repo.git("fetch", "-q", "origin", pull.head_ref)
        scenario.repo.git("merge", "-q", "--no-ff", "-m", f"Merge #{number}", "FETCH_HEAD")
        scenario.repo.git("push", "-q", "origin", "main")
        fake.set_state(REPO, number, closed=True, merged=True)
        pull.merge_commit_sha = scenario.repo.git("rev-parse", "HEAD")
    else:
        scenario.merge(number)
    answer = server.deliver_github("pull_request", github_pr_payload("closed", fake, REPO, number), WEBHOOK_SECRET)
    assert answer.status_code == 202, answer.text
    server.wait_jobs_idle()


def test_revert_rolls_a_deployed_change_back(scenario, fake_github, serve_factory):
    server = serve_factory(ON_MERGE)
    scenario.open_pull(6, value="hello")
    opened(server, fake_github, 6)
    server.wait_jobs_idle()
    deploy(server, fake_github, scenario, 6)
    assert scenario.state_values() == ["hello"], server.log()

    scenario.open_pull(7, value="world")
    opened(server, fake_github, 7)
    server.wait_jobs_idle()
    deploy(server, fake_github, scenario, 7)
    assert scenario.state_values() == ["world"], server.log()
    merge_sha = fake_github.pull(REPO, 7).merge_commit_sha

    comment(server, fake_github, 7, "/revert")
    server.wait_jobs_idle()
    reply = scenario.comments(7, "**Plankeeper revert**")
    assert reply and reply[0].startswith("**Plankeeper revert**: opened [#8]("), scenario.comments(7)
    revert = fake_github.pull(REPO, 8)
    assert (revert.title, revert.head_ref, revert.base_ref) == (
        f"Revert #7: {fake_github.pull(REPO, 7).title}", f"plankeeper/revert-7-{merge_sha[:7]}", "main")
    assert [f["filename"] for f in revert.files] == ["infra/app/main.tf"]
    audit = requests.get(f"{server.url}/api/audit?action=revert", timeout=5).json()
    assert audit[0]["user"] == "alice" and audit[0]["result"] == "opened #8"

    opened(server, fake_github, 8)  # the forge's webhook for the pull request the bot opened
    server.wait_jobs_idle()
    [plan] = scenario.comments(8, "**Plankeeper plan**")
    assert f"↩️ **Rolls back #7** (`{merge_sha[:7]}`)" in plan
    assert "1 project: 1 with changes" in plan and "terraform_data.x" in plan
    assert '"world" -> "hello"' in plan, plan

    deploy(server, fake_github, scenario, 8)
    applied = scenario.comments(8, "**Plankeeper apply**")
    assert applied and "1 applied, 0 failed" in applied[-1], server.log()
    assert scenario.state_values() == ["hello"]  # as before #7 was deployed
    assert requests.get(f"{server.url}/api/locks", timeout=5).json() == []
    history = requests.get(f"{server.url}/api/deployments?repo=github.com/{REPO}", timeout=5).json()
    assert [(d["pull"], d["via"], d["result"]) for d in history][:2] == [(8, "revert", "success"),
                                                                          (7, "merge", "success")]
