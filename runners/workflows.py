"""Custom workflows (Atlantis-compatible steps) and pre/post workflow hooks.

WorkflowRunner implements runners.base.Runner by running a Workflow's plan or apply steps:
`init`, `plan`, `apply`, `show` (Terraform, as argument lists; each `extra_args` entry is split
with shlex, so `-var 'a=b'` gives two arguments), `run`, `env` and `multienv`.

Why `run` steps use a shell: their command text comes from the repo config file or the server
settings, written by the people who administer the repository or the server, exactly as in
Atlantis (`run: terragrunt plan -out $PLANFILE`), and users rely on shell syntax there. The
command is passed as one argument to `/bin/sh -c` (never Popen's shell option); text from pull requests
or comments (branch names, authors, comment arguments) reaches it only through environment
variables such as $HEAD_BRANCH_NAME and $COMMENT_ARGS, never by string substitution.
"""
from __future__ import annotations

import copy
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from runners.incremental_init import SKIPPED, asks_for_init
from runners.models import ApplyResult, LineSink, PlanResult, StopCheck
from runners.plan_json import resource_changes
from runners.process import ExecutableNotFound, run
from runners.repo_config_schema import Step, Workflow
from runners.sandbox import NO_SANDBOX, Sandbox
from runners.terraform import NO_CHANGES, TerraformRunner, _counted_summary, _summary_line

SHELL = "/bin/sh"
_REFRESHING = re.compile(r": (Refreshing state\.\.\.|Reading\.\.\.|Read complete after)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class StepFailed(Exception):
    def __init__(self, step: str, error: str, cancelled: bool = False) -> None:
        super().__init__(error)
        self.step, self.error, self.cancelled = step, error, cancelled


@dataclass
class HookResult:
    ok: bool
    output: str = ""
    failed_hook: Optional[str] = None  # description (or command) of the hook that failed
    error: str = ""


def comment_args(extra_args: Sequence[str]) -> str:
    """Atlantis' COMMENT_ARGS: comma-separated, every character backslash-escaped."""
    return ",".join("".join("\\" + ch for ch in arg) for arg in extra_args)


def run_hooks(hooks: Sequence[Any], cwd: Path, env: Mapping[str, str], on_line: Optional[LineSink] = None,
              timeout: float = 600.0, sandbox: Sandbox = NO_SANDBOX) -> HookResult:
    """Run pre/post workflow hooks (each a string or an object with .run and .description)
    in cwd, one after the other, in sandbox, stopping at the first failure. Never raises for a
    hook's failure."""
    output: list[str] = []
    for hook in hooks:
        command = hook if isinstance(hook, str) else hook.run
        label = (getattr(hook, "description", None) or command.strip().splitlines()[0])[:120]
        if on_line:
            on_line(f"$ hook: {label}")
        try:
            result = run([SHELL, "-c", command], Path(cwd), env, timeout, on_line, sandbox=sandbox)
        except (ExecutableNotFound, NotADirectoryError) as exc:
            return HookResult(False, "\n".join(output), label, str(exc))
        output.append(result.output)
        if result.timed_out or result.exit_code != 0:
            why = f"timed out after {timeout:g}s" if result.timed_out else f"exit {result.exit_code}"
            return HookResult(False, "\n".join(output), label, f"workflow hook {label!r} failed ({why})")
    return HookResult(True, "\n".join(output))


class WorkflowRunner:
    """runners.base.Runner that runs a Workflow's steps with a TerraformRunner for Terraform steps."""

    def __init__(self, terraform: TerraformRunner, workflow: Workflow, step_env: Mapping[str, str],
                 timeout: float, parent_env: Optional[Mapping[str, str]] = None) -> None:
        self.terraform, self.workflow, self.timeout = terraform, workflow, timeout
        self.step_env = dict(step_env)
        self.parent_env = dict(parent_env if parent_env is not None else terraform.env)

    def version(self) -> str:
        return self.terraform.version()

    # ------------------------------------------------------------------------ stages

    def plan(self, project_dir: Path, workspace: str, out_dir: Path, extra_args: Sequence[str] = (),
             on_line: Optional[LineSink] = None, should_stop: Optional[StopCheck] = None) -> PlanResult:
        """Run the plan stage; see runners.base.Runner.plan. A failing step -> ok=False."""
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        plan_file = (Path(out_dir) / "plan.tfplan").resolve()
        state = _State(self, Path(project_dir), workspace, plan_file, extra_args, on_line, should_stop)
        try:
            for step in self.workflow.plan:
                state.do(step)
            return state.plan_outcome()
        except StepFailed as exc:
            return PlanResult(ok=False, failed_step=exc.step, error=exc.error, output=state.text(),
                              cancelled=exc.cancelled, init_note=state.init_note)

    def apply(self, project_dir: Path, workspace: str, plan_file: Path, on_line: Optional[LineSink] = None,
              should_stop: Optional[StopCheck] = None) -> ApplyResult:
        """Run the apply stage on the saved plan; Terraform apply steps init first, as plans may
        come from another worker. See runners.base.Runner.apply."""
        state = _State(self, Path(project_dir), workspace, Path(plan_file).resolve(), (), on_line, should_stop)
        steps = self.workflow.apply
        try:
            if any(s.kind == "apply" for s in steps) and not any(s.kind == "init" for s in steps):
                state.do(Step("init"))
            for step in steps:
                state.do(step)
        except StepFailed as exc:
            return ApplyResult(ok=False, failed_step=exc.step, error=exc.error, output=state.text(),
                               cancelled=exc.cancelled)
        text = state.text()
        return ApplyResult(ok=True, summary=_summary_line(text, ("Apply complete!",)), output=text)


    def import_resource(self, project_dir: Path, workspace: str, address: str, resource_id: str,
                        extra_args: Sequence[str] = (), on_line: Optional[LineSink] = None,
                        should_stop: Optional[StopCheck] = None) -> ApplyResult:
        """The workflow's `import` stage (Atlantis' steps `init`, `import`, `run`...), or init + import."""
        steps = self.workflow.stages.get("import")
        if steps is None:
            return self.terraform.import_resource(project_dir, workspace, address, resource_id, extra_args, on_line,
                                                  should_stop)
        return self._state_stage(steps, project_dir, workspace, (address, resource_id), extra_args, on_line,
                                 should_stop, "Import successful!")

    def state_rm(self, project_dir: Path, workspace: str, addresses: Sequence[str], extra_args: Sequence[str] = (),
                 on_line: Optional[LineSink] = None, should_stop: Optional[StopCheck] = None) -> ApplyResult:
        """The workflow's `state_rm` stage, or init + state rm."""
        steps = self.workflow.stages.get("state_rm")
        if steps is None:
            return self.terraform.state_rm(project_dir, workspace, addresses, extra_args, on_line, should_stop)
        return self._state_stage(steps, project_dir, workspace, tuple(addresses), extra_args, on_line, should_stop,
                                 "Successfully removed")

    def _state_stage(self, steps: Sequence[Step], project_dir: Path, workspace: str, args: tuple[str, ...],
                     extra_args: Sequence[str], on_line: Optional[LineSink], should_stop: Optional[StopCheck],
                     done: str) -> ApplyResult:
        state = _State(self, Path(project_dir), workspace, Path(project_dir) / "unused.tfplan", extra_args, on_line,
                       should_stop)
        state.state_args = args
        try:
            for step in steps:
                state.do(step)
        except StepFailed as exc:
            return ApplyResult(ok=False, failed_step=exc.step, error=exc.error, output=state.text(),
                               cancelled=exc.cancelled)
        text = state.text()
        return ApplyResult(ok=True, summary=_summary_line(text, (done,)), output=text)


class _State:
    """One stage run: the step environment, outputs so far and Terraform results."""

    def __init__(self, owner: WorkflowRunner, project_dir: Path, workspace: str, plan_file: Path,
                 extra_args: Sequence[str], on_line: Optional[LineSink], should_stop: Optional[StopCheck]) -> None:
        self.owner, self.dir, self.workspace, self.plan_file = owner, project_dir, workspace, plan_file
        self.extra_args, self.on_line, self.should_stop = tuple(extra_args), on_line, should_stop
        self.env = {**owner.parent_env, **owner.step_env}
        self.env.pop("TF_WORKSPACE", None)  # Terraform would fight the workspace we select
        self.env.update(WORKSPACE=workspace, DIR=str(project_dir), PLANFILE=str(plan_file),
                        SHOWFILE=str(plan_file.with_suffix(".json")), COMMENT_ARGS=comment_args(extra_args))
        self.outputs: list[str] = []
        self.workspace_selected = workspace == "default"
        self.plan_run: Any = None
        self.plan_json: Optional[dict] = None
        self.state_args: tuple[str, ...] = ()  # /import ADDRESS ID, /state rm ADDRESS...
        self.init_note = ""  # in a kept work tree: whether the init step ran (runners.incremental_init)

    def text(self) -> str:
        return "\n".join(o for o in self.outputs if o)

    def do(self, step: Step) -> None:
        handler = getattr(self, f"_{step.kind}", None)
        if handler is None:
            raise StepFailed(step.kind, f"the `{step.kind}` step is not supported in this stage")
        handler(step)

    # ------------------------------------------------------------------------ Terraform steps

    def _tf(self) -> TerraformRunner:
        tf = copy.copy(self.owner.terraform)
        tf.env = {**self.owner.terraform.env, **{k: v for k, v in self.env.items() if k not in self.owner.parent_env
                                                 or self.owner.parent_env[k] != v}}
        tf.env.pop("TF_WORKSPACE", None)
        return tf

    def _check(self, run_: Any) -> Any:
        if run_ is not None and not run_.ok:
            self.outputs.append(run_.result.output if run_.result else run_.error)
            raise StepFailed(run_.name, run_.error, bool(run_.result and run_.result.cancelled))
        return run_

    def _select(self) -> None:
        if not self.workspace_selected:
            self._check(self._tf().select_workspace(self.dir, self.workspace, self.on_line, self.should_stop))
            self.workspace_selected = True

    def _init(self, step: Step, force: bool = False) -> None:
        init = self._tf().init(self.dir, _split(step.extra_args), self.on_line, self.should_stop, force)
        self.init_note = init.note
        self._check(init)
        self.workspace_selected = self.workspace == "default"  # a fresh .terraform has none selected
        self._select()

    def _plan(self, step: Step) -> None:
        self._select()
        args = [*_split(step.extra_args), *self.extra_args]
        planned = self._tf().plan_step(self.dir, self.plan_file, args, self.on_line, self.should_stop)
        if not planned.ok and self.init_note == SKIPPED and planned.result and asks_for_init(planned.result.output):
            if self.on_line:
                self.on_line("$ the plan asks for terraform init: running it")
            self._init(Step("init"), force=True)
            planned = self._tf().plan_step(self.dir, self.plan_file, args, self.on_line, self.should_stop)
        self.plan_run = self._check(planned)
        self.outputs.append(self.plan_run.result.output)

    def _show(self, step: Step) -> None:
        show, plan_json = self._tf().show_json(self.dir, self.plan_file, self.should_stop, _split(step.extra_args))
        if plan_json is None:
            self._check(show)
            raise StepFailed("show", show.error)
        self.plan_json = plan_json
        Path(self.env["SHOWFILE"]).write_text(json.dumps(plan_json), encoding="utf-8")

    def _apply(self, step: Step) -> None:
        self._select()
        done = self._check(self._tf().apply_step(self.dir, self.plan_file, _split(step.extra_args), self.on_line,
                                                 self.should_stop))
        self.outputs.append(done.result.output)

    def _import(self, step: Step) -> None:
        if len(self.state_args) != 2:
            raise StepFailed("import", "an `import` step runs only in a workflow's import stage (`/import`)")
        self._select()
        address, resource_id = self.state_args
        done = self._check(self._tf().import_step(self.dir, address, resource_id,
                                                  [*_split(step.extra_args), *self.extra_args], self.on_line,
                                                  self.should_stop))
        self.outputs.append(done.result.output)

    def _state_rm(self, step: Step) -> None:
        if not self.state_args:
            raise StepFailed("state_rm", "a `state_rm` step runs only in a workflow's state_rm stage (`/state rm`)")
        self._select()
        done = self._check(self._tf().state_rm_step(self.dir, self.state_args,
                                                    [*_split(step.extra_args), *self.extra_args], self.on_line,
                                                    self.should_stop))
        self.outputs.append(done.result.output)

    def _version(self, step: Step) -> None:
        version = self._tf().version()
        if self.on_line:
            self.on_line(f"$ terraform version: {version}")
        self.outputs.append(version)

    def _policy_check(self, step: Step) -> None:
        """Policies are the server's Rego sets, run on every plan (bot.policies): nothing to do here."""
        if self.on_line:
            self.on_line("$ policy_check: the server's policy sets run on the plan once it is saved")

    # ------------------------------------------------------------------------ shell steps

    def _shell(self, step_kind: str, command: str, output: str = "show") -> str:
        visible = self.on_line if output != "hide" else None
        if self.on_line:
            self.on_line(f"$ {step_kind}: {command.strip().splitlines()[0][:200]}")
        try:
            result = run([SHELL, "-c", command], self.dir, self.env, self.owner.timeout, visible, self.should_stop,
                         sandbox=self.owner.terraform.sandbox)
        except (ExecutableNotFound, NotADirectoryError) as exc:
            raise StepFailed(step_kind, str(exc)) from None
        text = result.output
        if output == "strip_refreshing":
            text = "\n".join(line for line in text.splitlines() if not _REFRESHING.search(line))
        if result.cancelled:
            raise StepFailed(step_kind, f"the `{step_kind}` step was cancelled", cancelled=True)
        if result.timed_out or result.exit_code != 0:
            if output != "hide":
                self.outputs.append(text)
            why = f"timed out after {self.owner.timeout:g}s" if result.timed_out else f"exit {result.exit_code}"
            raise StepFailed(step_kind, f"the `{step_kind}` step `{command.strip().splitlines()[0][:80]}` failed "
                             f"({why}): fix the command or the code it runs, then push or comment /plan again")
        return text

    def _run(self, step: Step) -> None:
        text = self._shell("run", step.command, step.output)
        if step.output != "hide":
            self.outputs.append(text)

    def _env(self, step: Step) -> None:
        value = step.value if step.value is not None else self._shell("env", step.command, "hide").strip()
        self.env[step.name] = value

    def _multienv(self, step: Step) -> None:
        text = self._shell("multienv", step.command, "hide")
        pairs = _parse_multienv(text)
        if pairs is None:
            raise StepFailed("multienv", "the `multienv` command must print a JSON object or KEY=VALUE lines")
        self.env.update(pairs)
        if step.output != "hide":
            self.outputs.append("\n".join(f"{k}=..." for k in pairs))

    # ------------------------------------------------------------------------ result

    def plan_outcome(self) -> PlanResult:
        tf = self._tf()
        if self.plan_run is not None:
            if self.plan_json is None:
                show, self.plan_json = tf.show_json(self.dir, self.plan_file, self.should_stop)
                if self.plan_json is None:
                    raise StepFailed("show", show.error)
            result = tf.plan_result(self.plan_run, self.plan_json, self.plan_file)
            result.output, result.init_note = self.text(), self.init_note
            return result
        text = self.text()
        if not self.plan_file.is_file():
            summary = _summary_line(text, ("Plan: ", NO_CHANGES))
            return PlanResult(ok=True, has_changes=summary.startswith("Plan: "), summary=summary, output=text,
                              init_note=self.init_note)
        if self.plan_json is None:
            _, self.plan_json = tf.show_json(self.dir, self.plan_file, self.should_stop)
        changes = resource_changes(self.plan_json) if self.plan_json else []
        summary = _summary_line(text, ("Plan: ", NO_CHANGES)) or (_counted_summary(changes) if changes else NO_CHANGES)
        return PlanResult(ok=True, has_changes=bool(changes) or summary.startswith("Plan: "), summary=summary,
                          changes=changes, output=text, plan_file=str(self.plan_file), plan_json=self.plan_json,
                          init_note=self.init_note)


def _split(extra_args: Sequence[str]) -> list[str]:
    out: list[str] = []
    for arg in extra_args:
        try:
            out.extend(shlex.split(arg))
        except ValueError:
            out.append(arg)
    return out


def _parse_multienv(text: str) -> Optional[dict[str, str]]:
    stripped = text.strip()
    if not stripped:
        return {}
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return None
        if not isinstance(data, dict) or not all(_ENV_NAME.fullmatch(str(k)) for k in data):
            return None
        return {str(k): str(v) for k, v in data.items()}
    lines = stripped.splitlines()
    items = lines if len(lines) > 1 else stripped.split(",")  # Atlantis: NAME1=v1,NAME2=v2
    pairs = {}
    for item in items:
        name, sep, value = item.strip().partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            return None
        pairs[name] = value
    return pairs
