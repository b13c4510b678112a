"""Results -> markdown comments (SPEC §8). Pure: no I/O. Redaction is applied last."""
from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

from bot.models import OutcomeStatus, ProjectOutcome, PullRequest
from runners.models import ResourceChange

ACTION_LABELS = {
    "create": "➕ create",
    "update": "🔧 update",
    "replace": "⚠️ **replace**",
    "delete": "🗑️ **delete**",
    "read": "📖 read",
}
STATUS_WORDS = {
    OutcomeStatus.QUEUED: "⏳ queued",
    OutcomeStatus.RUNNING: "🔄 running…",
    OutcomeStatus.PLANNED: "📝 changes",
    OutcomeStatus.NO_CHANGES: "✅ no changes",
    OutcomeStatus.APPLIED: "✅ applied",
    OutcomeStatus.FAILED: "❌ failed",
    OutcomeStatus.LOCKED: "🔒 locked by another pull request",
    OutcomeStatus.CANCELLED: "🛑 cancelled",
    OutcomeStatus.SKIPPED: "⏭️ skipped",
}
TRUNCATED_NOTE = "\n… output truncated: the full output is in the [job log]({url}).\n"
OUTDATED_BANNER = "> ⚠️ **Outdated:** a newer plan replaced this one{link}.\n\n"
MAX_TABLE_ROWS = 50
APPLIED_COMMANDS = ("apply", "import", "state")  # their result is outcome.apply


def overview(command: str, outcomes: Sequence[ProjectOutcome], running: bool) -> str:
    """The one-line overview: N projects: X with changes, Y without, Z failed."""
    n = len(outcomes)
    noun = "project" if n == 1 else "projects"
    failed = sum(o.status.is_failure for o in outcomes)
    if command in APPLIED_COMMANDS:
        applied = sum(o.status is OutcomeStatus.APPLIED for o in outcomes)
        done = {"import": "imported", "state": "updated"}.get(command, "applied")
        text = f"{n} {noun}: {applied} {done}, {failed} failed"
    else:
        changed = sum(o.status is OutcomeStatus.PLANNED for o in outcomes)
        unchanged = sum(o.status is OutcomeStatus.NO_CHANGES for o in outcomes)
        text = f"{n} {noun}: {changed} with changes, {unchanged} without, {failed} failed"
    blocked = sum(_policy_failed(o) for o in outcomes) if command == "plan" else 0
    text += f", {blocked} blocked by policy" if blocked else ""
    pending = sum(not o.status.is_final for o in outcomes)
    return text + (f" ({pending} still running)" if running and pending else "")


def change_table(changes: Sequence[ResourceChange]) -> str:
    if not changes:
        return ""
    order = {"delete": 0, "replace": 1, "create": 2, "update": 3, "read": 4}
    rows = sorted(changes, key=lambda c: (order.get(c.action, 9), c.address))
    lines = ["| Change | Resource |", "|---|---|"]
    lines += [f"| {ACTION_LABELS.get(c.action, c.action)} | `{c.address}` |" for c in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"| … | {len(rows) - MAX_TABLE_ROWS} more in the output below |")
    destructive = sum(c.action in ("delete", "replace") for c in changes)
    warn = f"\n**⚠️ {destructive} resource(s) will be deleted or replaced.**\n" if destructive else ""
    return "\n".join(lines) + "\n" + warn


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}diff\n{text.rstrip()}\n{fence}"


_DIFF_MARK = re.compile(r"^(\s+)([-+~])(\s)", re.MULTILINE)


def diff_friendly(text: str) -> str:
    """Move Terraform's indented +/-/~ markers to the line start so a ```diff block colours them."""
    return _DIFF_MARK.sub(lambda m: ("!" if m.group(2) == "~" else m.group(2)) + m.group(1) + m.group(3), text)


def _output_block(text: str, budget: Optional[int], log_url: str) -> str:
    text = diff_friendly(text)
    if budget is not None and len(text) > budget:
        text = text[: max(budget, 0)] + TRUNCATED_NOTE.format(url=log_url)
    return f"<details><summary>Show output</summary>\n\n{_fence(text)}\n</details>\n"


def project_section(command: str, outcome: ProjectOutcome, budget: Optional[int] = None,
                    hints: bool = True) -> str:
    """One project's section; `hints` adds the comment command that applies it (pull requests only)."""
    p = outcome.project
    title = f"### {'`' + p.name + '` · ' if p.name else ''}dir: `{p.dir}` · workspace: `{p.workspace}`"
    blocked = " · ❌ policy failed" if command == "plan" and _policy_failed(outcome) else ""
    parts = [title, "", f"**{STATUS_WORDS.get(outcome.status, outcome.status)}{blocked}**", ""]
    result = outcome.apply if command in APPLIED_COMMANDS and outcome.apply else outcome.plan
    if outcome.message:
        parts += [outcome.message, ""]
    if outcome.status is OutcomeStatus.FAILED and result and result.failed_step:
        parts += [f"The `{result.failed_step}` step failed. {result.error}".rstrip(), ""]
    if outcome.plan and command == "plan" and outcome.plan.ok:
        table = change_table(outcome.plan.changes)
        if table:
            parts += [table]
    if result and result.output:
        parts += [_output_block(result.output, budget, outcome.log_url)]
    if result and result.summary:
        parts += [f"`{result.summary}`", ""]
    if command == "plan" and outcome.plan and outcome.plan.init_note:
        parts += [f"<sub>{outcome.plan.init_note}</sub>", ""]
    if command == "plan" and outcome.policies:
        parts += [policy_section(outcome.policies)]
    if hints and command == "plan" and outcome.status is OutcomeStatus.PLANNED:
        parts += [f"To apply this project: `{apply_command(p)}`", ""]
    if outcome.log_url:
        parts += [f"[Full log]({outcome.log_url})", ""]
    return "\n".join(parts)


def failed(outcome: ProjectOutcome) -> bool:
    """Whether the outcome fails the command's status: an error, a lock, a cancel, a policy."""
    return outcome.status.is_failure or _policy_failed(outcome)


def _policy_failed(outcome: ProjectOutcome) -> bool:
    return any(r.get("failures") or r.get("error") for r in outcome.policies)


def policy_section(results: Sequence[dict]) -> str:
    """Each policy set's result (bot.policies.evaluate): passed, warnings, failures."""
    lines = ["**Policy checks**", ""]
    for r in results:
        name = f"`{r['name']}`"
        if r.get("error"):
            lines.append(f"- ❌ {name} could not be evaluated: {r['error']}")
        elif r.get("failures"):
            lines.append(f"- ❌ {name} failed:")
            lines += [f"  - {m}" for m in r["failures"]]
        else:
            lines.append(f"- ✅ {name} passed" + (" with warnings:" if r.get("warnings") else ""))
        lines += [f"  - ⚠️ {m}" for m in r.get("warnings", [])]
    failing = [r for r in results if r.get("failures") or r.get("error")]
    if failing:
        owners = sorted({o for r in failing for o in r.get("owners", [])})
        lines += ["", "Apply is blocked until a policy owner (" + (", ".join(owners) or "none configured") +
                  ") comments `/approve_policies`, or a new plan passes."]
    return "\n".join(lines) + "\n"


def apply_command(project) -> str:
    if project.name:
        return f"/apply -p {project.name}"
    ws = "" if project.workspace == "default" else f" -w {project.workspace}"
    return f"/apply -d {project.dir}{ws}"


def command_comment(
    command: str,
    pull: PullRequest,
    outcomes: Sequence[ProjectOutcome],
    *,
    running: bool,
    limit: int,
    redact: Callable[[str], str],
    footer: str = "",
    hints: bool = True,
    preface: str = "",
) -> str:
    """The whole comment for one command run; never longer than `limit` characters.

    `hints` adds what to comment next (`/apply`, `/unlock`, `/plan`); `plankeeper plan` on a local
    checkout turns them off and gives its own `footer`, since no pull request is there to comment on.
    `preface` is a paragraph under the first line (what a revert pull request rolls back).
    """
    head = f"**Plankeeper {command}** for `{pull.head_sha[:7]}` · {overview(command, outcomes, running)}\n\n"
    head += f"{preface}\n\n" if preface else ""
    tail = (_footer(command, outcomes, running) if hints else "") + footer

    def build(budget: Optional[int]) -> str:
        sections = [project_section(command, o, budget, hints) for o in outcomes]
        return redact(head + "\n---\n".join(sections) + "\n---\n" + tail)

    return _fit(build, len(outcomes), limit, "\n\n… comment truncated: see the job log.\n")


def _fit(build: Callable[[Optional[int]], str], projects: int, limit: int, cut_note: str) -> str:
    """build(None) when it fits in limit, else with each project's output cut to a share of it."""
    body = build(None)
    if len(body) <= limit:
        return body
    fixed = len(build(0))
    per_project = max((limit - fixed - 200) // max(projects, 1), 0)
    body = build(per_project)
    return body if len(body) <= limit else body[: limit - len(cut_note)] + cut_note


def check_summary(command: str, outcomes: Sequence[ProjectOutcome], redact: Callable[[str], str],
                  comment_url: str = "") -> str:
    """A check run's summary: a row per project (dir, workspace, result, Terraform's summary line
    or what stopped it), and a link to the pull request comment."""
    lines = ["| Project | Workspace | Result | Summary |", "|---|---|---|---|"]
    for outcome in outcomes:
        p = outcome.project
        result = outcome.apply if command in APPLIED_COMMANDS and outcome.apply else outcome.plan
        blocked = " · ❌ policy failed" if command == "plan" and _policy_failed(outcome) else ""
        said = (result.summary if result and result.summary else "") or outcome.message
        name = f"`{_cell(p.name)}` · " if p.name else ""
        lines.append(f"| {name}`{_cell(p.dir)}` | `{_cell(p.workspace)}` | "
                     f"{STATUS_WORDS.get(outcome.status, outcome.status)}{blocked} | {_cell(said)} |")
    link = f"\n[The comment on the pull request]({comment_url})\n" if comment_url else ""
    return redact("\n".join(lines) + "\n" + link)


def check_text(command: str, outcomes: Sequence[ProjectOutcome], *, limit: int, redact: Callable[[str], str],
               log_url: str = "") -> str:
    """A check run's text: each project's section with its output, never longer than `limit`
    (outputs are cut, with a link to the job log)."""

    def build(budget: int | None) -> str:
        return redact("\n---\n".join(project_section(command, o, budget, hints=False) for o in outcomes))

    return _fit(build, len(outcomes), limit, TRUNCATED_NOTE.format(url=log_url))


def _cell(text: str) -> str:
    """One line of text that cannot break a markdown table row."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first.replace("|", "\\|")


def _footer(command: str, outcomes: Sequence[ProjectOutcome], running: bool) -> str:
    if running:
        return "_Running: this comment updates as projects finish._\n"
    if command == "plan" and any(o.status is OutcomeStatus.PLANNED for o in outcomes):
        return "To apply every planned project: `/apply` · To discard these plans and unlock: `/unlock`\n"
    if command == "plan" and any(o.status is OutcomeStatus.FAILED for o in outcomes):
        return "Fix the failing project(s) and push, or comment `/plan` to retry.\n"
    return ""


def mark_outdated(body: str, newer_url: str = "") -> str:
    """An older plan comment, collapsed under a banner pointing at the newer one."""
    if body.startswith("> ⚠️ **Outdated:**"):
        return body
    link = f": see [the newer plan]({newer_url})" if newer_url else ""
    return OUTDATED_BANNER.format(link=link) + "<details><summary>Outdated plan</summary>\n\n" + body + "\n</details>\n"


def error_comment(title: str, message: str, redact: Callable[[str], str], log_url: str = "") -> str:
    link = f"\n\n[Job log]({log_url})" if log_url else ""
    return redact(f"**{title}**\n\n{message}{link}\n")
