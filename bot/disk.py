"""Disk space check before a job clones a repository into the data dir."""
from __future__ import annotations

import shutil
from pathlib import Path

from bot.errors import UserFacingError

MIN_FREE_BYTES = 1024 ** 3  # 1 GiB: a checkout, providers and a plan file must fit


def ensure_free_space(data_dir: str | Path, minimum: int = MIN_FREE_BYTES) -> int:
    """Return the free bytes of the file system holding data_dir; raise UserFacingError when
    fewer than `minimum` are free (nothing is cloned, the pull request is told why)."""
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if free < minimum:
        raise UserFacingError(
            f"The server has {_size(free)} free in its data directory and needs at least {_size(minimum)} to "
            "check out and plan a repository, so nothing was run. A server administrator must free disk space "
            "(old work dirs, the git cache, the plugin cache under `data_dir`); then comment the command again.",
            title="Not enough disk space",
        )
    return free


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"
