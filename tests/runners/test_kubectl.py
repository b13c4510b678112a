"""KubectlRunner with the real kubectl 1.35 (and helm) against FakeKubeAPI, or render-only."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
import yaml

from runners.environment import minimal_env
from runners.kubectl import KubectlRunner
from runners.kubectl_render import mask_kubectl_diff
from runners.models import ResourceChange
from tests.fakes.kube_api import FakeKubeAPI
from tests.runners.conftest_kube import (
    configmap,
    deployment,
    helm_path,
    kubectl_path,
    secret,
    write_docs,
)


@pytest.fixture
def api():
    with FakeKubeAPI() as server:
        yield server


def make_runner(tmp_path: Path, kubeconfig: Path | None = None, **kwargs) -> KubectlRunner:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env = minimal_env(os.environ, home=home, tmpdir=tmp)
    kwargs.setdefault("helm", None)
    kwargs.setdefault("namespace", None)
    return KubectlRunner(
        kubectl_path(),
        env=env,
        timeout=120,
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        context=None,
        **kwargs,
    )


def test_plan_counts_create_and_change_then_apply_stores_them(tmp_path, api):
    api.put(configmap("settings", {"mode": "old"}))
    project = tmp_path / "repo" / "k8s"
    write_docs(
        project / "app.yaml",
        configmap("settings", {"mode": "new"}),
        deployment("web", "nginx:1.27", 2),
    )
    runner = make_runner(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"))
    lines: list[str] = []

    plan = runner.plan(project, "default", tmp_path / "out", on_line=lines.append)

    assert plan.ok, plan.error
    assert plan.summary == "Kubernetes: 1 to create, 1 to change, 0 to delete."
    assert sorted(plan.changes, key=lambda c: c.address) == [
        ResourceChange("ConfigMap/default/settings", "update"),
        ResourceChange("Deployment/default/web", "create"),
    ]
    assert "+  mode: new" in plan.output and "-  mode: old" in plan.output
    assert plan.has_changes and lines[-1] == plan.summary
    assert api.get("Deployment", "web") is None, "a plan must not change the cluster"
    assert any(r.method == "PATCH" and r.query.get("dryRun") == ["All"] for r in api.requests)
    assert Path(plan.plan_file) == tmp_path / "out" / "manifests.yaml"

    result = runner.apply(project, "default", Path(plan.plan_file))

    assert result.ok, result.error
    assert result.summary == "Kubernetes apply complete: 1 created, 1 configured, 0 pruned."
    assert api.get("ConfigMap", "settings")["data"] == {"mode": "new"}
    assert api.get("Deployment", "web")["spec"]["replicas"] == 2
    patches = [r for r in api.mutating_requests() if r.method == "PATCH"]
    assert {r.query.get("fieldManager", [""])[0] for r in patches} == {"plankeeper"}
    assert all(r.content_type.startswith("application/apply-patch+yaml") for r in patches)
    # kubectl found fieldValidation advertised in the OpenAPI v3 stub, so it validates server-side.
    assert {r.query.get("fieldValidation", [""])[0] for r in patches} == {"Strict"}

    again = runner.plan(project, "default", tmp_path / "out2")
    assert again.ok and not again.has_changes
    assert again.summary == "No changes. Your cluster matches the manifests."


def test_secret_values_are_masked_in_the_plan(tmp_path, api):
    old = base64.b64encode(b"hunter2").decode()
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default"},
            "type": "Opaque",
            "data": {"password": old, "user": base64.b64encode(b"admin").decode()},
        }
    )
    project = tmp_path / "k8s"
    write_docs(
        project / "secret.yaml",
        secret("db", {"password": "correct-horse", "user": "admin"}),
        secret("fresh", {"token": "brand-new"}),
    )
    runner = make_runner(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"))

    plan = runner.plan(project, "default", tmp_path / "out")

    assert plan.ok, plan.error
    assert plan.changes == [
        ResourceChange("Secret/default/db", "update"),
        ResourceChange("Secret/default/fresh", "create"),
    ]
    assert "-  password: (hidden)\n+  password: (value changed)\n   user: (hidden)" in plan.output
    assert "+  token: (value changed)" in plan.output
    for value in (
        "hunter2",
        "correct-horse",
        "brand-new",
        old,
        base64.b64encode(b"correct-horse").decode(),
        "***",
    ):
        assert value not in plan.output


LAST_APPLIED_DIFF = """\
diff -u -N /tmp/LIVE-1/v1.Secret.default.db /tmp/MERGED-2/v1.Secret.default.db
--- /tmp/LIVE-1/v1.Secret.default.db
+++ /tmp/MERGED-2/v1.Secret.default.db
@@ -1,9 +1,9 @@
 data:
-  cert: |
-    BEGIN-OLD
+  cert: |
+    BEGIN-NEW
 metadata:
   annotations:
-    kubectl.kubernetes.io/last-applied-configuration: |
-      {"data":{"cert":"BEGIN-OLD"}}
   name: db
"""


def test_masking_hides_last_applied_annotation_and_multiline_values():
    diff = LAST_APPLIED_DIFF

    masked = mask_kubectl_diff(diff)

    assert "BEGIN" not in masked
    assert "+  cert: (value changed)" in masked
    assert "-    kubectl.kubernetes.io/last-applied-configuration: (hidden)" in masked
    assert "   name: db" in masked


def test_broken_manifest_reports_kubectls_error(tmp_path, api):
    project = tmp_path / "k8s"
    write_docs(
        project / "widget.yaml",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
    )
    runner = make_runner(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"))

    plan = runner.plan(project, "default", tmp_path / "out")

    assert not plan.ok and plan.failed_step == "diff"
    assert 'no matches for kind "Widget" in version "example.com/v1"' in plan.error


def test_unparseable_yaml_fails_the_render_step(tmp_path):
    project = tmp_path / "k8s"
    project.mkdir()
    (project / "bad.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n"
    )
    (project / "noname.yml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")

    plan = make_runner(tmp_path).plan(project, "default", tmp_path / "out")

    assert not plan.ok and plan.failed_step == "render"
    assert "bad.yaml" in plan.error and "does not parse" in plan.error


def test_kustomize_overlay_renders(tmp_path):
    base, overlay = tmp_path / "k8s" / "base", tmp_path / "k8s" / "overlays" / "prod"
    write_docs(base / "deploy.yaml", deployment("api", "api:1.0"))
    (base / "kustomization.yaml").write_text("resources: [deploy.yaml]\n")
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\nnamePrefix: prod-\nimages:\n- name: api\n  newTag: '2.0'\n"
    )

    plan = make_runner(tmp_path, render="kustomize").plan(overlay, "default", tmp_path / "out")

    assert plan.ok, plan.error
    rendered = list(yaml.safe_load_all(Path(plan.plan_file).read_text()))
    assert [d["metadata"]["name"] for d in rendered] == ["prod-api"]
    assert rendered[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "api:2.0"
    assert plan.changes == [ResourceChange("Deployment/default/prod-api", "create")]


def test_broken_kustomization_fails_render_with_kubectls_error(tmp_path):
    project = tmp_path / "k8s"
    project.mkdir()
    (project / "kustomization.yaml").write_text("resources: [missing.yaml]\n")

    plan = make_runner(tmp_path, render="kustomize").plan(project, "default", tmp_path / "out")

    assert not plan.ok and plan.failed_step == "render"
    assert "missing.yaml" in plan.error


def test_helm_chart_renders_with_values(tmp_path):
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 1\ncolor: blue\n")
    (chart / "prod.yaml").write_text("replicas: 3\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\n"
        "data:\n  color: {{ .Values.color | quote }}\n  replicas: {{ .Values.replicas | quote }}\n"
    )

    runner = make_runner(
        tmp_path, render="helm", helm=helm_path(), helm_values=["prod.yaml"], namespace="apps"
    )
    plan = runner.plan(chart, "default", tmp_path / "out")

    assert plan.ok, plan.error
    [rendered] = list(yaml.safe_load_all(Path(plan.plan_file).read_text()))
    assert rendered["metadata"]["name"] == "plankeeper-cfg"
    assert rendered["data"] == {"color": "blue", "replicas": "3"}
    assert plan.changes == [ResourceChange("ConfigMap/apps/plankeeper-cfg", "create")]


def test_helm_values_outside_the_project_are_refused(tmp_path):
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    runner = make_runner(
        tmp_path, render="helm", helm=helm_path(), helm_values=["../../etc/passwd"]
    )

    plan = runner.plan(chart, "default", tmp_path / "out")

    assert not plan.ok and plan.failed_step == "render" and "outside the project" in plan.error


def test_render_only_diffs_base_and_head_without_a_cluster(tmp_path):
    base, head = tmp_path / "base" / "k8s", tmp_path / "head" / "k8s"
    write_docs(
        base / "a.yaml",
        configmap("keep", {"k": "1"}),
        configmap("edit", {"k": "1"}),
        configmap("gone", {}),
    )
    write_docs(base / "s.yaml", secret("token", {"value": "old-token", "same": "x"}))
    write_docs(head / "a.yaml", configmap("keep", {"k": "1"}), configmap("edit", {"k": "2"}))
    write_docs(head / "b.yaml", deployment("new", "nginx"))
    write_docs(head / "s.yaml", secret("token", {"value": "new-token", "same": "x"}))
    runner = make_runner(tmp_path)

    plan = runner.plan(head, "default", tmp_path / "out", base_dir=base)

    assert plan.ok, plan.error
    assert (
        plan.summary
        == "Kubernetes (render only, not checked against a cluster): 1 to create, 2 to change, 1 to delete."
    )
    assert set(plan.changes) == {
        ResourceChange("ConfigMap/default/edit", "update"),
        ResourceChange("Deployment/default/new", "create"),
        ResourceChange("Secret/default/token", "update"),
        ResourceChange("ConfigMap/default/gone", "delete"),
    }
    assert "--- base/ConfigMap/default/edit" in plan.output and "+  k: '2'" in plan.output
    assert "+  value: (value changed)" in plan.output and "same: (hidden)" in plan.output
    assert "old-token" not in plan.output and "new-token" not in plan.output
    assert "keep" not in plan.output


def test_render_only_apply_is_refused(tmp_path):
    project = tmp_path / "k8s"
    write_docs(project / "a.yaml", configmap("x", {}))
    runner = make_runner(tmp_path)
    plan = runner.plan(project, "default", tmp_path / "out")

    result = runner.apply(project, "default", Path(plan.plan_file))

    assert plan.ok and plan.has_changes and not result.ok and result.failed_step == "apply"


def test_prune_plans_deletes_and_apply_prunes(tmp_path, api):
    project = tmp_path / "k8s"
    write_docs(project / "a.yaml", configmap("one", {"a": "1"}), configmap("two", {"b": "2"}))
    runner = make_runner(
        tmp_path,
        api.write_kubeconfig(tmp_path / "kubeconfig"),
        prune=True,
        namespace="default",
        applyset="plankeeper-k8s",
    )
    first = runner.plan(project, "default", tmp_path / "out1")
    assert first.ok, first.error
    applied = runner.apply(project, "default", Path(first.plan_file))
    assert applied.ok, applied.output
    write_docs(project / "a.yaml", configmap("one", {"a": "1"}))

    second = runner.plan(project, "default", tmp_path / "out2")

    assert second.ok, second.error
    assert second.changes == [ResourceChange("ConfigMap/default/two", "delete")]
    assert second.summary == "Kubernetes: 0 to create, 0 to change, 1 to delete."
    pruned = runner.apply(project, "default", Path(second.plan_file))
    assert pruned.ok, pruned.output
    assert pruned.summary == "Kubernetes apply complete: 0 created, 1 configured, 1 pruned."
    assert api.get("ConfigMap", "two") is None and api.get("ConfigMap", "one") is not None


def test_version_names_kubectl(tmp_path):
    assert make_runner(tmp_path).version().startswith("kubectl v1.35.")


def test_render_only_validates_objects_against_the_kubernetes_schemas(tmp_path):
    project = tmp_path / "k8s"
    broken = deployment("web", "nginx")
    broken["spec"]["replicas"] = "three"
    write_docs(project / "a.yaml", broken)
    runner = make_runner(tmp_path)

    plan = runner.plan(project, "default", tmp_path / "out")

    assert not plan.ok and plan.failed_step == "render"
    assert "Deployment web" in plan.error + plan.output and "'three' is not of type 'integer'" in plan.error + plan.output


LAUGHS = """apiVersion: example.com/v1
kind: Lol
metadata:
  name: lol
spec:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def test_billion_laughs_manifest_fails_fast_and_says_why(tmp_path):
    base, head = tmp_path / "base" / "k8s", tmp_path / "head" / "k8s"
    (base).mkdir(parents=True)
    (base / "lol.yaml").write_text(LAUGHS.replace('"lol"]', '"lol!"]', 1))
    head.mkdir(parents=True)
    (head / "lol.yaml").write_text(LAUGHS)  # 4.8 million strings once expanded
    runner = make_runner(tmp_path)

    started = time.monotonic()
    plan = runner.plan(head, "default", tmp_path / "out", base_dir=base)

    assert time.monotonic() - started < 1
    assert not plan.ok and plan.failed_step == "render"
    assert "lol.yaml" in plan.error and "aliases (*name, <<: *name) expand this file by more than" in plan.error


def test_anchors_and_merge_keys_in_manifests_still_load(tmp_path):
    project = tmp_path / "k8s"
    project.mkdir()
    (project / "app.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a, labels: &labels {app: web, tier: front}}\n"
        "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b, labels: {<<: *labels, tier: back}}\n")

    plan = make_runner(tmp_path).plan(project, "default", tmp_path / "out")

    assert plan.ok, plan.error
    assert "tier: back" in plan.output and "app: web" in plan.output
