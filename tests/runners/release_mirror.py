"""A local release mirror for tests: Terraform and OpenTofu releases in the official layout
(zip + SHA256SUMS), served by http.server in a thread. The zipped binary is a small script that
reports the pinned version for `version` and runs the embedded Terraform for anything else."""
from __future__ import annotations

import hashlib
import io
import shlex
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from runners.embedded_terraform import embedded_argv
from runners.terraform_install import platform_name, release_urls


def fake_binary(version: str, name: str = "Terraform") -> bytes:
    """A #!/bin/sh program: `version` prints "<name> v<version>", other commands go to the
    embedded Terraform."""
    embedded = " ".join(shlex.quote(a) for a in embedded_argv())
    return (f'#!/bin/sh\nif [ "$1" = version ]; then echo "{name} v{version}"; exit 0; fi\n'
            f'exec {embedded} "$@"\n').encode()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return buf.getvalue()


class Mirror:
    """Files by URL path; `requests` lists the paths asked for, `delay` slows every zip down."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.endswith(".zip") and mirror.delay:
                    time.sleep(mirror.delay)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, distribution: str, version: str, zip_bytes: bytes | None = None,
                checksum: str | None = None) -> None:
        """A release of this machine's platform: the fake binary zipped, unless zip_bytes is given;
        checksum overrides the SHA-256 written in SHA256SUMS."""
        binary = "tofu" if distribution == "opentofu" else "terraform"
        if zip_bytes is None:
            label = "OpenTofu" if distribution == "opentofu" else "Terraform"
            zip_bytes = make_zip({binary: fake_binary(version, label), "LICENSE.txt": b"license\n"})
        zip_url, sums_url, zip_name = release_urls(distribution, version, self.url, *platform_name())
        digest = checksum or hashlib.sha256(zip_bytes).hexdigest()
        other = "0" * 64 + f"  {zip_name.replace('.zip', '_other.zip')}\n"
        self.files[zip_url[len(self.url):]] = zip_bytes
        self.files[sums_url[len(self.url):]] = f"{other}{digest}  {zip_name}\n".encode()

    def zip_requests(self) -> list[str]:
        return [p for p in self.requests if p.endswith(".zip")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
