"""Cohort manifests: valid CSV/Parquet, and every bad row reported in one error before work starts."""

from __future__ import annotations

import pandas as pd
import pytest

from medvl.errors import InputError
from medvl.io.manifest import read_manifest


def test_valid_csv_and_parquet(tmp_path, svs_path):
    (tmp_path / "a.svs").write_bytes(b"x")
    df = pd.DataFrame({"case_id": ["c1", "c2"], "modality": ["WSI", "ct"], "path": ["a.svs", str(svs_path)],
                       "split": ["train", "test"], "time": [1.5, None]})
    df.to_csv(tmp_path / "m.csv", index=False)
    df.to_parquet(tmp_path / "m.parquet")
    for name in ("m.csv", "m.parquet"):
        m = read_manifest(tmp_path / name)
        assert [r.modality for r in m] == ["slide", "ct"]
        assert m.rows[0].path == tmp_path / "a.svs"  # relative to the manifest's folder
        assert m.rows[0].get("split") == "train" and m.rows[1].get("time") is None
        assert [r.case_id for r in m.select("slide")] == ["c1"]


def test_every_bad_row_is_reported(tmp_path):
    (tmp_path / "ok.svs").write_bytes(b"x")
    pd.DataFrame({
        "case_id": ["c1", "", "c3", "c4", "c1"],
        "modality": ["slide", "slide", "mri", "slide", "slide"],
        "path": ["ok.svs", "ok.svs", "ok.svs", "gone.svs", "ok.svs"],
    }).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError) as err:
        read_manifest(tmp_path / "m.csv")
    msg = str(err.value)
    assert "m.csv" in msg and "4 bad row(s)" in msg
    for needle in ("row 2: empty 'case_id'", "row 3: unknown modality 'mri'", "row 4: path 'gone.svs' not found",
                   "row 5: duplicate of row 1"):
        assert needle in msg


def test_missing_columns_and_file(tmp_path):
    pd.DataFrame({"case_id": ["a"], "file": ["x"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match="missing required column.*modality, path"):
        read_manifest(tmp_path / "m.csv")
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
