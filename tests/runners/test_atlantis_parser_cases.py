"""Atlantis' own parser tests, ported: the same input is accepted with the same meaning, or
refused with a message naming the key.

Sources (runatlantis/atlantis, server/core/config/): parser_validator_test.go (TestParseRepoCfg,
TestParseRepoCfg_GlobalValidation, TestParseRepoCfg_V2ShellParsing, TestParseRepoCfg_GlobExpansion*,
TestParseGlobalCfg), raw/repo_cfg_test.go, raw/project_test.go, raw/step_test.go,
raw/autoplan_test.go, raw/repo_locks_test.go, raw/autodiscover_test.go. Atlantis' tests run with
`AllowAllRepoSettings: true` (every override allowed, custom workflows allowed): OPEN here.

Where Plankeeper deliberately differs, the case says so (DIFFERS) and why.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bot.errors import SettingsError
from bot.settings import Settings
from bot.settings_loader import load_settings
from runners.repo_config import load_repo_config, parse_repo_config
from runners.repo_config_merge import merge_with_server
from runners.repo_config_schema import (
    DEFAULT_APPLY_STEPS,
    DEFAULT_PLAN_STEPS,
    DEFAULT_WHEN_MODIFIED,
    RepoConfig,
    RepoConfigError,
    Step,
)

RESOLVED = Settings().repo_settings("github.com/owner/repo")
OPEN = replace(RESOLVED, allow_custom_workflows=True, allowed_overrides=(
    "apply_requirements", "plan_requirements", "import_requirements", "workflow", "apply_on_approval",
    "apply_on_merge", "automerge", "autoplan", "drift", "delete_source_branch_on_merge", "policy_check"))
V3 = "version: 3\n"
WORKFLOW_STAGES = ("plan", "policy_check", "apply", "import", "state_rm")


def only(config: RepoConfig):
    [project] = config.projects
    return project


def effective(config: RepoConfig):
    [ep] = merge_with_server(config, OPEN)
    return ep


def defaults(config: RepoConfig, workspace: str = "default") -> bool:
    """A project as Atlantis' minimal one: dir `.`, the workspace, autoplan on with the default
    when_modified, nothing else set."""
    ep = effective(config)
    return (ep.project.dir, ep.project.workspace, ep.autoplan, ep.when_modified, ep.workflow.name) == (
        ".", workspace, True, DEFAULT_WHEN_MODIFIED, "default")


def every_stage(step: str) -> str:
    return "workflows:\n  default:\n" + "".join(
        f"    {stage}:\n      steps:\n      - {step}\n" for stage in WORKFLOW_STAGES)


def stages_of(config: RepoConfig, name: str = "default") -> dict[str, tuple[Step, ...]]:
    w = config.workflows[name]
    return {"plan": w.plan, "apply": w.apply, **w.stages}


# (id, atlantis.yaml text, check on the parsed config)
ACCEPTED: list[tuple[str, str, Callable[[RepoConfig], bool]]] = [
    # parser_validator_test.go: TestParseRepoCfg
    ("version 2 reads run as shell words", ("version: 2\nworkflows:\n  custom:\n    plan:\n      steps:\n"
     "      - run: old 'shell parsing'\n"),
     lambda c: c.version == 2 and c.workflows["custom"].plan == (Step("run", command="old shell parsing"),)
     and c.workflows["custom"].apply == DEFAULT_APPLY_STEPS),
    ("empty projects list", V3 + "projects:", lambda c: c.projects == () and c.workflows == {}),
    ("project dir set", V3 + "projects:\n- dir: .", lambda c: defaults(c)),
    ("autoplan enabled by default", V3 + "projects:\n- dir: \".\"\n", lambda c: defaults(c)),
    ("autoplan enabled with only when_modified", V3 + "projects:\n- dir: \".\"\n  autoplan:\n"
     "    when_modified: [\"**/*.tf*\"]\n",
     lambda c: (effective(c).autoplan, effective(c).when_modified) == (True, ("**/*.tf*",))),
    ("no workflows key: none", V3 + "projects:\n- dir: \".\"\n", lambda c: c.workflows == {}),
    ("workflows: ~ is none", V3 + "projects:\n- dir: \".\"\nworkflows: ~\n", lambda c: c.workflows == {}),
    ("empty steps keys keep the default steps", V3 + "projects:\n- dir: \".\"\nworkflows:\n  default:\n"
     "    plan:\n      steps:\n    apply:\n      steps:\n",
     lambda c: (c.workflows["default"].plan, c.workflows["default"].apply) == (DEFAULT_PLAN_STEPS, DEFAULT_APPLY_STEPS)),
    ("project fields except autoplan", V3 + "projects:\n- dir: .\n  workspace: myworkspace\n  terraform_version: v0.11.0\n"
     "  apply_requirements: [approved]\n  workflow: myworkflow\nworkflows:\n  myworkflow: ~",
     lambda c: (effective(c).project.workspace, effective(c).terraform_version, effective(c).apply_requirements,
                effective(c).workflow.name, effective(c).autoplan) == ("myworkspace", "v0.11.0", ("approved",),
                                                                       "myworkflow", True)
     and effective(c).workflow.plan == DEFAULT_PLAN_STEPS),
    ("project with autoplan disabled", V3 + "projects:\n- dir: .\n  workspace: myworkspace\n"
     "  terraform_version: v0.11.0\n  apply_requirements: [approved]\n  workflow: myworkflow\n  autoplan:\n"
     "    enabled: false\nworkflows:\n  myworkflow: ~",
     lambda c: (effective(c).autoplan, effective(c).when_modified) == (False, DEFAULT_WHEN_MODIFIED)),
    *[(f"apply_requirements {reqs}", V3 + f"projects:\n- dir: .\n  apply_requirements: [{reqs}]\n",
       lambda c, reqs=reqs: effective(c).apply_requirements == tuple(reqs.split(", ")))
      for reqs in ("mergeable", "undiverged", "mergeable, approved", "undiverged, approved", "undiverged, mergeable",
                   "undiverged, mergeable, approved")],
    ("terraform_distribution opentofu", V3 + "projects:\n- dir: .\n  workspace: myworkspace\n"
     "  terraform_distribution: opentofu\n", lambda c: effective(c).terraform_distribution == "opentofu"),
    ("two projects in one dir and workspace with different names", V3 + "projects:\n- name: myname\n  dir: .\n"
     "  workspace: workspace\n- name: myname2\n  dir: .\n  workspace: workspace",
     lambda c: [p.name for p in c.projects] == ["myname", "myname2"]),
    ("custom steps in every stage", V3 + "projects:\n- dir: \".\"\n" + every_stage("run: echo apply \"arg 2\""),
     lambda c: set(stages_of(c).values()) == {(Step("run", command='echo apply "arg 2"'),)}),
    ("env steps with a value or a command", V3 + "projects:\n- dir: \".\"\nworkflows:\n  default:\n    plan:\n"
     "      steps:\n      - env:\n          name: env_name\n          value: env_value\n    apply:\n      steps:\n"
     "      - env:\n          name: env_name\n          command: command and args\n",
     lambda c: stages_of(c)["plan"] == (Step("env", name="env_name", value="env_value"),)
     and stages_of(c)["apply"] == (Step("env", name="env_name", command="command and args"),)),
    ("import and state_rm stages", V3 + "workflows:\n  default:\n    import:\n      steps:\n      - import\n"
     "    state_rm:\n      steps:\n      - state_rm:\n          extra_args: [\"a\", \"b\"]\n",
     lambda c: stages_of(c)["import"] == (Step("import"),)
     and stages_of(c)["state_rm"] == (Step("state_rm", extra_args=("a", "b")),)),
    ("extra_args of every built-in step", V3 + "workflows:\n  default:\n    plan:\n      steps:\n      - init:\n"
     "          extra_args: []\n      - plan:\n          extra_args:\n          - arg1\n          - arg2\n"
     "    apply:\n      steps:\n      - apply:\n          extra_args: [\"a\", \"b\"]\n",
     lambda c: stages_of(c)["plan"] == (Step("init"), Step("plan", extra_args=("arg1", "arg2")))
     and stages_of(c)["apply"] == (Step("apply", extra_args=("a", "b")),)),
    # the policy_check stage parses, and is reported as not run (the server's Rego sets are)
    ("policy_check stage", V3 + "workflows:\n  default:\n    policy_check:\n      steps:\n      - init\n"
     "      - policy_check:\n          extra_args: [arg1]\n",
     lambda c: stages_of(c)["policy_check"] == (Step("init"), Step("policy_check", extra_args=("arg1",)))
     and "workflows.default.policy_check: ignored" in c.warnings[0]),
    # raw/repo_cfg_test.go
    ("version 2 alone", "version: 2", lambda c: c.version == 2 and c.projects == ()),
    ("version 3 alone", "version: 3", lambda c: c.version == 3),
    ("projects key without value", V3 + "projects:", lambda c: c.projects == ()),
    ("workflows key without value", V3 + "workflows:", lambda c: c.workflows == {}),
    ("should use values if set", V3 + "automerge: true\nautodiscover:\n  mode: enabled\nparallel_apply: true\n"
     "parallel_plan: false\nrepo_locks:\n  mode: on_apply\nprojects:\n- dir: mydir\n  workspace: myworkspace\n"
     "  workflow: default\n  terraform_version: v0.11.0\n  autoplan:\n    enabled: false\n    when_modified: []\n"
     "  apply_requirements: [mergeable]\n  repo_locks:\n    mode: disabled\nworkflows:\n  default:\n    plan:\n"
     "      steps: []\n    policy_check:\n      steps: []\n    apply:\n     steps: []\nallowed_regexp_prefixes:\n"
     "- dev/\n- staging/",
     lambda c: (c.automerge, c.autodiscover.mode, c.parallel_apply, c.parallel_plan, c.repo_locks_mode,
                c.allowed_regexp_prefixes) == (True, "enabled", True, False, "on_apply", ("dev/", "staging/"))
     and (only(c).dir, only(c).workspace, only(c).autoplan_enabled, only(c).when_modified, only(c).repo_locks_mode)
     == ("mydir", "myworkspace", False, (), "disabled")
     and (c.workflows["default"].plan, c.workflows["default"].apply) == ((), ())),  # `steps: []`: no steps
    ("a stage set to {} keeps its default steps", "version: 2\nworkflows:\n  myworkflow:\n    plan: {}\n",
     lambda c: c.workflows["myworkflow"].plan == DEFAULT_PLAN_STEPS),
    ("abort_on_execution_order_fail", V3 + "abort_on_execution_order_fail: true\nparallel_apply: false\n",
     lambda c: c.abort_on_execution_order_fail is True and c.parallel_apply is False),
    # raw/project_test.go
    ("all project fields with mergeable", V3 + "projects:\n- name: myname\n  dir: mydir\n  workspace: workspace\n"
     "  workflow: workflow\n  terraform_version: v0.11.0\n  autoplan:\n    when_modified: []\n    enabled: false\n"
     "  apply_requirements:\n  - mergeable\nworkflows:\n  workflow: ~\n",
     lambda c: (only(c).name, only(c).dir, only(c).workspace, only(c).workflow, only(c).when_modified,
                only(c).apply_requirements) == ("myname", "mydir", "workspace", "workflow", (), ("mergeable",))),
    ("terraform_version v1", V3 + "projects:\n- dir: .\n  terraform_version: v1\n",
     lambda c: only(c).terraform_version == "v1"),
    ("terraform_version 1", V3 + "projects:\n- dir: .\n  terraform_version: 1\n",
     lambda c: only(c).terraform_version == "1"),
    ("terraform_version without v", V3 + "projects:\n- dir: .\n  terraform_version: 0.11.0\n",
     lambda c: only(c).terraform_version == "0.11.0"),
    ("project name with slashes", V3 + "projects:\n- dir: .\n  name: my/name\n", lambda c: only(c).name == "my/name"),
    ("dir set to /", V3 + "projects:\n- dir: /\n", lambda c: only(c).dir == "."),
    ("dir starting with /", V3 + "projects:\n- dir: /a/b/c\n", lambda c: only(c).dir == "a/b/c"),
    ("dir with a trailing slash", V3 + "projects:\n- dir: mydir/\n", lambda c: only(c).dir == "mydir"),
    ("dir set to ./", V3 + "projects:\n- dir: ./\n", lambda c: only(c).dir == "."),
    ("dir set to ././", V3 + "projects:\n- dir: ././\n", lambda c: only(c).dir == "."),
    ("workspace set to an empty string", V3 + "projects:\n- dir: .\n  workspace: \"\"\n",
     lambda c: only(c).workspace == "default"),
    # DIFFERS: Atlantis refuses any `..` in dir; Plankeeper accepts one that stays in the repository
    ("unclean dir inside the repository", V3 + "projects:\n- dir: ./mydir/anotherdir/../\n",
     lambda c: only(c).dir == "mydir"),
    # raw/step_test.go (each step inside a plan stage)
    *[(f"step {kind}", V3 + f"workflows:\n  w:\n    plan:\n      steps:\n      - {kind}\n",
       lambda c, kind=kind: c.workflows["w"].plan == (Step(kind),))
      for kind in ("init", "plan", "policy_check", "import")],
    ("init extra_args", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - init:\n          extra_args: [arg1, arg2]\n",
     lambda c: c.workflows["w"].plan == (Step("init", extra_args=("arg1", "arg2")),)),
    ("env step command", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - env:\n          command: echo 123\n"
     "          name: test\n", lambda c: c.workflows["w"].plan == (Step("env", name="test", command="echo 123"),)),
    ("env step shell and shellArgs as a string", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - env:\n"
     "          name: test\n          command: echo 123\n          shell: bash\n          shellArgs: -c\n",
     lambda c: c.workflows["w"].plan == (Step("env", name="test", command="echo 123"),)
     and "shell: 'bash' is ignored" in c.warnings[0]),
    ("env step shellArgs as a list", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - env:\n          name: test\n"
     "          command: echo 123\n          shell: bash\n          shellArgs: [\"-c\", \"--debug\"]\n",
     lambda c: len(c.warnings) == 2 and "'-c --debug' is ignored" in c.warnings[1]),
    ("run step", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - run: my 'run command'\n",
     lambda c: c.workflows["w"].plan == (Step("run", command="my 'run command'"),)),
    ("run step with output", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - run:\n"
     "          command: my 'run command'\n          output: hide\n",
     lambda c: c.workflows["w"].plan == (Step("run", command="my 'run command'", output="hide"),)),
    ("multienv step", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - multienv: envs.sh\n",
     lambda c: c.workflows["w"].plan == (Step("multienv", command="envs.sh"),)),
    ("multienv step with output", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - multienv:\n"
     "          command: envs.sh\n          output: hide\n",
     lambda c: c.workflows["w"].plan == (Step("multienv", command="envs.sh", output="hide"),)),
    ("unparsable shell command in version 3", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - run: my 'c\n",
     lambda c: c.workflows["w"].plan == (Step("run", command="my 'c"),)),
    # raw/autoplan_test.go
    ("when_modified with an empty element", V3 + "projects:\n- dir: .\n  autoplan:\n    enabled: false\n"
     "    when_modified:\n    - \"\"\n", lambda c: (only(c).autoplan_enabled, only(c).when_modified) == (False, ())),
    ("when_modified empty", V3 + "projects:\n- dir: .\n  autoplan:\n    when_modified: []\n",
     lambda c: effective(c).when_modified == () and effective(c).autoplan),
    ("autoplan enabled true", V3 + "projects:\n- dir: .\n  autoplan:\n    enabled: true\n",
     lambda c: (effective(c).autoplan, effective(c).when_modified) == (True, DEFAULT_WHEN_MODIFIED)),
    # raw/repo_locks_test.go
    *[(f"repo_locks {mode}", V3 + f"repo_locks:\n  mode: {mode}\n", lambda c, mode=mode: c.repo_locks_mode == mode)
      for mode in ("disabled", "on_plan", "on_apply")],
    # raw/autodiscover_test.go
    *[(f"autodiscover {mode}", V3 + f"autodiscover:\n  mode: {mode}\n",
       lambda c, mode=mode: c.autodiscover.mode == mode) for mode in ("auto", "enabled", "disabled")],
    ("autodiscover ignore_paths", V3 + "autodiscover:\n  mode: auto\n  ignore_paths:\n  - foo*\n"
     "  - foo/**/bar/baz/??\n", lambda c: c.autodiscover.ignore_paths == ("foo*", "foo/**/bar/baz/??")),
    # the keys every Atlantis project may set (raw/project.go)
    ("plan, apply and import requirements", V3 + "projects:\n- dir: .\n  plan_requirements: [approved]\n"
     "  apply_requirements: [mergeable]\n  import_requirements: [undiverged]\n",
     lambda c: (effective(c).plan_requirements, effective(c).apply_requirements, effective(c).import_requirements)
     == (("approved",), ("mergeable",), ("undiverged",))),
    ("silence_pr_comments, policy_check, delete_source_branch_on_merge", V3 + "projects:\n- dir: .\n"
     "  silence_pr_comments: [plan, apply]\n  policy_check: false\n  delete_source_branch_on_merge: true\n",
     lambda c: (effective(c).silence_pr_comments, effective(c).policy_check,
                effective(c).delete_source_branch_on_merge) == (("plan", "apply"), False, True)),
    ("custom_policy_check is reported as not run", V3 + "projects:\n- dir: .\n  custom_policy_check: true\n",
     lambda c: "projects[0].custom_policy_check: ignored" in c.warnings[0]),
    ("depends_on and execution_order_group", V3 + "projects:\n- name: a\n  dir: a\n- name: b\n  dir: b\n"
     "  depends_on: [a]\n  execution_order_group: 2\n",
     lambda c: (c.projects[1].depends_on, c.projects[1].execution_order_group) == (("a",), 2)),
]

# (id, atlantis.yaml text, what the message must name; Atlantis' own message in the comment)
REFUSED: list[tuple[str, str, str]] = [
    # parser_validator_test.go: TestParseRepoCfg
    ("no version", "projects:\n- dir: \".\"\n", "version: required"),  # version: is required
    ("unsupported version", "version: 0\nprojects:\n- dir: \".\"\n", "only versions 3 and 2 are supported"),
    ("empty version", "version:\nprojects:\n- dir: \".\"\n", "version: required"),
    ("project dir not set", V3 + "projects:\n- {}", "projects[0]: `dir` is required"),  # dir: cannot be blank
    ("project dir ..", V3 + "projects:\n- dir: ..", "projects[0].dir: '..' leaves the repository"),
    ("project with no config at index 1", V3 + "projects:\n- dir: \".\"\n- {}", "projects[1]: `dir` is required"),
    ("project with unknown key", V3 + "projects:\n- unknown: value", "projects[0].unknown: unknown key"),
    ("two projects with the same dir and workspace without names", V3 + "projects:\n- dir: .\n  workspace: workspace\n"
     "- dir: .\n  workspace: workspace", "each of them needs a `name`"),
    ("two projects in one dir and workspace, only one named", V3 + "projects:\n- name: myname\n  dir: .\n"
     "  workspace: workspace\n- dir: .\n  workspace: workspace", "each of them needs a `name`"),
    ("two projects with the same name", V3 + "projects:\n- name: myname\n  dir: .\n  workspace: workspace\n"
     "- name: myname\n  dir: .\n  workspace: workspace", "project name 'myname' is used twice"),
    # DIFFERS: Atlantis runs a `plan` step in the apply stage ("we don't validate if they make sense");
    # Plankeeper refuses it: a plan at apply time would apply something nobody reviewed
    ("plan step in the apply stage", V3 + "workflows:\n  default:\n    apply:\n      steps:\n      - plan\n"
     "      - apply\n", "workflows.default.apply.steps[0]: a `plan` step cannot run in the apply stage"),
    # TestParseRepoCfg_V2ShellParsing
    ("version 2 run with an open quote", ("version: 2\nworkflows:\n  custom:\n    plan:\n      steps:\n"
     "      - run: echo 'a b\n"), "cannot be split into words as version 2 does"),
    # raw/repo_cfg_test.go
    ("empty file", "", "the file is empty"),
    ("yaml nil", "~", "the file is empty"),
    ("invalid top-level key", V3 + "invalid: key", "invalid: unknown key"),
    ("projects as a mapping", V3 + "projects:\n  key: value", "projects: expected a list"),
    ("projects as a scalar", V3 + "projects: value", "projects: expected a list"),
    ("automerge not a boolean", V3 + "automerge: notabool", "automerge: expected true or false"),
    ("parallel_apply not a boolean", V3 + "parallel_apply: notabool", "parallel_apply: expected true or false"),
    ("version 1", "version: 1", "only versions 3 and 2 are supported"),
    # raw/project_test.go
    ("dir ../mydir", V3 + "projects:\n- dir: ../mydir\n", "leaves the repository"),
    ("apply requirement unsupported", V3 + "projects:\n- dir: .\n  apply_requirements: [unsupported]\n",
     "projects[0].apply_requirements[0]: 'unsupported' is not one of"),
    ("plan requirement unsupported", V3 + "projects:\n- dir: .\n  plan_requirements: [unsupported]\n",
     "projects[0].plan_requirements[0]: 'unsupported' is not one of"),
    ("import requirement unsupported", V3 + "projects:\n- dir: .\n  import_requirements: [unsupported]\n",
     "projects[0].import_requirements[0]: 'unsupported' is not one of"),
    ("empty terraform_version", V3 + "projects:\n- dir: .\n  terraform_version: \"\"\n",
     "projects[0].terraform_version: '' is not a version"),
    ("empty project name", V3 + "projects:\n- dir: .\n  name: \"\"\n", "projects[0].name: must be a non-empty"),
    *[(f"project name {name!r}", V3 + f"projects:\n- dir: .\n  name: {name!r}\n", "projects[0].name: ")
      for name in ("😀", "name with spaces", "namewith+", "namewith\\")],  # must contain only URL safe characters
    ("terraform_distribution other", V3 + "projects:\n- dir: .\n  terraform_distribution: pulumi\n",
     "projects[0].terraform_distribution: 'pulumi' is not one of"),
    # raw/step_test.go
    ("empty step", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      -\n", "workflows.w.plan.steps[0]"),
    ("invalid step name", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - invalid\n",
     "'invalid' is not one of"),
    ("two keys in one step", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - init: {}\n        plan: {}\n",
     "a step has exactly one key"),
    ("invalid step key in a mapping", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - invalid: {}\n",
     "workflows.w.plan.steps[0].invalid: unknown key"),
    ("built-in step with a key other than extra_args", V3 + "workflows:\n  w:\n    plan:\n      steps:\n"
     "      - init:\n          invalid: x\n", "workflows.w.plan.steps[0].init.invalid: unknown key"),
    ("extra_args not a list of strings", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - init:\n"
     "          extra_args:\n          - value:\n              another: map\n", "extra_args[0]: expected a string"),
    ("env step without a name", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - env:\n          value: value\n",
     "`name` is required"),
    ("env step with an invalid key", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - env:\n          abc: x\n",
     "env.abc: unknown key"),
    ("env step with both command and value", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - env:\n"
     "          name: name\n          command: command\n          value: value\n", "give exactly one of `value` and `command`"),
    ("env step with a shell but no command", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - env:\n"
     "          name: name\n          shell: bash\n", "give exactly one of `value` and `command`"),
    ("run step shellArgs that are not strings", V3 + "workflows:\n  w:\n    plan:\n      steps:\n      - run:\n"
     "          command: echo\n          shell: shell\n          shellArgs: [42, 42]\n", "shellArgs[0]: expected a string"),
    # raw/repo_locks_test.go, raw/autodiscover_test.go
    ("repo_locks random", V3 + "repo_locks:\n  mode: random_string\n", "repo_locks.mode: 'random_string' is not one of"),
    ("autodiscover random", V3 + "autodiscover:\n  mode: random_string\n", "autodiscover.mode: 'random_string'"),
    ("ignore_paths with a leading slash", V3 + "autodiscover:\n  ignore_paths: [/foo]\n",
     "pattern must not begin with a slash"),
    ("ignore_paths broken by a backslash", V3 + "autodiscover:\n  ignore_paths: ['\\']\n", "invalid pattern"),
    ("ignore_paths broken by [", V3 + "autodiscover:\n  ignore_paths: ['[']\n", "invalid pattern"),
    ("ignore_paths with one bad pattern", V3 + "autodiscover:\n  ignore_paths: [foo, 'foo[']\n",
     "ignore_paths[1]: invalid pattern 'foo['"),
    # glob dirs (raw/project.go)
    ("glob dir with a name", V3 + "projects:\n- name: n\n  dir: modules/*\n",
     "projects[0].name: cannot be used with a glob `dir`"),
    ("glob in a name", V3 + "projects:\n- name: 'n*'\n  dir: modules\n", "projects[0].name: 'n*' is not allowed"),
    ("glob_file_match without a glob dir", V3 + "projects:\n- dir: modules\n  glob_file_match: ['*.hcl']\n",
     "glob_file_match: can only be used when `dir` contains a glob"),
    ("glob_file_match empty", V3 + "projects:\n- dir: 'modules/*'\n  glob_file_match: []\n", "cannot be an empty list"),
    ("glob_file_match with a path", V3 + "projects:\n- dir: 'modules/*'\n  glob_file_match: ['**/*.tf']\n",
     "glob_file_match[0]: must be a file name pattern without `/`"),
    ("invalid glob dir", V3 + "projects:\n- dir: \"[invalid\"\n", "syntax error in pattern"),
]

# Refused when merged with settings that allow nothing (TestParseRepoCfg_GlobalValidation, and
# referencing a workflow that does not exist with everything allowed)
REFUSED_BY_THE_SERVER: list[tuple[str, str, object, str]] = [
    ("workflow without allowed_overrides", V3 + "projects:\n- dir: .\n  workflow: custom\n", RESOLVED,
     "may not set workflow: the server setting allowed_overrides does not list 'workflow'"),
    ("custom workflows not allowed", V3 + "projects:\n- dir: .\nworkflows:\n  custom: ~", RESOLVED,
     "may not define workflows: the server setting allow_custom_workflows is false"),
    ("workflow that is not defined anywhere", V3 + "projects:\n- dir: .\n  workflow: undefined", OPEN,
     "no workflow named 'undefined'"),
    ("plan_requirements lowered without allowed_overrides", V3 + "projects:\n- dir: .\n  plan_requirements: []\n",
     replace(RESOLVED, plan_requirements=("approved",)), "may not set plan_requirements"),
    ("policy_check off without allowed_overrides", V3 + "projects:\n- dir: .\n  policy_check: false\n", RESOLVED,
     "may not set policy_check"),
]


@pytest.mark.parametrize("text, check", [(t, c) for _, t, c in ACCEPTED], ids=[i for i, _, _ in ACCEPTED])
def test_accepted_as_atlantis_reads_it(text: str, check) -> None:
    assert check(parse_repo_config(text, "atlantis.yaml"))


@pytest.mark.parametrize("text, message", [(t, m) for _, t, m in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(RepoConfigError) as refused:
        parse_repo_config(text, "atlantis.yaml")
    assert message in str(refused.value)
    assert str(refused.value).startswith("atlantis.yaml")


@pytest.mark.parametrize("text, resolved, message", [(t, r, m) for _, t, r, m in REFUSED_BY_THE_SERVER],
                         ids=[i for i, _, _, _ in REFUSED_BY_THE_SERVER])
def test_refused_by_the_server_settings(text: str, resolved, message: str) -> None:
    with pytest.raises(RepoConfigError) as refused:
        merge_with_server(parse_repo_config(text, "atlantis.yaml"), resolved)
    assert message in str(refused.value)


@pytest.mark.parametrize("command, words", [  # TestParseRepoCfg_V2ShellParsing
    ("echo a b", "echo a b"),
    ("echo 'a b'", "echo a b"),
    ("mkdir a/b/c || printf \\'your main.tf file does not provide default region.\\\\ncheck\\'",
     "mkdir a/b/c || printf 'your main.tf file does not provide default region.\\ncheck'"),
])
def test_version_2_splits_run_commands_into_words_and_version_3_keeps_them(command: str, words: str) -> None:
    body = f"workflows:\n  custom:\n    plan:\n      steps:\n      - run: {command}\n    apply:\n      steps:\n" \
           f"      - run: {command}\n"
    v2 = parse_repo_config("version: 2\n" + body).workflows["custom"]
    v3 = parse_repo_config("version: 3\n" + body).workflows["custom"]
    assert v2.plan[0].command == v2.apply[0].command == words
    assert v3.plan[0].command == v3.apply[0].command == command


# -- glob dirs: TestParseRepoCfg_GlobExpansion* (a checkout on disk) ----------------------------

@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for rel in ("modules/module-a/main.tf", "modules/module-b/main.tf", "modules/module-c/readme.md",
                "environments/dev/main.tf", "environments/prod/main.tf", "tg/with-terragrunt/terragrunt.hcl",
                "tg/with-tf/main.tf", "tg/with-both/terragrunt.hcl", "tg/with-both/main.tf", "tg/empty/readme.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("# terraform\n")
    return tmp_path


@pytest.mark.parametrize("projects, dirs", [
    ("- dir: \"modules/*\"", ["modules/module-a", "modules/module-b"]),  # module-c holds no .tf
    ("- dir: \"environments/**\"", ["environments/dev", "environments/prod"]),
    ("- dir: \".\"\n- dir: \"modules/*\"", [".", "modules/module-a", "modules/module-b"]),
    ("- dir: \"modules/module-a\"", ["modules/module-a"]),
    ("- dir: \"tg/*\"\n  glob_file_match:\n  - \"terragrunt.hcl\"", ["tg/with-both", "tg/with-terragrunt"]),
    ("- dir: \"tg/*\"", ["tg/with-both", "tg/with-tf"]),
    ("- dir: \"tg/*\"\n  glob_file_match:\n  - \"terragrunt.hcl\"\n  - \"*.tf\"",
     ["tg/with-both", "tg/with-terragrunt", "tg/with-tf"]),
])
def test_a_glob_dir_makes_a_project_per_matching_directory(checkout: Path, projects: str, dirs: list[str]) -> None:
    (checkout / "atlantis.yaml").write_text(V3 + "projects:\n" + projects + "\n")
    config = load_repo_config(checkout)
    assert config is not None and sorted(p.dir for p in config.projects) == dirs


def test_a_glob_dir_keeps_the_entrys_settings(checkout: Path) -> None:
    (checkout / "atlantis.yaml").write_text(V3 + "projects:\n- dir: \"modules/*\"\n  workspace: staging\n"
                                            "  terraform_version: v1.0.0\n  apply_requirements: [approved, mergeable]\n"
                                            "  autoplan:\n    enabled: false\n    when_modified: [\"*.tf\"]\n")
    config = load_repo_config(checkout)
    assert config is not None and len(config.projects) == 2
    for ep in merge_with_server(config, OPEN):
        assert (ep.project.workspace, ep.terraform_version, ep.apply_requirements, ep.autoplan, ep.when_modified,
                ep.name) == ("staging", "v1.0.0", ("approved", "mergeable"), False, ("*.tf",), None)


# -- the server side: TestParseGlobalCfg on Plankeeper's settings (repos[] is Atlantis' repos.yaml) --

@pytest.mark.parametrize("repos, message", [
    ([{"apply_requirements": []}], "repos[0].id"),  # id: cannot be blank
    ([{"id": "/?/"}], "invalid regex '/?/'"),
    ([{"id": "/.*/", "repo_config_file": "/etc/passwd"}], "repos[0].repo_config_file"),
    ([{"id": "/.*/", "repo_config_file": "../../etc/passwd"}], "repos[0].repo_config_file"),
    ([{"id": "/.*/", "allowed_overrides": ["invalid"]}], "repos[0].allowed_overrides[0]"),
    ([{"id": "/.*/", "plan_requirements": ["invalid"]}], "repos[0].plan_requirements[0]"),
    ([{"id": "/.*/", "apply_requirements": ["invalid"]}], "repos[0].apply_requirements[0]"),
    ([{"id": "/.*/", "import_requirements": ["invalid"]}], "repos[0].import_requirements[0]"),
    ([{"id": "/.*/", "silence_pr_comments": ["invalid"]}], "repos[0].silence_pr_comments[0]"),
])
def test_server_side_repo_entries_refused(tmp_path: Path, repos: list, message: str) -> None:
    path = tmp_path / "plankeeper.yaml"
    path.write_text(__import__("yaml").safe_dump({"repos": repos}))
    with pytest.raises(SettingsError) as refused:
        load_settings(path, {})
    assert message in str(refused.value)


def test_server_side_repo_entry_with_the_keys_atlantis_takes(tmp_path: Path) -> None:
    path = tmp_path / "plankeeper.yaml"
    path.write_text(
        "repos:\n- id: github.com/owner/repo\n  repo_config_file: path/to/atlantis.yaml\n"
        "  apply_requirements: [approved, mergeable]\n  pre_workflow_hooks:\n  - run: custom workflow command\n"
        "  workflow: custom1\n  post_workflow_hooks:\n  - run: custom workflow command\n"
        "  allowed_overrides: [plan_requirements, apply_requirements, import_requirements, workflow, "
        "delete_source_branch_on_merge]\n  allow_custom_workflows: true\n  policy_check: true\n"
        "- id: /.*/\n  policy_check: false\n  silence_pr_comments: [plan]\n"
        "  workflows:\n    custom1:\n      plan:\n        steps:\n        - run: custom command\n"
        "        - init:\n            extra_args: [extra, args]\n        - plan\n")
    repo = load_settings(path, {}).repo_settings("github.com/owner/repo")
    assert (repo.repo_config_file, repo.apply_requirements, repo.workflow, repo.allow_custom_workflows) == (
        "path/to/atlantis.yaml", ("approved", "mergeable"), "custom1", True)
    assert (repo.policy_check, repo.silence_pr_comments) == (False, ("plan",))  # the later entry wins
    assert repo.allowed_overrides[0] == "plan_requirements"
