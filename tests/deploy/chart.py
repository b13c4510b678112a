"""Rendering deploy/helm/plankeeper with the real `helm template`, and reading what it rendered:
objects by kind and component, a container's environment as the kubelet would resolve it, and
a structural check of the ServiceMonitor (a CRD kubernetes-validate has no schema for)."""
from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from tests.support import ROOT

CHART = ROOT / "deploy" / "helm" / "plankeeper"
RELEASE = "pk"
NAMESPACE = "infra"
HELM_TIMEOUT = 120  # seconds; helm starts in well under one, but the machine is shared

# monitoring.coreos.com/v1 ServiceMonitor: what the Prometheus Operator's CRD requires, and the
# endpoint fields this chart uses, with their types (unknown endpoint fields are refused).
_DURATION = r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_SECRET_KEY = {"type": "object", "required": ["name", "key"],
               "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string", "minLength": 1}}}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "minProperties": 1, "properties": {
                    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "namespaceSelector": {"type": "object", "properties": {
                    "matchNames": {"type": "array", "items": {"type": "string"}}, "any": {"type": "boolean"}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "required": ["port"],
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string", "minLength": 1},
                        "path": {"type": "string", "pattern": "^/"},
                        "interval": {"type": "string", "pattern": _DURATION},
                        "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                        "authorization": {"type": "object", "required": ["credentials"], "properties": {
                            "type": {"type": "string"}, "credentials": _SECRET_KEY}},
                    },
                }},
            },
        },
    },
}


class HelmFailed(Exception):
    """`helm template` refused the values; the message is helm's stderr."""


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template`."""

    objects: tuple[dict, ...]

    def all(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {[o['metadata']['name'] for o in self.all(kind)]}"
        return found[0]

    def deployment(self, component: str) -> dict:
        return self.one("Deployment", f"{RELEASE}-plankeeper-{component}")

    def container(self, component: str) -> dict:
        containers = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def pod_spec(self, component: str) -> dict:
        return self.deployment(component)["spec"]["template"]["spec"]

    def config_text(self) -> str:
        return self.one("ConfigMap", f"{RELEASE}-plankeeper")["data"]["config.yaml"]

    def config(self) -> dict:
        return yaml.safe_load(self.config_text())


def render(helm: str, values: dict) -> Rendered:
    """`helm template` of the chart with these values; raises HelmFailed with helm's message."""
    return _render(helm, json.dumps(values, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _render(helm: str, values_json: str) -> Rendered:
    out = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, values_json=values_json)
    return Rendered(tuple(doc for doc in yaml.safe_load_all(out) if doc))


def run_helm(helm: str, *args: str, values_json: str = "{}") -> str:
    """Run helm with the values given as a file; stdout, or HelmFailed with its stderr."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
        values.write(values_json)  # JSON is YAML
        values.flush()
        result = subprocess.run([helm, *args, "-f", values.name], capture_output=True, text=True,
                                timeout=HELM_TIMEOUT, check=False)
    if result.returncode != 0:
        raise HelmFailed(result.stderr.strip())
    return result.stdout


def check_service_monitor(obj: dict) -> None:
    """Raises jsonschema.ValidationError when a field the CRD requires is missing or mistyped."""
    jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)


def resolve_env(container: dict, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: secretKeyRef values looked up in
    secrets ((secret name, key) -> value) and $(NAME) replaced by an earlier variable."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
    return env


def secret_volume_files(pod_spec: dict, container: dict, secrets: dict[tuple[str, str], str]) -> dict[str, dict[str, str]]:
    """What the kubelet puts in the container's Secret volumes: mount path -> {file name: value},
    each value looked up in secrets ((secret name, key) -> value) by the volume's secretName and
    item key. A key missing from secrets raises KeyError, as a missing key stops the pod."""
    volumes = {v["name"]: v["secret"] for v in pod_spec["volumes"] if "secret" in v}
    files: dict[str, dict[str, str]] = {}
    for mount in container["volumeMounts"]:
        volume = volumes.get(mount["name"])
        if volume is None:
            continue
        name = volume["secretName"]
        items = volume.get("items") or [{"key": key, "path": key} for (secret, key) in secrets if secret == name]
        files[mount["mountPath"]] = {item["path"]: secrets[(name, item["key"])] for item in items}
    return files


def write_secret_files(config_text: str, mounts: dict[str, dict[str, str]], into: Path) -> str:
    """config.yaml with the pods' secrets directory moved into `into`, where the files of
    mounts (mount path -> {file name: content}) are written: what the Secret volumes hold."""
    for mount_path, files in mounts.items():
        directory = into / mount_path.lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_text(content + "\n")
    return config_text.replace("/run/secrets/", f"{into}/run/secrets/")
