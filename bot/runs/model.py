"""A run: one command over several projects, and the order its projects must keep."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

from bot.models import Command, PullRequest, RunKind
from runners.models import Project
from runners.repo_config_schema import EffectiveProject


@dataclass
class Run:
    id: str
    kind: RunKind
    pull: PullRequest
    command: Command
    actor: str
    projects: list[Project]
    created_at: float = field(default_factory=time.time)
    comment_id: str = ""
    comment_url: str = ""
    coordinator_job: str = ""
    abort_on_fail: bool = False
    autoplan: bool = False
    via: str = ""  # an apply's path, as bot.state.deployments.Via: comment, approval, merge, ...
    repo_config_file: str = ""  # a repo config a pre-workflow hook generated: its file name ...
    repo_config_override: str = ""  # ... and its text, written into every project job's checkout
    silenced: list[int] = field(default_factory=list)  # projects silence_pr_comments leaves out of the comment
    automerge: dict = field(default_factory=dict)  # an apply's {enabled, method, delete_source_branch}

    def __post_init__(self) -> None:
        self.kind = RunKind(self.kind)

    @property
    def report_command(self) -> str:
        return self.kind.report_command

    def project_job_id(self, index: int) -> str:
        return f"{self.id}-p{index}"

    @property
    def finalize_job_id(self) -> str:
        return f"{self.id}-final"

    def to_json(self) -> str:
        data = asdict(self)
        data["projects"] = [asdict(p) for p in self.projects]
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> "Run":
        data = json.loads(raw)
        data["pull"] = PullRequest.from_dict(data["pull"])
        data["command"] = Command.from_dict(data["command"])
        data["projects"] = [Project(**p) for p in data["projects"]]
        return cls(**data)


@dataclass
class NewRun:
    """What a handler's start asks the engine to run: the run and how its projects are ordered."""

    run: Run
    effective: list[EffectiveProject]  # one per run.projects: execution_order_group, depends_on
    parallel: bool = True

    def dependencies(self) -> list[list[int]]:
        return dependencies(self.run, self.parallel, [ep.execution_order_group for ep in self.effective],
                            [ep.depends_on for ep in self.effective])


def dependencies(run: Run, parallel: bool, groups: Sequence[int], depends_on: Sequence[Sequence[str]]
                 ) -> list[list[int]]:
    """For each project, the indexes of the projects it must wait for."""
    names = {p.name: i for i, p in enumerate(run.projects) if p.name}
    result: list[list[int]] = []
    for i in range(len(run.projects)):
        deps = set()
        if not parallel and i > 0:
            deps.add(i - 1)
        lower = [g for g in set(groups) if g < groups[i]]
        if lower:
            deps |= {j for j, g in enumerate(groups) if g == max(lower)}
        deps |= {names[n] for n in depends_on[i] if n in names and names[n] != i}
        result.append(sorted(deps))
    return result
