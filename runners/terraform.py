"""Terraform/OpenTofu runner: init, workspace select, plan, show -json, apply.

Implements runners.base.Runner. Engine failures never raise: they come back as a result
with the failing step, its output and what to do next.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

from runners.embedded_terraform import SESSION, SESSION_REAPING, embedded_argv
from runners.git_credentials import GitCredentials, merge_git_config, served
from runners.incremental_init import FIRST, MISSING, SKIPPED, InitDecision, InitRecords, asks_for_init, decide, record
from runners.models import ApplyResult, LineSink, PlanResult, ResourceChange, StopCheck
from runners.plan_json import resource_changes
from runners.process import ExecutableNotFound, ProcessResult, Session, SessionPool, run
from runners.sandbox import NO_SANDBOX, Sandbox

NO_CHANGES = "No changes. Your infrastructure matches the configuration."
VERSION_TIMEOUT = 60.0

_NEXT_STEP = {
    "init": "check the backend configuration, provider and module sources and credentials, "
    "then push a fix or comment /plan again",
    "workspace": "check the workspace name and the backend's access to its state",
    "plan": "fix the errors shown in the output and push, "
    "or comment /plan again if it was transient",
    "show": "the saved plan could not be read; comment /plan again",
    "apply": "read the output, fix the cause and plan again; the state may be partly updated",
    "import": "check the resource address and the id, then comment /import again",
    "state_rm": "check the resource addresses (terraform state list), then comment /state rm again",
}


@dataclass
class _Step:
    name: str
    result: Optional[ProcessResult]
    error: str = ""
    note: str = ""  # init in a kept work tree: whether it ran and why (runners.incremental_init)

    @property
    def ok(self) -> bool:
        return self.result is not None and not self.error


StepRun = _Step  # public name for the outcome of one step-level call


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def _forget_selected_workspace(data_dir: Path) -> None:
    """A kept .terraform remembers the workspace last selected in it; without the file Terraform
    uses `default`, and a non-default workspace is selected again after init."""
    environment = data_dir / "environment"
    if data_dir.is_dir() and not data_dir.is_symlink() and environment.is_file():
        environment.unlink()


def _summary_line(output: str, prefixes: Sequence[str]) -> str:
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(tuple(prefixes)):
            return stripped
    return ""


def _counted_summary(changes: Sequence[ResourceChange]) -> str:
    add = sum(c.action in ("create", "replace") for c in changes)
    change = sum(c.action == "update" for c in changes)
    destroy = sum(c.action in ("delete", "replace") for c in changes)
    return f"Plan: {add} to add, {change} to change, {destroy} to destroy."


def _parse_json_output(output: str) -> Optional[dict]:
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


# ---------------------------------------------------------------------------- runner


class TerraformRunner:
    """Runs one Terraform/OpenTofu binary with a fixed environment and per-step timeout.

    cli_config (TF_CLI_CONFIG_FILE) and plugin_cache_dir are pinned: a workflow's `env` step
    cannot change them for Terraform steps. Every process runs in `sandbox`. The embedded
    Terraform runs its commands in sessions (runners.embedded_terraform): the job's `sessions`
    when given (kept open across its projects), else one per plan() or apply(). git_credentials,
    when given, are offered to git during `init` only (runners.git_credentials). With init_records
    (the checkout is a kept work tree) init is skipped when nothing it depends on changed, and no
    plugin cache is used: each `.terraform` holds its providers, so it stays whole between jobs.
    """

    def __init__(
        self,
        argv0: Sequence[str],
        env: Mapping[str, str],
        timeout: float,
        plugin_cache_dir: Optional[Path] = None,
        cli_config: Optional[Path] = None,
        sandbox: Sandbox = NO_SANDBOX,
        git_credentials: Optional[GitCredentials] = None,
        init_records: InitRecords | None = None,
        sessions: SessionPool | None = None,
    ) -> None:
        self.argv0 = list(argv0)
        self.sessions = sessions  # the job's: its sessions outlive this runner (see session())
        self.git_credentials = git_credentials
        self.timeout = timeout
        self.sandbox = sandbox
        self.env = dict(env)
        self.env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
        self.pinned: dict[str, str] = {}
        self.init_records = init_records
        if init_records is not None:
            self.pinned["TF_PLUGIN_CACHE_DIR"] = ""  # Terraform ignores it empty: providers copied, not linked
        elif plugin_cache_dir is not None:
            Path(plugin_cache_dir).mkdir(parents=True, exist_ok=True)
            self.pinned["TF_PLUGIN_CACHE_DIR"] = str(plugin_cache_dir)
        if cli_config is not None:
            self.pinned["TF_CLI_CONFIG_FILE"] = str(cli_config)
        self.env.update(self.pinned)
        self.initialized: set[Path] = set()  # shared by copies (workflows): .terraform we made
        self._block_sessions: SessionPool | None = None

    def plan(
        self,
        project_dir: Path,
        workspace: str,
        out_dir: Path,
        extra_args: Sequence[str] = (),
        on_line: Optional[LineSink] = None,
        should_stop: Optional[StopCheck] = None,
    ) -> PlanResult:
        """init, workspace select, plan -out, show -json; see runners.base.Runner.plan."""
        with self.session():
            return self._plan(project_dir, workspace, out_dir, extra_args, on_line, should_stop)

    def _plan(self, project_dir: Path, workspace: str, out_dir: Path, extra_args: Sequence[str],
              on_line: Optional[LineSink], should_stop: Optional[StopCheck]) -> PlanResult:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        plan_file = (Path(out_dir) / "plan.tfplan").resolve()
        prepared, note = self._prepare(project_dir, workspace, on_line, should_stop)
        if prepared is not None:
            return self._plan_failure(prepared, note)
        step = self.plan_step(project_dir, plan_file, extra_args, on_line, should_stop)
        if not step.ok and note == SKIPPED and step.result and asks_for_init(step.result.output):
            if on_line is not None:
                on_line("$ the plan asks for terraform init: running it")
            prepared, note = self._prepare(project_dir, workspace, on_line, should_stop, force=True)
            if prepared is not None:
                return self._plan_failure(prepared, note)
            step = self.plan_step(project_dir, plan_file, extra_args, on_line, should_stop)
        if not step.ok:
            return self._plan_failure(step, note)
        show, plan_json = self.show_json(project_dir, plan_file, should_stop)
        if plan_json is None:
            return self._plan_failure(show, note)
        result = self.plan_result(step, plan_json, plan_file)
        result.init_note = note
        return result

    def apply(
        self,
        project_dir: Path,
        workspace: str,
        plan_file: Path,
        on_line: Optional[LineSink] = None,
        should_stop: Optional[StopCheck] = None,
    ) -> ApplyResult:
        """init, workspace select, apply the saved plan file; see runners.base.Runner.apply."""
        with self.session():
            prepared, _ = self._prepare(project_dir, workspace, on_line, should_stop)
            if prepared is not None:
                return self._apply_failure(prepared)
            step = self.apply_step(project_dir, plan_file, (), on_line, should_stop)
        if not step.ok:
            return self._apply_failure(step)
        assert step.result is not None
        summary = _summary_line(step.result.output, ("Apply complete!",))
        return ApplyResult(ok=True, summary=summary, output=step.result.output)

    def import_resource(self, project_dir: Path, workspace: str, address: str, resource_id: str,
                        extra_args: Sequence[str] = (), on_line: Optional[LineSink] = None,
                        should_stop: Optional[StopCheck] = None) -> ApplyResult:
        """init, workspace select, `terraform import EXTRA_ARGS ADDRESS ID`; never raises."""
        return self._state_command(project_dir, workspace, on_line, should_stop,
                                   lambda: self.import_step(project_dir, address, resource_id, extra_args, on_line,
                                                            should_stop))

    def state_rm(self, project_dir: Path, workspace: str, addresses: Sequence[str], extra_args: Sequence[str] = (),
                 on_line: Optional[LineSink] = None, should_stop: Optional[StopCheck] = None) -> ApplyResult:
        """init, workspace select, `terraform state rm EXTRA_ARGS ADDRESS...`; never raises."""
        return self._state_command(project_dir, workspace, on_line, should_stop,
                                   lambda: self.state_rm_step(project_dir, addresses, extra_args, on_line,
                                                              should_stop))

    def _state_command(self, project_dir: Path, workspace: str, on_line: Optional[LineSink],
                       should_stop: Optional[StopCheck], command: Callable[[], _Step]) -> ApplyResult:
        prepared, _ = self._prepare(project_dir, workspace, on_line, should_stop)
        if prepared is not None:
            return self._apply_failure(prepared)
        step = command()
        if not step.ok:
            return self._apply_failure(step)
        assert step.result is not None
        summary = _summary_line(step.result.output, ("Import successful!", "Successfully removed"))
        return ApplyResult(ok=True, summary=summary, output=step.result.output)

    def version(self) -> str:
        """First line of `terraform version`, e.g. "Terraform v1.15.5"; never raises."""
        try:
            result = run([*self.argv0, "version"], Path("/"), self.env, VERSION_TIMEOUT, sandbox=self.sandbox)
        except (OSError, ValueError) as exc:
            return f"unknown ({exc})"
        first = result.output.strip().splitlines()[0] if result.output.strip() else ""
        return first if result.exit_code == 0 and first else f"unknown (exit {result.exit_code})"

    # ------------------------------------------------------------------------ steps
    # Public step-level calls, for workflows (runners/workflows.py) that order steps themselves.

    def init(self, project_dir: Path, extra_args: Sequence[str] = (), on_line: Optional[LineSink] = None,
             should_stop: Optional[StopCheck] = None, force: bool = False) -> "StepRun":
        """`terraform init -input=false -no-color EXTRA_ARGS`; never raises.

        A `.terraform` directory that came with the checkout is removed first: providers in it
        would run without being installed (nor checked against the provider installation). In a
        kept work tree (init_records), a `.terraform` an earlier init made is kept, and init is
        skipped when its fingerprint did not change (runners.incremental_init); `force` runs it
        on an empty `.terraform` whatever the records say. The step's `note` tells which.
        """
        data_dir = Path(project_dir) / ".terraform"
        decision = None if self.init_records is None else decide(
            self.init_records, Path(project_dir), self.argv0, extra_args, {**self.env, **self.pinned}, force)
        if decision is not None and decision.skip:
            if on_line is not None:
                on_line(f"$ terraform init: skipped ({SKIPPED.removeprefix('init skipped: ')})")
            _forget_selected_workspace(data_dir)
            self.initialized.add(data_dir.resolve())
            return _Step("init", ProcessResult(0, "", False, False, 0.0), note=decision.note)
        if decision is not None and self.git_credentials is not None:
            # git runs in .terraform's modules while the bot's credentials are served, and the pull
            # request's code (an external data source in an earlier plan) may have written there:
            # an init that offers credentials never runs on a kept .terraform.
            decision = dataclasses.replace(decision, fresh=True)
        self._clear_data_dir(data_dir, decision, force, on_line)
        self.initialized.add(data_dir.resolve())
        args = ["init", "-input=false", "-no-color", *extra_args]
        with served(self.git_credentials, self.sandbox.python) as git_env:
            if git_env and on_line is not None and self.git_credentials is not None:
                on_line(f"$ git credentials of the bot offered for {self.git_credentials.origin} during init")
            step = self._step("init", project_dir, args, on_line, should_stop, git_env=git_env)
        if decision is not None and self.init_records is not None:
            step.note = decision.note
            if step.ok:
                record(self.init_records, Path(project_dir), decision)
        return step

    def _clear_data_dir(self, data_dir: Path, decision: InitDecision | None, force: bool,
                        on_line: LineSink | None) -> None:
        """Remove a .terraform this runner did not make (it came with the repository), or a kept
        one the decision wants fresh; a kept one that stays forgets its selected workspace."""
        if not os.path.lexists(data_dir):
            return
        fresh = decision is None or decision.fresh
        if not fresh or (data_dir.resolve() in self.initialized and not force):
            _forget_selected_workspace(data_dir)
            return
        if on_line is not None:
            kept = decision is not None and decision.note not in (FIRST, MISSING)
            on_line("$ removing the kept .terraform: init starts afresh" if kept
                    else "$ removing .terraform that came with the repository")
        _remove(data_dir)

    def select_workspace(self, project_dir: Path, workspace: str, on_line: Optional[LineSink] = None,
                         should_stop: Optional[StopCheck] = None) -> Optional["StepRun"]:
        """Select (creating it if needed) a non-default workspace; None for "default"."""
        if workspace == "default":
            return None
        args = ["workspace", "select", "-or-create=true", workspace]
        return self._step("workspace", project_dir, args, on_line, should_stop)

    def plan_step(self, project_dir: Path, plan_file: Path, extra_args: Sequence[str] = (),
                  on_line: Optional[LineSink] = None, should_stop: Optional[StopCheck] = None) -> "StepRun":
        """`terraform plan -detailed-exitcode -out=PLAN_FILE EXTRA_ARGS`; exit 2 (changes) is ok."""
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", f"-out={plan_file}"]
        return self._step("plan", project_dir, [*args, *extra_args], on_line, should_stop, (0, 2))

    def show_json(self, project_dir: Path, plan_file: Path, should_stop: Optional[StopCheck] = None,
                  extra_args: Sequence[str] = ()) -> tuple["StepRun", Optional[dict]]:
        """`terraform show -json PLAN_FILE`: the step and the parsed JSON (None on failure)."""
        args = ["show", "-json", "-no-color", *extra_args, str(plan_file)]
        show = self._step("show", project_dir, args, None, should_stop)
        plan_json = _parse_json_output(show.result.output) if show.ok and show.result else None
        if plan_json is None:
            show.error = show.error or "terraform show -json printed no JSON"
        return show, plan_json

    def apply_step(self, project_dir: Path, plan_file: Path, extra_args: Sequence[str] = (),
                   on_line: Optional[LineSink] = None, should_stop: Optional[StopCheck] = None) -> "StepRun":
        """`terraform apply EXTRA_ARGS PLAN_FILE`."""
        args = ["apply", "-input=false", "-no-color", *extra_args, str(Path(plan_file).resolve())]
        return self._step("apply", project_dir, args, on_line, should_stop)

    def import_step(self, project_dir: Path, address: str, resource_id: str, extra_args: Sequence[str] = (),
                    on_line: Optional[LineSink] = None, should_stop: Optional[StopCheck] = None) -> "StepRun":
        """`terraform import EXTRA_ARGS ADDRESS ID` (an argument list: no shell sees them)."""
        args = ["import", "-input=false", "-no-color", *extra_args, address, resource_id]
        return self._step("import", project_dir, args, on_line, should_stop)

    def state_rm_step(self, project_dir: Path, addresses: Sequence[str], extra_args: Sequence[str] = (),
                      on_line: Optional[LineSink] = None, should_stop: Optional[StopCheck] = None) -> "StepRun":
        """`terraform state rm EXTRA_ARGS ADDRESS...`."""
        args = ["state", "rm", "-no-color", *extra_args, *addresses]
        return self._step("state_rm", project_dir, args, on_line, should_stop)

    def plan_result(self, step: "StepRun", plan_json: dict, plan_file: Path) -> PlanResult:
        """The PlanResult of a successful plan step and its `show -json`."""
        assert step.result is not None
        changes = resource_changes(plan_json)
        has_changes = step.result.exit_code == 2
        summary = _summary_line(step.result.output, ("Plan: ", NO_CHANGES))
        return PlanResult(
            ok=True,
            has_changes=has_changes,
            summary=summary or (_counted_summary(changes) if has_changes else NO_CHANGES),
            changes=changes,
            output=step.result.output,
            plan_file=str(plan_file),
            plan_json=plan_json,
        )

    def plan_failure(self, step: "StepRun", init_note: str = "") -> PlanResult:
        return self._plan_failure(step, init_note)

    def apply_failure(self, step: "StepRun") -> ApplyResult:
        return self._apply_failure(step)

    def _prepare(
        self,
        project_dir: Path,
        workspace: str,
        on_line: Optional[LineSink],
        should_stop: Optional[StopCheck],
        force: bool = False,
    ) -> tuple[_Step | None, str]:
        """Run init and select the workspace: (the failed step or None when both worked, the
        init note)."""
        init = self.init(project_dir, (), on_line, should_stop, force)
        if not init.ok:
            return init, init.note
        select = self.select_workspace(project_dir, workspace, on_line, should_stop)
        return (None if select is None or select.ok else select), init.note

    def _step(
        self,
        name: str,
        project_dir: Path,
        args: Sequence[str],
        on_line: Optional[LineSink],
        should_stop: Optional[StopCheck],
        ok_codes: Sequence[int] = (0,),
        git_env: Mapping[str, str] = {},
    ) -> _Step:
        if on_line is not None:
            on_line(f"$ terraform {' '.join(args)}")
        try:
            result = self._run(args, Path(project_dir), on_line, should_stop, git_env)
        except (ExecutableNotFound, NotADirectoryError) as exc:
            return _Step(name, None, str(exc))
        if result.cancelled:
            return _Step(name, result, f"terraform {name} was cancelled")
        if result.timed_out:
            return _Step(
                name, result, f"terraform {name} timed out after {self.timeout:g}s "
                "(server setting terraform.timeout)"
            )
        if result.exit_code not in ok_codes:
            failed = f"terraform {name} failed (exit {result.exit_code})"
            return _Step(name, result, f"{failed}: {_NEXT_STEP[name]}")
        return _Step(name, result)

    def _run(self, args: Sequence[str], project_dir: Path, on_line: Optional[LineSink],
             should_stop: Optional[StopCheck], git_env: Mapping[str, str]) -> ProcessResult:
        """One Terraform command: in a session when there is a pool for it (an init offering git
        credentials has an environment of its own, so a process of its own)."""
        pool = self.sessions or self._block_sessions
        if pool is None or git_env or self.argv0 != embedded_argv():
            env = merge_git_config({**self.env, **self.pinned}, git_env)
            return run([*self.argv0, *args], project_dir, env, self.timeout, on_line, should_stop,
                       sandbox=self.sandbox)
        return self._session(pool, project_dir).run(args, self.timeout, on_line, should_stop, cwd=project_dir)

    def _session(self, pool: SessionPool, cwd: Path) -> Session:
        """The pool's session for this runner's commands (started in cwd if there is none)."""
        mode = SESSION_REAPING if self.sandbox.active else SESSION
        return pool.get([*self.argv0, mode], cwd, {**self.env, **self.pinned}, self.sandbox)

    def prestart(self, cwd: Path) -> None:
        """Start the job's session for this runner's commands now, so that the embedded
        Terraform loads while the job does other work (a no-op for other binaries)."""
        if self.sessions is not None and self.argv0 == embedded_argv():
            self._session(self.sessions, cwd)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Run the block's commands in sessions: the job's, or the block's own (closed at its end).
        One session saves the embedded Terraform's ~85 ms start-up on every command but its first."""
        if self.sessions is not None or self._block_sessions is not None:
            yield
            return
        self._block_sessions = SessionPool()
        try:
            yield
        finally:
            self._block_sessions.close()
            self._block_sessions = None

    def _plan_failure(self, step: _Step, init_note: str = "") -> PlanResult:
        return PlanResult(
            ok=False,
            failed_step=step.name,
            error=step.error,
            output=step.result.output if step.result else step.error,
            cancelled=bool(step.result and step.result.cancelled),
            init_note=init_note,
        )

    def _apply_failure(self, step: _Step) -> ApplyResult:
        return ApplyResult(
            ok=False,
            failed_step=step.name,
            error=step.error,
            output=step.result.output if step.result else step.error,
            cancelled=bool(step.result and step.result.cancelled),
        )
