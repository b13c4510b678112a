"""A small stand-in Kubernetes API server for driving the real kubectl in tests.

It speaks the subset of the wire protocol that kubectl 1.35 uses for `diff --server-side`,
`apply --server-side` (also with `--prune --applyset`) and `get`: /version, legacy discovery,
an OpenAPI v3 index and per-group-version documents whose PATCH operations advertise the
`fieldValidation` and `dryRun` query parameters, GET/LIST/DELETE of objects, and PATCH with
`application/apply-patch+yaml` (server-side apply) honouring `dryRun=All`. Objects are kept in
memory; server-side apply is simplified to a deep merge of the applied fields into the stored
object (maps merge, everything else is replaced).
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import yaml


@dataclass(frozen=True)
class KubeResource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_root(self) -> str:
        return f"/apis/{self.group_version}" if self.group else f"/api/{self.version}"


RESOURCES = (
    KubeResource("", "v1", "ConfigMap", "configmaps", True),
    KubeResource("", "v1", "Secret", "secrets", True),
    KubeResource("", "v1", "Service", "services", True),
    KubeResource("", "v1", "Namespace", "namespaces", False),
    KubeResource("apps", "v1", "Deployment", "deployments", True),
)
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
ObjKey = tuple[str, str, str, str]  # (group_version, kind, namespace, name)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: bytes


class FakeKubeAPI:
    """An HTTP Kubernetes API stand-in on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[ObjKey, dict] = {}
        self._revision = 100
        self.requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(
        self, path: Path, context: str = "fake", namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig whose only context points at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def put(self, obj: dict) -> dict:
        """Store obj as if it had been created; returns the stored copy."""
        res = _resource_for(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace", "default") if res.namespaced else ""
        with self._lock:
            stored = self._finish(copy.deepcopy(obj), None, res, namespace)
            self._objects[(res.group_version, res.kind, namespace, obj["metadata"]["name"])] = (
                stored
            )
            return copy.deepcopy(stored)

    def objects(self) -> list[dict]:
        """Copies of every stored object."""
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects.values()]

    def get(self, kind: str, name: str, namespace: str = "default") -> dict | None:
        with self._lock:
            for (_, k, ns, n), obj in self._objects.items():
                if k == kind and n == name and ns in (namespace, ""):
                    return copy.deepcopy(obj)
        return None

    def mutating_requests(self) -> list[RecordedRequest]:
        """PATCH/DELETE requests that were not dry runs."""
        return [
            r
            for r in self.requests
            if r.method in ("PATCH", "DELETE") and "All" not in r.query.get("dryRun", [])
        ]

    # --- request handling (called from the handler thread) ---

    def _finish(self, obj: dict, old: dict | None, res: KubeResource, namespace: str) -> dict:
        """Fill in what the API server sets on write."""
        meta = obj.setdefault("metadata", {})
        obj["apiVersion"], obj["kind"] = res.group_version, res.kind
        if res.namespaced:
            meta["namespace"] = namespace
        self._revision += 1
        meta["resourceVersion"] = str(self._revision)
        meta["uid"] = (old or {}).get("metadata", {}).get("uid") or f"uid-{self._revision}"
        meta["creationTimestamp"] = (old or {}).get("metadata", {}).get(
            "creationTimestamp"
        ) or "2024-01-01T00:00:00Z"
        if res.kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        return obj

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        with self._lock:
            self.requests.append(
                RecordedRequest(method, parts.path, query, headers.get("Content-Type", ""), body)
            )
        fixed = _static_document(parts.path)
        if fixed is not None:
            return 200, fixed
        route = _route(parts.path)
        if route is None:
            return 404, _status(
                404, "NotFound", f"the server could not find the requested resource ({parts.path})"
            )
        res, namespace, name = route
        if method == "GET" and name is None:
            return 200, self._list(res, namespace, query)
        if name is None:
            return 405, _status(
                405, "MethodNotAllowed", f"{method} on a collection is not supported"
            )
        if method == "GET":
            return self._get(res, namespace, name)
        if method == "PATCH":
            return self._apply(res, namespace, name, headers.get("Content-Type", ""), body, query)
        if method == "DELETE":
            return self._delete(res, namespace, name)
        return 405, _status(405, "MethodNotAllowed", f"{method} is not supported")

    def _get(self, res: KubeResource, namespace: str, name: str) -> tuple[int, Any]:
        with self._lock:
            obj = self._objects.get((res.group_version, res.kind, namespace, name))
        if obj is None:
            return 404, _not_found(res, name)
        return 200, obj

    def _list(self, res: KubeResource, namespace: str | None, query: dict[str, list[str]]) -> dict:
        selector = query.get("labelSelector", [""])[0]
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (gv, kind, ns, _), obj in sorted(self._objects.items())
                if gv == res.group_version
                and kind == res.kind
                and namespace in (None, ns)
                and _matches(obj.get("metadata", {}).get("labels") or {}, selector)
            ]
            revision = str(self._revision)
        return {
            "apiVersion": res.group_version,
            "kind": f"{res.kind}List",
            "metadata": {"resourceVersion": revision},
            "items": items,
        }

    def _apply(self, res, namespace, name, content_type, body, query) -> tuple[int, Any]:
        if not content_type.startswith("application/apply-patch"):
            return 415, _status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: application/apply-patch+yaml (got {content_type})",
            )
        try:
            patch = yaml.safe_load(body.decode() or "{}")
        except yaml.YAMLError as exc:
            return 400, _status(400, "BadRequest", f"error decoding YAML: {exc}")
        if not isinstance(patch, dict) or patch.get("kind") != res.kind:
            return 400, _status(400, "BadRequest", "the apply patch does not describe this object")
        if "All" in query.get("fieldValidation", []) or "Strict" in query.get(
            "fieldValidation", []
        ):
            unknown = sorted(
                set(patch)
                - {
                    "apiVersion",
                    "kind",
                    "metadata",
                    "spec",
                    "data",
                    "stringData",
                    "type",
                    "binaryData",
                    "immutable",
                    "status",
                }
            )
            if unknown:
                return 400, _status(
                    400, "BadRequest", f".{unknown[0]}: field not declared in schema"
                )
        key = (res.group_version, res.kind, namespace if res.namespaced else "", name)
        with self._lock:
            old = self._objects.get(key)
            merged = _deep_merge(copy.deepcopy(old) if old else {}, patch)
            merged.setdefault("metadata", {})["name"] = name
            if old is not None and _same_content(merged, old):
                return 200, copy.deepcopy(
                    old
                )  # a no-op apply keeps the resourceVersion, as the real server does
            result = self._finish(merged, old, res, key[2])
            if "All" not in query.get("dryRun", []):
                self._objects[key] = result
            else:
                self._revision -= 1  # a dry run does not consume a revision
        return (200 if old else 201), result

    def _delete(self, res: KubeResource, namespace: str, name: str) -> tuple[int, Any]:
        with self._lock:
            obj = self._objects.pop((res.group_version, res.kind, namespace, name), None)
        if obj is None:
            return 404, _not_found(res, name)
        return 200, obj


def _make_handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = api.handle(self.command, self.path, self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _resource_for(api_version: str, kind: str) -> KubeResource:
    for res in RESOURCES:
        if res.group_version == api_version and res.kind == kind:
            return res
    raise KeyError(f"{api_version} {kind} is not served by FakeKubeAPI")


def _route(path: str) -> tuple[KubeResource, str | None, str | None] | None:
    """/api/v1/namespaces/NS/PLURAL[/NAME] and friends -> (resource, namespace, name)."""
    segments = [s for s in path.split("/") if s]
    if segments[:1] == ["api"]:
        gv, rest = segments[1:2], segments[2:]
    elif segments[:1] == ["apis"]:
        gv, rest = ["/".join(segments[1:3])], segments[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    for res in RESOURCES:
        if gv == [res.group_version] and rest[:1] == [res.plural]:
            if len(rest) > 2:
                return None
            name = rest[1] if len(rest) == 2 else None
            if not res.namespaced and namespace is None:
                namespace = ""
            return res, namespace, name
    if gv and rest[:1] == ["namespaces"] and len(rest) == 2:  # GET /api/v1/namespaces/NAME
        return _resource_for("v1", "Namespace"), "", rest[1]
    return None


def _matches(labels: dict, selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _same_content(merged: dict, old: dict) -> bool:
    def strip(obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj.pop("stringData", None)
        for field in ("resourceVersion", "uid", "creationTimestamp"):
            obj.get("metadata", {}).pop(field, None)
        return obj

    if "stringData" in merged:  # compare as the server would store it
        merged = copy.deepcopy(merged)
        data = merged.setdefault("data", {})
        for key, value in merged.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    return strip(merged) == strip(old)


def _deep_merge(base: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = details
    return status


def _not_found(res: KubeResource, name: str) -> dict:
    group = f".{res.group}" if res.group else ""
    return _status(
        404,
        "NotFound",
        f'{res.plural}{group} "{name}" not found',
        {"name": name, "group": res.group, "kind": res.plural},
    )


def _group_versions() -> list[str]:
    return sorted({r.group_version for r in RESOURCES})


def _static_document(path: str) -> dict | None:
    """Version, discovery and OpenAPI documents, or None when path is not one of them."""
    path = path.rstrip("/") or "/"
    if path == "/version":
        return {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }
    if path == "/apis":
        groups = sorted({r.group for r in RESOURCES if r.group})
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                }
                for g in groups
            ],
        }
    for gv in _group_versions():
        root = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
        if path == root:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": [
                    {
                        "name": r.plural,
                        "singularName": r.kind.lower(),
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": VERBS,
                    }
                    for r in RESOURCES
                    if r.group_version == gv
                ],
            }
        if path == "/openapi/v3" + root:
            return _openapi_document(gv)
    if path == "/openapi/v3":
        return {
            "paths": {
                (f"apis/{gv}" if "/" in gv else f"api/{gv}"): {
                    "serverRelativeURL": f"/openapi/v3/{'apis' if '/' in gv else 'api'}/{gv}?hash=FAKE{i}"
                }
                for i, gv in enumerate(_group_versions())
            }
        }
    return None


def _openapi_document(gv: str) -> dict:
    """An OpenAPI v3 document whose PATCH operations declare fieldValidation and dryRun."""
    params = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in ("dryRun", "fieldManager", "fieldValidation", "force")
    ]
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for res in (r for r in RESOURCES if r.group_version == gv):
        group, version = res.group, res.version
        gvk = [{"group": group, "version": version, "kind": res.kind}]
        schema_name = f"io.k8s.api.{group or 'core'}.{version}.{res.kind}"
        schemas[schema_name] = {
            "type": "object",
            "x-kubernetes-group-version-kind": gvk,
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
            },
        }
        base = (
            f"{res.api_root}/namespaces/{{namespace}}/{res.plural}/{{name}}"
            if res.namespaced
            else f"{res.api_root}/{res.plural}/{{name}}"
        )
        operation = {
            "operationId": f"patch{res.kind}",
            "parameters": params,
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk[0],
            "responses": {"200": {"description": "OK"}},
        }
        paths[base] = {"patch": operation}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
