"""bot/handlers/deploy.py: merge-to-deploy after a real /plan and a real merge commit in git:
the reviewed plan is compared with a fresh plan of the merge commit attribute by attribute,
policies are checked again and the approval required at merge is asked of the forge; applied
(and recorded as a deployment) only if all agree."""
from __future__ import annotations

from pathlib import Path

from bot import dispatch
from bot.handlers import HANDLERS
from bot.handlers.apply import project_of
from bot.handlers.deploy import describe_difference, manifest_difference, merged_pull
from bot.models import Command, OutcomeStatus, ProjectOutcome, PullRequestEvent, RunKind
from bot.runs import store
from bot.runs.model import Run
from bot.settings import PolicySet, PolicySettings, ProjectDefaults
from bot.state import artifacts, audit, deployments, locks
from runners.models import ResourceChange
from runners.plan_json import UNKNOWN, sensitive_marker
from tests.support import tf_data
from tests.support_jobs import FULL

STATUS = "plankeeper/apply"
KEY = "infra/app::default"
ON_MERGE = ProjectDefaults(apply_requirements=(), apply_on_merge=True)
DENY = PolicySet(name="no-forbidden", path=Path(__file__).resolve().parents[2] / "data" / "policies" / "deny",
                 owners=("carol",))


def planned(bench_factory, value: str = "hello", **settings):
    bench = bench_factory(**settings)
    bench.open_pull()
    if value != "hello":
        bench.head = bench.push_commit({"infra/app/main.tf": tf_data("x", value)})
    bench.comment("/plan", "alice", job_id="job-1")
    bench.work()
    assert [p.project_key for p in artifacts.pull_plans(bench.redis, bench.repo.id, 7)] == [KEY]
    return bench


def test_a_merge_whose_plan_is_the_reviewed_one_is_applied(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ON_MERGE)
    merged = bench.merge()
    assert merged.state == "merged" and merged.merge_sha not in (None, bench.head)
    with bench.job("job-2") as ctx:
        summary = dispatch.handle(ctx, PullRequestEvent("d2", "merged", merged, "alice"))
    assert summary == "merge-to-deploy of 1 project(s) in run job-2-deploy"
    bench.work()

    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-2-deploy"))
    assert outcome.status is OutcomeStatus.APPLIED and outcome.apply.ok
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) == merged.merge_sha
    body = bench.last_comment()
    assert body.startswith(f"**Plankeeper apply** for `{merged.merge_sha[:7]}` · 1 project: 1 applied, 0 failed")
    assert bench.statuses(merged.merge_sha, STATUS)[-1] == ("success", "1 project: 1 applied, 0 failed")
    [applied] = audit.entries(bench.redis, filters={"action": "apply"})
    assert (applied["result"], applied["commit"]) == ("success (merge-to-deploy)", merged.merge_sha)
    # finish released the pull request: no lock, no plan left
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    [released] = audit.entries(bench.redis, filters={"action": "merged"})
    assert released["project"] == KEY
    [deployment] = deployments.history(bench.redis, bench.repo.id)
    assert (deployment.via, deployment.result, deployment.commit, deployment.pull, deployment.user) == (
        "merge", "success", merged.merge_sha, 7, "alice")
    assert deployment.project == KEY and deployment.job_id == "job-2-deploy-p0"
    assert deployment.plan_sha256 == applied["plan_sha256"] and deployment.pull_url == merged.url


def deploy(bench, merged) -> ProjectOutcome:
    """The merged event dispatched, its run worked off: the one project's outcome."""
    with bench.job("job-2") as ctx:
        assert dispatch.handle(ctx, PullRequestEvent("d2", "merged", merged, "alice")) == \
            "merge-to-deploy of 1 project(s) in run job-2-deploy"
    bench.work()
    [outcome] = store.outcomes(bench.redis, store.load(bench.redis, "job-2-deploy"))
    return outcome


def assert_not_deployed(bench, refusal: str) -> None:
    """Refused: audited with why, not a deployment, nothing live, the pull request released."""
    [refused] = audit.entries(bench.redis, filters={"action": "apply_refused"})
    assert refused["result"] == refusal
    assert audit.entries(bench.redis, filters={"action": "apply"}) == []
    assert deployments.history(bench.redis) == []
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) is None
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None


def test_a_merge_whose_plan_differs_only_in_a_value_is_refused_naming_the_attribute(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ON_MERGE)
    # main overrides the attribute meanwhile: same resource, same action, another value
    bench.commit_to_base({"infra/app/override.tf": tf_data("x", "other")})
    outcome = deploy(bench, bench.merge())

    assert outcome.status is OutcomeStatus.FAILED and outcome.apply is None
    assert outcome.message == (
        "The plan on the merge commit differs from the reviewed plan, so nothing was applied:\n"
        '- `terraform_data.x`: input: "hello" → "other"\n\nOpen a pull request to review the new changes.')
    assert_not_deployed(bench, "plan changed after merge")
    assert '- `terraform_data.x`: input: "hello" → "other"' in bench.last_comment()


def test_a_merge_never_approved_while_approval_is_required_is_not_applied(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=("approved", "mergeable"),
                                                            apply_on_merge=True))
    outcome = deploy(bench, bench.merge())

    assert outcome.status is OutcomeStatus.FAILED and outcome.plan is None and outcome.apply is None
    assert outcome.message.startswith(
        "This pull request did not meet its apply requirements when it was merged, so nothing was applied:\n"
        "- needs 1 approval, has 0\n\nThe merged code is not live. To deploy it, open a pull request")
    assert_not_deployed(bench, "apply requirements not met at merge: needs 1 approval, has 0")


def test_a_merge_approved_before_merging_is_applied(fake, bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=("approved", "mergeable"),
                                                            apply_on_merge=True))
    fake.add_review(FULL, 7, "bob")
    fake.set_permission(FULL, "bob", "write")
    outcome = deploy(bench, bench.merge())  # mergeable cannot hold after a merge: not asked
    assert outcome.status is OutcomeStatus.APPLIED, outcome.message
    assert [d.via for d in deployments.history(bench.redis)] == ["merge"]


def test_a_merge_whose_plan_fails_a_policy_is_not_applied(bench_factory) -> None:
    bench = planned(bench_factory, "forbidden", defaults=ON_MERGE, policies=PolicySettings(sets=(DENY,)))
    outcome = deploy(bench, bench.merge())

    assert outcome.status is OutcomeStatus.FAILED and outcome.apply is None
    assert outcome.message.startswith(
        "Policy checks failed on the plan of the merge commit and were not approved on the reviewed plan, so "
        "nothing was applied:\n- policy set no-forbidden failed: terraform_data.x holds a forbidden value\n\n")
    assert_not_deployed(bench, "policy checks failed on the merged plan: policy set no-forbidden failed: "
                               "terraform_data.x holds a forbidden value")
    checks = audit.entries(bench.redis, filters={"action": "policy_check"})
    assert [c["commit"] for c in checks] == [bench.pull().merge_sha, bench.head]  # checked again on the merge


def test_a_policy_approval_of_the_reviewed_plan_carries_over_to_the_identical_merged_plan(fake, bench_factory) -> None:
    bench = planned(bench_factory, "forbidden", defaults=ON_MERGE, policies=PolicySettings(sets=(DENY,)))
    fake.set_permission(FULL, "carol", "write")
    bench.comment("/approve_policies", "carol", job_id="job-approve")
    assert "@carol approved" in bench.last_comment()
    outcome = deploy(bench, bench.merge())
    assert outcome.status is OutcomeStatus.APPLIED, outcome.message
    [deployment] = deployments.history(bench.redis)
    assert (deployment.via, deployment.result) == ("merge", "success")


def test_a_merge_whose_plan_changed_is_refused_and_names_the_difference(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ON_MERGE)
    bench.commit_to_base({"infra/app/extra.tf": tf_data("y", "from main")})  # main moved meanwhile
    merged = bench.merge()
    reviewed = artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY)
    deploy = merged_pull(merged)
    run = Run(id="job-2-deploy", kind=RunKind.DEPLOY, pull=deploy, command=Command("apply"), actor="alice",
              projects=[project_of(reviewed)], coordinator_job="job-2")
    outcome = ProjectOutcome(run.projects[0], OutcomeStatus.RUNNING)
    with bench.job("job-2-deploy-p0") as ctx:
        HANDLERS["deploy"].project(ctx, run, outcome)

    assert outcome.status is OutcomeStatus.FAILED and outcome.apply is None
    assert outcome.message == (
        "The plan on the merge commit differs from the reviewed plan, so nothing was applied:\n"
        "- now also: create `terraform_data.y`\n\nOpen a pull request to review the new changes.")
    assert sorted(c.address for c in outcome.plan.changes) == ["terraform_data.x", "terraform_data.y"]
    [refused] = audit.entries(bench.redis, filters={"action": "apply_refused"})
    assert (refused["result"], refused["commit"]) == ("plan changed after merge", merged.merge_sha)
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) is None
    assert audit.entries(bench.redis, filters={"action": "apply"}) == []
    # the reviewed plan is untouched (finish discards it with the pull request's locks)
    assert artifacts.get_plan(bench.redis, bench.repo.id, 7, KEY).sha256 == reviewed.sha256


def test_describe_difference_lists_both_directions() -> None:
    reviewed = [ResourceChange("a.x", "create"), ResourceChange("a.y", "update")]
    now = [ResourceChange("a.x", "create"), ResourceChange("a.y", "replace")]
    assert describe_difference(reviewed, now) == "- now also: replace `a.y`\n- no longer: update `a.y`"
    assert describe_difference(reviewed, list(reversed(reviewed))) == ""


def test_describe_difference_names_each_attribute_unknown_and_sensitive_ones_safely() -> None:
    was = {"before": {"n": 1, "pw": sensitive_marker("a")},
           "after": {"n": 2, "pw": sensitive_marker("b"), "id": UNKNOWN, "tags": {"k": "v"}}}
    now = {"before": {"n": 0, "pw": sensitive_marker("a")},
           "after": {"n": 2, "pw": sensitive_marker("c"), "id": "i-1", "tags": {"k": "v", "z": [1]}}}
    reviewed, fresh = [ResourceChange("a.x", "update", "d1")], [ResourceChange("a.x", "update", "d2")]
    assert describe_difference(reviewed, fresh, [was], [now]) == "\n".join([
        '- `a.x`: id: (known after apply) → "i-1"',
        "- `a.x`: pw: (sensitive value changed)",
        "- `a.x`: tags.z[0]: (absent) → 1",
        "- `a.x` (its current state): n: 1 → 0"])
    assert describe_difference(reviewed, [ResourceChange("a.x", "update", "d1")], [was], [now]) == ""  # same digest
    # values unknown (a plan stored without them): the difference is still found, just not itemized
    assert describe_difference(reviewed, fresh) == "- `a.x`: its values differ from the reviewed plan's"


def test_without_apply_on_merge_a_merge_only_releases(bench_factory) -> None:
    bench = planned(bench_factory, defaults=ProjectDefaults(apply_requirements=()))  # apply_on_merge off
    merged = bench.merge()
    comments = len(bench.comments())
    with bench.job("job-2") as ctx:
        assert dispatch.handle(ctx, PullRequestEvent("d2", "merged", merged, "alice")) == "released 1 lock(s)"
    assert len(bench.comments()) == comments
    assert locks.get_lock(bench.redis, bench.repo.id, KEY) is None
    assert artifacts.pull_plans(bench.redis, bench.repo.id, 7) == []
    assert deployments.last_applied(bench.redis, bench.repo.id, KEY) is None


def test_manifest_difference_names_the_kubernetes_objects_whose_manifest_changed() -> None:
    reviewed = (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: apps}\ndata: {k: v}\n---\n"
                b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {k: v}\n")
    now = reviewed.replace(b"name: a, namespace: apps}\ndata: {k: v}", b"name: a, namespace: apps}\ndata: {k: w}")
    assert manifest_difference(reviewed, reviewed) == ""
    assert manifest_difference(reviewed, now) == "- `ConfigMap/apps/a`: its manifest differs from the reviewed one"
    assert manifest_difference(reviewed, b"{not yaml") == "- the rendered manifests differ from the reviewed ones"

