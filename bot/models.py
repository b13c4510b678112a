"""Frozen dataclasses passed between the layers of the bot.

Everything here is plain data: it serializes to a JSON dict with `to_dict()` and back
with `from_dict()`, which is how it crosses the queue.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional, Union

from runners.models import ApplyResult, PlanResult, Project, ResourceChange  # noqa: F401 (re-export)


def _to_dict(obj: Any) -> dict:
    """dataclasses.asdict for this module's plain data, without its deep copy of every leaf (a
    third of the webhook ack's event serialization)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if dataclasses.is_dataclass(value):
        return _to_dict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


class OutcomeStatus(StrEnum):
    """Where one project of a run stands (ProjectOutcome.status)."""

    QUEUED = "queued"
    RUNNING = "running"
    PLANNED = "planned"
    NO_CHANGES = "no_changes"
    APPLIED = "applied"
    FAILED = "failed"
    LOCKED = "locked"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self not in (OutcomeStatus.QUEUED, OutcomeStatus.RUNNING)

    @property
    def is_failure(self) -> bool:
        """Fails the command's status (a skipped project does not: something else did it)."""
        return self in (OutcomeStatus.FAILED, OutcomeStatus.LOCKED, OutcomeStatus.CANCELLED)

    @property
    def blocks_later_groups(self) -> bool:
        """Stops the projects ordered after it when abort_on_execution_order_fail is set."""
        return self.is_failure or self is OutcomeStatus.SKIPPED


class JobState(StrEnum):
    """A job record's state (bot.state.joblog), as the UI and API show it."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class RunKind(StrEnum):
    """What a run does to each of its projects; the handler of the same name does it."""

    PLAN = "plan"
    APPLY = "apply"
    DEPLOY = "deploy"  # merge-to-deploy: re-plan on the merge commit, compare, apply
    IMPORT = "import"  # /import ADDRESS ID
    STATE_RM = "state"  # /state rm ADDRESS...

    @property
    def report_command(self) -> str:
        """The command its comment and commit status are named after."""
        if self in (RunKind.IMPORT, RunKind.STATE_RM):
            return self.value
        return "plan" if self is RunKind.PLAN else "apply"


class DriftState(StrEnum):
    """A project's state after its last drift check."""

    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    REMEDIATED = "remediated"
    FAILED = "failed"


@dataclass(frozen=True)
class Repo:
    """A repository on a forge."""

    forge: str  # forge kind, as understood by bot.forges.make_forge
    host: str  # e.g. github.com, gitlab.example.com
    full_name: str  # owner/name (GitLab: group/subgroup/name)
    clone_url: str
    default_branch: str = "main"
    html_url: str = ""
    forge_id: Optional[int] = None  # GitLab project id; None on GitHub
    installation_id: Optional[int] = None  # GitHub App installation that sent the event

    @property
    def id(self) -> str:
        """host/owner/name: what the allowlist and server-side repo config match."""
        return f"{self.host}/{self.full_name}"

    @classmethod
    def from_dict(cls, data: dict) -> "Repo":
        return cls(**data)


def pull_ref(forge: str, number: object) -> str:
    """A pull request's number as its forge writes it (SPEC §8): `!12` for a GitLab merge
    request, `PR #12` on Bitbucket, `#12` everywhere else."""
    return f"{_PULL_REF_PREFIX.get(forge, '#')}{number}"


_PULL_REF_PREFIX = {"gitlab": "!", "bitbucket": "PR #"}


@dataclass(frozen=True)
class PullRequest:
    """A pull request (GitHub) or merge request (GitLab), as the forge reports it now."""

    repo: Repo
    number: int
    author: str
    head_sha: str
    head_ref: str
    base_ref: str
    url: str = ""
    title: str = ""
    base_sha: str = ""
    head_clone_url: str = ""  # differs from repo.clone_url for forks
    is_fork: bool = False
    is_draft: bool = False
    state: str = "open"  # open | closed | merged
    merge_sha: Optional[str] = None
    updated_at: float = 0.0  # when the forge last changed it (a push, a comment), epoch seconds; 0 = unknown

    @property
    def ref(self) -> str:
        """How the forge writes it: `#7` (GitHub), `!7` (a GitLab merge request)."""
        return pull_ref(self.repo.forge, self.number)

    @classmethod
    def from_dict(cls, data: dict) -> "PullRequest":
        data = dict(data)
        data["repo"] = Repo.from_dict(data["repo"])
        return cls(**data)


@dataclass(frozen=True)
class PullRequestEvent:
    """A pull request opened, updated with new commits, closed or merged."""

    delivery_id: str
    action: str  # opened | updated | closed | merged | approved
    pull: PullRequest
    sender: str

    kind = "pull_request"

    @property
    def repo(self) -> Repo:
        return self.pull.repo

    @property
    def number(self) -> int:
        return self.pull.number


@dataclass(frozen=True)
class CommentEvent:
    """A new comment on a pull request (it may or may not be a command)."""

    delivery_id: str
    repo: Repo
    pull_number: int
    comment_id: str
    body: str
    author: str

    kind = "comment"

    @property
    def number(self) -> int:
        return self.pull_number


@dataclass(frozen=True)
class ReviewEvent:
    """A review submitted on a pull request (GitHub) / merge request approved (GitLab)."""

    delivery_id: str
    pull: PullRequest
    reviewer: str
    state: str  # approved | changes_requested | commented
    review_id: str = ""  # the forge's id of this review (GitLab: approver@head, it has none)
    commit_sha: str = ""  # the commit the review approves, where the forge says

    kind = "review"

    @property
    def repo(self) -> Repo:
        return self.pull.repo

    @property
    def number(self) -> int:
        return self.pull.number


@dataclass(frozen=True)
class CheckRunEvent:
    """A button clicked on one of the bot's check runs (GitHub Checks): Apply (a requested
    action) acts as `/apply`, Re-run (a check run or check suite re-requested) as `/plan`,
    both by whoever clicked."""

    delivery_id: str
    repo: Repo
    pull_number: int
    head_sha: str  # the commit the check run is on
    command: str  # apply | plan
    sender: str  # who clicked
    check_id: str  # what was clicked: `check_run:<id>` or `check_suite:<id>`

    kind = "check_run"

    @property
    def number(self) -> int:
        return self.pull_number


Event = Union[PullRequestEvent, CommentEvent, ReviewEvent, CheckRunEvent]
EVENT_TYPES: dict[str, type] = {
    "pull_request": PullRequestEvent,
    "comment": CommentEvent,
    "review": ReviewEvent,
    "check_run": CheckRunEvent,
}


def event_to_dict(event: Event) -> dict:
    """Serialize an event for the queue: {"kind": ..., "data": {...}}."""
    return {"kind": event.kind, "data": _to_dict(event)}


def event_from_dict(payload: dict) -> Event:
    cls = EVENT_TYPES[payload["kind"]]
    data = dict(payload["data"])
    if "pull" in data:
        data["pull"] = PullRequest.from_dict(data["pull"])
    if "repo" in data:
        data["repo"] = Repo.from_dict(data["repo"])
    return cls(**data)


@dataclass(frozen=True)
class Command:
    """A parsed comment command (SPEC §6)."""

    name: str  # plan | apply | unlock | cancel | approve_policies | help | version | import | state ...
    dirs: tuple[str, ...] = ()
    workspace: Optional[str] = None
    projects: tuple[str, ...] = ()
    verbose: bool = False
    extra_args: tuple[str, ...] = ()
    queue: bool = False
    auto_merge_disabled: bool = False
    auto_merge_method: Optional[str] = None  # merge | squash | rebase: overrides automerge_method
    args: tuple[str, ...] = ()  # positional arguments: /import ADDRESS ID, /state rm ADDRESS...

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Command":
        data = dict(data)
        for key in ("dirs", "projects", "extra_args", "args"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


@dataclass(frozen=True)
class Mergeability:
    """Whether the forge would merge the pull request now, and if not, why in words."""

    mergeable: bool
    reason: str = ""


@dataclass(frozen=True)
class Comment:
    """A comment as the forge has it now."""

    id: str
    author: str
    body: str


@dataclass(frozen=True)
class CommentRef:
    """A comment the bot posted, to edit it later."""

    id: str
    url: str = ""


@dataclass(frozen=True)
class CheckAction:
    """A button on a check run; clicking it sends `identifier` back (GitHub: at most 20
    characters for label and identifier, 40 for the description)."""

    label: str
    identifier: str
    description: str


@dataclass(frozen=True)
class CheckReport:
    """A command's result as a check run, for a forge with checks (bot.forges.base.CheckRuns)."""

    name: str  # the status context, `plankeeper/plan`
    state: str  # bot.forges.base: PENDING (in progress), SUCCESS, FAILURE or NEUTRAL
    title: str  # the overview line
    summary: str  # the per-project table (markdown)
    text: str = ""  # the output (markdown)
    details_url: str = ""  # the job's log page
    external_id: str = ""  # what the check run is about (`pull:7`), sent back with its buttons
    actions: tuple[CheckAction, ...] = ()


@dataclass
class ProjectOutcome:
    """What happened to one project in one command run; what render.py turns into markdown."""

    project: Project
    status: OutcomeStatus
    plan: Optional[PlanResult] = None
    apply: Optional[ApplyResult] = None
    message: str = ""  # extra explanation for the user (lock holder, refusal reason, next steps)
    log_url: str = ""
    drift: list[ResourceChange] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)  # per policy set: bot.policies.evaluate's results

    def __post_init__(self) -> None:
        self.status = OutcomeStatus(self.status)


def outcome_to_dict(outcome: ProjectOutcome) -> dict:
    """JSON-safe form of an outcome; the (large, sensitive) plan JSON is left out."""
    data = dataclasses.asdict(outcome)
    if data.get("plan"):
        data["plan"]["plan_json"] = None
    return data


def outcome_from_dict(data: dict) -> ProjectOutcome:
    data = dict(data)
    data["project"] = Project(**data["project"])
    if data.get("plan"):
        plan = dict(data["plan"])
        plan["changes"] = [ResourceChange(**c) for c in plan.get("changes", [])]
        data["plan"] = PlanResult(**plan)
    if data.get("apply"):
        data["apply"] = ApplyResult(**data["apply"])
    data["drift"] = [ResourceChange(**c) for c in data.get("drift", [])]
    data["policies"] = [dict(p) for p in data.get("policies") or []]
    data["status"] = OutcomeStatus(data["status"])
    return ProjectOutcome(**data)
