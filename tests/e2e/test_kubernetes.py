"""End to end through `plankeeper serve`: Kubernetes projects (`engine: kubectl` in
plankeeper.yaml) planned with the real kubectl 1.35 against FakeKubeAPI and applied on
`/apply`; Secret masking; kustomize and Helm rendering; render-only mode; kubectl's errors."""
from __future__ import annotations

import base64

import pytest
import requests
import yaml

from tests.conftest import WEBHOOK_SECRET
from tests.fakes.kube_api import FakeKubeAPI
from tests.runners.conftest_kube import configmap, deployment, helm_path, kubectl_path, secret
from tests.support import github_comment_payload, github_pr_payload

pytestmark = pytest.mark.e2e
REPO = "acme/infra"
NO_APPROVAL = {"apply_requirements": []}
# The default when_modified globs are Terraform's, so Kubernetes projects name their files.
K8S_FILES = ["**/*.yaml", "**/*.yml", "**/*.tpl"]


def repo_config(*projects: dict) -> str:
    entries = [{"dir": p["dir"], "engine": "kubectl", "autoplan": {"when_modified": K8S_FILES},
                **({"kubectl": p["kubectl"]} if "kubectl" in p else {})} for p in projects]
    return yaml.safe_dump({"version": 3, "projects": entries}, sort_keys=False)


def docs(*objects: dict) -> str:
    return yaml.safe_dump_all(list(objects), sort_keys=False)


class KubeScenario:
    """A repo on the fake GitHub whose main branch holds Kubernetes projects."""

    def __init__(self, fake, repo, base_files: dict[str, str]):
        self.fake, self.repo = fake, repo
        self.base = repo.commit(base_files, "initial")
        fake.add_repo(REPO, repo.clone_url)

    def open_pull(self, number: int, files: dict[str, str]) -> str:
        branch = f"feature-{number}"
        self.repo.checkout("main")
        head = self.repo.commit(files, f"pr {number}", branch=branch)
        self.repo.checkout("main")
        self.fake.add_pull(REPO, number, head, branch, "main", "alice", files=sorted(files), base_sha=self.base)
        self.fake.set_permission(REPO, "alice", "write")
        return head

    def deliver_opened(self, server, number: int) -> None:
        answer = server.deliver_github("pull_request", github_pr_payload("opened", self.fake, REPO, number),
                                       WEBHOOK_SECRET)
        assert answer.status_code == 202, answer.text

    def deliver_comment(self, server, number: int, body: str) -> None:
        payload = github_comment_payload(self.fake, REPO, number, body, "alice")
        answer = server.deliver_github("issue_comment", payload, WEBHOOK_SECRET)
        assert answer.status_code == 202, answer.text

    def comments(self, number: int, prefix: str) -> list[str]:
        return [c["body"] for c in self.fake.comments(REPO, number) if c["body"].startswith(prefix)]

    def only_comment(self, server, number: int, prefix: str) -> str:
        """The one comment starting with prefix; fails showing every comment and the server log."""
        found = self.comments(number, prefix)
        assert len(found) == 1, f"{[c['body'] for c in self.fake.comments(REPO, number)]}\n{server.log()}"
        return found[0]


@pytest.fixture
def kube_api():
    with FakeKubeAPI() as api:
        yield api


@pytest.fixture
def kube_server(serve_factory, kube_api, tmp_path):
    """Start `plankeeper serve` with kubectl 1.35 (and helm) and a kubeconfig for the fake cluster,
    or, with cluster=False, in render-only mode (no kubeconfig)."""

    def start(cluster: bool = True, helm: str | None = None):
        kubectl: dict = {"binary": kubectl_path(), **({"helm": helm} if helm else {})}
        if cluster:
            kubeconfig = kube_api.write_kubeconfig(tmp_path / "kubeconfig", context="fake-cluster")
            kubectl.update(kubeconfig=str(kubeconfig), context="fake-cluster")
        return serve_factory({"kubectl": kubectl, "defaults": NO_APPROVAL})

    return start


def job_log_text(server) -> str:
    """Every line of every job's log, as the UI serves them."""
    jobs = requests.get(f"{server.url}/api/jobs?limit=200", timeout=5).json()
    lines: list[str] = []
    for job in jobs:
        answer = requests.get(f"{server.url}/api/jobs/{job['id']}/log", timeout=5).json()
        lines += answer["lines"]
    return "\n".join(str(line) for line in lines)


def test_deployment_and_configmap_are_planned_with_counts_then_applied(fake_github, git_repo, kube_api,
                                                                      kube_server):
    kube_api.put(configmap("settings", {"mode": "old"}))
    # context and namespace from a repo file are ignored: either would make kubectl fail here
    scenario = KubeScenario(fake_github, git_repo, {
        "plankeeper.yaml": repo_config({"dir": "k8s", "kubectl": {"context": "prod", "namespace": "other"}}),
        "k8s/app.yaml": docs(configmap("settings", {"mode": "old"})),
    })
    head = scenario.open_pull(7, {"k8s/app.yaml": docs(configmap("settings", {"mode": "new"}),
                                                       deployment("web", "nginx:1.27", 2))})
    server = kube_server()

    scenario.deliver_opened(server, 7)
    server.wait_jobs_idle()

    plan = scenario.only_comment(server, 7, "**Plankeeper plan**")
    assert "1 project: 1 with changes, 0 without, 0 failed" in plan
    assert "`Kubernetes: 1 to create, 1 to change, 0 to delete.`" in plan
    assert "| ➕ create | `Deployment/default/web` |" in plan
    assert "| 🔧 update | `ConfigMap/default/settings` |" in plan
    assert "-  mode: old" in plan and "+  mode: new" in plan
    assert "To apply this project: `/apply -d k8s`" in plan
    assert kube_api.get("Deployment", "web") is None, "a plan must not change the cluster"
    assert kube_api.mutating_requests() == []

    scenario.deliver_comment(server, 7, "/apply")
    server.wait_jobs_idle()

    applied = scenario.only_comment(server, 7, "**Plankeeper apply**")
    assert "`Kubernetes apply complete: 1 created, 1 configured, 0 pruned.`" in applied
    assert kube_api.get("ConfigMap", "settings")["data"] == {"mode": "new"}
    assert kube_api.get("Deployment", "web")["spec"]["replicas"] == 2
    patches = [r for r in kube_api.mutating_requests() if r.method == "PATCH"]
    assert {r.query.get("fieldManager", [""])[0] for r in patches} == {"plankeeper"}
    assert [s["state"] for s in fake_github.statuses(REPO, head) if s["context"] == "plankeeper/apply"] == [
        "pending", "success"]
    audit = requests.get(f"{server.url}/api/audit?action=apply", timeout=5).json()
    assert audit[0]["project"] == "k8s::default" and audit[0]["result"] == "success" and audit[0]["plan_sha256"]


def test_secret_change_is_masked_in_comment_and_job_log(fake_github, git_repo, kube_api, kube_server):
    kube_api.put(secret("db", {"password": "old-pa55word", "user": "admin"}))
    scenario = KubeScenario(fake_github, git_repo, {
        "plankeeper.yaml": repo_config({"dir": "k8s"}),
        "k8s/secret.yaml": docs(secret("db", {"password": "old-pa55word", "user": "admin"})),
    })
    scenario.open_pull(7, {"k8s/secret.yaml": docs(secret("db", {"password": "n3w-pa55word", "user": "admin"}))})
    server = kube_server()

    scenario.deliver_opened(server, 7)
    server.wait_jobs_idle()

    plan = scenario.only_comment(server, 7, "**Plankeeper plan**")
    assert "`Kubernetes: 0 to create, 1 to change, 0 to delete.`" in plan, plan
    assert "+  password: (value changed)" in plan
    log = job_log_text(server)
    assert "+  password: (value changed)" in log, "the masked diff is in the job log"
    for text in (plan, log):
        assert "n3w-pa55word" not in text and "old-pa55word" not in text

    scenario.deliver_comment(server, 7, "/apply")
    server.wait_jobs_idle()

    assert "`Kubernetes apply complete: 0 created, 1 configured, 0 pruned.`" in scenario.only_comment(
        server, 7, "**Plankeeper apply**")
    assert kube_api.get("Secret", "db")["data"]["password"] == base64.b64encode(b"n3w-pa55word").decode()
    assert "n3w-pa55word" not in job_log_text(server)


def chart_files(root: str) -> dict[str, str]:
    template = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-chart\n"
                "data:\n  color: {{ .Values.color | quote }}\n")
    return {
        f"{root}/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
        f"{root}/values.yaml": "color: blue\n",
        f"{root}/values-prod.yaml": "color: green\n",
        f"{root}/templates/configmap.yaml": template,
    }


def kustomize_files(root: str) -> dict[str, str]:
    return {
        f"{root}/base/kustomization.yaml": "resources: [deploy.yaml]\n",
        f"{root}/base/deploy.yaml": docs(deployment("api", "nginx:1.27")),
        f"{root}/overlays/prod/kustomization.yaml": "resources: [../../base]\nnamePrefix: prod-\n",
    }


def test_kustomize_overlay_and_helm_chart_are_rendered_and_applied(fake_github, git_repo, kube_api, kube_server):
    scenario = KubeScenario(fake_github, git_repo, {
        "plankeeper.yaml": repo_config(
            {"dir": "kustomize/overlays/prod", "kubectl": {"render": "kustomize"}},
            {"dir": "chart", "kubectl": {"render": "helm", "values": ["values-prod.yaml"]}}),
        "README.md": "k8s\n",
    })
    scenario.open_pull(7, {**kustomize_files("kustomize"), **chart_files("chart")})
    server = kube_server(helm=helm_path())

    scenario.deliver_opened(server, 7)
    server.wait_jobs_idle()

    plan = scenario.only_comment(server, 7, "**Plankeeper plan**")
    assert "2 projects: 2 with changes, 0 without, 0 failed" in plan, plan
    assert "| ➕ create | `Deployment/default/prod-api` |" in plan
    assert "| ➕ create | `ConfigMap/default/plankeeper-chart` |" in plan
    assert plan.count("`Kubernetes: 1 to create, 0 to change, 0 to delete.`") == 2

    scenario.deliver_comment(server, 7, "/apply")
    server.wait_jobs_idle()

    assert kube_api.get("Deployment", "prod-api")["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "nginx:1.27"
    assert kube_api.get("ConfigMap", "plankeeper-chart")["data"] == {"color": "green"}


def test_render_only_mode_diffs_base_and_head_without_a_cluster(fake_github, git_repo, kube_api, kube_server):
    scenario = KubeScenario(fake_github, git_repo, {
        "plankeeper.yaml": repo_config({"dir": "k8s"}),
        "k8s/app.yaml": docs(configmap("settings", {"mode": "old"}), configmap("legacy", {"a": "b"})),
    })
    scenario.open_pull(7, {"k8s/app.yaml": docs(configmap("settings", {"mode": "new"}),
                                                deployment("web", "nginx:1.27"))})
    # main moves on after the branch left it: the diff is from the merge base, as the forge shows it
    fake_github.pull(REPO, 7).base_sha = git_repo.commit({"k8s/other.yaml": docs(configmap("on-main", {}))},
                                                          "meanwhile on main")
    server = kube_server(cluster=False)

    scenario.deliver_opened(server, 7)
    server.wait_jobs_idle()

    plan = scenario.only_comment(server, 7, "**Plankeeper plan**")
    assert "Render-only mode: no cluster is configured" in plan and "not checked against a cluster" in plan
    assert "on-main" not in plan
    assert ("`Kubernetes (render only, not checked against a cluster): 1 to create, 1 to change, "
            "1 to delete.`") in plan, plan
    assert "--- base/ConfigMap/default/settings" in plan and "+++ head/ConfigMap/default/settings" in plan
    assert "-  mode: old" in plan and "+  mode: new" in plan
    assert "| 🗑️ **delete** | `ConfigMap/default/legacy` |" in plan
    assert "+  mode: new" in job_log_text(server)
    assert kube_api.requests == [], "render-only mode never contacts a cluster"

    scenario.deliver_comment(server, 7, "/apply")
    server.wait_jobs_idle()

    applied = scenario.only_comment(server, 7, "**Plankeeper apply**")
    assert "render-only mode" in applied and "nothing can be applied" in applied
    assert kube_api.requests == []


def test_broken_manifest_gets_kubectls_error_in_the_comment(fake_github, git_repo, kube_api, kube_server):
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    scenario = KubeScenario(fake_github, git_repo, {
        "plankeeper.yaml": repo_config({"dir": "k8s"}), "README.md": "k8s\n"})
    scenario.open_pull(7, {"k8s/widget.yaml": docs(widget)})
    server = kube_server()

    scenario.deliver_opened(server, 7)
    server.wait_jobs_idle()

    plan = scenario.only_comment(server, 7, "**Plankeeper plan**")
    assert "1 project: 0 with changes, 0 without, 1 failed" in plan, plan
    assert "The `diff` step failed." in plan
    assert 'no matches for kind "Widget" in version "example.com/v1"' in plan
    assert kube_api.mutating_requests() == []
