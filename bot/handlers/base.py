"""The shape every command handler has: start -> per-project work -> finish.

`start` runs in the event's job. It checks what may refuse the command and either does the
whole (small) thing itself, returning a one-line summary, or returns a NewRun: the run engine
(bot.runs.engine) then posts the comment, fans the projects out as RQ jobs, calls `project`
in each, and `finish` once in the finalizing job.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Union

from bot.context import JobContext
from bot.models import Command, ProjectOutcome, PullRequest
from bot.runs.model import NewRun, Run


class Trigger(StrEnum):
    """What asked for the command."""

    COMMENT = "comment"
    AUTOPLAN = "autoplan"  # a pull request opened or pushed
    APPROVAL = "approval"  # a review approved it (apply_on_approval)
    MERGE = "merge"  # merged (merge-to-deploy)
    API = "api"  # the UI or the JSON API (a deployment's "Roll back")


@dataclass(frozen=True)
class Request:
    pull: PullRequest
    command: Command
    actor: str
    trigger: Trigger = Trigger.COMMENT


Started = Union[str, NewRun]  # a summary for the job record, or a run for the engine to start


class Handler:
    name: ClassVar[str]
    needs_permission: ClassVar[bool] = True  # a comment needs the `permissions` the server sets for it

    def start(self, ctx: JobContext, request: Request) -> Started:
        raise NotImplementedError

    def project(self, ctx: JobContext, run: Run, outcome: ProjectOutcome) -> None:
        """One project of a run this handler started: fill in the outcome (status, results)."""
        raise NotImplementedError(f"/{self.name} starts no runs")

    def finish(self, ctx: JobContext, run: Run, outcomes: list[ProjectOutcome]) -> None:
        """After the run's comment and statuses are final."""
