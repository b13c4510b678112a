"""Kubernetes manifests: loading, minimal validation, per-object diffs and Secret masking.

Pure functions over text and parsed objects; running kubectl/helm is runners/kubectl.py's job.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from runners.models import ResourceChange
from runners.yaml_bounds import BoundedSafeLoader

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# Files that configure tools rather than describe cluster objects.
SKIPPED_NAMES = frozenset(
    {
        "plankeeper.yaml",
        "atlantis.yaml",
        "kustomization.yaml",
        "kustomization.yml",
        "Kustomization",
        "Chart.yaml",
        "values.yaml",
    }
)
FIRST_KINDS = ("Namespace", "CustomResourceDefinition")  # applied before the objects that need them
HIDDEN = "(hidden)"
CHANGED = "(value changed)"
SECRET_FIELDS = ("data", "stringData")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class ManifestError(ValueError):
    """A manifest does not parse or lacks apiVersion, kind or metadata.name."""


@dataclass(frozen=True)
class ObjectKey:
    kind: str
    namespace: str  # "" when not set in the manifest (cluster-scoped or the default namespace)
    name: str

    @property
    def address(self) -> str:
        return (
            f"{self.kind}/{self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind}/{self.name}"
        )


def manifest_files(project_dir: Path) -> list[Path]:
    """Every *.yaml/*.yml/*.json under project_dir, sorted, skipping dot dirs and tool config."""
    found = []
    for path in sorted(project_dir.rglob("*")):
        rel = path.relative_to(project_dir)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in MANIFEST_SUFFIXES and path.name not in SKIPPED_NAMES:
            found.append(path)
    return found


def load_documents(text: str, source: str) -> list[dict]:
    """Parse multi-document YAML (or JSON) into validated objects; `List` kinds are expanded.

    Raises ManifestError naming source and the document number when a document is invalid.
    """
    try:
        docs = list(yaml.load_all(text, Loader=BoundedSafeLoader))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: YAML does not parse: {exc}") from exc
    objects: list[dict] = []
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        objects.extend(_expand(doc, f"{source} (document {index})"))
    return objects


def _expand(doc: object, where: str) -> list[dict]:
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(doc).__name__}")
    if (
        isinstance(doc.get("kind"), str)
        and doc["kind"].endswith("List")
        and isinstance(doc.get("items"), list)
    ):
        return [obj for item in doc["items"] for obj in _expand(item, where)]
    validate_object(doc, where)
    return [doc]


def validate_object(obj: dict, where: str) -> None:
    """Raise ManifestError unless obj has apiVersion, kind and metadata.name (and passes schemas)."""
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj[field]:
            raise ManifestError(f"{where}: missing {field}")
    metadata = obj.get("metadata")
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("name"), str)
        or not metadata["name"]
    ):
        raise ManifestError(f"{where}: {obj['kind']} has no metadata.name")
    schema_error = _schema_error(obj)
    if schema_error:
        raise ManifestError(f"{where}: {obj['kind']} {metadata['name']}: {schema_error}")


def _schema_error(obj: dict) -> str | None:
    """Validation against the Kubernetes schemas when the optional kubernetes-validate is installed."""
    try:
        from kubernetes_validate import utils as schemas  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        schemas.validate(obj, schemas.latest_version(), strict=False)
    except schemas.ValidationError as exc:
        return str(exc.message)
    except (
        schemas.SchemaNotFoundError,
        schemas.VersionNotSupportedError,
        schemas.InvalidSchemaError,
    ):
        return None  # custom resources have no schema there: nothing to check against
    return None


def load_dir(project_dir: Path) -> list[dict]:
    """All objects of the plain manifests under project_dir; raises ManifestError."""
    objects: list[dict] = []
    for path in manifest_files(project_dir):
        source = str(path.relative_to(project_dir))
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                objects.extend(_expand(json.loads(text), source))
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{source}: JSON does not parse: {exc}") from exc
        else:
            objects.extend(load_documents(text, source))
    return objects


def order_objects(objects: list[dict]) -> list[dict]:
    """Namespaces and CRDs first (they must exist before what uses them), the rest as given."""
    first = [o for o in objects if o.get("kind") in FIRST_KINDS]
    return first + [o for o in objects if o.get("kind") not in FIRST_KINDS]


def dump_manifests(objects: list[dict]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def object_key(obj: dict, default_namespace: str | None) -> ObjectKey:
    namespace = obj["metadata"].get("namespace") or (default_namespace or "")
    if obj["kind"] in FIRST_KINDS:
        namespace = ""
    return ObjectKey(obj["kind"], str(namespace), str(obj["metadata"]["name"]))


def render_only_diff(
    base: list[dict], head: list[dict], default_namespace: str | None
) -> tuple[list[ResourceChange], str]:
    """Per-object changes and a unified diff (Secret values masked) from base to head objects."""
    base_by_key = {object_key(o, default_namespace): o for o in base}
    head_by_key = {object_key(o, default_namespace): o for o in head}
    changes: list[ResourceChange] = []
    chunks: list[str] = []
    for key, new in head_by_key.items():
        old = base_by_key.get(key)
        if old == new:
            continue
        changes.append(ResourceChange(key.address, "create" if old is None else "update"))
        chunks.append(_object_diff(key, old, new))
    for key, old in base_by_key.items():
        if key not in head_by_key:
            changes.append(ResourceChange(key.address, "delete"))
            chunks.append(_object_diff(key, old, None))
    return changes, "".join(chunks)


def _object_diff(key: ObjectKey, old: dict | None, new: dict | None) -> str:
    if key.kind == "Secret":
        old, new = _mask_secret_pair(old, new)
    before = (
        yaml.safe_dump(old, sort_keys=True).splitlines(keepends=True) if old is not None else []
    )
    after = yaml.safe_dump(new, sort_keys=True).splitlines(keepends=True) if new is not None else []
    lines = difflib.unified_diff(
        before,
        after,
        fromfile=f"base/{key.address}" if old is not None else "/dev/null",
        tofile=f"head/{key.address}" if new is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _mask_secret_pair(old: dict | None, new: dict | None) -> tuple[dict | None, dict | None]:
    """Replace Secret values: unchanged and removed ones by (hidden), new or changed ones by (value changed)."""

    def values(obj: dict | None, field: str) -> dict:
        return dict((obj or {}).get(field) or {})

    masked_old, masked_new = _without_secrets(old), _without_secrets(new)
    for field in SECRET_FIELDS:
        before, after = values(old, field), values(new, field)
        if masked_old is not None and before:
            masked_old[field] = {k: HIDDEN for k in before}
        if masked_new is not None and after:
            masked_new[field] = {
                k: HIDDEN if before.get(k) == v and k in before else CHANGED
                for k, v in after.items()
            }
    return masked_old, masked_new


def _without_secrets(obj: dict | None) -> dict | None:
    if obj is None:
        return None
    copy = json.loads(json.dumps(obj, default=str))
    annotations = (copy.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = HIDDEN
    return copy


_DIFF_HEADER = re.compile(r"^diff -u -N (\S+) (\S+)$")
_KEY_LINE = re.compile(r"^( {2})([^\s:][^:]*):(.*)$")


def mask_kubectl_diff(text: str) -> str:
    """Hide Secret data/stringData values (and last-applied annotations) in `kubectl diff` output.

    Keys stay visible; a key whose value changes shows `(value changed)` on its `+` line.
    """
    out: list[str] = []
    in_secret = in_data = in_annotation = False
    removed: set[str] = set()
    for line in text.splitlines():
        header = _DIFF_HEADER.match(line)
        if header:
            in_secret = ".Secret." in Path(header.group(2)).name
            in_data = in_annotation = False
            removed = set()
            out.append(line)
            continue
        if not in_secret or line.startswith(("---", "+++", "@@")) or not line:
            out.append(line)
            continue
        sign, body = line[0], line[1:]
        if not body.startswith(" "):  # a top-level key: data/stringData blocks start or end here
            in_data = body.rstrip().rstrip(":") in SECRET_FIELDS and body.rstrip().endswith(":")
            in_annotation = False
            out.append(line)
            continue
        if LAST_APPLIED in body:
            in_annotation = True
            out.append(f"{sign}{body.split(LAST_APPLIED)[0]}{LAST_APPLIED}: {HIDDEN}")
            continue
        if in_annotation and body.startswith("      "):
            continue  # continuation of the hidden annotation's value
        in_annotation = False
        if not in_data:
            out.append(line)
            continue
        key_line = _KEY_LINE.match(body)
        if key_line is None:
            continue  # continuation of a multi-line value: never shown
        key = key_line.group(2)
        if sign == "-":
            removed.add(key)
            out.append(f"-  {key}: {HIDDEN}")
        elif sign == "+":
            out.append(f"+  {key}: {CHANGED}")
        else:
            out.append(f"{sign}  {key}: {HIDDEN}")
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def diff_changes(text: str) -> list[ResourceChange]:
    """Objects that `kubectl diff` output shows, each created (empty live side) or updated."""
    changes: list[ResourceChange] = []
    sections = re.split(r"^(?=diff -u -N )", text, flags=re.MULTILINE)
    for section in sections:
        lines = section.splitlines()
        header = _DIFF_HEADER.match(lines[0]) if lines else None
        if header is None:
            continue
        key = _key_from_diff_name(Path(header.group(2)).name)
        changes.append(ResourceChange(key.address, "create" if _is_creation(lines) else "update"))
    return changes


def _is_creation(section: list[str]) -> bool:
    """The live side is empty, or (for Secrets, which kubectl masks first) the single line `null`."""
    hunks = [line for line in section if line.startswith("@@")]
    removed = [line for line in section if line.startswith("-") and not line.startswith("---")]
    if hunks[:1] and hunks[0].startswith("@@ -0,0 "):
        return True
    return len(hunks) == 1 and hunks[0].startswith("@@ -1 ") and removed == ["-null"]


def _key_from_diff_name(name: str) -> ObjectKey:
    """`apps.v1.Deployment.default.web` -> Deployment/default/web (kinds are the CamelCase part)."""
    parts = name.split(".")
    kind_at = next((i for i, part in enumerate(parts) if part[:1].isupper()), len(parts) - 3)
    rest = parts[kind_at + 1 :]
    return ObjectKey(parts[kind_at], rest[0] if rest else "", ".".join(rest[1:]))


def summarize(changes: Iterable[ResourceChange]) -> tuple[int, int, int]:
    """(created, changed, deleted) counts."""
    counted = list(changes)
    return (
        sum(c.action == "create" for c in counted),
        sum(c.action in ("update", "replace") for c in counted),
        sum(c.action == "delete" for c in counted),
    )


def error_text(output: str) -> str:
    """kubectl's error lines, or its whole output when it printed none."""
    errors = [
        line
        for line in output.splitlines()
        if line.startswith(("error:", "Error:", "Error from server"))
    ]
    return "\n".join(errors) if errors else output.strip()


def path_inside(project_dir: Path, relative: str) -> Path:
    """A values file path inside project_dir; ManifestError when it would leave it."""
    root = project_dir.resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ManifestError(f"helm values file {relative!r} is outside the project directory.")
    return path
