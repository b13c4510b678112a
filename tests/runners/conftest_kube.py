"""Helpers for the kubectl runner tests: locating kubectl 1.35/helm and writing manifests.

The machine may carry an unrelated, older /usr/bin/kubectl: it is never used. kubectl comes from
$KUBECTL_FOR_TESTS or the directory scripts/install-kubectl.sh installs into.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

INSTALL_DIR = Path("/usr/local/lib/plankeeper/bin")


def _find(env_name: str, binary: str) -> str | None:
    candidate = os.environ.get(env_name) or str(INSTALL_DIR / binary)
    return candidate if Path(candidate).is_file() and os.access(candidate, os.X_OK) else None


def kubectl_path() -> str:
    """kubectl 1.35, or skip the test saying how to install it."""
    path = _find("KUBECTL_FOR_TESTS", "kubectl")
    if path is None:
        pytest.skip(
            f"kubectl 1.35 not found: run scripts/install-kubectl.sh or set KUBECTL_FOR_TESTS "
            f"(looked in {INSTALL_DIR})"
        )
    version = subprocess.run(
        [path, "version", "--client"], check=False, capture_output=True, text=True, timeout=60
    ).stdout
    if "v1.35." not in version:
        pytest.skip(
            f"{path} is not kubectl 1.35 ({version.strip()!r}): run scripts/install-kubectl.sh"
        )
    return path


def helm_path() -> str:
    path = _find("HELM_FOR_TESTS", "helm")
    if path is None:
        pytest.skip(
            f"helm not found: run scripts/install-kubectl.sh or set HELM_FOR_TESTS (looked in {INSTALL_DIR})"
        )
    return path


def write_docs(path: Path, *docs: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


def configmap(name: str, data: dict, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def secret(name: str, string_data: dict, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": string_data,
    }


def deployment(name: str, image: str, replicas: int = 1, namespace: str = "default") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }
