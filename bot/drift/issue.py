"""The forge issue of a drifted project: opened or updated while it drifts, closed once clear."""
from __future__ import annotations

from bot import notify, render
from bot.context import JobContext
from bot.errors import ForgeError, IssuesUnavailable
from bot.models import Repo
from runners.models import PlanResult, Project, ResourceChange

ISSUE_BODY_LIMIT = 60000


def issue_title(repo: Repo, project_key: str) -> str:
    directory, workspace = project_key.split("::", 1)
    where = directory if workspace == "default" else f"{directory} (workspace {workspace})"
    return f"Drift detected in {where}"


def issue_body(repo: Repo, status: dict, result: PlanResult, job_url: str) -> str:
    """The drift issue: what changed, the plan, and what to do. Redaction is the caller's."""
    changes = [ResourceChange(**c) for c in status["changes"]]
    outside = ", ".join(f"`{c['address']}`" for c in status["resource_drift"]) or "none reported by Terraform"
    output = result.output if len(result.output) < ISSUE_BODY_LIMIT - 4000 else (
        result.output[: ISSUE_BODY_LIMIT - 4000] + f"\n… truncated: the full plan is in the job log ({job_url})")
    return (
        f"**Plankeeper drift check** of `{status['project'].replace('::', '` workspace `')}` on "
        f"`{repo.default_branch}` at `{status['commit'][:12]}`: the live infrastructure no longer matches "
        f"the code.\n\n{render.change_table(changes)}\n`{result.summary}`\n\n"
        f"Changed outside Terraform (refresh): {outside}\n\n"
        f"<details><summary>Plan of the default branch</summary>\n\n```diff\n{output.rstrip()}\n```\n</details>\n\n"
        "To fix it, either revert the manual change, or codify it in a pull request, or let Plankeeper "
        "apply the default branch (`drift.remediate: true`). This issue closes itself once the drift is gone.\n\n"
        f"[Job log]({job_url})\n"
    )


def open_issue(ctx: JobContext, repo: Repo, project: Project, result: PlanResult, status: dict) -> None:
    """Open or update the project's drift issue; where the repository has no issue tracker
    (Bitbucket Data Center), send the report to the `drift` notifications instead."""
    body = ctx.redact(issue_body(repo, status, result, ctx.job_url))
    title = issue_title(repo, project.key)
    try:
        status["issue_id"] = ctx.forge.create_or_update_issue(repo, title, body, status["issue_id"])
    except IssuesUnavailable as exc:
        sent = notify.notify(ctx.settings, "drift", f"{title} of {repo.id}", body, ctx.job_url,
                             {"repository": repo.id, "project": project.key, "commit": status["commit"][:12]})
        ctx.log(f"{exc}: drift reported to {sent} notification receiver(s)")
    except ForgeError as exc:
        ctx.log(f"could not open the drift issue: {exc}")
        status["issue_error"] = str(exc)[:300]


def close_issue(ctx: JobContext, repo: Repo, status: dict) -> None:
    how = ("Plankeeper applied the default branch to revert it: " + status["summary"]
           if status["remediation"] == "applied" else "a drift check found no changes any more.")
    comment = f"Drift cleared at `{status['commit'][:12]}`: {how}\n\n[Job log]({ctx.job_url})"
    try:
        ctx.forge.close_issue(repo, str(status["issue_id"]), ctx.redact(comment))
        status["issue_id"] = None
    except ForgeError as exc:
        ctx.log(f"could not close drift issue #{status['issue_id']}: {exc}")
        status["issue_error"] = str(exc)[:300]
