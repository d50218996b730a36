"""The workspace picker's resolver: only folders inside the allowed roots, whatever the user types."""

import os
from pathlib import Path

import pytest

from medvl.apps.roots import app_roots, default_workspace, find_workspaces, is_workspace, resolve_in_roots
from medvl.errors import InputError


@pytest.fixture
def tree(tmp_path: Path):
    root = tmp_path / "root"
    ws = root / "ws1"
    for sub in ("slides", "models"):
        (ws / sub).mkdir(parents=True)
    (root / "notes").mkdir()
    outside = tmp_path / "outside"
    (outside / "slides").mkdir(parents=True)
    (outside / "models").mkdir()
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    (root / "link_in").symlink_to(ws, target_is_directory=True)
    return root.resolve(), ws.resolve(), outside.resolve()


def test_inside_paths_resolve(tree):
    root, ws, _ = tree
    assert resolve_in_roots(str(ws), [root]) == ws
    assert resolve_in_roots("ws1", [root]) == ws  # relative to the root
    assert resolve_in_roots("link_in", [root]) == ws  # a link that stays inside is fine


@pytest.mark.parametrize("typed", ["../outside", "ws1/../../outside", "ws1/.."])
def test_dot_dot_is_refused(tree, typed):
    root, _, _ = tree
    with pytest.raises(InputError, match=r"'\.\.' is not allowed"):
        resolve_in_roots(typed, [root])


def test_absolute_path_outside_is_refused(tree):
    root, _, outside = tree
    with pytest.raises(InputError, match="outside the allowed workspace roots"):
        resolve_in_roots(str(outside), [root])
    with pytest.raises(InputError, match="outside"):
        resolve_in_roots("/", [root])


def test_symlink_pointing_out_is_refused(tree):
    root, _, _ = tree
    with pytest.raises(InputError, match="outside"):
        resolve_in_roots("link_out", [root])
    with pytest.raises(InputError, match="outside"):
        resolve_in_roots(str(root / "link_out"), [root])


def test_missing_folder_and_no_roots(tree):
    root, _, _ = tree
    with pytest.raises(InputError, match="no such workspace"):
        resolve_in_roots("nope", [root])
    with pytest.raises(InputError, match="no workspace roots"):
        resolve_in_roots("ws1", [])
    with pytest.raises(InputError, match="no workspace path"):
        resolve_in_roots("  ", [root])


def test_picker_offers_only_workspaces_inside_roots(tree):
    root, ws, outside = tree
    found = find_workspaces([root])
    assert found == [ws]  # link_in resolves to ws (listed once), link_out is never followed, notes is no workspace
    assert is_workspace(outside) and outside not in found


def test_roots_from_environment(tree, tmp_path):
    root, ws, outside = tree
    env = {"MEDVL_APP_ROOTS": os.pathsep.join([str(root), str(tmp_path / "absent")]), "MEDVL_WORKSPACE": str(ws)}
    assert app_roots(env) == [root]  # missing roots are dropped
    assert default_workspace([root], env) == ws
    # a MEDVL_WORKSPACE outside the roots is not used: the first workspace inside is offered instead
    assert default_workspace([root], {"MEDVL_WORKSPACE": str(outside)}) == ws
    assert app_roots({"MEDVL_WORKSPACE": str(ws)}) == [ws]
    assert app_roots({}) == []
