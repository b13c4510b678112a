"""Combine a repo config with the server-side repo settings into EffectiveProjects.

The server decides what a repo file may change: a restricted key set in the repo file must be
listed in the server's `allowed_overrides` (unless it only repeats the server's value, or only
restricts: disables autoplan, turns policy checks on, or adds to the server's plan, apply or
import requirements); workflows defined in the repo file need
`allow_custom_workflows`; a named workflow must be in `allowed_workflows` when that is set.
Violations raise RepoConfigError naming the server setting that forbids them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from runners.models import Project
from runners.repo_config_schema import (
    DEFAULT_WORKFLOW, DriftConfig, EffectiveProject, KubectlConfig, ProjectConfig, RepoConfig,
    RepoConfigError, Workflow,
)
from runners.repo_config_workflows import parse_server_workflows


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
    apply_requirements = tuple(getattr(resolved, "apply_requirements", ("approved", "mergeable")))
    import_requirements = getattr(resolved, "import_requirements", None)
    return EffectiveProject(
        project=project,
        apply_requirements=apply_requirements,
        plan_requirements=tuple(getattr(resolved, "plan_requirements", ()) or ()),
        import_requirements=tuple(import_requirements) if import_requirements is not None else apply_requirements,
        policy_check=bool(getattr(resolved, "policy_check", True)),
        delete_source_branch_on_merge=bool(getattr(resolved, "delete_source_branch_on_merge", False)),
        silence_pr_comments=tuple(getattr(resolved, "silence_pr_comments", ()) or ()),
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
    if repo_config.delete_source_branch_on_merge is not None:
        _require_override(repo_config, resolved, "delete_source_branch_on_merge", "delete_source_branch_on_merge",
                          repo_config.delete_source_branch_on_merge,
                          getattr(resolved, "delete_source_branch_on_merge", False))


def automerge_settings(repo_config: Optional[RepoConfig], resolved: Any) -> tuple[bool, str]:
    """(automerge on?, merge method) for a pull request: the repo file's top-level keys (automerge
    needs allowed_overrides, checked by merge_with_server), else the server's."""
    enabled = getattr(resolved, "automerge", False)
    method = getattr(resolved, "automerge_method", "merge")
    if repo_config is not None:
        enabled = repo_config.automerge if repo_config.automerge is not None else enabled
        method = repo_config.automerge_method or method
    return bool(enabled), method


# Manifests, kustomizations, charts and their values: what a change to a kubectl project touches.
KUBECTL_WHEN_MODIFIED = ("**/*.yaml", "**/*.yml", "**/*.json", "**/*.tpl")


def _effective(repo_config: RepoConfig, p: ProjectConfig, resolved: Any,
               workflows: dict[str, Workflow], server_workflows: dict[str, Workflow]) -> EffectiveProject:
    base = project_defaults(p.project, resolved, server_workflows)
    values: dict[str, Any] = {"configured": True, "branch": p.branch}
    for attr in ("apply_requirements", "plan_requirements", "import_requirements", "apply_on_approval",
                 "apply_on_merge"):
        value = getattr(p, attr)
        if value is not None:
            server_value = getattr(base, attr)
            if not (attr.endswith("_requirements") and set(value) >= set(server_value)):  # more only restricts
                _require_override(repo_config, resolved, attr, f"{p.key_path}.{attr}", value, server_value)
            values[attr] = tuple(value) if isinstance(value, tuple) else value
    values.update(_merge_keys(repo_config, p, resolved, base))
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
    if p.terraform_version is not None:
        values["terraform_version"] = p.terraform_version
    values.update(terraform_distribution=p.terraform_distribution or "terraform", depends_on=p.depends_on,
                  execution_order_group=p.execution_order_group,
                  silence_pr_comments=p.silence_pr_comments or base.silence_pr_comments,
                  repo_locks_mode=p.repo_locks_mode or "on_plan")
    return dataclasses.replace(base, **values)


def _merge_keys(repo_config: RepoConfig, p: ProjectConfig, resolved: Any, base: EffectiveProject) -> dict[str, Any]:
    """policy_check (turning it off needs allowed_overrides) and delete_source_branch_on_merge
    (the project's, else the file's top-level one)."""
    values: dict[str, Any] = {}
    if p.policy_check is not None:
        if not p.policy_check:  # turning policy checks on only restricts, so it is always allowed
            _require_override(repo_config, resolved, "policy_check", f"{p.key_path}.policy_check", False,
                              base.policy_check)
        values["policy_check"] = p.policy_check
    delete = p.delete_source_branch_on_merge
    if delete is not None:
        _require_override(repo_config, resolved, "delete_source_branch_on_merge",
                          f"{p.key_path}.delete_source_branch_on_merge", delete, base.delete_source_branch_on_merge)
    elif repo_config.delete_source_branch_on_merge is not None:
        delete = repo_config.delete_source_branch_on_merge  # checked in _check_top_level
    if delete is not None:
        values["delete_source_branch_on_merge"] = delete
    return values


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
