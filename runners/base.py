"""The one interface every engine runner (Terraform/OpenTofu, kubectl) implements."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol, Sequence

from runners.models import ApplyResult, LineSink, PlanResult, StopCheck


class Runner(Protocol):
    def plan(
        self,
        project_dir: Path,
        workspace: str,
        out_dir: Path,
        extra_args: Sequence[str] = (),
        on_line: Optional[LineSink] = None,
        should_stop: Optional[StopCheck] = None,
    ) -> PlanResult:
        """Plan the project in project_dir; write the plan artifact into out_dir.

        Never raises for engine failures: a failing step returns PlanResult(ok=False,
        failed_step=..., error=..., output=...). The artifact path is PlanResult.plan_file.
        """

    def apply(
        self,
        project_dir: Path,
        workspace: str,
        plan_file: Path,
        on_line: Optional[LineSink] = None,
        should_stop: Optional[StopCheck] = None,
    ) -> ApplyResult:
        """Apply exactly the artifact produced by plan(); may run in a fresh checkout."""

    def version(self) -> str:
        """One line naming the engine binary and its version."""
