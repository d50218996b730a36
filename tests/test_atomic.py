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
