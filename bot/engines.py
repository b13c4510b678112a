"""Which runner plans a project: the one place that turns settings into a Runner."""
from __future__ import annotations

import os
from pathlib import Path

from bot.settings import Settings
from runners.base import Runner
from runners.environment import minimal_env
from runners.models import Project
from runners.terraform import TerraformRunner, resolve_binary
from runners.workspace import Workspace


def parent_environment() -> dict[str, str]:
    """The server's environment, from which runners.environment keeps only an allowlist."""
    return dict(os.environ)


def runner_for(project: Project, settings: Settings, workspace: Workspace, terraform_version: str | None = None) -> Runner:
    """The runner for the project's engine, with a private HOME/TMPDIR in the workspace."""
    env = minimal_env(parent_environment(), workspace.home, workspace.tmp)
    if project.engine == "kubectl":
        from runners.kubectl import KubectlRunner

        kube = settings.kubectl
        return KubectlRunner(
            kubectl=kube.binary, helm=None, env=env, timeout=settings.terraform.timeout,
            kubeconfig=str(kube.kubeconfig) if kube.kubeconfig else None, context=kube.context, namespace=None,
        )
    argv0 = resolve_binary(
        settings.terraform.binary, env.get("PATH", ""), version=terraform_version,
        binaries=settings.terraform.binaries,
    )
    return TerraformRunner(argv0, env, settings.terraform.timeout, plugin_cache_dir=plugin_cache(settings))


def plugin_cache(settings: Settings) -> Path:
    path = Path(settings.data_dir) / "plugin-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
