"""Merge-to-deploy: apply each reviewed project on the merge commit only when that is exactly
what was reviewed and allowed; then release the pull request's locks.

Per project, in order, anything failing refuses the apply (audited as `apply_refused`, not a
deployment) with a comment saying why and what to do:
1. the pull request met its apply requirements when it was merged (`approved`, asked of the
   forge for the reviewed head; `mergeable` and `undiverged` cannot hold after a merge);
2. a fresh plan of the merge commit equals the reviewed plan attribute by attribute: the same
   resources, actions and before/after values (unknown values as unknown, sensitive ones by
   their hash; runners.plan_json.change_values); for a Kubernetes project, the same objects,
   actions and rendered manifests;
3. the policy checks pass on that plan, or failed sets were approved on the reviewed plan
   (an approval carries over since the plans are identical).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import yaml

from bot import policies, redact, requirements
from bot.context import MERGED_DIR, JobContext
from bot.execution import apply_in, effective_for, plan_in, store_plan
from bot.handlers.apply import ApplyHandler, apply_lease, project_of, record_deployment, via_for
from bot.handlers.base import Handler, Request, Started
from bot.handlers.unlock import release_pull_request
from bot.models import Command, OutcomeStatus, ProjectOutcome, PullRequest, RunKind
from bot.runs.model import NewRun, Run
from bot.state import artifacts, audit, deployments
from runners.kubectl_render import object_key
from runners.models import ResourceChange
from runners.plan_json import MARKER, change_values

NOT_LIVE = "The merged code is not live."
MAX_DIFFERENCES = 40  # lines listed in the comment
MAX_VALUE = 80  # characters of one value shown


class DeployHandler(Handler):
    name = "deploy"
    needs_permission = False  # started by the merge itself, never by a comment

    def start(self, ctx: JobContext, request: Request) -> Started:
        """The deploy run of the reviewed projects whose apply_on_merge holds; "" when none."""
        merged = merged_pull(request.pull)
        plans = artifacts.pull_plans(ctx.redis, merged.repo.id, merged.number)
        if not plans:
            return ""
        repo_dir = ctx.checkout(merged, sha=merged.head_sha, subdir=MERGED_DIR)
        effective = [effective_for(ctx, merged, repo_dir, project_of(p)) for p in plans]
        effective = [ep for ep in effective if ep.apply_on_merge]
        if not effective:
            return ""
        run = Run(id=f"{ctx.job_id}-deploy", kind=RunKind.DEPLOY, pull=merged, command=Command("apply"),
                  actor=merged.author, projects=[ep.project for ep in effective], coordinator_job=ctx.job_id,
                  via=via_for(ctx, merged, deployments.Via.MERGE))
        return NewRun(run, effective, parallel=False)

    def project(self, ctx: JobContext, run: Run, outcome: ProjectOutcome) -> None:
        """Check the requirements, re-plan on the merge commit, compare with the reviewed plan,
        check the policies, apply."""
        merged, r = run.pull, ctx.redis
        reviewed = artifacts.get_plan(r, merged.repo.id, merged.number, outcome.project.key)
        if reviewed is None:
            outcome.status, outcome.message = OutcomeStatus.SKIPPED, "No reviewed plan for this project any more."
            return
        repo_dir = ctx.checkout(merged, sha=merged.head_sha, subdir=MERGED_DIR)
        effective = effective_for(ctx, merged, repo_dir, outcome.project)
        # approvals are of the reviewed head (a GitHub approval names its commit), asked of the forge now
        unmet = requirements.unmet(ctx, replace(merged, head_sha=reviewed.head_sha),
                                   [req for req in effective.apply_requirements if req == "approved"])
        if unmet:
            refuse(ctx, run, outcome, "apply requirements not met at merge: " + "; ".join(unmet), (
                "This pull request did not meet its apply requirements when it was merged, so nothing was "
                "applied:\n" + "\n".join(f"- {p}" for p in unmet) + f"\n\n{NOT_LIVE} To deploy it, open a pull "
                "request that changes this project, have it approved and apply it there: its plan includes "
                "these merged changes."))
            return
        fresh = plan_in(ctx, merged, repo_dir, effective, (), run.actor)
        redact.learn_plan_secrets(ctx, fresh)
        outcome.plan = fresh
        if not fresh.ok:
            outcome.status = OutcomeStatus.FAILED
            outcome.message = "Re-planning on the merge commit failed: nothing was applied."
            return
        difference = describe_difference(reviewed.changes, fresh.changes, artifacts.plan_values(r, reviewed),
                                         change_values(fresh.plan_json) if fresh.plan_json else None)
        if not difference and reviewed.engine == "kubectl" and fresh.plan_file:  # its plan file: the manifests
            difference = manifest_difference(artifacts.plan_bytes(r, reviewed) or b"",
                                             Path(fresh.plan_file).read_bytes())
        if difference:
            refuse(ctx, run, outcome, "plan changed after merge", (
                "The plan on the merge commit differs from the reviewed plan, so nothing was "
                f"applied:\n{difference}\n\nOpen a pull request to review the new changes."))
            return
        saved = store_plan(ctx, merged, outcome.project, fresh, head_sha=merged.head_sha)
        if saved is None:
            outcome.status = OutcomeStatus.FAILED
            outcome.message = "The merge commit's plan left no plan file to apply."
            return
        blocked = policies.merged_plan_blocking(ctx, merged, reviewed, saved, fresh.plan_json, run.actor,
                                                effective.policy_check)
        if blocked:
            refuse(ctx, run, outcome, "policy checks failed on the merged plan: " + "; ".join(blocked), (
                "Policy checks failed on the plan of the merge commit and were not approved on the reviewed "
                "plan, so nothing was applied:\n" + "\n".join(f"- {b}" for b in blocked) + f"\n\n{NOT_LIVE} To "
                "deploy it, open a pull request that changes this project: a policy owner can approve its "
                "failed checks there with `/approve_policies` before it is applied."))
            return
        lease = apply_lease(ctx, merged.repo.id, reviewed.project_key)
        if not lease.acquire():
            outcome.status, outcome.message = OutcomeStatus.SKIPPED, "Another apply of this project is running right now."
            return
        with lease.kept():
            result = apply_in(ctx, merged, repo_dir, saved, outcome.project, run.actor)
        outcome.apply = result
        outcome.status = OutcomeStatus.APPLIED if result.ok else OutcomeStatus.FAILED
        audit.record(r, "apply", user=run.actor, repo=merged.repo.id, pull=merged.number, commit=merged.head_sha,
                     project=reviewed.project_key, plan_sha256=saved.sha256,
                     result="success (merge-to-deploy)" if result.ok else f"failed: {result.failed_step or 'apply'}",
                     job_id=ctx.job_id)
        record_deployment(ctx, run, reviewed.project_key, saved.sha256, result)

    def finish(self, ctx: JobContext, run: Run, outcomes: list[ProjectOutcome]) -> None:
        ApplyHandler().finish(ctx, run, outcomes)
        release_pull_request(ctx, run.pull, "merged", run.actor)


def refuse(ctx: JobContext, run: Run, outcome: ProjectOutcome, reason: str, message: str) -> None:
    """Nothing applied: the project fails with why and what to do; audited, not a deployment."""
    merged = run.pull
    outcome.status, outcome.message = OutcomeStatus.FAILED, message
    audit.record(ctx.redis, "apply_refused", user=run.actor, repo=merged.repo.id, pull=merged.number,
                 commit=merged.head_sha, project=outcome.project.key, result=ctx.redact(reason)[:500],
                 job_id=ctx.job_id)


# -- comparing the reviewed plan with the merge commit's ------------------------------------------

def change_set(changes: list[ResourceChange]) -> set[tuple[str, str]]:
    return {(c.address, c.action) for c in changes}


def describe_difference(reviewed: list[ResourceChange], now: list[ResourceChange],
                        reviewed_values: Optional[Sequence[dict]] = None,
                        now_values: Optional[Sequence[dict]] = None) -> str:
    """What differs between two plans, one line each ("" when they are equal): resources and
    actions added or gone, then, for a resource changed the same way in both, each attribute
    whose before or after value differs (values given as change_values, aligned with the changes)."""
    added = sorted(change_set(now) - change_set(reviewed))
    gone = sorted(change_set(reviewed) - change_set(now))
    lines = [f"- now also: {action} `{address}`" for address, action in added]
    lines += [f"- no longer: {action} `{address}`" for address, action in gone]
    old, new = _by_change(reviewed, reviewed_values), _by_change(now, now_values)
    for key in sorted(set(old) & set(new)):
        if sorted(d for d, _ in old[key]) == sorted(d for d, _ in new[key]):
            continue
        address = key[0]
        if len(old[key]) == 1 == len(new[key]) and old[key][0][1] is not None and new[key][0][1] is not None:
            lines += value_differences(address, old[key][0][1], new[key][0][1]) or [
                f"- `{address}`: its values differ from the reviewed plan's"]
        else:
            lines.append(f"- `{address}`: its values differ from the reviewed plan's")
    if len(lines) > MAX_DIFFERENCES:
        lines = lines[:MAX_DIFFERENCES] + [f"- … and {len(lines) - MAX_DIFFERENCES} more differences"]
    return "\n".join(lines)


def _by_change(changes: Sequence[ResourceChange], values: Optional[Sequence[dict]]
               ) -> dict[tuple[str, str], list[tuple[str, Optional[dict]]]]:
    """(address, action) -> [(digest, values)] (several for deposed objects of one address)."""
    aligned = values if values is not None and len(values) == len(changes) else [None] * len(changes)
    found: dict[tuple[str, str], list[tuple[str, Optional[dict]]]] = defaultdict(list)
    for change, value in zip(changes, aligned):
        found[(change.address, change.action)].append((change.digest, value))
    return found


_ABSENT = object()


def value_differences(address: str, old: dict, new: dict) -> list[str]:
    """One line per attribute whose planned value (after), then current value (before), differs."""
    lines = []
    for side, label in (("after", ""), ("before", " (its current state)")):
        was, now = _flatten(old.get(side)), _flatten(new.get(side))
        for path in sorted(set(was) | set(now)):
            a, b = was.get(path, _ABSENT), now.get(path, _ABSENT)
            if a == b:
                continue
            change = "(sensitive value changed)" if _sensitive(a) or _sensitive(b) else f"{_show(a)} → {_show(b)}"
            lines.append(f"- `{address}`{label}: {path or '(whole value)'}: {change}")
    return lines


def _flatten(value: object, path: str = "") -> dict[str, object]:
    """Leaves by path (`a.b`, `list[0]`); a marker (unknown, sensitive) or an empty container is a leaf."""
    if isinstance(value, dict) and value and MARKER not in value:
        found: dict[str, object] = {}
        for key, item in value.items():
            found.update(_flatten(item, f"{path}.{key}" if path else str(key)))
        return found
    if isinstance(value, list) and value:
        found = {}
        for index, item in enumerate(value):
            found.update(_flatten(item, f"{path}[{index}]"))
        return found
    return {path: value}


def _sensitive(value: object) -> bool:
    return isinstance(value, dict) and value.get(MARKER) == "sensitive"


def _show(value: object) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, dict) and value.get(MARKER) == "unknown":
        return "(known after apply)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def manifest_difference(reviewed: bytes, now: bytes) -> str:
    """Kubernetes projects: each object whose rendered manifest differs from the reviewed one."""
    if reviewed == now:
        return ""
    was, new = _objects(reviewed), _objects(now)
    if was is None or new is None:
        return "- the rendered manifests differ from the reviewed ones"
    changed = sorted(k for k in set(was) | set(new) if was.get(k) != new.get(k))
    return "\n".join(f"- `{k}`: its manifest differs from the reviewed one" for k in changed) or \
        "- the rendered manifests differ from the reviewed ones (only in their order or layout)"


def _objects(text: bytes) -> Optional[dict[str, dict]]:
    try:
        docs = [d for d in yaml.safe_load_all(text.decode("utf-8")) if isinstance(d, dict)]
        return {object_key(d, None).address: d for d in docs}
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        return None


def merged_pull(pull: PullRequest) -> PullRequest:
    """The pull request as deployed: its 'head' is the merge commit (statuses land there)."""
    return replace(pull, head_sha=pull.merge_sha or pull.head_sha)
