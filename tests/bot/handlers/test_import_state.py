"""bot/handlers/import_state.py: /import and /state rm through bot.dispatch and the run's jobs, with
the real Terraform on a local state file outside the checkout (each job has its own work dir)."""
from __future__ import annotations

import json

from bot.runs import store
from bot.settings import ProjectDefaults
from bot.state import artifacts, audit
from tests.support import tf_data
from tests.support_jobs import FULL

KEY = "infra/app::default"
ID = "11111111-2222-3333-4444-555555555555"


def with_state(bench_factory, tmp_path, **settings):
    """A bench whose pull request #7 keeps its state at tmp_path/state/terraform.tfstate; the
    server asks nothing before /import and /state rm unless settings say otherwise (by default
    import_requirements are the apply_requirements)."""
    state = tmp_path / "state" / "terraform.tfstate"
    state.parent.mkdir()
    settings.setdefault("defaults", ProjectDefaults(import_requirements=()))
    bench = bench_factory(sandbox_paths=(f"{state.parent}:rw",), **settings)
    backend = f'terraform {{\n  backend "local" {{\n    path = "{state}"\n  }}\n}}\n'
    bench.head = bench.git.commit({"infra/app/main.tf": backend + tf_data("x") + tf_data("y", "b")}, "state",
                                  branch="feature")
    bench.open_pull()
    return bench, state


def addresses(state) -> list[str]:
    data = json.loads(state.read_text())
    return sorted(f"{r['type']}.{r['name']}" for r in data["resources"])


def outcome(bench, run_id):
    [result] = store.outcomes(bench.redis, store.load(bench.redis, run_id))
    return result


def test_state_rm_after_apply_forgets_the_resource_and_the_plan(fake, bench_factory, tmp_path) -> None:
    bench, state = with_state(bench_factory, tmp_path)
    fake.add_review(FULL, 7, "bob")
    fake.set_permission(FULL, "bob", "write")
    bench.comment("/plan", "alice", job_id="job-1")
    bench.work()
    bench.comment("/apply", "alice", job_id="job-2")
    bench.work()
    assert addresses(state) == ["terraform_data.x", "terraform_data.y"]
    bench.comment("/plan", "alice", job_id="job-3")
    bench.work()
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is not None

    assert bench.comment("/state rm -d infra/app terraform_data.x", "alice", job_id="job-4") \
        == "removing from the state of 1 project(s) in run job-4-state"
    bench.work()
    done = outcome(bench, "job-4-state")
    assert done.status == "applied" and done.apply.ok, done
    assert addresses(state) == ["terraform_data.y"]
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY) is None
    body = bench.last_comment()
    assert body.startswith(f"**Plankeeper state** for `{bench.head[:7]}` · 1 project: 1 updated, 0 failed")
    assert "Successfully removed 1 resource instance(s)." in body and "comment `/plan`" in body
    [entry] = audit.entries(bench.redis, filters={"action": "state_rm"})
    assert (entry["user"], entry["project"], entry["result"], entry["detail"]) == (
        "alice", KEY, "success", "terraform_data.x")
    assert bench.statuses(bench.head, "plankeeper/state") == []


def test_import_adds_to_state_and_a_bad_address_fails_cleanly(fake, bench_factory, tmp_path) -> None:
    bench, state = with_state(bench_factory, tmp_path)
    assert bench.comment(f"/import terraform_data.y {ID}", "alice", job_id="job-1") \
        == "importing into 1 project(s) in run job-1-import"
    bench.work()
    assert outcome(bench, "job-1-import").apply.ok
    assert addresses(state) == ["terraform_data.y"]
    assert "Import successful!" in bench.last_comment()
    [entry] = audit.entries(bench.redis, filters={"action": "import"})
    assert entry["detail"] == f"terraform_data.y {ID}"

    bench.comment(f"/import -d infra/app terraform_data.nope {ID}", "alice", job_id="job-2")
    bench.work()
    failed = outcome(bench, "job-2-import")
    assert failed.status == "failed" and failed.apply.failed_step == "import"
    body = bench.last_comment()
    assert "The `import` step failed." in body and "terraform_data.nope" in body
    assert addresses(state) == ["terraform_data.y"]


def test_a_reader_is_refused(fake, bench_factory, tmp_path) -> None:
    bench, state = with_state(bench_factory, tmp_path)
    fake.set_permission(FULL, "reader", "read")
    assert bench.comment(f"/import terraform_data.y {ID}", "reader") == "refused: import refused"
    assert "needs write permission" in bench.last_comment()
    assert bench.comment("/state rm terraform_data.y", "reader", job_id="job-2") == "refused: state refused"
    assert not state.exists()


def test_import_requirements_approved_refuses_without_approval(fake, bench_factory, tmp_path) -> None:
    bench, state = with_state(bench_factory, tmp_path)
    config = "version: 3\nprojects:\n- dir: infra/app\n  import_requirements: [approved]\n"
    bench.push_commit({"atlantis.yaml": config})
    assert bench.comment(f"/import terraform_data.y {ID}", "alice") == "refused: /import refused"
    assert "Import requirements do not hold" in bench.last_comment()
    assert "needs 1 approval" in bench.last_comment()
    assert not state.exists()
    [entry] = audit.entries(bench.redis, filters={"action": "import_refused"})
    assert entry["project"] == KEY
    fake.add_review(FULL, 7, "bob")
    fake.set_permission(FULL, "bob", "write")
    assert bench.comment(f"/import terraform_data.y {ID}", "alice", job_id="job-2").startswith("importing")
    bench.work()
    assert addresses(state) == ["terraform_data.y"]


def test_import_requirements_default_to_the_apply_requirements(fake, bench_factory, tmp_path) -> None:
    bench, state = with_state(bench_factory, tmp_path, defaults=ProjectDefaults(apply_requirements=("approved",)))
    assert bench.comment("/state rm terraform_data.y", "alice") == "refused: /state rm refused"
    assert "Import requirements do not hold" in bench.last_comment() and "needs 1 approval" in bench.last_comment()
    assert not state.exists()


def test_import_needs_exactly_one_project(fake, bench_factory, tmp_path) -> None:
    bench, state = with_state(bench_factory, tmp_path)
    bench.comment(f"/import -d nowhere terraform_data.y {ID}", "alice")
    assert "no such directory" in bench.last_comment()
    config = "version: 3\nprojects:\n- dir: infra/app\n- dir: infra/app\n  workspace: staging\n"
    bench.push_commit({"atlantis.yaml": config})
    assert bench.comment(f"/import -d infra/app terraform_data.y {ID}", "alice", job_id="job-2") \
        == "refused: /import refused"
    assert "exactly one project and this selection has 2 projects" in bench.last_comment()
    assert not state.exists()
