"""What `terraform init` depends on in a project, as a fingerprint of named parts.

Two inits with equal fingerprints install the same thing, so a `.terraform` kept from the first
may serve the second (runners.incremental_init). The parts:

- binary: the Terraform/OpenTofu program (its path, size and modification time);
- backend: every `backend` and `cloud` block of the root module;
- lock: `.terraform.lock.hcl` of the root module;
- modules: the `source` and `version` of every module call, in the root and in each local
  module it uses (followed inside the repository);
- requirements: the `terraform` blocks (required_providers, required_version) of those modules
  and the providers their resources, data sources and provider blocks imply;
- options: the TF_* environment and the CLI configuration Terraform reads.

Some inputs cannot be known from the files: init arguments, TF_CLI_ARGS(_init), TF_DATA_DIR,
a backend or module source that reads a variable (OpenTofu's early evaluation), a local module
outside the repository. Then `always_init` says why and the fingerprint must not be trusted.
Files are read as the bot, outside any sandbox: only regular files inside the repository.
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runners.embedded_terraform import embedded_argv, embedded_paths
from runners.hcl_scan import Block, parse, parse_json
from runners.workspace import resolves_inside

LOCK_FILE = ".terraform.lock.hcl"
CONFIG_SUFFIXES = (".tf", ".tofu", ".tf.json", ".tofu.json")
MAX_FILE_BYTES = 16 * 2**20
MAX_MODULE_DIRS = 1000
FORCING_ENV = ("TF_CLI_ARGS", "TF_CLI_ARGS_init", "TF_DATA_DIR")
# TF_* variables that never change what init installs (or change every run)
IGNORED_ENV_PREFIXES = ("TF_VAR_", "TF_TOKEN_", "TF_LOG")
IGNORED_ENV = frozenset({"TF_IN_AUTOMATION", "TF_INPUT", "TF_PLUGIN_CACHE_DIR", "TF_WORKSPACE"})
PART_NAMES = {  # part -> how a change to it is told in the comment
    "binary": "the Terraform version changed",
    "backend": "the backend configuration changed",
    "lock": "the dependency lock file changed",
    "modules": "module sources changed",
    "requirements": "provider requirements changed",
    "options": "TF_* environment or CLI configuration changed",
}
RESET_PARTS = ("binary", "backend")
BUILTIN_PROVIDER = "terraform"  # terraform_data, terraform_remote_state: built in, nothing to install  # a change here needs a fresh .terraform (init would refuse)


@dataclass(frozen=True)
class Fingerprint:
    parts: dict[str, str] = field(default_factory=dict)  # part name -> SHA-256
    always_init: str = ""  # why init must run whatever the parts say; "" when they can be trusted

    def changed(self, earlier: Mapping[str, str]) -> list[str]:
        """Names of the parts that differ from earlier, in PART_NAMES order."""
        return [name for name in PART_NAMES if self.parts.get(name) != earlier.get(name)]


class _Unknowable(Exception):
    """An input of init cannot be read from the files; the message says which."""


def fingerprint(project_dir: Path, repo_root: Path, argv0: Sequence[str], init_args: Sequence[str],
                env: Mapping[str, str]) -> Fingerprint:
    """The fingerprint of init in project_dir (inside repo_root) with this binary, these init
    arguments and this environment. Never raises: what cannot be known sets always_init."""
    if init_args:
        return Fingerprint(always_init="the init step has extra arguments")
    forcing = [name for name in FORCING_ENV if env.get(name)]
    if forcing:
        return Fingerprint(always_init=f"{forcing[0]} is set")
    try:
        modules = _ModuleWalk(Path(repo_root), Path(project_dir)).run()
    except _Unknowable as exc:
        return Fingerprint(always_init=str(exc))
    parts = {
        "binary": _digest(_binary_identity(argv0)),
        "backend": modules.backend,
        "lock": lock_digest(Path(project_dir), Path(repo_root)),
        "modules": modules.calls,
        "requirements": modules.requirements,
        "options": _digest(_options(env)),
    }
    return Fingerprint(parts)


def lock_digest(project_dir: Path, repo_root: Path) -> str:
    """SHA-256 of the project's dependency lock file, or of "absent"."""
    path = project_dir / LOCK_FILE
    if not os.path.lexists(path):
        return _digest(["absent"])
    try:
        return hashlib.sha256(_read(path, repo_root)).hexdigest()
    except _Unknowable:
        return _digest(["unreadable"])


@dataclass
class _Modules:
    backend: str
    calls: str
    requirements: str


class _ModuleWalk:
    """The root module and every local module it calls, transitively, inside the repository."""

    def __init__(self, repo_root: Path, project_dir: Path) -> None:
        self.root = repo_root
        self.real_root = os.path.realpath(repo_root)
        self.project_dir = project_dir
        self.backends: list[str] = []
        self.calls: list[str] = []
        self.requirements: set[str] = set()

    def run(self) -> _Modules:
        queue, seen = deque([self.project_dir]), {os.path.realpath(self.project_dir)}
        while queue:
            module_dir = queue.popleft()
            for local in self._read_module(module_dir, root=module_dir == self.project_dir):
                real = os.path.realpath(local)
                if real not in seen:
                    seen.add(real)
                    queue.append(local)
            if len(seen) > MAX_MODULE_DIRS:
                raise _Unknowable(f"more than {MAX_MODULE_DIRS} local modules")
        return _Modules(_digest(sorted(self.backends)), _digest(sorted(self.calls)),
                        _digest(sorted(self.requirements)))

    def _read_module(self, module_dir: Path, root: bool) -> list[Path]:
        """Record the module's init inputs; returns the directories of the local modules it calls."""
        name = self._relative(module_dir)
        local: list[Path] = []
        for block in _module_blocks(module_dir, self.root):
            if block.type == "terraform":
                self._terraform_block(name, block, root)
            elif block.type == "module":
                local += self._module_call(module_dir, name, block)
            elif block.type in ("resource", "data", "ephemeral") and block.labels:
                provider = block.labels[0].split("_")[0]
                if provider != BUILTIN_PROVIDER:
                    self.requirements.add(f"{name}\0uses\0{provider}")
                if "provider" in block.attributes:
                    self.requirements.add(f"{name}\0provider\0{block.attributes['provider'].text}")
            elif block.type == "provider" and block.labels:
                self.requirements.add(f"{name}\0configures\0{block.labels[0]}")
        return local

    def _terraform_block(self, name: str, block: Block, root: bool) -> None:
        self.requirements.add(f"{name}\0terraform\0{_digest(block.tokens)}")
        for inner in block.blocks:
            if inner.type not in ("backend", "cloud"):
                continue
            if any(expr.references("var", "local") for expr in inner.attributes.values()):
                raise _Unknowable("the backend configuration reads a variable")
            if root:
                self.backends.append(_digest([inner.type, *inner.labels, *inner.tokens]))

    def _module_call(self, module_dir: Path, name: str, block: Block) -> list[Path]:
        source, version = block.attributes.get("source"), block.attributes.get("version")
        if source is None:
            return []
        for expr in (source, version):
            if expr is not None and (expr.literal is None or expr.references("var", "local")):
                raise _Unknowable(f"the source or version of module {'.'.join(block.labels)!r} is an expression")
        self.calls.append("\0".join([name, *block.labels, source.literal or "", version.literal if version else ""]))
        text = source.literal or ""
        if not text.startswith(("./", "../")):
            return []
        target = Path(os.path.normpath(module_dir / text))
        if not resolves_inside(target, self.real_root):
            raise _Unknowable(f"module {'.'.join(block.labels)!r} is a local directory outside the repository")
        return [target] if target.is_dir() else []

    def _relative(self, module_dir: Path) -> str:
        return os.path.relpath(module_dir, self.root)


def _module_blocks(module_dir: Path, repo_root: Path) -> list[Block]:
    """Every block of the module's configuration files, in file name order."""
    try:
        names = sorted(entry.name for entry in os.scandir(module_dir) if entry.name.endswith(CONFIG_SUFFIXES))
    except OSError:
        return []
    blocks: list[Block] = []
    for name in names:
        text = _read(module_dir / name, repo_root).decode("utf-8", "replace")
        blocks += parse_json(text) if name.endswith(".json") else parse(text)
    return blocks


def _read(path: Path, repo_root: Path) -> bytes:
    """The bytes of a regular file inside repo_root (a symlink to one too); raises _Unknowable for
    anything else (a FIFO would block, a symlink out could reveal what is not the repository's)."""
    real = os.path.realpath(path)
    if not resolves_inside(real, os.path.realpath(repo_root)):
        raise _Unknowable(f"{path.name} resolves outside the repository")
    try:
        info = os.stat(real)
        if not stat.S_ISREG(info.st_mode):
            raise _Unknowable(f"{path.name} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _Unknowable(f"{path.name} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        with open(real, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _Unknowable(f"{path.name} cannot be read ({exc.strerror})") from None


def _binary_identity(argv0: Sequence[str]) -> list[str]:
    """The program's argv and, for each file it names (and the embedded Terraform's library),
    its real path, size and modification time: an upgrade in place changes them."""
    files = [Path(arg) for arg in argv0 if os.path.isabs(arg)]
    if list(argv0) == embedded_argv():
        files += embedded_paths()
    identity = list(argv0)
    for path in files:
        try:
            info = os.stat(path)
        except OSError:
            identity.append(f"{path}: missing")
            continue
        identity.append(f"{os.path.realpath(path)} {info.st_size} {info.st_mtime_ns}")
    return identity


def _options(env: Mapping[str, str]) -> list[str]:
    """The TF_* variables that may change what init does, and the CLI configuration's text."""
    items = [f"{name}={value}" for name, value in sorted(env.items())
             if name.startswith("TF_") and name not in IGNORED_ENV and not name.startswith(IGNORED_ENV_PREFIXES)]
    config = env.get("TF_CLI_CONFIG_FILE")
    if config:
        try:
            items.append(hashlib.sha256(Path(config).read_bytes()).hexdigest())
        except OSError:
            items.append("unreadable CLI configuration")
    return items


def _digest(items: Sequence[str] | tuple[str, ...]) -> str:
    return hashlib.sha256("\0\n".join(items).encode("utf-8", "surrogateescape")).hexdigest()


def note_for(changed: Sequence[str]) -> str:
    """`init ran: ...` naming the first changed part."""
    return f"init ran: {PART_NAMES[changed[0]]}" if changed else "init ran"

