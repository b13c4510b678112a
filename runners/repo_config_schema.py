"""The validated shape of a repo config (plankeeper.yaml / atlantis.yaml v3), and its errors.

Only plain frozen values live here; runners/repo_config.py builds them from YAML nodes and
runners/repo_config_merge.py combines them with the server-side repo settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from runners.models import Project

DEFAULT_WHEN_MODIFIED = ("**/*.tf*", "**/*.tofu*", "**/terragrunt.hcl", "**/.terraform.lock.hcl")
STEP_NAMES = ("init", "plan", "apply", "show", "run", "env", "multienv", "policy_check", "import",
              "state_rm", "version")
STAGES = ("plan", "apply", "policy_check", "import", "state_rm")
REQUIREMENTS = ("approved", "mergeable", "undiverged", "policies_passed")
SILENCEABLE = ("plan", "apply")  # the commands whose comment silence_pr_comments can leave out
MERGE_METHODS = ("merge", "squash", "rebase")


class RepoConfigError(ValueError):
    """A repo config is invalid; str() reads `atlantis.yaml:7: projects[1].workspace: ...`."""

    def __init__(self, message: str, file: str = "", line: Optional[int] = None, key: str = "") -> None:
        self.message, self.file, self.line, self.key = message, file, line, key
        where = file + (f":{line}" if line else "")
        parts = [p for p in (where, key) if p]
        super().__init__(": ".join(parts + [message]))


@dataclass(frozen=True)
class Step:
    """One workflow step. `kind` is one of STEP_NAMES."""

    kind: str
    extra_args: tuple[str, ...] = ()
    command: str = ""  # run / env (command form) / multienv
    name: str = ""  # env: the variable to set
    value: Optional[str] = None  # env: a literal value
    output: str = "show"  # run / multienv: show | hide | strip_refreshing


DEFAULT_PLAN_STEPS = (Step("init"), Step("plan"))
DEFAULT_APPLY_STEPS = (Step("apply"),)


@dataclass(frozen=True)
class Workflow:
    """Named lists of steps per stage; a stage left out of the file keeps the default steps."""

    name: str = "default"
    plan: tuple[Step, ...] = DEFAULT_PLAN_STEPS
    apply: tuple[Step, ...] = DEFAULT_APPLY_STEPS
    stages: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)  # policy_check, import, state_rm
    source: str = "builtin"  # builtin | server | repo

    @property
    def is_default(self) -> bool:
        """True when plan and apply are exactly init + plan / apply, without extra args."""
        return self.plan == DEFAULT_PLAN_STEPS and self.apply == DEFAULT_APPLY_STEPS


DEFAULT_WORKFLOW = Workflow()


@dataclass(frozen=True)
class Autodiscover:
    mode: str = "auto"  # auto | enabled | disabled
    ignore_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftConfig:
    schedule: Optional[str] = None
    remediate: Optional[bool] = None


@dataclass(frozen=True)
class KubectlConfig:
    context: Optional[str] = None  # recorded, but the server's setting is what runs
    namespace: Optional[str] = None
    render: str = "plain"  # plain | kustomize | helm
    prune: bool = False
    values: tuple[str, ...] = ()  # helm values files, relative to the project dir


@dataclass(frozen=True)
class ProjectConfig:
    """One `projects[]` entry; None means "not set in the file"."""

    dir: str
    workspace: str = "default"
    name: Optional[str] = None
    branch: Optional[str] = None  # regex, without the surrounding slashes
    autoplan_enabled: Optional[bool] = None
    when_modified: Optional[tuple[str, ...]] = None
    apply_requirements: Optional[tuple[str, ...]] = None
    plan_requirements: Optional[tuple[str, ...]] = None
    import_requirements: Optional[tuple[str, ...]] = None
    workflow: Optional[str] = None
    terraform_version: Optional[str] = None
    terraform_distribution: Optional[str] = None
    depends_on: tuple[str, ...] = ()
    execution_order_group: int = 0
    repo_locks_mode: Optional[str] = None
    silence_pr_comments: tuple[str, ...] = ()
    custom_policy_check: Optional[bool] = None
    policy_check: Optional[bool] = None
    delete_source_branch_on_merge: Optional[bool] = None
    engine: str = "terraform"
    apply_on_approval: Optional[bool] = None
    apply_on_merge: Optional[bool] = None
    drift: Optional[DriftConfig] = None
    kubectl: Optional[KubectlConfig] = None
    glob_file_match: Optional[tuple[str, ...]] = None  # a glob dir: the files a matching dir must hold
    line: int = 0  # where the entry starts in the file, for later errors
    index: int = 0  # position in projects[]

    @property
    def project(self) -> Project:
        return Project(dir=self.dir, workspace=self.workspace, name=self.name, engine=self.engine)

    @property
    def key_path(self) -> str:
        return f"projects[{self.index}]"


@dataclass(frozen=True)
class RepoConfig:
    """A whole repo config file, validated."""

    file: str  # the file name it came from, e.g. atlantis.yaml
    version: int = 3
    automerge: Optional[bool] = None
    automerge_method: Optional[str] = None  # one of MERGE_METHODS
    delete_source_branch_on_merge: Optional[bool] = None
    parallel_plan: bool = False
    parallel_apply: bool = False
    abort_on_execution_order_fail: bool = False
    autodiscover: Autodiscover = field(default_factory=Autodiscover)
    projects: tuple[ProjectConfig, ...] = ()
    workflows: Mapping[str, Workflow] = field(default_factory=dict)
    allowed_regexp_prefixes: tuple[str, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)  # key path -> line, for merge errors
    repo_locks_mode: Optional[str] = None  # top-level `repo_locks.mode`: the default of every project
    emoji_reaction: Optional[str] = None  # accepted; the server's reaction is what is used
    warnings: tuple[str, ...] = ()  # keys accepted but not honoured, each named: `check` and plan comments

    def project_named(self, name: str) -> Optional[ProjectConfig]:
        return next((p for p in self.projects if p.name == name), None)


@dataclass(frozen=True)
class EffectiveProject:
    """A project with every setting resolved: repo file, then server settings, then defaults."""

    project: Project
    apply_requirements: tuple[str, ...] = ("approved", "mergeable")
    plan_requirements: tuple[str, ...] = ()
    import_requirements: tuple[str, ...] = ()
    apply_on_approval: bool = False
    apply_on_merge: bool = False
    autoplan: bool = True
    when_modified: tuple[str, ...] = DEFAULT_WHEN_MODIFIED
    workflow: Workflow = DEFAULT_WORKFLOW
    terraform_version: Optional[str] = None
    terraform_distribution: str = "terraform"
    depends_on: tuple[str, ...] = ()
    execution_order_group: int = 0
    repo_locks_mode: str = "on_plan"
    silence_pr_comments: tuple[str, ...] = ()
    policy_check: bool = True  # False: the server's policy sets do not run on its plans
    delete_source_branch_on_merge: bool = False  # when the bot merges the pull request (automerge)
    drift: DriftConfig = field(default_factory=DriftConfig)
    kubectl: KubectlConfig = field(default_factory=KubectlConfig)
    branch: Optional[str] = None
    configured: bool = False  # True when it comes from a projects[] entry, False when discovered

    @property
    def name(self) -> Optional[str]:
        return self.project.name
