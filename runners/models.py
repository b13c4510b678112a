"""Plain values passed between the runners and the bot."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

# Called with each line of output as it is produced (already without trailing newline).
LineSink = Callable[[str], None]
# Polled while a process runs; returning True interrupts it gracefully.
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class Project:
    """One unit that is planned, locked and applied: a directory and a workspace in a repo."""

    dir: str  # relative to the repo root, "." for the root, never leaving it
    workspace: str = "default"
    name: Optional[str] = None
    engine: str = "terraform"  # terraform | kubectl

    @property
    def key(self) -> str:
        """Stable identity within a repo, used for locks and plan artifacts."""
        return f"{self.dir}::{self.workspace}"

    @property
    def label(self) -> str:
        return self.name or (self.dir if self.workspace == "default" else f"{self.dir} ({self.workspace})")


@dataclass(frozen=True)
class ResourceChange:
    """A resource (or Kubernetes object) that a plan changes."""

    address: str
    action: str  # create | update | replace | delete | read
    # SHA-256 of the change's before and after values in canonical form (unknown values as
    # unknown, sensitive values as their hash: runners.plan_json.change_values); "" when the
    # engine gives none. Not part of equality: two plans agree on values when digests match.
    digest: str = field(default="", compare=False)


@dataclass
class PlanResult:
    """Outcome of planning one project."""

    ok: bool
    has_changes: bool = False
    summary: str = ""  # the summary line exactly as the engine printed it
    changes: list[ResourceChange] = field(default_factory=list)
    output: str = ""  # human-readable plan output, ANSI stripped
    failed_step: Optional[str] = None  # e.g. "init", "plan"
    error: str = ""  # what went wrong, for the comment
    plan_file: Optional[str] = None  # absolute path to the saved plan (when ok)
    plan_json: Optional[dict] = None  # `terraform show -json` of the plan (when ok)
    cancelled: bool = False
    init_note: str = ""  # in a kept work tree: whether `terraform init` ran and why, or was skipped


@dataclass
class ApplyResult:
    """Outcome of applying one project."""

    ok: bool
    summary: str = ""  # e.g. "Apply complete! Resources: 1 added, 0 changed, 0 destroyed."
    output: str = ""
    failed_step: Optional[str] = None
    error: str = ""
    cancelled: bool = False
