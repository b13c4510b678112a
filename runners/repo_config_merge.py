"""Combine a repo config with the server-side repo settings into EffectiveProjects.

The server decides what a repo file may change: a restricted key set in the repo file must be
listed in the server's `allowed_overrides` (unless it only repeats the server's value, or
disables autoplan, which only restricts); workflows defined in the repo file need
`allow_custom_workflows`; a named workflow must be in `allowed_workflows` when that is set.
Violations raise RepoConfigError naming the server setting that forbids them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from runners.models import Project
from runners.repo_config import parse_server_workflows
from runners.repo_config_schema import (
    DEFAULT_WORKFLOW, DriftConfig, EffectiveProject, KubectlConfig, ProjectConfig, RepoConfig,
    RepoConfigError, Workflow,
)


def merge_with_server(repo_config: Optional[RepoConfig], resolved: Any) -> list[EffectiveProject]:
    """Every configured project with its effective settings. Raises RepoConfigError.

    `resolved` is duck-typed like bot.settings.ResolvedRepoSettings. With no repo config
    (None) the result is empty: projects are then discovered (see project_defaults()).
    """
    if repo_config is None:
        return []
    workflows = available_workflows(repo_config, resolved)
    server_workflows = available_workflows(None, resolved)
    _check_top_level(repo_config, resolved)
    return [_effective(repo_config, p, resolved, workflows, server_workflows) for p in repo_config.projects]


def project_defaults(project: Project, resolved: Any,
                     server_workflows: Optional[dict[str, Workflow]] = None) -> EffectiveProject:
    """The effective settings of a project that no `projects[]` entry lists (discovered, or -d).

    Raises RepoConfigError when the server's default workflow is not defined.
    """
    workflows = server_workflows if server_workflows is not None else available_workflows(None, resolved)
    name = getattr(resolved, "workflow", None)
    kube = getattr(resolved, "kubectl", None)
    return EffectiveProject(
        project=project,
        apply_requirements=tuple(getattr(resolved, "apply_requirements", ("approved", "mergeable"))),
        apply_on_approval=bool(getattr(resolved, "apply_on_approval", False)),
        apply_on_merge=bool(getattr(resolved, "apply_on_merge", False)),
        autoplan=bool(getattr(resolved, "autoplan", True)),
        workflow=_server_default_workflow(name, workflows),
        drift=_server_drift(resolved),
        kubectl=KubectlConfig(context=getattr(kube, "context", None), namespace=getattr(kube, "namespace", None)),
    )


def _server_default_workflow(name: Optional[str], workflows: dict[str, Workflow]) -> Workflow:
    if not name:
        return DEFAULT_WORKFLOW
    if name not in workflows:
        raise RepoConfigError(f"the default workflow {name!r} is not defined; known: {', '.join(sorted(workflows))}",
                              "server settings", None, "workflow")
    return workflows[name]


def available_workflows(repo_config: Optional[RepoConfig], resolved: Any) -> dict[str, Workflow]:
    """Workflows a project may name: built-in `default`, the server's, then (if allowed) the repo's."""
    found: dict[str, Workflow] = {"default": DEFAULT_WORKFLOW}
    found.update(parse_server_workflows(getattr(resolved, "workflows", {}) or {}, "server settings"))
    if repo_config is not None and repo_config.workflows:
        if not getattr(resolved, "allow_custom_workflows", False):
            name = next(iter(repo_config.workflows))
            raise _error(repo_config, f"workflows.{name}",
                         "this repository may not define workflows: the server setting allow_custom_workflows is "
                         "false for it (ask the Plankeeper admins, or use a server-side workflow)")
        found.update(repo_config.workflows)
    return found


def _check_top_level(repo_config: RepoConfig, resolved: Any) -> None:
    if repo_config.automerge is not None:
        _require_override(repo_config, resolved, "automerge", "automerge", repo_config.automerge,
                          getattr(resolved, "automerge", False))


# Manifests, kustomizations, charts and their values: what a change to a kubectl project touches.
KUBECTL_WHEN_MODIFIED = ("**/*.yaml", "**/*.yml", "**/*.json", "**/*.tpl")


def _effective(repo_config: RepoConfig, p: ProjectConfig, resolved: Any,
               workflows: dict[str, Workflow], server_workflows: dict[str, Workflow]) -> EffectiveProject:
    base = project_defaults(p.project, resolved, server_workflows)
    values: dict[str, Any] = {"configured": True, "branch": p.branch}
    for attr in ("apply_requirements", "apply_on_approval", "apply_on_merge"):
        value = getattr(p, attr)
        if value is not None:
            _require_override(repo_config, resolved, attr, f"{p.key_path}.{attr}", value, getattr(base, attr))
            values[attr] = tuple(value) if isinstance(value, tuple) else value
    if p.autoplan_enabled is not None:
        if p.autoplan_enabled:  # disabling autoplan only restricts, so it is always allowed
            _require_override(repo_config, resolved, "autoplan", f"{p.key_path}.autoplan.enabled", True, base.autoplan)
        values["autoplan"] = p.autoplan_enabled
    if p.when_modified is not None:
        values["when_modified"] = p.when_modified
    elif p.project.engine == "kubectl":
        values["when_modified"] = KUBECTL_WHEN_MODIFIED
    values["workflow"] = _workflow(repo_config, p, resolved, workflows, base.workflow)
    if p.drift is not None:
        _require_override(repo_config, resolved, "drift", f"{p.key_path}.drift", p.drift, None)
        values["drift"] = DriftConfig(
            schedule=p.drift.schedule if p.drift.schedule is not None else base.drift.schedule,
            remediate=p.drift.remediate if p.drift.remediate is not None else base.drift.remediate)
    if p.kubectl is not None:
        # context and namespace always come from the server: a repo file must not pick the cluster
        values["kubectl"] = dataclasses.replace(p.kubectl, context=base.kubectl.context,
                                                namespace=base.kubectl.namespace)
    for attr in ("plan_requirements", "import_requirements", "terraform_version"):
        if getattr(p, attr) is not None:
            values[attr] = getattr(p, attr)
    values.update(terraform_distribution=p.terraform_distribution or "terraform", depends_on=p.depends_on,
                  execution_order_group=p.execution_order_group, silence_pr_comments=p.silence_pr_comments,
                  repo_locks_mode=p.repo_locks_mode or "on_plan")
    return dataclasses.replace(base, **values)


def _workflow(repo_config: RepoConfig, p: ProjectConfig, resolved: Any, workflows: dict[str, Workflow],
              default: Workflow) -> Workflow:
    if p.workflow is None:
        return default
    key = f"{p.key_path}.workflow"
    server_default = getattr(resolved, "workflow", None) or "default"
    _require_override(repo_config, resolved, "workflow", key, p.workflow, server_default)
    allowed = tuple(getattr(resolved, "allowed_workflows", ()) or ())
    if allowed and p.workflow not in allowed and p.workflow != server_default:
        raise _error(repo_config, key, f"workflow {p.workflow!r} is not allowed for this repository: the server "
                     f"setting allowed_workflows lists only {', '.join(allowed)}", line=p.line)
    if p.workflow not in workflows:
        raise _error(repo_config, key, f"no workflow named {p.workflow!r}; known: {', '.join(sorted(workflows))}",
                     line=p.line)
    return workflows[p.workflow]


def _require_override(repo_config: RepoConfig, resolved: Any, override: str, key: str,
                      value: Any, server_value: Any) -> None:
    allowed = tuple(getattr(resolved, "allowed_overrides", ()) or ())
    if override in allowed or _same(value, server_value):
        return
    raise _error(repo_config, key, f"this repository may not set {override}: the server setting "
                 f"allowed_overrides does not list {override!r} (ask the Plankeeper admins to add it, "
                 "or remove the key)")


def _same(value: Any, server_value: Any) -> bool:
    if isinstance(value, tuple) and isinstance(server_value, (tuple, list)):
        return set(value) == set(server_value)
    return value == server_value


def _server_drift(resolved: Any) -> DriftConfig:
    drift = getattr(resolved, "drift", None)
    return DriftConfig(schedule=getattr(drift, "schedule", None), remediate=getattr(drift, "remediate", None))


def _error(repo_config: RepoConfig, key: str, message: str, line: Optional[int] = None) -> RepoConfigError:
    found = repo_config.lines.get(key)
    return RepoConfigError(message, repo_config.file, found or line, key)
