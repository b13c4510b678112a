"""runners/terraform_install.py against a local release mirror (tests/runners/release_mirror.py)."""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from runners.embedded_terraform import embedded_argv
from runners.process import run
from runners.terraform import TerraformRunner
from runners.terraform_binaries import MissingBinary
from runners.terraform_install import (
    InstallError,
    exact_version,
    install,
    installed_path,
    platform_name,
    release_urls,
    required_version,
)
from tests.runners.release_mirror import Mirror, fake_binary, make_zip


@pytest.fixture
def mirror():
    served = Mirror()
    yield served
    served.close()


def test_downloads_verifies_and_caches_a_release(mirror: Mirror, tmp_path: Path, tf_env: dict[str, str]) -> None:
    mirror.publish("terraform", "1.2.3")
    cache = tmp_path / "terraform-versions"

    binary = install("terraform", "1.2.3", cache, mirror.url)

    assert binary == cache / "terraform" / "1.2.3" / "terraform" == installed_path(cache, "terraform", "1.2.3")
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert sorted(p.name for p in binary.parent.iterdir()) == [".lock", "terraform"]  # no temp dir, no zip left
    os_name, arch = platform_name()
    assert mirror.requests == ["/terraform/1.2.3/terraform_1.2.3_SHA256SUMS",
                               f"/terraform/1.2.3/terraform_1.2.3_{os_name}_{arch}.zip"]
    assert TerraformRunner([str(binary)], tf_env, timeout=60).version() == "Terraform v1.2.3"

    mirror.requests.clear()
    assert install("terraform", "1.2.3", cache, mirror.url) == binary
    assert mirror.requests == []  # the second use is served by the cache


def test_opentofu_layout(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish("opentofu", "1.8.1")
    binary = install("opentofu", "1.8.1", tmp_path, mirror.url + "/")
    assert binary == tmp_path / "opentofu" / "1.8.1" / "tofu"
    assert mirror.requests[0] == "/v1.8.1/tofu_1.8.1_SHA256SUMS"
    assert mirror.requests[1].startswith("/v1.8.1/tofu_1.8.1_") and mirror.requests[1].endswith(".zip")
    assert run([str(binary), "version"], tmp_path, {"PATH": "/usr/bin:/bin"}, 60).output.strip() == "OpenTofu v1.8.1"


def test_release_urls_follow_the_official_layout() -> None:
    assert release_urls("terraform", "1.5.7", "https://releases.hashicorp.com", "linux", "amd64") == (
        "https://releases.hashicorp.com/terraform/1.5.7/terraform_1.5.7_linux_amd64.zip",
        "https://releases.hashicorp.com/terraform/1.5.7/terraform_1.5.7_SHA256SUMS",
        "terraform_1.5.7_linux_amd64.zip")
    base = "https://github.com/opentofu/opentofu/releases/download"
    assert release_urls("opentofu", "1.8.1", base, "darwin", "arm64")[:2] == (
        f"{base}/v1.8.1/tofu_1.8.1_darwin_arm64.zip", f"{base}/v1.8.1/tofu_1.8.1_SHA256SUMS")


def test_checksum_mismatch_is_refused_and_nothing_installed(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish("terraform", "1.2.3", checksum="ab" * 32)
    with pytest.raises(InstallError, match=r"terraform 1\.2\.3: checksum mismatch .*SHA256SUMS says abab") as err:
        install("terraform", "1.2.3", tmp_path, mirror.url)
    assert isinstance(err.value, MissingBinary)
    assert sorted(p.name for p in (tmp_path / "terraform" / "1.2.3").iterdir()) == [".lock"]
    # a fixed mirror is used on the next attempt
    mirror.publish("terraform", "1.2.3")
    assert install("terraform", "1.2.3", tmp_path, mirror.url).is_file()


@pytest.mark.parametrize("member", ["../evil", "/etc/evil", "bin/../../evil"])
def test_a_zip_with_a_traversal_member_is_refused(mirror: Mirror, tmp_path: Path, member: str) -> None:
    mirror.publish("terraform", "1.2.3", make_zip({"terraform": fake_binary("1.2.3"), member: b"x"}))
    with pytest.raises(InstallError, match="refused the archive: member .* leaves its directory"):
        install("terraform", "1.2.3", tmp_path / "cache", mirror.url)
    assert not (tmp_path / "evil").exists() and not installed_path(tmp_path / "cache", "terraform", "1.2.3").exists()


def test_a_zip_without_the_binary_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish("terraform", "1.2.3", make_zip({"bin/terraform": b"#!/bin/sh\n"}))
    with pytest.raises(InstallError, match="holds no single `terraform` binary"):
        install("terraform", "1.2.3", tmp_path, mirror.url)


def test_a_missing_release_and_an_unreachable_mirror_say_so(mirror: Mirror, tmp_path: Path) -> None:
    with pytest.raises(InstallError, match=r"terraform 9\.9\.9: download of .*SHA256SUMS failed: HTTP 404"):
        install("terraform", "9.9.9", tmp_path, mirror.url)
    with pytest.raises(InstallError, match=r"download of http://127\.0\.0\.1:9/.* failed"):
        install("terraform", "1.2.3", tmp_path, "http://127.0.0.1:9")
    with pytest.raises(InstallError, match="not an exact version"):
        install("terraform", "../1.2.3", tmp_path, mirror.url)


def test_two_jobs_wanting_one_version_download_it_once(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish("terraform", "1.2.3")
    mirror.delay = 0.5  # both jobs are in install while the first downloads
    results: list[object] = []
    barrier = threading.Barrier(3)

    def job() -> None:
        barrier.wait()
        try:
            results.append(install("terraform", "1.2.3", tmp_path, mirror.url))
        except InstallError as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [installed_path(tmp_path, "terraform", "1.2.3")] * 3
    assert len(mirror.zip_requests()) == 1


def test_two_processes_wanting_one_version_download_it_once(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish("terraform", "1.2.3")
    mirror.delay = 0.5
    code = ("import sys; from runners.terraform_install import install; "
            "print(install('terraform', '1.2.3', sys.argv[1], sys.argv[2]))")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path.cwd()))}
    procs = [subprocess.Popen([embedded_argv()[0], "-c", code, str(tmp_path), mirror.url], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == [str(installed_path(tmp_path, "terraform", "1.2.3"))] * 2
    assert len(mirror.zip_requests()) == 1


def test_exact_required_version_is_read_from_the_root_module(tmp_path: Path) -> None:
    def root(name: str, **files: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for file, text in files.items():
            (d / file).write_text(text)
        return d

    assert required_version(root("a", **{"versions.tf": 'terraform {\n  required_version = "1.2.3"\n}\n'})) == "1.2.3"
    assert required_version(root("b", **{"main.tf": 'terraform {\n  required_version = "= 1.5.7"\n}\n'})) == "1.5.7"
    assert required_version(root("c", **{"main.tf": 'terraform {\n  required_version = "~> 1.5"\n}\n'})) is None
    assert required_version(root("d", **{"main.tf": 'resource "null_resource" "x" {}\n'})) is None
    assert required_version(root("e", **{"main.tf": '# required_version = "1.0.0"\n'
                                                    'terraform {\n  required_version = ">= 1.0"\n}\n'})) is None
    assert required_version(root("f", **{"a.tf": 'terraform { required_version = "1.2.3" }\n',
                                         "b.tf": 'terraform { required_version = "1.2.4" }\n'})) is None
    assert required_version(tmp_path / "missing") is None


def test_exact_version() -> None:
    assert [exact_version(v) for v in ("1.2.3", "= 1.2.3", "v1.6.0", "1.7.0-beta1", "~> 1.2", "1.2", None)] == [
        "1.2.3", "1.2.3", "1.6.0", "1.7.0-beta1", None, None, None]


def test_sums_for_another_file_only_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish("terraform", "1.2.3")
    sums = next(p for p in mirror.files if p.endswith("SHA256SUMS"))
    mirror.files[sums] = hashlib.sha256(b"x").hexdigest().encode() + b"  terraform_1.2.3_other.zip\n"
    with pytest.raises(InstallError, match="lists no checksum for terraform_1.2.3_"):
        install("terraform", "1.2.3", tmp_path, mirror.url)
