"""runners/workspace.py: isolated work dirs and path resolution inside them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from runners.workspace import PathEscape, check_symlinks, create_workspace, sanitize_name


def test_create_and_cleanup(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path, "job/../1 2")
    assert ws.root.is_dir() and ws.home.is_dir() and ws.tmp.is_dir()
    assert ws.root == tmp_path.resolve() / "job-..-1-2"
    assert ws.home.parent == ws.root and ws.tmp.parent == ws.root
    (ws.root / "f").write_text("x")
    again = create_workspace(tmp_path, "job/../1 2")  # a retry starts fresh
    assert not (again.root / "f").exists()
    again.cleanup()
    assert not again.root.exists() and not again.home.exists()
    assert list(tmp_path.iterdir()) == []


def test_sanitize_name_never_escapes() -> None:
    assert sanitize_name("..") == "job"
    assert sanitize_name("../../etc") == "etc"
    assert "/" not in sanitize_name("a/b")


def test_resolve_inside(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path, "j")
    assert ws.resolve("infra/app") == ws.root / "infra" / "app"
    assert ws.resolve(".") == ws.root
    assert ws.resolve("") == ws.root
    assert ws.resolve("../b", base="a") == ws.root / "b"
    assert ws.resolve("a/./b/../c") == ws.root / "a" / "c"


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc", "/etc/passwd", ".."])
def test_resolve_refuses_escapes(tmp_path: Path, rel: str) -> None:
    ws = create_workspace(tmp_path, "j")
    with pytest.raises(PathEscape, match="repository"):
        ws.resolve(rel)


def test_resolve_refuses_base_escape(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path, "j")
    with pytest.raises(PathEscape):
        ws.resolve("x", base="../..")
    with pytest.raises(PathEscape):
        ws.resolve("x", base="/tmp")


def test_resolve_refuses_symlink_out_but_allows_symlink_in(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path, "j")
    os.symlink("/etc", ws.root / "out")
    (ws.root / "real").mkdir()
    os.symlink("real", ws.root / "alias")
    with pytest.raises(PathEscape, match="symlink"):
        ws.resolve("out")
    with pytest.raises(PathEscape):
        ws.resolve("out/passwd")
    assert ws.resolve("alias") == ws.root / "alias"


def test_check_symlinks_names_the_offender(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "a" / "b").mkdir(parents=True)
    os.symlink("../b", root / "a" / "inside")
    check_symlinks(root)  # links that stay inside are fine
    os.symlink("../../../secret", root / "a" / "b" / "leak")
    with pytest.raises(PathEscape, match="a/b/leak"):
        check_symlinks(root)


def test_check_symlinks_names_the_first_offender_in_path_order(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for rel in ("z", "a-b", "a/c", "a/b/d"):
        (root / rel).mkdir(parents=True)
    for rel in ("z/leak", "a-b/leak", "a/c/leak", "a/b/d/leak", "a/b/zz"):
        os.symlink("/etc", root / rel)
    with pytest.raises(PathEscape, match="^symlink 'a/b/d/leak' "):  # "a/…" before "a-b", depth first
        check_symlinks(root)


def test_check_symlinks_does_not_look_into_a_kept_terraform_dir(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "app" / ".terraform" / "providers").mkdir(parents=True)
    os.symlink("/usr/share/terraform/mirror", root / "app" / ".terraform" / "providers" / "p")
    check_symlinks(root, skip=["app/.terraform"])  # an init of ours linked a provider mirror
    with pytest.raises(PathEscape, match="providers/p"):
        check_symlinks(root)
    os.symlink("/etc", root / "other")
    with pytest.raises(PathEscape, match="other"):
        check_symlinks(root, skip=["app/.terraform"])
    (root / "other").unlink()
    (root / "b").mkdir()
    os.symlink("/etc", root / "b" / ".terraform")
    with pytest.raises(PathEscape, match="b/.terraform"):  # skipped dirs are still checked themselves
        check_symlinks(root, skip=["app/.terraform", "b/.terraform"])
