"""`POST /api/plan` and `POST /api/apply`: plan or apply a ref without a pull request (from CI).

The web process only checks the request and queues a job (bot.queueing.enqueue_api_run); the
job (bot.jobs.run_api_plan) runs here: resolve the ref to a commit, check it out, plan each
project as a pull request numbered 0 at that commit (as drift checks do). A plan takes no lock
(as Atlantis' API). An apply plans and applies in the same job, holding the project's lock for
the length of both (refused when a pull request holds it) and its apply lease; it is recorded
as a deployment `via: api` and audited.
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any, Optional

from bot import selection
from bot.context import JobContext, Runtime
from bot.engines import runner_for, step_env_for
from bot.errors import UserFacingError
from bot.execution import SETUP_ERRORS, effective_for, plan_in
from bot.forges import make_forge
from bot.handlers.apply import apply_lease, deployment_result
from bot.models import JobState, PullRequest, Repo, pull_ref
from bot.state import audit, deployments, joblog, locks
from runners.git import GitError
from runners.models import ApplyResult, Project

API_PULL = -1  # the lock owner number of an API apply: no pull request (nor drift's 0) has it
SHA = re.compile(r"^[0-9a-f]{40}$")
WORKSPACE_BAD = re.compile(r"[/\\$\s]|\.\.|^[-~]")
OUTPUT_LIMIT = 64 * 1024  # characters of Terraform output per project in the answer


class BadRequest(ValueError):
    """The body is not a plan/apply request; the message says what is wrong."""


def parse_body(body: Any) -> dict:
    """{repo, ref, projects: [{dir, workspace}], forge} from our shape or Atlantis' own
    ({Repository, Ref, Type, Paths: [{Directory, Workspace}], PR}); raises BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: {\"repo\": \"owner/name\", \"ref\": \"main\", "
                         "\"projects\": [{\"dir\": \".\", \"workspace\": \"default\"}]}")
    atlantis = "Repository" in body or "Paths" in body
    repo, ref = (body.get("Repository"), body.get("Ref")) if atlantis else (body.get("repo"), body.get("ref"))
    raw = body.get("Paths") if atlantis else body.get("projects")
    dir_key, ws_key = ("Directory", "Workspace") if atlantis else ("dir", "workspace")
    names = body.get("Projects") if atlantis else None  # Atlantis: project names of the repo config
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)):
        raise BadRequest("`Projects` must be a list of project names")
    if atlantis and raw is None and names:
        raw = []
    if not isinstance(repo, str) or not repo.strip("/"):
        raise BadRequest(f"`{'Repository' if atlantis else 'repo'}` must be the repository: owner/name or host/owner/name")
    if not isinstance(ref, str) or not ref.strip() or ref.startswith("-") or ".." in ref:
        raise BadRequest(f"`{'Ref' if atlantis else 'ref'}` must be a branch name or a commit SHA")
    if not isinstance(raw, list) or not (raw or names):
        raise BadRequest(f"`{'Paths' if atlantis else 'projects'}` must be a non-empty list of "
                         f"{{\"{dir_key}\": ..., \"{ws_key}\": ...}}" + (" (or give `Projects`)" if atlantis else "")
                         + ("" if atlantis else ", or of {\"name\": ...} (a project name of the repo config)"))
    projects = [{"name": n} for n in names or ()]
    for i, item in enumerate(raw):
        if isinstance(item, dict) and not atlantis and isinstance(item.get("name"), str) and item["name"] \
                and "dir" not in item:
            projects.append({"name": item["name"]})
            continue
        if not isinstance(item, dict) or not isinstance(item.get(dir_key), str):
            raise BadRequest(f"project {i + 1}: `{dir_key}` (a directory relative to the repo root) is missing")
        directory = item[dir_key].strip().strip("/") or "."
        if directory.startswith("./"):
            directory = directory[2:] or "."
        workspace = item.get(ws_key) or "default"
        if not isinstance(workspace, str) or WORKSPACE_BAD.search(workspace):
            raise BadRequest(f"project {i + 1}: `{ws_key}` {workspace!r} is not a workspace name")
        if directory.startswith("/") or ".." in directory.split("/"):
            raise BadRequest(f"project {i + 1}: `{dir_key}` {directory!r} leaves the repository")
        projects.append({"dir": directory, "workspace": workspace})
    forge = body.get("Type") if atlantis else body.get("forge")
    return {"repo": repo.strip("/"), "ref": ref.strip(), "projects": projects,
            "forge": str(forge).lower() if isinstance(forge, str) and forge else ""}


def resolve_repo(name: str, forge: str, repos: dict[str, Repo]) -> Optional[Repo]:
    """The known repository named host/owner/name, or owner/name (then `forge` may pick one)."""
    if name in repos:
        return repos[name]
    found = [r for r in repos.values() if r.full_name == name and (not forge or r.forge == forge)]
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------------------- the job


def run(rt: Runtime, payload: dict, job_id: str) -> dict:
    """The job: {repo: Repo dict, ref, projects: [{dir, workspace}], apply: bool, actor}.
    Returns {repo, ref, commit, command, projects: [...], error}, also kept as the RQ result."""
    repo = Repo.from_dict(payload["repo"])
    command = "apply" if payload.get("apply") else "plan"
    ctx = JobContext.for_job(rt, make_forge(repo, rt.settings), job_id)
    joblog.record_job(rt.redis, job_id, state=JobState.RUNNING, started_at=time.time())
    try:
        answer = _run(ctx, repo, payload, command)
    finally:
        ctx.cleanup()
    failed = answer["error"] or any(p["error"] for p in answer["projects"])
    summary = answer["error"] or f"{command} of {payload['ref']}: " + ", ".join(
        f"{p['dir']} ({p['workspace']}): {p['error'] or p['summary'] or 'ok'}" for p in answer["projects"])
    joblog.record_job(rt.redis, job_id, state=JobState.FAILED if failed else JobState.SUCCEEDED,
                      summary=summary[:300], ended_at=time.time(), duration=f"{time.time() - ctx.started_at:.2f}")
    ctx.log(f"done: {summary}")
    return answer


def _run(ctx: JobContext, repo: Repo, payload: dict, command: str) -> dict:
    ref, actor = payload["ref"], str(payload.get("actor") or "api")
    answer: dict[str, Any] = {"repo": repo.id, "ref": ref, "commit": "", "command": command, "projects": [],
                              "error": "", "job_id": ctx.job_id}
    try:
        sha = ref if SHA.match(ref) else ctx.repo_cache().branch_head(
            repo.clone_url, ref.removeprefix("refs/heads/"), auth=ctx.forge.clone_auth(repo))
        pull = PullRequest(repo=repo, number=0, author=actor, head_sha=sha, head_ref=ref,
                           base_ref=repo.default_branch, url=repo.html_url)
        ctx.log(f"{command} of {repo.id} at {ref} ({sha[:12]}) for {actor}")
        repo_dir = ctx.checkout(pull)
    except (GitError, UserFacingError) as exc:
        answer["error"] = f"could not check out {ref!r}: {getattr(exc, 'message', exc)}"
        return answer
    answer["commit"] = sha
    named: dict[str, Project] = {}
    if any("name" in item for item in payload["projects"]):
        try:
            _, effective = selection.load_effective(ctx.workspace, repo_dir, ctx.settings.repo_settings(repo.id))
        except SETUP_ERRORS as exc:
            answer["error"] = f"invalid repo config: {getattr(exc, 'message', exc)}"
            return answer
        named = {ep.project.name: ep.project for ep in effective if ep.project.name}
    for item in payload["projects"]:
        if "name" in item and item["name"] not in named:
            answer["projects"].append({"name": item["name"], "dir": "", "workspace": "", "summary": "",
                                       "has_changes": False, "output": "", "applied": False, "apply_summary": "",
                                       "error": f"no project named {item['name']!r} in the repo config"})
            continue
        project = named[item["name"]] if "name" in item else \
            Project(dir=item["dir"], workspace=item.get("workspace") or "default")
        answer["projects"].append(_project(ctx, pull, repo_dir, project, command, actor))
    return answer


def _project(ctx: JobContext, pull: PullRequest, repo_dir: str, project: Project, command: str, actor: str) -> dict:
    out = {"name": project.name or "", "dir": project.dir, "workspace": project.workspace, "summary": "", "has_changes": False,
           "output": "", "error": "", "applied": False, "apply_summary": ""}
    if command == "plan":
        _plan(ctx, pull, repo_dir, project, actor, out)
        return out
    repo_id = pull.repo.id
    held = locks.try_lock(ctx.redis, locks.new_lock(repo_id, project.key, API_PULL, "", actor))
    if held.pull_number != API_PULL:
        out["error"] = (f"apply refused: pull request {pull_ref(pull.repo.forge, held.pull_number)} holds the "
                        f"project's lock ({held.pull_url or held.user}); apply it there, or unlock it first")
        audit.record(ctx.redis, "apply_refused", user=actor, repo=repo_id, commit=pull.head_sha,
                     project=project.key, result=out["error"][:300], job_id=ctx.job_id)
        return out
    try:
        lease = apply_lease(ctx, repo_id, project.key)
        if not lease.acquire():
            out["error"] = "apply refused: another apply of this project is running right now"
            return out
        with lease.kept():
            result = _plan(ctx, pull, repo_dir, project, actor, out)
            if result is not None:
                _apply(ctx, pull, repo_dir, project, actor, result, out)
    finally:
        locks.release(ctx.redis, repo_id, project.key, API_PULL)
    return out


def _plan(ctx: JobContext, pull: PullRequest, repo_dir: str, project: Project, actor: str, out: dict):
    try:
        effective = effective_for(ctx, pull, repo_dir, project)
    except SETUP_ERRORS as exc:
        out["error"] = f"setup: {getattr(exc, 'message', exc)}"
        return None
    result = plan_in(ctx, pull, repo_dir, effective, actor=actor)
    out.update(summary=ctx.redact(result.summary), has_changes=result.has_changes,
               output=ctx.redact(result.output)[-OUTPUT_LIMIT:])
    if not result.ok:
        out["error"] = ctx.redact(f"{result.failed_step or 'plan'} failed: {result.error}")
        return None
    return (effective, result)


def _apply(ctx: JobContext, pull: PullRequest, repo_dir: str, project: Project, actor: str,
           planned: tuple, out: dict) -> None:
    effective, result = planned
    sink = ctx.log.with_prefix(f"[{project.label}] ")
    sink(f"applying {pull.head_ref} at {pull.head_sha[:12]} (API)")
    try:
        project_dir = selection.project_dir(ctx.workspace, repo_dir, project)
        runner = runner_for(project, ctx.settings, ctx.workspace, effective,
                            step_env_for(pull, project, project.dir, (), actor), project_dir=project_dir,
                            repo_id=pull.repo.id, git_credentials=ctx.git_credentials(pull.repo),
                            init_records=ctx.init_records(repo_dir))
    except SETUP_ERRORS as exc:
        applied = ApplyResult(ok=False, failed_step="setup", error=getattr(exc, "message", str(exc)))
    else:
        applied = runner.apply(project_dir, project.workspace, Path(result.plan_file or ""), on_line=sink)
    plan_sha = _sha256(result.plan_file)
    audit.record(ctx.redis, "apply", user=actor, repo=pull.repo.id, commit=pull.head_sha, project=project.key,
                 plan_sha256=plan_sha, job_id=ctx.job_id,
                 result="success (api)" if applied.ok else f"failed (api): {applied.failed_step or ''}")
    deployments.record(ctx.redis, deployments.Deployment(
        repo=pull.repo.id, project=project.key, commit=pull.head_sha, pull=0, user=actor,
        result=deployment_result(applied), plan_sha256=plan_sha, via=deployments.Via.API, job_id=ctx.job_id))
    out.update(applied=applied.ok, apply_summary=ctx.redact(applied.summary),
               output=ctx.redact(applied.output or out["output"])[-OUTPUT_LIMIT:])
    if not applied.ok:
        out["error"] = ctx.redact(f"{applied.failed_step or 'apply'} failed: {applied.error}")


def _sha256(path: Optional[str]) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except OSError:
        return ""


def atlantis_shape(answer: dict) -> dict:
    """Atlantis' own answer fields, next to ours: {Error, Failure, ProjectResults: [...]}."""
    results = []
    for p in answer.get("projects", []):
        result: dict[str, Any] = {"RepoRelDir": p["dir"], "Workspace": p["workspace"], "Error": p["error"] or None,
                                  "Failure": "", "ProjectName": p.get("name") or ""}
        if answer.get("command") == "apply":
            result["ApplySuccess"] = p["output"] if p["applied"] else ""
        elif not p["error"]:
            result["PlanSuccess"] = {"TerraformOutput": p["output"], "HasDiverged": False}
        results.append(result)
    return {"Error": answer.get("error") or None, "Failure": "", "ProjectResults": results}
