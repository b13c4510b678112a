"""Terraform and OpenTofu releases installed on first use, checksum-verified, cached.

`install` fetches `<base>/terraform/{v}/terraform_{v}_{os}_{arch}.zip` (OpenTofu:
`<base>/v{v}/tofu_{v}_{os}_{arch}.zip`), checks its SHA-256 against the release's SHA256SUMS and
puts the one binary of the zip in `<cache>/<distribution>/<version>/`. Every job shares that
directory: a lock file there (fcntl.flock) makes concurrent jobs wanting the same version
download it once, and the binary is written to a temporary directory next to it and renamed
into place, so no job ever sees half a binary. No shell is run, and of the zip only the binary
is read: a member with an absolute path or `..` refuses the whole archive.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import requests

from runners.terraform_binaries import MissingBinary

TERRAFORM = "terraform"
OPENTOFU = "opentofu"
BINARY_NAMES = {TERRAFORM: "terraform", OPENTOFU: "tofu"}
LOCK_FILE = ".lock"
TIMEOUT = (15.0, 120.0)  # connect, read (seconds)
MAX_ZIP_BYTES = 1 << 30
CHUNK = 1 << 20

_EXACT = re.compile(r"^\s*=?\s*v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)\s*$")
_REQUIRED = re.compile(r'\brequired_version\s*=\s*"([^"]*)"')
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "i386": "386", "i686": "386", "armv7l": "arm", "armv6l": "arm"}


class InstallError(MissingBinary):
    """A release could not be downloaded, verified or installed; the message says which and why."""


def exact_version(text: str | None) -> str | None:
    """"1.2.3", "= 1.2.3" or "v1.2.3" -> "1.2.3"; None for a constraint such as "~> 1.5"."""
    match = _EXACT.match(text or "")
    return match.group(1) if match else None


def required_version(project_dir: Path) -> str | None:
    """The exact version the root module's `required_version` pins ("1.2.3", "= 1.2.3"), or None
    when there is none, it is a constraint, or the .tf files disagree."""
    found: set[str] = set()
    try:
        files = sorted([*Path(project_dir).glob("*.tf"), *Path(project_dir).glob("*.tofu")])
    except OSError:
        return None
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)  # comments: block, then whole lines
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("#", "//")))
        for constraint in _REQUIRED.findall(text):
            version = exact_version(constraint)
            if version is None:
                return None
            found.add(version)
    return found.pop() if len(found) == 1 else None


def platform_name() -> tuple[str, str]:
    """(os, arch) as release file names spell them, e.g. ("linux", "amd64")."""
    machine = platform.machine().lower()
    return platform.system().lower(), _ARCH.get(machine, machine)


def release_urls(distribution: str, version: str, base_url: str, os_name: str, arch: str) -> tuple[str, str, str]:
    """(zip URL, SHA256SUMS URL, zip file name) of a release in the official layout."""
    base = base_url.rstrip("/")
    if distribution == OPENTOFU:
        folder, stem = f"{base}/v{version}", f"tofu_{version}"
    else:
        folder, stem = f"{base}/terraform/{version}", f"terraform_{version}"
    name = f"{stem}_{os_name}_{arch}.zip"
    return f"{folder}/{name}", f"{folder}/{stem}_SHA256SUMS", name


def installed_path(cache_root: Path, distribution: str, version: str) -> Path:
    """Where install puts (or has put) the binary of a version."""
    return Path(cache_root) / distribution / version / BINARY_NAMES[distribution]


def install(distribution: str, version: str, cache_root: Path, base_url: str,
            session: requests.Session | None = None, platform_: tuple[str, str] | None = None) -> Path:
    """The path of the binary of this exact version, downloaded and verified on first use.

    Raises InstallError (a MissingBinary) when the release cannot be fetched, its checksum does
    not match, or its zip is not the expected one.
    """
    if distribution not in BINARY_NAMES:
        raise InstallError(f"unknown distribution {distribution!r}")
    if exact_version(version) != version:
        raise InstallError(f"{version!r} is not an exact version (such as 1.6.2): only exact versions are downloaded")
    binary = installed_path(cache_root, distribution, version)
    if binary.is_file():
        return binary
    folder = binary.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed; another job waits here
        if binary.is_file():  # installed by the job that held the lock
            return binary
        _download(distribution, version, binary, base_url, session or requests.Session(),
                  platform_ or platform_name())
    return binary


def _download(distribution: str, version: str, binary: Path, base_url: str, session: requests.Session,
              plat: tuple[str, str]) -> None:
    zip_url, sums_url, zip_name = release_urls(distribution, version, base_url, *plat)
    label = f"{distribution} {version}"
    sums = _get(session, sums_url, label).text
    expected = _checksum_of(sums, zip_name)
    if expected is None:
        raise InstallError(f"{label}: {sums_url} lists no checksum for {zip_name}")
    tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=binary.parent))
    try:
        archive = tmp / zip_name
        digest = hashlib.sha256()
        size = 0
        with _get(session, zip_url, label, stream=True) as response, open(archive, "wb") as out:
            for chunk in response.iter_content(CHUNK):
                size += len(chunk)
                if size > MAX_ZIP_BYTES:
                    raise InstallError(f"{label}: {zip_url} is larger than {MAX_ZIP_BYTES} bytes")
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            raise InstallError(f"{label}: checksum mismatch for {zip_url}: SHA256SUMS says {expected}, "
                               f"the download is {digest.hexdigest()}; nothing was installed")
        staged = tmp / binary.name
        _extract(archive, binary.name, staged, label)
        os.chmod(staged, 0o755)
        os.replace(staged, binary)
    except requests.RequestException as exc:
        raise InstallError(f"{label}: download of {zip_url} failed: {exc}") from exc
    except OSError as exc:
        raise InstallError(f"{label}: could not install into {binary.parent}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _get(session: requests.Session, url: str, label: str, stream: bool = False) -> requests.Response:
    try:
        response = session.get(url, timeout=TIMEOUT, stream=stream)
    except requests.RequestException as exc:
        raise InstallError(f"{label}: download of {url} failed: {exc}") from exc
    if response.status_code != 200:
        response.close()
        hint = " (no such release?)" if response.status_code == 404 else ""
        raise InstallError(f"{label}: download of {url} failed: HTTP {response.status_code}{hint}")
    return response


def _checksum_of(sums: str, name: str) -> str | None:
    for line in sums.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            return parts[0].lower()
    return None


def _extract(archive: Path, name: str, target: Path, label: str) -> None:
    """Copy the member `name` of the zip to target; refuse a zip with an unsafe member name."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                parts = info.filename.replace("\\", "/").split("/")
                if info.filename.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", info.filename):
                    raise InstallError(f"{label}: refused the archive: member {info.filename!r} leaves its directory")
            wanted = [info for info in members if info.filename == name and not info.is_dir()]
            if len(wanted) != 1:
                raise InstallError(f"{label}: the archive holds no single `{name}` binary")
            with zf.open(wanted[0]) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
    except zipfile.BadZipFile as exc:
        raise InstallError(f"{label}: the download is not a valid zip: {exc}") from exc
