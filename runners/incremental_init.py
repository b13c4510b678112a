"""Incremental `terraform init` in a kept work tree: skip init when nothing it depends on changed.

A work tree kept for one pull request (runners.worktrees) keeps each project's `.terraform`
between jobs. InitRecords, stored beside the tree but outside it (so outside every sandbox: a
pull request cannot write them), say for each project directory which init fingerprints
(runners.init_fingerprint) its `.terraform` was made with. When the fingerprint matches and
`.terraform` is still there, init is skipped. Otherwise init runs: on the kept `.terraform` when
only the lock file, module sources or provider requirements changed (init updates it, as when run
again by hand), on an empty one when the binary or the backend changed (init refuses to switch
backends in automation) or when the fingerprint cannot be trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.init_fingerprint import RESET_PARTS, Fingerprint, fingerprint, lock_digest, note_for
from runners.workspace import resolves_inside

DATA_DIR = ".terraform"
SKIPPED = "init skipped: lock file, backend and modules unchanged"
FIRST = "init ran: first init in this work tree"
MISSING = "init ran: .terraform is not as the last init left it"
ASKED = "init ran: the plan asked for it"


@dataclass(frozen=True)
class InitRecord:
    """What one project's last successful init was made with, and whether it left a .terraform
    (a configuration with nothing to install leaves none)."""

    accepted: tuple[dict, ...]  # fingerprint parts the .terraform serves
    data_dir: bool = True

    def on_disk(self, project_dir: Path) -> bool:
        """True when project_dir still holds what that init left."""
        data = project_dir / DATA_DIR
        if self.data_dir:
            return data.is_dir() and not data.is_symlink()
        return not os.path.lexists(data)


@dataclass(frozen=True)
class InitRecords:
    """The init records of one kept tree: `directory` holds them, `tree` is where the tree is now."""

    directory: Path
    tree: Path

    def relative(self, project_dir: Path) -> str | None:
        """project_dir relative to the tree ("." for its root); None when it is not inside."""
        tree, path = os.path.realpath(self.tree), os.path.realpath(project_dir)
        if not resolves_inside(path, tree):
            return None
        return Path(os.path.relpath(path, tree)).as_posix()

    def get(self, rel: str) -> InitRecord | None:
        """The record of the project at rel (relative to the tree), or None."""
        try:
            data = json.loads(self._file(rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("dir") != rel:
            return None
        accepted = tuple(p for p in data.get("accepted", []) if isinstance(p, dict))
        return InitRecord(accepted, bool(data.get("data_dir", True)))

    def put(self, rel: str, record: InitRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._file(rel)
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps({"dir": rel, "accepted": list(record.accepted), "data_dir": record.data_dir}),
                        encoding="utf-8")
        os.replace(temp, path)

    def drop(self, rel: str) -> None:
        self._file(rel).unlink(missing_ok=True)

    def kept_dirs(self) -> list[str]:
        """Project directories (relative to the tree) whose .terraform is on record."""
        dirs = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                rel = json.loads(path.read_text(encoding="utf-8")).get("dir")
            except (OSError, ValueError):
                continue
            if isinstance(rel, str) and rel:
                dirs.append(rel)
        return dirs

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _file(self, rel: str) -> Path:
        return self.directory / (hashlib.sha256(rel.encode()).hexdigest()[:32] + ".json")


@dataclass(frozen=True)
class InitDecision:
    """What to do about init in one project directory."""

    skip: bool
    note: str  # for the comment: why init ran, or that it was skipped
    fresh: bool  # start from an empty .terraform
    fingerprint: Fingerprint | None = None  # recorded once init succeeded; None: never


def decide(records: InitRecords, project_dir: Path, argv0: Sequence[str], init_args: Sequence[str],
           env: Mapping[str, str], force: bool = False) -> InitDecision | None:
    """Skip or run init in project_dir; None when the directory is not in the kept tree.

    The record is dropped unless init is skipped, and written again by record() once init
    succeeds: a failed or interrupted init never leaves one."""
    rel = records.relative(project_dir)
    if rel is None:
        return None
    found = fingerprint(project_dir, records.tree, argv0, init_args, env)
    earlier = records.get(rel)
    kept = earlier is not None and earlier.on_disk(project_dir)
    accepted = earlier.accepted if earlier is not None else ()
    if not force and not found.always_init and kept and found.parts in accepted:
        return InitDecision(True, SKIPPED, False, found)
    records.drop(rel)
    if force:
        return InitDecision(False, ASKED, True, found if not found.always_init else None)
    if found.always_init:
        return InitDecision(False, f"init ran: {found.always_init}", True)
    if not accepted or not kept:
        return InitDecision(False, FIRST if earlier is None else MISSING, True, found)
    changed = found.changed(accepted[0])
    return InitDecision(False, note_for(changed), any(c in RESET_PARTS for c in changed), found)


def record(records: InitRecords, project_dir: Path, decision: InitDecision) -> None:
    """After a successful init: its fingerprint, and the same with the lock file init wrote (an
    untracked lock file stays in the tree and is what the next job finds)."""
    rel = records.relative(project_dir)
    if rel is None or decision.fingerprint is None:
        return
    before = decision.fingerprint.parts
    after = dict(before, lock=lock_digest(project_dir, records.tree))
    made = os.path.lexists(project_dir / DATA_DIR)
    records.put(rel, InitRecord((before,) if after == before else (before, after), made))


def asks_for_init(output: str) -> bool:
    """True when Terraform's (or OpenTofu's) output asks to run init (a module, provider or
    backend not installed as the configuration wants)."""
    return "terraform init" in output or "tofu init" in output

