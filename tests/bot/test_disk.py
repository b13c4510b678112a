"""bot.disk: the free space check made before every checkout."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot import disk
from bot.errors import UserFacingError


def test_enough_space_returns_the_free_bytes(tmp_path: Path) -> None:
    assert disk.ensure_free_space(tmp_path / "data", minimum=1) > 0
    assert (tmp_path / "data").is_dir()


def test_too_little_space_refuses_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UserFacingError) as caught:
        disk.ensure_free_space(tmp_path, minimum=10 * 1024 ** 5)  # 10 PiB: no test machine has it
    assert caught.value.title == "Not enough disk space"
    assert "needs at least 10240.0 TiB" in caught.value.message and "free disk space" in caught.value.message


def test_the_default_threshold_is_one_gib() -> None:
    assert disk.MIN_FREE_BYTES == 1024 ** 3
