"""The data directory (`data_dir`): private to the user that runs Plankeeper.

It holds the embedded Redis (job logs = plan output, plans, the audit log), checkouts and
caches, so it is 0700 and what is written in it is 0600 (a umask of 077 for `serve`, its
workers and the embedded Redis).
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from bot.errors import SettingsError

log = logging.getLogger(__name__)
PRIVATE_UMASK = 0o077


def prepare(data_dir: Path) -> Path:
    """Create data_dir 0700, or make an existing one of ours 0700; set the process umask to 077
    (children inherit it). Raises SettingsError when data_dir is not a directory of this user."""
    os.umask(PRIVATE_UMASK)
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return private_dir(data_dir.resolve(), "data_dir")  # a data_dir given as a symlink is fine


def private_dir(path: Path, what: str) -> Path:
    """path as a directory, not a symlink, owned by this user with mode 0700 (created, or
    tightened when it is ours); raises SettingsError otherwise."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise SettingsError(f"{what}: {path} is not a directory")
    if info.st_uid != os.getuid():
        raise SettingsError(f"{what}: {path} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()}): "
                            "its contents could be read or replaced by that user; use a directory of your own")
    if stat.S_IMODE(info.st_mode) != 0o700:
        log.info("%s %s was mode %o: making it 0700 (private to this user)", what, path, stat.S_IMODE(info.st_mode))
        path.chmod(0o700)
    return path


def tighten_files(directory: Path) -> None:
    """Make the regular files directly in directory 0600 (files written before the umask was set)."""
    for entry in directory.iterdir():
        info = entry.lstat()
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
            entry.chmod(stat.S_IMODE(info.st_mode) & 0o700)
