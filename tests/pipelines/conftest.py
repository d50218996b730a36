"""A 6-case cohort (2 slides, 4 CT) over the bundled files, and helpers to compare two runs' outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medvl.resources import bundled, config_dir

DEMO = config_dir() / "pipelines" / "demo-cohort.yaml"


def write_cohort(folder: Path, rows: list[tuple] | None = None) -> Path:
    """Manifest + pipeline file in ``folder``: the demo pipeline over 6 cases reusing the bundled files."""
    folder.mkdir(parents=True, exist_ok=True)
    slide, ct, ct_small = bundled("slide"), bundled("ct"), bundled("ct_small")
    rows = rows or [
        ("ct-a", "ct", ct_small, 8.0, 1, 70), ("slide-a", "slide", slide, 14.0, 1, 61),
        ("ct-b", "ct", ct, 30.5, 0, 55), ("slide-b", "slide", slide, 22.0, 0, 48),
        ("ct-c", "ct", ct_small, 12.0, 1, 66), ("ct-d", "ct", ct, 40.0, 0, 52),
    ]
    lines = ["case_id,modality,path,report,time,event,split,age,site"]
    lines += [f"{cid},{mod},{path},a report,{t},{e},train,{age},X{i}" for i, (cid, mod, path, t, e, age)
              in enumerate(rows)]
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    cfg = yaml.safe_load(DEMO.read_text())
    cfg.update(manifest=str(manifest), name="six")
    pipeline = folder / "six.yaml"
    pipeline.write_text(yaml.safe_dump(cfg))
    return pipeline


def run_outputs(run_dir: Path) -> dict[str, np.ndarray]:
    """The numbers a user reads from a run: tile features, CT embeddings, zero-shot probabilities, survival risk."""
    from medvl.io.features import read_features

    out: dict[str, np.ndarray] = {}
    for h5 in sorted((run_dir / "features").glob("*.h5")):
        feats, coords, _ = read_features(h5)
        out[f"features/{h5.stem}"] = np.asarray(feats)
        out[f"coords/{h5.stem}"] = np.asarray(coords)
    for npz in sorted((run_dir / "ct").glob("*.npz")):
        with np.load(npz, allow_pickle=False) as z:
            out[f"ct/{npz.name}"] = z["embeddings"]
    for js in sorted((run_dir / "zeroshot").glob("*.json")):
        top = json.loads(js.read_text())["result"]["top"]
        out[f"zeroshot/{js.stem}"] = np.array([t["probability"] for t in sorted(top, key=lambda t: t["id"])])
    pred = run_dir / "survival" / "predictions.csv"
    if pred.is_file():
        import pandas as pd

        out["survival/risk"] = pd.read_csv(pred).sort_values("id")["risk"].to_numpy()
    return out


def assert_same_outputs(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float = 1e-4) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        np.testing.assert_allclose(a[key], b[key], atol=atol, rtol=1e-4, err_msg=key)


@pytest.fixture(scope="session")
def cohort_pipeline(tmp_path_factory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("cohort"))
