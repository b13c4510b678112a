"""A command's check run, on a forge with checks (GitHub as an App): what it says, and which
check run a later update edits.

CommandReport sets commit statuses on other forges. With checks it writes a check run named like
the status instead: created in progress when the command starts, completed at the end with the
overview as title, the per-project table as summary and the output as text, and, on a plan with
changes, an Apply button (its click comes back as a CheckRunEvent: bot.dispatch.on_check_run).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import redis

from bot import render
from bot.forges.base import NEUTRAL, PENDING, SUCCESS, CheckRuns
from bot.models import CheckAction, CheckReport, OutcomeStatus, ProjectOutcome, PullRequest, Repo
from bot.state import keys

# GitHub: label and identifier at most 20 characters, description 40.
APPLY_BUTTON = CheckAction("Apply", "apply", "Apply these plans, as /apply does")
TEXT_LIMIT = 65535  # characters of a check run's text (and summary) on GitHub
CHECK_ID_TTL = 7 * 24 * 3600


def conclusion(state: str, outcomes: Sequence[ProjectOutcome]) -> str:
    """The check run's state: neutral for a success where no project ran (nothing changed)."""
    if state == SUCCESS and all(o.status is OutcomeStatus.SKIPPED for o in outcomes):
        return NEUTRAL
    return state


def check_report(name: str, command: str, state: str, title: str, outcomes: Sequence[ProjectOutcome], *,
                 pull: PullRequest, job_url: str, comment_url: str = "", details: str = "",
                 redact: Callable[[str], str] = str) -> CheckReport:
    """The check run of one command on a pull request; `details` is the summary of a command that
    stopped before any project ran (its outcomes empty)."""
    state = conclusion(state, outcomes)
    if outcomes:
        summary = render.check_summary(command, outcomes, redact, comment_url)
    else:
        summary = redact(details or title)
    text = "" if state == PENDING or not outcomes else render.check_text(
        command, outcomes, limit=TEXT_LIMIT, redact=redact, log_url=job_url)
    planned = any(o.status is OutcomeStatus.PLANNED for o in outcomes)
    actions = (APPLY_BUTTON,) if command == "plan" and state == SUCCESS and planned else ()
    return CheckReport(name=name, state=state, title=redact(title), summary=summary, text=text,
                       details_url=job_url, external_id=external_id(pull.number), actions=actions)


def external_id(number: int) -> str:
    """What a check run is about, as GitHub sends it back with a click (bot.events.github reads it)."""
    return f"pull:{number}"


def publish(forge: CheckRuns, r: redis.Redis, job_id: str, repo: Repo, sha: str, check: CheckReport) -> None:
    """Write the check run: the one this job left in progress under that name, else a new one."""
    key = keys.JOB_CHECK_RUNS.format(job_id)
    known = r.hget(key, check.name)
    check_id = forge.report_check(repo, sha, check, known.decode() if known else None)
    if check.state == PENDING:  # completed by the job's finalizing job, or by the failure report
        r.hset(key, check.name, check_id)
        r.expire(key, CHECK_ID_TTL)
    else:
        r.hdel(key, check.name)
