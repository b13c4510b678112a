"""Kubernetes engine: render manifests, server-side dry-run diff on plan, server-side apply.

With a kubeconfig (from the server's settings, never from the repository) plan runs
`kubectl diff --server-side` against the cluster; without one it is render-only: the rendered
manifests of the base and head checkouts are diffed per object, and nothing is contacted.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from runners.kubectl_render import (
    ManifestError,
    ObjectKey,
    diff_changes,
    dump_manifests,
    error_text,
    load_dir,
    load_documents,
    mask_kubectl_diff,
    object_key,
    order_objects,
    path_inside,
    render_only_diff,
    summarize,
)
from runners.models import ApplyResult, LineSink, PlanResult, ResourceChange, StopCheck
from runners.process import ExecutableNotFound, ProcessResult, run
from runners.sandbox import NO_SANDBOX, Sandbox

FIELD_MANAGER = "plankeeper"
RENDER_MODES = ("plain", "kustomize", "helm")
NO_CHANGES = "No changes. Your cluster matches the manifests."
RENDER_ONLY_NOTE = (
    "Render-only mode: no cluster is configured, so this is the diff of the rendered manifests\n"
    "between the pull request's base and head, not checked against a cluster.\n"
)
APPLYSET_ID_LABEL = "applyset.kubernetes.io/id"
APPLYSET_KINDS_ANNOTATION = "applyset.kubernetes.io/contains-group-kinds"
APPLYSET_MEMBER_LABEL = "applyset.kubernetes.io/part-of"
# Rows are prefixed with PK so that warnings in the merged output stream are never taken for data.
APPLYSET_PARENT_JSONPATH = (
    "jsonpath=PK\t{.metadata.labels.applyset\\.kubernetes\\.io/id}\t"
    "{.metadata.annotations.applyset\\.kubernetes\\.io/contains-group-kinds}\t-"
)
MEMBERS_JSONPATH = (
    'jsonpath={range .items[*]}PK\t{.kind}\t{.metadata.namespace}\t{.metadata.name}{"\\n"}{end}'
)
_ROW = re.compile(r"^PK\t([^\t]*)\t([^\t]*)\t([^\t]+)$")
_VERSION = re.compile(r"Client Version:\s*(v\S+)")


class StepFailed(Exception):
    """A kubectl/helm step failed; carries what the PlanResult/ApplyResult should report."""

    def __init__(self, step: str, error: str, output: str = "", cancelled: bool = False) -> None:
        super().__init__(error)
        self.step, self.error, self.output, self.cancelled = step, error, output, cancelled

    def fields(self) -> dict:
        """The failure fields shared by PlanResult and ApplyResult."""
        return {"failed_step": self.step, "error": self.error, "output": self.output,
                "cancelled": self.cancelled}


class KubectlRunner:
    """runners.base.Runner for Kubernetes projects (kubectl, optionally kustomize or helm)."""

    def __init__(
        self,
        kubectl: str,
        helm: str | None,
        env: Mapping[str, str],
        timeout: float,
        kubeconfig: str | None,
        context: str | None,
        namespace: str | None,
        render: str = "plain",
        prune: bool = False,
        helm_values: Sequence[str] = (),
        applyset: str = "plankeeper",
        sandbox: Sandbox = NO_SANDBOX,
    ) -> None:
        if render not in RENDER_MODES:
            raise ValueError(
                f"unknown render mode {render!r}; expected one of {', '.join(RENDER_MODES)}"
            )
        self.kubectl, self.helm, self.env, self.timeout = kubectl, helm, dict(env), timeout
        self.kubeconfig, self.context, self.namespace = kubeconfig, context, namespace
        self.render, self.prune, self.helm_values = render, prune, tuple(helm_values)
        # Prune deletes what a previous apply of the same applyset created: one name per project.
        self.applyset = applyset
        self.sandbox = sandbox  # kustomize and helm render templates from the pull request

    # --- Runner protocol ---

    def plan(
        self,
        project_dir: Path,
        workspace: str,
        out_dir: Path,
        extra_args: Sequence[str] = (),
        on_line: LineSink | None = None,
        should_stop: StopCheck | None = None,
        *,
        base_dir: Path | None = None,
    ) -> PlanResult:
        """Render project_dir to out_dir/manifests.yaml and diff it (cluster or, without a
        kubeconfig, the base_dir checkout). Failures return ok=False with failed_step
        "render" or "diff"; extra_args are not used by this engine."""
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            objects = self._render(project_dir, out_dir / "render", on_line, should_stop)
            plan_file = out_dir / "manifests.yaml"
            plan_file.write_text(dump_manifests(objects), encoding="utf-8")
            if self.kubeconfig is None:
                return self._plan_render_only(objects, base_dir, out_dir, plan_file, on_line)
            return self._plan_cluster(plan_file, objects, on_line, should_stop)
        except StepFailed as failed:
            return PlanResult(ok=False, **failed.fields())

    def apply(
        self,
        project_dir: Path,
        workspace: str,
        plan_file: Path,
        on_line: LineSink | None = None,
        should_stop: StopCheck | None = None,
    ) -> ApplyResult:
        """Server-side apply exactly plan_file; ok=False with failed_step "apply" on any error."""
        if self.kubeconfig is None:
            return ApplyResult(
                ok=False,
                failed_step="apply",
                error=(
                    "No kubeconfig is configured (render-only mode): nothing can be applied. "
                    "Set `kubectl.kubeconfig` in the server config to plan and apply against a cluster."
                ),
            )
        try:
            existing = self._existing_count(plan_file, project_dir, should_stop)
            argv = [
                *self._cluster_args(),
                "apply",
                "--server-side",
                f"--field-manager={FIELD_MANAGER}",
                "-f",
                str(plan_file),
            ]
            if self.prune:
                argv += ["--prune", f"--applyset={self.applyset}"]
            result = self._run("apply", argv, project_dir, on_line, should_stop, self._apply_env())
        except StepFailed as failed:
            return ApplyResult(ok=False, **failed.fields())
        lines = result.output.splitlines()
        applied = sum(1 for line in lines if line.endswith(" serverside-applied"))
        pruned = sum(1 for line in lines if line.endswith(" pruned"))
        created = max(applied - existing, 0)
        summary = f"Kubernetes apply complete: {created} created, {applied - created} configured, {pruned} pruned."
        return ApplyResult(ok=True, summary=summary, output=result.output)

    def version(self) -> str:
        """`kubectl vX.Y.Z`; raises RuntimeError when kubectl cannot be run."""
        try:
            result = run(
                [self.kubectl, "version", "--client"], Path("/"), self.env, min(self.timeout, 60.0),
                sandbox=self.sandbox,
            )
        except ExecutableNotFound as exc:
            raise RuntimeError(str(exc)) from exc
        match = _VERSION.search(result.output)
        if result.exit_code != 0 or match is None:
            raise RuntimeError(f"kubectl version failed: {result.output.strip()}")
        return f"kubectl {match.group(1)}"

    # --- rendering ---

    def _render(self, project_dir: Path, scratch: Path, on_line, should_stop) -> list[dict]:
        shutil.rmtree(
            scratch, ignore_errors=True
        )  # helm --output-dir keeps files of a previous run
        try:
            if self.render == "plain":
                objects = load_dir(project_dir)
            elif self.render == "kustomize":
                objects = self._render_kustomize(project_dir, scratch, on_line, should_stop)
            else:
                objects = self._render_helm(project_dir, scratch, on_line, should_stop)
        except ManifestError as exc:
            raise StepFailed("render", str(exc)) from exc
        if not objects:
            raise StepFailed(
                "render",
                f"No Kubernetes manifests found in {project_dir.name or '.'} ({self.render}).",
            )
        return order_objects(objects)

    def _render_kustomize(
        self, project_dir: Path, scratch: Path, on_line, should_stop
    ) -> list[dict]:
        scratch.mkdir(parents=True, exist_ok=True)
        target = scratch / "kustomize.yaml"
        # -o keeps kustomize's warnings (merged into our output stream) out of the manifests.
        self._run(
            "render",
            [self.kubectl, "kustomize", str(project_dir), "-o", str(target)],
            project_dir,
            on_line,
            should_stop,
        )
        return load_documents(target.read_text(encoding="utf-8"), "kubectl kustomize")

    def _render_helm(self, project_dir: Path, scratch: Path, on_line, should_stop) -> list[dict]:
        if not self.helm:
            raise StepFailed("render", "render: helm needs a helm binary, and none is configured.")
        out = scratch / "helm"
        argv = [self.helm, "template", "plankeeper", str(project_dir), "--output-dir", str(out)]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        for values in self.helm_values:
            argv += ["-f", str(path_inside(project_dir, values))]
        self._run("render", argv, project_dir, on_line, should_stop)
        objects: list[dict] = []
        for path in sorted(out.rglob("*.yaml")):
            objects.extend(
                load_documents(path.read_text(encoding="utf-8"), str(path.relative_to(out)))
            )
        return objects

    # --- planning ---

    def _plan_render_only(
        self, head: list[dict], base_dir: Path | None, out_dir: Path, plan_file: Path, on_line
    ) -> PlanResult:
        base: list[dict] = []
        note = RENDER_ONLY_NOTE
        if base_dir is not None and base_dir.is_dir():
            try:
                base = self._render(base_dir, out_dir / "render-base", None, None)
            except StepFailed as failed:
                note += f"Note: the base manifests could not be rendered ({failed.error}); diffed against nothing.\n"
        changes, diff = render_only_diff(base, head, self.namespace)
        created, changed, deleted = summarize(changes)
        summary = (
            f"Kubernetes (render only, not checked against a cluster): "
            f"{created} to create, {changed} to change, {deleted} to delete."
        )
        output = note + diff + summary + "\n"
        if on_line:
            for line in output.splitlines():
                on_line(line)  # the diff is already masked: Secret values never reach a log
        return PlanResult(
            ok=True,
            has_changes=bool(changes),
            summary=summary,
            changes=changes,
            output=output,
            plan_file=str(plan_file),
        )

    def _plan_cluster(
        self, plan_file: Path, objects: list[dict], on_line, should_stop
    ) -> PlanResult:
        argv = [
            *self._cluster_args(),
            "diff",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            str(plan_file),
        ]
        result = self._run("diff", argv, plan_file.parent, None, should_stop, ok_codes=(0, 1))
        errors = [
            line for line in result.output.splitlines() if line.startswith(("error:", "Error from"))
        ]
        if result.exit_code == 1 and (errors or "diff -u -N " not in result.output):
            masked = mask_kubectl_diff(result.output)
            raise StepFailed("diff", error_text(masked), masked)
        output = mask_kubectl_diff(result.output)
        if output and not output.endswith("\n"):
            output += "\n"
        changes = diff_changes(output)
        if self.prune:
            changes += self._prune_candidates(objects, plan_file.parent, should_stop)
        created, changed, deleted = summarize(changes)
        summary = (
            NO_CHANGES
            if not changes
            else f"Kubernetes: {created} to create, {changed} to change, {deleted} to delete."
        )
        prune_lines = "".join(
            f"prune: {c.address} would be deleted\n" for c in changes if c.action == "delete"
        )
        output = output + prune_lines + summary + "\n"
        if on_line:
            for line in output.splitlines():
                on_line(line)  # streamed only after masking, so Secret values never reach a log
        return PlanResult(
            ok=True,
            has_changes=bool(changes),
            summary=summary,
            changes=changes,
            output=output,
            plan_file=str(plan_file),
        )

    def _prune_candidates(
        self, objects: list[dict], cwd: Path, should_stop
    ) -> list[ResourceChange]:
        """Members of the applyset (per its parent Secret) that the manifests no longer contain."""
        parent = self._rows(
            ["get", f"secret/{self.applyset}", "--ignore-not-found"],
            APPLYSET_PARENT_JSONPATH,
            cwd,
            should_stop,
        )
        if not parent or not parent[0][0] or not parent[0][1]:
            return []  # never applied with this applyset: nothing to prune yet
        applyset_id, group_kinds = parent[0][0], parent[0][1]
        kinds = ",".join(gk.lower() for gk in group_kinds.split(","))
        selector = f"{APPLYSET_MEMBER_LABEL}={applyset_id}"
        members = self._rows(
            ["get", kinds, "-A", "-l", selector], MEMBERS_JSONPATH, cwd, should_stop
        )
        wanted = {_loose(object_key(o, self.namespace)) for o in objects}
        found = [ObjectKey(kind, namespace, name) for kind, namespace, name in members]
        return [ResourceChange(k.address, "delete") for k in found if _loose(k) not in wanted]

    def _rows(
        self, args: list[str], jsonpath: str, cwd: Path, should_stop
    ) -> list[tuple[str, ...]]:
        """Run a `kubectl get` printing PK-prefixed rows; the rows' fields."""
        argv = [*self._cluster_args(include_namespace="-A" not in args), *args, "-o", jsonpath]
        result = self._run("diff", argv, cwd, None, should_stop)
        return [m.groups() for m in map(_ROW.match, result.output.splitlines()) if m]

    def _existing_count(self, plan_file: Path, cwd: Path, should_stop) -> int:
        """How many of the planned objects exist now (to tell created from configured)."""
        result = self._run(
            "apply",
            [
                *self._cluster_args(),
                "get",
                "-f",
                str(plan_file),
                "--ignore-not-found",
                "-o",
                "name",
            ],
            cwd,
            None,
            should_stop,
        )
        # Only `kind.group/name` lines count: warnings share the merged output stream.
        return sum(1 for line in result.output.splitlines() if re.match(r"^[a-z0-9.-]+/\S+$", line))

    # --- process plumbing ---

    def _cluster_args(self, include_namespace: bool = True) -> list[str]:
        argv = [self.kubectl, f"--kubeconfig={self.kubeconfig}"]
        if self.context:
            argv.append(f"--context={self.context}")
        if self.namespace and include_namespace:
            argv.append(f"--namespace={self.namespace}")
        return argv

    def _apply_env(self) -> dict[str, str]:
        # ApplySet-based pruning is still alpha in kubectl 1.35 and must be switched on.
        return {**self.env, "KUBECTL_APPLYSET": "true"} if self.prune else self.env

    def _run(
        self,
        step: str,
        argv: list[str],
        cwd: Path,
        on_line,
        should_stop,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> ProcessResult:
        """Run one step; raise StepFailed on a missing binary, timeout, cancel or bad exit code."""
        try:
            result = run(
                argv, cwd, env or self.env, self.timeout, on_line=on_line, should_stop=should_stop,
                sandbox=self.sandbox,
            )
        except ExecutableNotFound as exc:
            raise StepFailed(step, str(exc)) from exc
        if result.cancelled:
            raise StepFailed(step, f"{step} was cancelled.", result.output, cancelled=True)
        if result.timed_out:
            raise StepFailed(step, f"{step} timed out after {self.timeout:g}s.", result.output)
        if result.exit_code not in ok_codes:
            output = mask_kubectl_diff(
                result.output
            )  # a failed diff may still have printed Secrets
            raise StepFailed(
                step, error_text(output) or f"{argv[0]} exited with {result.exit_code}", output
            )
        return result


def _loose(key: ObjectKey) -> tuple[str, str]:
    # The live namespace may be the context's default where the manifest named none.
    return key.kind, key.name
