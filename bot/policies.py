"""Policy checks: Rego policy sets (server setting `policies.sets`) run on each plan's JSON.

Conventions are conftest's: every module is `package main`; the rules `deny` (and its alias
`violation`) and `warn` are sets of messages (strings, or objects with a `msg`). A set passes
when no deny fires; warnings are shown but never block. A set that cannot be evaluated (a
missing path, bad Rego) fails, naming the file. Evaluation is in-process with `regopy`.

Results are kept per (pull request, project) with the SHA-256 of the plan they were computed
for; approvals by a set's owners (`/approve_policies`) per (pull request, project, plan
SHA-256), so a new plan clears them. `/apply` is refused while a failed set is unapproved.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from bot import permissions
from bot.state import artifacts, audit, keys

if TYPE_CHECKING:
    from bot.state.artifacts import PlanArtifact
    from bot.models import PullRequest
    from bot.context import JobContext
    from bot.settings import PolicySet

TTL = 30 * 24 * 3600
DENY_RULES = ("deny", "violation")
WARN_RULES = ("warn",)


class PolicyError(Exception):
    """A policy set that cannot be evaluated; the message names the file and says why."""


# -- evaluation -------------------------------------------------------------------------------

def evaluate(sets: Sequence[PolicySet], plan_json: dict) -> list[dict]:
    """Each set's result on the plan: {name, owners, failures, warnings, error}; never raises."""
    results = []
    for policy_set in sets:
        result = {"name": policy_set.name, "owners": list(policy_set.owners), "failures": [], "warnings": [],
                  "error": ""}
        try:
            result["failures"], result["warnings"] = evaluate_set(Path(policy_set.path), plan_json)
        except PolicyError as exc:
            result["error"] = str(exc)
        results.append(result)
    return results


def evaluate_set(path: Path, plan_json: dict) -> tuple[list[str], list[str]]:
    """(deny messages, warn messages) of the Rego modules at path (a file or a directory).

    Raises PolicyError when the path holds no policy or a module does not compile.
    """
    import regopy

    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE  # errors come back as RegoError, not on stdout
    for name, source in load_modules(path):
        try:
            interpreter.add_module(name, source)
        except regopy.RegoError as exc:
            raise PolicyError(f"policy {name} does not compile: {_rego_error(exc, name, source)}") from exc
    interpreter.set_input(plan_json)
    try:
        output = interpreter.query("data.main")
    except regopy.RegoError as exc:
        raise PolicyError(f"policies in {path} could not be evaluated: {_rego_error(exc, str(path), '')}") from exc
    text = str(output)
    document = json.loads(text)["expressions"][0] if text.startswith("{") else {}
    document = document if isinstance(document, dict) else {}
    failures = [m for rule in DENY_RULES for m in _messages(document.get(rule))]
    warnings = [m for rule in WARN_RULES for m in _messages(document.get(rule))]
    return sorted(set(failures)), sorted(set(warnings))


def load_modules(path: Path) -> list[tuple[str, str]]:
    """(file name, source) of the .rego file, or of every .rego under the directory (tests
    excluded, as conftest does). Raises PolicyError when there is none or one is unreadable."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.rego") if not p.name.endswith("_test.rego"))
    elif path.is_file():
        files = [path]
    else:
        raise PolicyError(f"policy path {path} does not exist on the server")
    if not files:
        raise PolicyError(f"policy path {path} holds no .rego file")
    try:
        return [(str(f), f.read_text(encoding="utf-8")) for f in files]
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy {exc.filename or path}: {exc}") from exc


def _messages(value: Any) -> list[str]:
    """A rule's messages: a set (list) of strings or {msg: ...} objects; an object whose keys
    are messages (a v0-style `deny[msg] { }` read as a partial object)."""
    if isinstance(value, dict):
        return [str(k) for k in value]
    if not isinstance(value, list):
        return []
    return [str(item.get("msg", json.dumps(item))) if isinstance(item, dict) else str(item) for item in value]


def _rego_error(exc: Exception, name: str, source: str) -> str:
    """`file:line:col: message` from regopy's error tree, as far as it says."""
    raw = str(exc)
    messages = re.findall(r"\(errormsg \d+:([^)\n]*)", raw) or [raw.strip().splitlines()[0] if raw.strip() else "?"]
    where = re.search(r"\(error \d+:[^|\s]*\|(\d+)\|", raw)
    position = ""
    if where and source:
        offset = int(where.group(1))
        line = source.count("\n", 0, offset) + 1
        column = offset - (source.rfind("\n", 0, offset) + 1) + 1
        position = f"{name}:{line}:{column}: "
    return position + "; ".join(m.strip() for m in messages)


def failed(results: Sequence[dict]) -> list[dict]:
    """The sets whose deny fired or that could not be evaluated."""
    return [r for r in results if r.get("failures") or r.get("error")]


def describe(result: dict) -> str:
    """What made a set fail, in one line."""
    return result["error"] or "; ".join(result["failures"])


# -- storage ----------------------------------------------------------------------------------

def record_results(r: redis.Redis, repo_id: str, number: int, project_key: str, plan_sha256: str,
                   results: list[dict]) -> None:
    """Keep the results of a new plan, dropping the approvals given to the previous one."""
    key = keys.POLICY_RESULTS.format(repo=repo_id, number=number)
    previous = stored_results(r, repo_id, number, project_key)
    if previous:
        r.delete(keys.POLICY_APPROVALS.format(repo=repo_id, number=number, project=project_key, sha=previous[0]))
    r.hset(key, project_key, json.dumps({"plan_sha256": plan_sha256, "results": results}))
    r.expire(key, TTL)


def stored_results(r: redis.Redis, repo_id: str, number: int, project_key: str
                   ) -> tuple[str, list[dict]] | None:
    """(plan SHA-256, results) last recorded for the project, or None."""
    raw = r.hget(keys.POLICY_RESULTS.format(repo=repo_id, number=number), project_key)
    if raw is None:
        return None
    data = json.loads(raw)
    return data["plan_sha256"], data["results"]


def approved_sets(r: redis.Redis, repo_id: str, number: int, project_key: str, plan_sha256: str) -> set[str]:
    key = keys.POLICY_APPROVALS.format(repo=repo_id, number=number, project=project_key, sha=plan_sha256)
    return {m.decode() for m in r.smembers(key)}


def _approve_sets(r: redis.Redis, repo_id: str, number: int, project_key: str, plan_sha256: str,
                  names: Sequence[str]) -> None:
    key = keys.POLICY_APPROVALS.format(repo=repo_id, number=number, project=project_key, sha=plan_sha256)
    r.sadd(key, *names)
    r.expire(key, TTL)


def blocking(r: redis.Redis, plan: PlanArtifact, configured: bool) -> list[str]:
    """Why policies block applying this stored plan, one line per failed, unapproved set."""
    stored = stored_results(r, plan.repo_id, plan.pull_number, plan.project_key)
    if stored is None or stored[0] != plan.sha256:
        return [f"`{plan.project_key}`: the policy checks did not run on this plan: comment `/plan`"] if configured \
            else []
    approved = approved_sets(r, plan.repo_id, plan.pull_number, plan.project_key, plan.sha256)
    return [f"policy set {res['name']} failed: {describe(res)}" for res in failed(stored[1])
            if res["name"] not in approved]


# -- the plan and /approve_policies -----------------------------------------------------------

def sets_for(settings: Any, repo_id: str) -> tuple[PolicySet, ...]:
    """The policy sets that run on a repository's plans: none where the server's repos[] entry
    says `policy_check: false`."""
    return tuple(settings.policies.sets) if settings.repo_settings(repo_id).policy_check else ()


def check_plan(ctx: JobContext, pull: PullRequest, project_key: str, plan_json: dict | None,
               plan_sha256: str, actor: str, enabled: bool = True) -> list[dict]:
    """Run every configured set on a plan just stored; record and audit the results.

    A plan without `terraform show -json` (a Kubernetes project), or of a project whose
    `policy_check` is off (enabled=False), is not checked: an empty result is recorded so that
    its apply is not refused as unchecked."""
    sets = sets_for(ctx.settings, pull.repo.id)
    if not sets:
        return []
    if plan_json is None or not enabled:
        record_results(ctx.redis, pull.repo.id, pull.number, project_key, plan_sha256, [])
        return []
    results = evaluate(sets, plan_json)
    for res in results:  # messages may quote planned values: mask them before they are stored
        res["failures"] = [ctx.redact(m) for m in res["failures"]]
        res["warnings"] = [ctx.redact(m) for m in res["warnings"]]
        res["error"] = ctx.redact(res["error"])
    record_results(ctx.redis, pull.repo.id, pull.number, project_key, plan_sha256, results)
    bad = failed(results)
    for res in results:
        state = "failed" if res in bad else ("warnings" if res["warnings"] else "passed")
        ctx.log(f"policy set {res['name']} on {project_key}: {state}" + (f": {describe(res)}" if res in bad else ""))
    audit.record(ctx.redis, "policy_check", user=actor, repo=pull.repo.id, pull=pull.number,
                 commit=pull.head_sha, project=project_key, plan_sha256=plan_sha256, job_id=ctx.job_id,
                 result="; ".join(f"{res['name']}: {describe(res)}" for res in bad)[:500] if bad else "passed")
    return results


def merged_plan_blocking(ctx: JobContext, pull: PullRequest, reviewed: PlanArtifact, merged: PlanArtifact,
                         plan_json: dict | None, actor: str, enabled: bool = True) -> list[str]:
    """Merge-to-deploy: check the merge commit's plan (stored as `merged`, found identical to the
    `reviewed` one attribute by attribute) like any plan; the sets owners approved on the reviewed
    plan stay approved. Returns why policies block applying it, one line per set ([] when nothing does)."""
    if not sets_for(ctx.settings, pull.repo.id):
        return []
    approved = approved_sets(ctx.redis, reviewed.repo_id, reviewed.pull_number, reviewed.project_key, reviewed.sha256)
    check_plan(ctx, pull, merged.project_key, plan_json, merged.sha256, actor, enabled)  # drops the reviewed approvals
    if approved:
        _approve_sets(ctx.redis, merged.repo_id, merged.pull_number, merged.project_key, merged.sha256,
                      sorted(approved))
    return blocking(ctx.redis, merged, configured=True)


def approve(ctx: JobContext, pull: PullRequest, actor: str) -> str:
    """/approve_policies: approve every failed set of the pull request's current plans that
    `actor` owns; replies with what was approved and what still needs another owner."""
    r = ctx.redis
    approved: list[str] = []
    others: list[str] = []
    for plan in artifacts.pull_plans(r, pull.repo.id, pull.number):
        stored = stored_results(r, pull.repo.id, pull.number, plan.project_key)
        if stored is None or stored[0] != plan.sha256:
            continue
        already = approved_sets(r, pull.repo.id, pull.number, plan.project_key, plan.sha256)
        pending = [res for res in failed(stored[1]) if res["name"] not in already]
        mine = [res["name"] for res in pending if is_owner(ctx, pull, actor, res)]
        others += [f"`{res['name']}` on `{plan.project_key}` (owners: {', '.join(res['owners']) or 'none configured'})"
                   for res in pending if res["name"] not in mine]
        if mine:
            _approve_sets(r, pull.repo.id, pull.number, plan.project_key, plan.sha256, mine)
            approved += [f"`{name}` on `{plan.project_key}`" for name in mine]
            audit.record(r, "approve_policies", user=actor, repo=pull.repo.id, pull=pull.number,
                         commit=pull.head_sha, project=plan.project_key, plan_sha256=plan.sha256,
                         result="approved: " + ", ".join(mine), job_id=ctx.job_id)
    ctx.forge.create_comment(pull, ctx.redact(_approval_reply(actor, approved, others)))
    return f"approved {len(approved)} policy set(s)" if approved else "nothing approved"


def is_owner(ctx: JobContext, pull: PullRequest, login: str, result: dict) -> bool:
    """Whether login is one of the set's owners (users, team:org/slug, group:path)."""
    return permissions.is_one_of(ctx.forge, pull.repo, login, result.get("owners") or ())


def _approval_reply(actor: str, approved: list[str], others: list[str]) -> str:
    lines = ["**Plankeeper approve_policies**", ""]
    if approved:
        lines += [f"@{actor} approved the failed policy set(s): " + ", ".join(approved) + ".", ""]
    if others:
        lines += [f"@{actor} is not an owner of: " + ", ".join(others) + ". One of their owners must comment "
                  "`/approve_policies`.", ""]
    if not approved and not others:
        lines += ["No failed policy check waits for approval on the current plans.", ""]
    elif not others:
        lines += ["Every failed policy check is approved: `/apply` may go ahead (a new plan clears approvals)."]
    return "\n".join(lines).rstrip() + "\n"


def apply_refusal(ctx: JobContext, pull: PullRequest, plans: Sequence[PlanArtifact], actor: str) -> str:
    """The refusal text when a failed policy set of these plans is unapproved (audited), else ""."""
    configured = bool(sets_for(ctx.settings, pull.repo.id))
    problems = [line for plan in plans for line in blocking(ctx.redis, plan, configured)]
    if not problems:
        return ""
    audit.record(ctx.redis, "apply_refused", user=actor, repo=pull.repo.id, pull=pull.number,
                 commit=pull.head_sha, result="; ".join(problems)[:500], job_id=ctx.job_id)
    return ("Policy checks failed:\n" + "\n".join(f"- {p}" for p in problems) +
            "\n\nA policy owner can comment `/approve_policies` to approve them; pushing a fix and planning "
            "again runs the checks again.")
