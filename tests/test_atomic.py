import pytest

from medvl.atomic import TMP_MARKER, atomic_path, atomic_write_json, sweep_temporaries


def test_atomic_write_replaces_and_failure_leaves_old(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert target.read_text().strip().startswith("{")
    assert not list(tmp_path.glob(f"*{TMP_MARKER}"))


def test_sweep_temporaries(tmp_path):
    (tmp_path / f".x.h5.abc{TMP_MARKER}").write_text("half")
    assert len(sweep_temporaries(tmp_path)) == 1


def test_outputs_respect_the_umask(tmp_path):
    """Before: every file medvl wrote was 0600 (mkstemp's mode), whatever the umask."""
    import os
    import stat

    from medvl.atomic import atomic_dir, atomic_write_json

    old = os.umask(0o027)
    try:
        path = atomic_write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750
    os.umask(0o002)
    try:
        assert stat.S_IMODE(atomic_write_json(tmp_path / "b.json", {}).stat().st_mode) == 0o664
    finally:
        os.umask(old)
