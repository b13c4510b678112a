"""runners/repo_config.py: plankeeper.yaml / atlantis.yaml v3 parsing, validation and server merge."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot.settings import Settings
from bot.settings_loader import load_settings
from runners.repo_config import RepoConfigError, load_repo_config, parse_repo_config
from runners.repo_config_merge import automerge_settings, merge_with_server, project_defaults
from runners.models import Project

DATA = Path(__file__).resolve().parent.parent / "data" / "repo_configs"
RESOLVED = Settings().repo_settings("github.com/acme/infra")
OPEN = replace(RESOLVED, allowed_overrides=("apply_requirements", "plan_requirements", "import_requirements",
                                            "workflow", "apply_on_approval", "apply_on_merge", "automerge",
                                            "autoplan", "drift", "delete_source_branch_on_merge", "policy_check"),
               allow_custom_workflows=True)

# (id, text, check on the parsed RepoConfig)
VALID = [
    ("minimal", "version: 3\n", lambda c: c.projects == ()),
    ("one project", "version: 3\nprojects:\n- dir: a\n", lambda c: c.projects[0].project == Project("a")),
    ("dir normalised", "version: 3\nprojects:\n- dir: ./a/b/\n", lambda c: c.projects[0].dir == "a/b"),
    ("dir inner dots", "version: 3\nprojects:\n- dir: a/../b\n", lambda c: c.projects[0].dir == "b"),
    ("root dir", "version: 3\nprojects:\n- dir: .\n", lambda c: c.projects[0].dir == "."),
    ("workspace", "version: 3\nprojects:\n- dir: a\n  workspace: staging\n",
     lambda c: c.projects[0].workspace == "staging"),
    ("same dir, named", "version: 3\nprojects:\n- {dir: a, name: x}\n- {dir: a, name: y}\n",
     lambda c: [p.name for p in c.projects] == ["x", "y"]),
    ("same dir, other workspaces", "version: 3\nprojects:\n- {dir: a}\n- {dir: a, workspace: b}\n",
     lambda c: len(c.projects) == 2),
    ("branch regex", "version: 3\nprojects:\n- dir: a\n  branch: /^main$/\n", lambda c: c.projects[0].branch == "^main$"),
    ("autoplan", "version: 3\nprojects:\n- dir: a\n  autoplan: {enabled: false, when_modified: ['*.tf', '!x.tf']}\n",
     lambda c: (c.projects[0].autoplan_enabled, c.projects[0].when_modified) == (False, ("*.tf", "!x.tf"))),
    ("unquoted version", "version: 3\nprojects:\n- dir: a\n  terraform_version: 1.5\n",
     lambda c: c.projects[0].terraform_version == "1.5"),
    ("constraint", "version: 3\nprojects:\n- dir: a\n  terraform_version: '~> 1.5, != 1.5.2'\n",
     lambda c: c.projects[0].terraform_version == "~> 1.5, != 1.5.2"),
    ("opentofu", "version: 3\nprojects:\n- dir: a\n  terraform_distribution: opentofu\n",
     lambda c: c.projects[0].terraform_distribution == "opentofu"),
    ("top-level flags", "version: 3\nautomerge: true\nparallel_plan: true\nparallel_apply: true\n"
     "abort_on_execution_order_fail: true\ndelete_source_branch_on_merge: true\n",
     lambda c: (c.automerge, c.parallel_plan, c.parallel_apply, c.abort_on_execution_order_fail) == (True,) * 4),
    ("autodiscover", "version: 3\nautodiscover: {mode: disabled, ignore_paths: [x/**]}\n",
     lambda c: (c.autodiscover.mode, c.autodiscover.ignore_paths) == ("disabled", ("x/**",))),
    ("repo_locks", "version: 3\nprojects:\n- dir: a\n  repo_locks: {mode: on_apply}\n",
     lambda c: c.projects[0].repo_locks_mode == "on_apply"),
    ("repo_locking legacy", "version: 3\nprojects:\n- dir: a\n  repo_locking: false\n",
     lambda c: c.projects[0].repo_locks_mode == "disabled"),
    ("run step forms", "version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n      - run: echo a\n"
     "      - run: {command: echo b, output: strip_refreshing}\n      - multienv: echo A=1\n",
     lambda c: [(s.kind, s.command, s.output) for s in c.workflows["w"].plan]
     == [("run", "echo a", "show"), ("run", "echo b", "strip_refreshing"), ("multienv", "echo A=1", "show")]),
    ("env steps", "version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n      - env: {name: A, value: 1}\n"
     "      - env: {name: B, command: echo b}\n",
     lambda c: [(s.name, s.value, s.command) for s in c.workflows["w"].plan] == [("A", "1", ""), ("B", None, "echo b")]),
    ("stage left out keeps default", "version: 3\nworkflows:\n  w:\n    plan:\n      steps: [init, plan, show]\n",
     lambda c: [s.kind for s in c.workflows["w"].apply] == ["apply"]),
    ("empty stage", "version: 3\nworkflows:\n  w:\n    apply:\n      steps: []\n", lambda c: c.workflows["w"].apply == ()),
    ("policy stages", "version: 3\nworkflows:\n  w:\n    policy_check:\n      steps: [show, policy_check]\n",
     lambda c: [s.kind for s in c.workflows["w"].stages["policy_check"]] == ["show", "policy_check"]),
    ("kubectl", "version: 3\nprojects:\n- dir: k\n  engine: kubectl\n  kubectl: {render: helm, prune: true, values: [v.yaml]}\n",
     lambda c: (c.projects[0].engine, c.projects[0].kubectl.render, c.projects[0].kubectl.values)
     == ("kubectl", "helm", ("v.yaml",))),
    ("drift", "version: 3\nprojects:\n- dir: a\n  drift: {schedule: '0 6 * * 1-5', remediate: true}\n",
     lambda c: c.projects[0].drift.schedule == "0 6 * * 1-5"),
    ("extensions", "version: 3\nprojects:\n- dir: a\n  apply_on_approval: true\n  apply_on_merge: true\n",
     lambda c: (c.projects[0].apply_on_approval, c.projects[0].apply_on_merge) == (True, True)),
    ("depends_on", "version: 3\nprojects:\n- {dir: a, name: a}\n- {dir: b, name: b, depends_on: [a]}\n",
     lambda c: c.projects[1].depends_on == ("a",)),
    ("regexp prefixes", "version: 3\nallowed_regexp_prefixes: [dev/, staging/]\n",
     lambda c: c.allowed_regexp_prefixes == ("dev/", "staging/")),
    ("null projects", "version: 3\nprojects:\n", lambda c: c.projects == ()),
    ("leading slash stripped", "version: 3\nprojects:\n- dir: /infra/dev\n", lambda c: c.projects[0].dir == "infra/dev"),
    ("version 2", "version: 2\nprojects:\n- dir: a\n", lambda c: (c.version, c.projects[0].dir, c.warnings) == (2, "a", ())),
    ("v3 run kept as written", "version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n      - run: \"printf 'a  b'\"\n",
     lambda c: c.workflows["w"].plan[0].command == "printf 'a  b'"),
    ("when_modified as Atlantis joins it to the dir",
     "version: 3\nprojects:\n- dir: a\n  autoplan: {when_modified: ['/x', '', '!/y/*.tf']}\n",
     lambda c: c.projects[0].when_modified == ("x", "!y/*.tf")),
    ("top repo_locks", "version: 3\nrepo_locks: {mode: disabled}\nprojects:\n- dir: a\n",
     lambda c: (c.repo_locks_mode, c.projects[0].repo_locks_mode) == ("disabled", "disabled")
     and c.warnings == (("atlantis.yaml:2: repo_locks.mode: partly honoured: plans take no lock, but an apply "
                         "still locks the project (Plankeeper never applies a project another pull request may be "
                         "applying)"),)),
    ("default shell is no warning", ("version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n"
                                     "      - run: {command: x, shell: sh, shellArgs: -c}\n"), lambda c: c.warnings == ()),
]

# (id, text, expected message fragment: file:line: key: message)
INVALID = [
    ("not yaml", "version: 3\nprojects: [\n", "atlantis.yaml:3: not valid YAML"),
    ("no version", "projects: []\n", "atlantis.yaml:1: version: required"),
    ("version 1", "version: 1\n", "atlantis.yaml:1: version: only versions 3 and 2 are supported, got 1"),
    ("v2 unbalanced quote", "version: 2\nworkflows:\n  w:\n    plan:\n      steps:\n      - run: \"echo 'a\"\n",
     "atlantis.yaml:6: workflows.w.plan.steps[0].run: cannot be split into words as version 2 does"),
    ("both shell_args spellings", ("version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n"
                                   "      - run: {command: x, shell_args: -c, shellArgs: -c}\n"), "give only one of shell_args and shellArgs"),
    ("bad top repo_locks", "version: 3\nrepo_locks: {mode: sometimes}\n", "atlantis.yaml:2: repo_locks.mode"),
    ("policies not a mapping", "version: 3\npolicies: [a]\n", "atlantis.yaml:2: policies: expected a mapping"),
    ("empty", "", "version: the file is empty"),
    ("top is list", "- a\n", "(top level): expected a mapping"),
    ("unknown top key", "version: 3\nprojets: []\n", "atlantis.yaml:2: projets: unknown key (did you mean projects?)"),
    ("unknown project key", "version: 3\nprojects:\n- dir: a\n  worksapce: x\n",
     "atlantis.yaml:4: projects[0].worksapce: unknown key (did you mean workspace?)"),
    ("missing dir", "version: 3\nprojects:\n- name: a\n", "atlantis.yaml:3: projects[0]: `dir` is required"),
    ("home dir", "version: 3\nprojects:\n- dir: ~/etc\n", "atlantis.yaml:3: projects[0].dir: '~/etc' must be a path relative"),
    ("slash dir escaping", "version: 3\nprojects:\n- dir: /../etc\n", "projects[0].dir: '../etc' leaves the repository"),
    ("escaping dir", "version: 3\nprojects:\n- dir: a/../../b\n", "projects[0].dir: 'a/../../b' leaves the repository"),
    ("slash workspace", "version: 3\nprojects:\n- dir: a\n- dir: b\n  workspace: a/b\n",
     "atlantis.yaml:5: projects[1].workspace: must not contain '/'"),
    ("dash workspace", "version: 3\nprojects:\n- dir: a\n  workspace: -x\n", "projects[0].workspace: must be a name"),
    ("dollar workspace", "version: 3\nprojects:\n- dir: a\n  workspace: $HOME\n", "projects[0].workspace"),
    ("duplicate dir unnamed", "version: 3\nprojects:\n- dir: a\n- dir: a\n", "atlantis.yaml:3: projects[0]: there are 2 projects"),
    ("duplicate name", "version: 3\nprojects:\n- {dir: a, name: x}\n- {dir: b, name: x}\n",
     "atlantis.yaml:4: projects[1].name: project name 'x' is used twice"),
    ("bad bool", "version: 3\nautomerge: yes please\n", "atlantis.yaml:2: automerge: expected true or false"),
    ("bad autoplan", "version: 3\nprojects:\n- dir: a\n  autoplan: {enabled: maybe}\n", "projects[0].autoplan.enabled"),
    ("when_modified not list", "version: 3\nprojects:\n- dir: a\n  autoplan: {when_modified: '*.tf'}\n",
     "projects[0].autoplan.when_modified: expected a list"),
    ("branch without slashes", "version: 3\nprojects:\n- dir: a\n  branch: main\n", "projects[0].branch: 'main': write the regex"),
    ("branch bad regex", "version: 3\nprojects:\n- dir: a\n  branch: /[/\n", "projects[0].branch: invalid regex"),
    ("bad requirement", "version: 3\nprojects:\n- dir: a\n  apply_requirements: [aproved]\n",
     "projects[0].apply_requirements[0]: 'aproved' is not one of approved, mergeable, undiverged, policies_passed (did you mean approved?)"),
    ("bad version", "version: 3\nprojects:\n- dir: a\n  terraform_version: latest\n", "projects[0].terraform_version: 'latest'"),
    ("bad distribution", "version: 3\nprojects:\n- dir: a\n  terraform_distribution: tofu\n", "projects[0].terraform_distribution"),
    ("unknown depends_on", "version: 3\nprojects:\n- {dir: a, name: net}\n- {dir: b, depends_on: [nett]}\n",
     "projects[1].depends_on[0]: no project is named 'nett' (did you mean net?)"),
    ("cycle", "version: 3\nprojects:\n- {dir: a, name: a, depends_on: [b]}\n- {dir: b, name: b, depends_on: [a]}\n",
     "depends_on forms a cycle"),
    ("bad order group", "version: 3\nprojects:\n- dir: a\n  execution_order_group: first\n", "projects[0].execution_order_group"),
    ("bad repo_locks", "version: 3\nprojects:\n- dir: a\n  repo_locks: {mode: always}\n", "projects[0].repo_locks.mode"),
    ("bad silence", "version: 3\nprojects:\n- dir: a\n  silence_pr_comments: [all]\n", "projects[0].silence_pr_comments[0]"),
    ("bad autodiscover", "version: 3\nautodiscover: {mode: on}\n", "autodiscover.mode"),
    ("bad engine", "version: 3\nprojects:\n- dir: a\n  engine: helm\n", "projects[0].engine: 'helm' is not one of"),
    ("kubectl on terraform", "version: 3\nprojects:\n- dir: a\n  kubectl: {render: plain}\n",
     "projects[0].kubectl: only for projects with `engine: kubectl`"),
    ("bad render", "version: 3\nprojects:\n- dir: a\n  engine: kubectl\n  kubectl: {render: jsonnet}\n", "projects[0].kubectl.render"),
    ("values without helm", "version: 3\nprojects:\n- dir: a\n  engine: kubectl\n  kubectl: {values: [v.yaml]}\n",
     "values files need `render: helm`"),
    ("bad cron", "version: 3\nprojects:\n- dir: a\n  drift: {schedule: every day}\n",
     "atlantis.yaml:4: projects[0].drift.schedule: 'every day' is not a cron expression"),
    ("unknown step", "version: 3\nworkflows:\n  w:\n    plan:\n      steps: [inti]\n",
     "workflows.w.plan.steps[0]: 'inti' is not one of"),
    ("apply in plan", "version: 3\nworkflows:\n  w:\n    plan:\n      steps: [init, apply]\n",
     "workflows.w.plan.steps[1]: a `apply` step cannot run in the plan stage"),
    ("two-key step", "version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n      - {run: a, env: b}\n",
     "a step has exactly one key"),
    ("env without name", "version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n      - env: {value: x}\n",
     "workflows.w.plan.steps[0].env: `name` is required"),
    ("env both", "version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n      - env: {name: A, value: x, command: y}\n",
     "give exactly one of `value` and `command`"),
    ("bad output", "version: 3\nworkflows:\n  w:\n    plan:\n      steps:\n      - run: {command: x, output: quiet}\n",
     "workflows.w.plan.steps[0].run.output"),
    ("unknown stage", "version: 3\nworkflows:\n  w:\n    destroy: {steps: []}\n", "workflows.w.destroy: unknown key"),
    ("duplicate key", "version: 3\nversion: 3\n", "atlantis.yaml:2: version: key given twice"),
]


@pytest.mark.parametrize("text,check", [(t, c) for _, t, c in VALID], ids=[i for i, _, _ in VALID])
def test_valid_configs(text, check):
    assert check(parse_repo_config(text, "atlantis.yaml"))


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_configs(text, expected):
    with pytest.raises(RepoConfigError) as err:
        parse_repo_config(text, "atlantis.yaml")
    assert expected in str(err.value)
    assert err.value.file == "atlantis.yaml"


def test_error_carries_file_line_and_key():
    with pytest.raises(RepoConfigError) as err:
        parse_repo_config("version: 3\nprojects:\n- dir: a\n- dir: b\n\n\n  workspace: a/b\n")
    assert (err.value.line, err.value.key) == (7, "projects[1].workspace")
    assert str(err.value) == "atlantis.yaml:7: projects[1].workspace: must not contain '/'"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.yaml")))
def test_real_world_files_parse_and_merge(name):
    text = (DATA / name).read_text()
    config = parse_repo_config(text, "atlantis.yaml")
    effective = merge_with_server(config, OPEN)
    assert len(effective) == len(config.projects) > 0
    for ep, p in zip(effective, config.projects):
        assert ep.project == p.project
        assert ep.workflow.name == (p.workflow or "default")


def test_real_world_files_without_unsupported_keys_have_no_warnings():
    for name in ("anchors", "calebsargeant-terragrunt", "convex-infra", "gaucho-racing"):
        assert parse_repo_config((DATA / f"{name}.atlantis.yaml").read_text()).warnings == ()
    assert parse_repo_config((DATA / "ordering.atlantis.yaml").read_text()).warnings == ()  # silence_pr_comments


def test_version_2_run_commands_are_split_into_words_as_atlantis_did():
    config = parse_repo_config((DATA / "synthetic-version2.atlantis.yaml").read_text())
    steps = config.workflows["quoted"].plan
    assert config.version == 2 and config.warnings == ()
    assert [s.kind for s in steps] == ["init", "run", "plan"]
    assert steps[1].command == "printf 'print me'"  # v2's `printf \'print me\'`, as v3 writes it
    assert steps[2].extra_args == ("-lock-timeout=60s",)


def test_leading_slash_dirs_are_stripped():
    config = parse_repo_config((DATA / "synthetic-leading-slash-dirs.atlantis.yaml").read_text())
    assert [p.dir for p in config.projects] == ["infra/environments/dev", "infra/environments/prod", "."]
    assert config.warnings == ()


def test_top_level_atlantis_keys():
    config = parse_repo_config((DATA / "synthetic-top-level-keys.atlantis.yaml").read_text())
    app, db = merge_with_server(config, OPEN)
    assert (app.repo_locks_mode, db.repo_locks_mode) == ("on_apply", "disabled")
    assert app.silence_pr_comments == db.silence_pr_comments == ("apply",)
    assert config.emoji_reaction == "thumbsup"
    assert sorted(w.split(": ")[1] for w in config.warnings) == ["emoji_reaction", "policies",
                                                                 "projects[1].repo_locks.mode"]
    assert "atlantis.yaml:7: policies: ignored: Plankeeper takes policy sets from the server settings" in "\n".join(
        config.warnings)


def test_shell_and_shell_args_are_accepted_and_reported_unless_sh_c():
    config = parse_repo_config((DATA / "synthetic-shell-args.atlantis.yaml").read_text())
    steps = config.workflows["shells"].plan
    assert [(s.kind, s.command) for s in steps[:3]] == [("run", "echo default shell"), ("run", "echo bash"),
                                                        ("env", "echo eu-west-1")]
    assert config.warnings == (
        "atlantis.yaml:16: workflows.shells.plan.steps[1].run.shell: 'bash' is ignored: steps run with /bin/sh -c",
        "atlantis.yaml:17: workflows.shells.plan.steps[1].run.shellArgs: '-eu -c' is ignored: steps run with /bin/sh -c",
    )


def test_real_world_terragrunt_workflow():
    config = parse_repo_config((DATA / "calebsargeant-terragrunt.atlantis.yaml").read_text())
    steps = config.workflows["terragrunt"].plan
    assert [s.kind for s in steps] == ["env", "run"]
    assert "terragrunt plan -input=false -out=$PLANFILE" in steps[1].command
    assert config.parallel_plan and not config.parallel_apply


def test_real_world_ordering_file():
    config = parse_repo_config((DATA / "ordering.atlantis.yaml").read_text())
    effective = merge_with_server(config, RESOLVED)
    assert [ep.execution_order_group for ep in effective] == [1, 2, 3]
    assert effective[2].depends_on == ("database",) and effective[1].repo_locks_mode == "on_apply"
    assert config.autodiscover.ignore_paths == ("sandbox/**",)


def test_load_prefers_plankeeper_yaml(tmp_path):
    assert load_repo_config(tmp_path) is None
    (tmp_path / "atlantis.yaml").write_text("version: 3\nprojects: [{dir: a}]\n")
    assert load_repo_config(tmp_path).file == "atlantis.yaml"
    (tmp_path / "plankeeper.yaml").write_text("projects: [{dir: b}]\n")  # version optional here
    config = load_repo_config(tmp_path)
    assert (config.file, config.projects[0].dir) == ("plankeeper.yaml", "b")


def test_load_server_chosen_file(tmp_path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "repo.yaml").write_text("version: 3\nprojects: [{dir: x, workspace: a/b}]\n")
    with pytest.raises(RepoConfigError, match=r"^infra/repo.yaml:2: projects\[0\].workspace"):
        load_repo_config(tmp_path, "infra/repo.yaml")
    with pytest.raises(RepoConfigError, match="repo_config_file"):
        load_repo_config(tmp_path, "../x.yaml")


# --- merge with the server-side settings ------------------------------------------------------

def test_defaults_flow_into_projects():
    [ep] = merge_with_server(parse_repo_config("version: 3\nprojects: [{dir: a, name: a}]\n"), RESOLVED)
    assert ep.apply_requirements == ("approved", "mergeable") and ep.autoplan is True
    assert ep.workflow.is_default and ep.when_modified[0] == "**/*.tf*"
    assert ep.configured and ep.repo_locks_mode == "on_plan"


def test_override_not_allowed_names_the_setting():
    config = parse_repo_config("version: 3\nprojects:\n- dir: a\n  apply_requirements: []\n")
    with pytest.raises(RepoConfigError) as err:
        merge_with_server(config, replace(RESOLVED, allowed_overrides=("workflow",)))
    assert "atlantis.yaml:4: projects[0].apply_requirements" in str(err.value)
    assert "allowed_overrides" in str(err.value)
    [ep] = merge_with_server(config, replace(RESOLVED, allowed_overrides=("apply_requirements",)))
    assert ep.apply_requirements == ()


def test_repeating_the_server_value_is_not_an_override():
    config = parse_repo_config("version: 3\nprojects:\n- dir: a\n  apply_requirements: [mergeable, approved]\n"
                               "  autoplan: {enabled: true}\n")
    [ep] = merge_with_server(config, replace(RESOLVED, allowed_overrides=()))
    assert set(ep.apply_requirements) == {"approved", "mergeable"}


def test_disabling_autoplan_is_always_allowed_enabling_is_not():
    off = parse_repo_config("version: 3\nprojects: [{dir: a, autoplan: {enabled: false}}]\n")
    assert merge_with_server(off, replace(RESOLVED, allowed_overrides=()))[0].autoplan is False
    on = parse_repo_config("version: 3\nprojects: [{dir: a, autoplan: {enabled: true}}]\n")
    with pytest.raises(RepoConfigError, match="may not set autoplan"):
        merge_with_server(on, replace(RESOLVED, autoplan=False))


def test_custom_workflows_need_allow_custom_workflows():
    config = parse_repo_config((DATA / "convex-infra.atlantis.yaml").read_text())
    with pytest.raises(RepoConfigError) as err:
        merge_with_server(config, RESOLVED)
    assert "allow_custom_workflows" in str(err.value) and err.value.key == "workflows.custom"
    [ep] = merge_with_server(config, replace(RESOLVED, allow_custom_workflows=True, allowed_overrides=("workflow",)))
    assert ep.workflow.source == "repo" and ep.workflow.plan[0].extra_args == ("-reconfigure",)


def test_server_workflows_and_allowed_workflows():
    server = replace(RESOLVED, workflows={"tg": {"plan": {"steps": [{"run": "terragrunt plan -out $PLANFILE"}]}},
                                          "other": {}}, allowed_workflows=("tg",), allowed_overrides=("workflow",))
    [ep] = merge_with_server(parse_repo_config("version: 3\nprojects: [{dir: a, workflow: tg}]\n"), server)
    assert ep.workflow.source == "server" and ep.workflow.plan[0].kind == "run"
    with pytest.raises(RepoConfigError, match="allowed_workflows lists only tg"):
        merge_with_server(parse_repo_config("version: 3\nprojects: [{dir: a, workflow: other}]\n"), server)
    with pytest.raises(RepoConfigError, match="no workflow named 'nope'"):
        merge_with_server(parse_repo_config("version: 3\nprojects: [{dir: a, workflow: nope}]\n"),
                          replace(RESOLVED, allowed_overrides=("workflow",)))


def test_server_default_workflow_applies_to_discovered_projects():
    server = replace(RESOLVED, workflow="tg", workflows={"tg": {"plan": {"steps": ["init", "plan", "show"]}}})
    ep = project_defaults(Project("x"), server)
    assert ep.workflow.name == "tg" and not ep.configured


def test_automerge_override():
    config = parse_repo_config("version: 3\nautomerge: true\n")
    with pytest.raises(RepoConfigError, match="atlantis.yaml:2: automerge: this repository may not set automerge"):
        merge_with_server(config, replace(RESOLVED, allowed_overrides=()))


def test_kubectl_context_and_namespace_come_from_the_server(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("repos:\n- id: github.com/acme/infra\n  kubectl: {context: prod, namespace: apps}\n")
    resolved = load_settings(cfg, {}).repo_settings("github.com/acme/infra")
    config = parse_repo_config("version: 3\nprojects:\n- dir: k\n  engine: kubectl\n"
                               "  kubectl: {context: evil, namespace: kube-system, render: kustomize}\n")
    [ep] = merge_with_server(config, resolved)
    assert (ep.kubectl.context, ep.kubectl.namespace, ep.kubectl.render) == ("prod", "apps", "kustomize")


def test_drift_needs_override_and_inherits_server_schedule():
    config = parse_repo_config("version: 3\nprojects: [{dir: a, drift: {remediate: true}}]\n")
    with pytest.raises(RepoConfigError, match="may not set drift"):
        merge_with_server(config, RESOLVED)
    [ep] = merge_with_server(config, OPEN)
    assert ep.drift.remediate is True


def test_merge_keys_apply_with_the_mapping_own_keys_winning():
    config = parse_repo_config((DATA / "anchors.atlantis.yaml").read_text())
    staging, production, shared, dns = config.projects
    assert (production.dir, production.terraform_version, production.workflow) == ("envs/production", "v1.5.7", "standard")
    assert production.apply_requirements == ("approved", "mergeable", "undiverged")
    assert (shared.autoplan_enabled, shared.when_modified) == (False, staging.when_modified)
    assert dns.apply_requirements == ("approved", "mergeable")
    assert [s.kind for s in config.workflows["with-env"].plan] == ["env", "init", "plan"]
    assert [s.kind for s in config.workflows["with-env"].apply] == ["apply"]


def test_merge_key_of_a_scalar_is_an_error():
    with pytest.raises(RepoConfigError) as err:
        parse_repo_config("version: 3\nprojects:\n- <<: a\n  dir: x\n")
    assert "projects[0].<<: a merge key takes a mapping or a list of mappings" in str(err.value)


LAUGHS = ("version: 3\nworkflows:\n  a: &a {plan: {steps: [init, plan, init, plan, init, plan, init, plan]}}\n"
          + "".join(f"  {n}: &{n} {{<<: [{', '.join([f'*{p}'] * 9)}]}}\n" for p, n in zip("abcdefg", "bcdefgh")))


def test_billion_laughs_repo_config_fails_fast_with_a_clear_error():
    assert len(LAUGHS) < 600
    started = time.monotonic()
    with pytest.raises(RepoConfigError) as err:
        parse_repo_config(LAUGHS, "atlantis.yaml")
    assert time.monotonic() - started < 1
    assert "not valid YAML: aliases (*name, <<: *name) expand this file by more than 100,000 nodes" in str(err.value)


def test_an_alias_containing_itself_is_refused():
    with pytest.raises(RepoConfigError, match="an alias refers to a node that contains it"):
        parse_repo_config("version: 3\nworkflows: &w {x: *w}\n")


def test_a_repo_config_may_ask_for_more_requirements_without_allowed_overrides():
    config = parse_repo_config("version: 3\nprojects:\n- dir: a\n  plan_requirements: [approved]\n"
                               "  apply_requirements: [approved, mergeable, undiverged]\n  policy_check: true\n")
    [ep] = merge_with_server(config, RESOLVED)  # nothing allowed
    assert (ep.plan_requirements, ep.apply_requirements, ep.import_requirements) == (
        ("approved",), ("approved", "mergeable", "undiverged"), ("approved", "mergeable"))
    with pytest.raises(RepoConfigError, match="may not set apply_requirements"):
        merge_with_server(parse_repo_config("version: 3\nprojects:\n- dir: a\n  apply_requirements: [approved]\n"),
                          RESOLVED)


def test_delete_source_branch_and_automerge_come_from_the_file_when_allowed():
    config = parse_repo_config("version: 3\nautomerge: true\nautomerge_method: squash\n"
                               "delete_source_branch_on_merge: true\nprojects:\n- dir: a\n- dir: b\n"
                               "  delete_source_branch_on_merge: false\n")
    with pytest.raises(RepoConfigError, match="may not set delete_source_branch_on_merge"):
        merge_with_server(config, replace(RESOLVED, allowed_overrides=("automerge",)))
    a, b = merge_with_server(config, OPEN)
    assert (a.delete_source_branch_on_merge, b.delete_source_branch_on_merge) == (True, False)
    assert automerge_settings(config, RESOLVED) == (True, "squash")
    assert automerge_settings(None, replace(RESOLVED, automerge=True, automerge_method="rebase")) == (True, "rebase")
    assert automerge_settings(parse_repo_config("version: 3\n"), RESOLVED) == (False, "merge")


def test_server_side_silence_and_policy_check_are_every_projects_default():
    resolved = replace(RESOLVED, silence_pr_comments=("plan",), policy_check=False)
    config = parse_repo_config("version: 3\nprojects:\n- dir: a\n- dir: b\n  silence_pr_comments: [apply]\n")
    a, b = merge_with_server(config, resolved)
    assert (a.silence_pr_comments, b.silence_pr_comments) == (("plan",), ("apply",))
    assert not a.policy_check and project_defaults(Project("c"), resolved).silence_pr_comments == ("plan",)
