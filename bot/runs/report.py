"""The comment of one command run: posted once, edited in place as projects finish,
older plan comments of the same pull request marked outdated (or hidden, where the forge hides
comments), plus commit statuses (or check runs, where the forge has checks: bot.runs.checks)."""
from __future__ import annotations

import json
import logging
from typing import Optional, Sequence

from bot import render
from bot.context import JobContext
from bot.errors import ForgeError
from bot.forges.base import FAILURE, PENDING, SUCCESS, Forge, has_checks, hides_outdated_comments
from bot.models import CheckReport, OutcomeStatus, ProjectOutcome, PullRequest, Repo, pull_ref
from bot.runs import checks
from bot.state import keys, reverts
from runners.repo_config_schema import EffectiveProject

log = logging.getLogger(__name__)
STATUS_COMMANDS = ("plan", "apply")  # the commands with a commit status: `{statuses.prefix}/{command}`


def status_context(settings, command: str) -> Optional[str]:
    """The commit status context of a command (`plankeeper/plan`), None for a command without one."""
    return f"{settings.statuses.prefix}/{command}" if command in STATUS_COMMANDS else None


class CommandReport:
    """One command's comment and status on one pull request. `silenced` are the indexes of the
    projects `silence_pr_comments` leaves out of the comment (their statuses still count); with
    every project silenced, no comment is posted at all."""

    def __init__(self, ctx: JobContext, pull: PullRequest, command: str, silenced: Sequence[int] = ()):
        self.forge, self.redis, self.pull, self.command = ctx.forge, ctx.redis, pull, command
        self.job_id, self.job_url, self.redact = ctx.job_id, ctx.job_url, ctx.redact
        self.context = status_context(ctx.settings, command)
        self.comment_id: Optional[str] = None
        self.comment_url = ""
        self.preface = rollback_note(self.redis, pull)
        self.silenced = frozenset(silenced)

    def _shown(self, outcomes: Sequence[ProjectOutcome]) -> list[ProjectOutcome]:
        """What the comment shows: silenced projects are left out, unless another pull request's
        lock stopped them (as Atlantis: that needs someone to act)."""
        return [o for i, o in enumerate(outcomes) if i not in self.silenced or o.status is OutcomeStatus.LOCKED]

    def _body(self, outcomes: Sequence[ProjectOutcome], running: bool, footer: str = "") -> str:
        return render.command_comment(
            self.command, self.pull, self._shown(outcomes), running=running, limit=self.forge.comment_limit,
            redact=self.redact, footer=footer, preface=self.preface,
        )

    def start(self, outcomes: Sequence[ProjectOutcome]) -> None:
        """Post the comment (every project queued; none when all are silenced) and the pending status."""
        if self._shown(outcomes):
            ref = self.forge.create_comment(self.pull, self._body(outcomes, running=True))
            self.comment_id, self.comment_url = ref.id, ref.url
        try:
            self.status(PENDING, f"{render.overview(self.command, outcomes, True)}", outcomes)
        except ForgeError as exc:  # the comment is up: run anyway; finish() retries and says so
            log.warning("could not set the pending status on %s#%s: %s", self.pull.repo.id, self.pull.number, exc)

    def progress(self, outcomes: Sequence[ProjectOutcome]) -> None:
        """Edit the comment in place; a failed edit is logged, the job goes on."""
        if self.comment_id is None:
            return
        try:
            self.forge.update_comment(self.pull, self.comment_id, self._body(outcomes, running=True))
        except ForgeError:
            log.warning("could not update progress comment on %s#%s", self.pull.repo.id, self.pull.number)

    def finish(self, outcomes: Sequence[ProjectOutcome], footer: str = "") -> None:
        body = self._body(outcomes, running=False, footer=footer)
        if self.comment_id is None and self._shown(outcomes):
            ref = self.forge.create_comment(self.pull, body)
            self.comment_id, self.comment_url = ref.id, ref.url
        elif self.comment_id is not None:
            self.forge.update_comment(self.pull, self.comment_id, body)
        failed = any(render.failed(o) for o in outcomes)
        try:
            self.status(FAILURE if failed else SUCCESS, render.overview(self.command, outcomes, False), outcomes)
        except ForgeError as exc:
            if self.comment_id is None:  # silenced: nowhere to say it but the log
                log.warning("could not set the %s status on %s#%s: %s", self.command, self.pull.repo.id,
                            self.pull.number, exc)
                return
            note = (f"\n\n> ⚠️ The commit status could not be set ({exc}): "
                    "comment the command again once the API answers.")
            self.forge.update_comment(self.pull, self.comment_id, body + note)
        if self.command == "plan" and self.comment_id is not None:
            self._supersede_older_plans()

    def fail(self, title: str, message: str) -> None:
        """Report a failure that stopped the whole command (bad config, checkout failed...)."""
        body = render.error_comment(title, message, self.redact, self.job_url)
        if self.comment_id is None:
            ref = self.forge.create_comment(self.pull, body)
            self.comment_id, self.comment_url = ref.id, ref.url
        else:
            self.forge.update_comment(self.pull, self.comment_id, body)
        self.status(FAILURE, title, details=message)

    def status(self, state: str, description: str, outcomes: Sequence[ProjectOutcome] = (),
               details: str = "") -> None:
        """The command's commit status, or its check run (`details`: the summary of a check run
        without outcomes)."""
        context = self.context
        if not context:
            return
        if has_checks(self.forge):
            check = checks.check_report(context, self.command, state, description, outcomes, pull=self.pull,
                                        job_url=self.job_url, comment_url=self.comment_url, details=details,
                                        redact=self.redact)
            checks.publish(self.forge, self.redis, self.job_id, self.pull.repo, self.pull.head_sha, check)
        else:
            self.forge.set_status(self.pull.repo, self.pull.head_sha, context, state, description, self.job_url)
        key = keys.PENDING_STATUSES.format(self.job_id)
        if state == PENDING:  # remembered so that a job that dies is never left pending
            self.redis.hset(key, context, self.pull.head_sha)
            self.redis.expire(key, 7 * 24 * 3600)
        else:
            self.redis.hdel(key, context)

    def _supersede_older_plans(self) -> None:
        key = keys.PLAN_COMMENTS.format(repo=self.pull.repo.id, number=self.pull.number)
        older = [c for c in json.loads(self.redis.get(key) or "[]") if c != self.comment_id]
        self.redis.set(key, json.dumps([self.comment_id]))
        for comment_id in older:
            try:
                self._mark_outdated(comment_id)
            except ForgeError:
                log.warning("could not mark comment %s outdated on %s#%s", comment_id, self.pull.repo.id, self.pull.number)

    def _mark_outdated(self, comment_id: str) -> None:
        """Hide the older plan comment where the forge can (GitHub as an App minimizes it), else
        collapse it under a banner linking the newer one."""
        if hides_outdated_comments(self.forge):
            self.forge.hide_outdated_comment(self.pull, comment_id)
            return
        comment = self.forge.comment(self.pull, comment_id)
        if comment is not None:
            self.forge.update_comment(self.pull, comment_id, render.mark_outdated(comment.body, self.comment_url))


def silenced_projects(effective: Sequence[EffectiveProject], command: str) -> list[int]:
    """Indexes of the projects whose comment `silence_pr_comments` leaves out for command."""
    return [i for i, ep in enumerate(effective) if command in ep.silence_pr_comments]


def rollback_note(r, pull: PullRequest) -> str:
    """What a revert pull request the bot opened rolls back ("" for any other pull request)."""
    revert = reverts.of_revert_pull(r, pull.repo.id, pull.number)
    if revert is None:
        return ""
    original = pull_ref(pull.repo.forge, revert.original)
    return (f"↩️ **Rolls back {original}** (`{revert.merged_commit[:7]}`): this pull request reverts what {original} "
            "merged, so applying it undoes what that deployed.")


def pending_statuses(r, job_id: str) -> dict[str, str]:
    """Statuses (context -> sha) the job set pending and has not finished."""
    return {k.decode(): v.decode() for k, v in r.hgetall(keys.PENDING_STATUSES.format(job_id)).items()}


def fail_pending(forge: Forge, r, job_id: str, repo: Repo, title: str, job_url: str) -> None:
    """Fail what the job left pending: its commit statuses, or its check runs (`title` says why)."""
    for context, sha in pending_statuses(r, job_id).items():
        if has_checks(forge):
            checks.publish(forge, r, job_id, repo, sha, CheckReport(context, FAILURE, title, title, details_url=job_url))
        else:
            forge.set_status(repo, sha, context, FAILURE, title[:100], job_url)
