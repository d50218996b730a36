"""CT volumes as bags of slice embeddings: the 2.5-D tower's per-slice features, one feature file per volume.

A preprocessed volume ``[1, D, H, W]`` goes through a 2.5-D tower (``slices2.5d``: a 2-D encoder over axial
slices); instead of pooling the slices, each slice's feature vector is kept and written, with the slice index as
its position, to ``<case_id>.h5`` in the layout of a slide's tile features (``coords`` ``(slice, 0)``,
``features [D, F]``). The ``bags`` training dataset reads these with ``pos_dim: 1``, so LV-MAE
(``objective: masked_embedding``) learns label-free volume embeddings exactly as it learns slide embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import ConfigError
from medvl.hashing import config_hash
from medvl.io.features import FeatureStore, TileTable
from medvl.radiology.transforms import CTPreprocessConfig

__all__ = ["load_slice_tower", "slice_bags", "slice_features"]


def load_slice_tower(name: str, device: str = "cpu", *, random_weights: bool = False):
    """A registered 2.5-D tower (fixed initialisation when it has no weights, as ``ct embed`` builds towers; such a
    tower is refused unless ``random_weights``)."""
    import torch

    from medvl.models import create_tower, get_tower_entry
    from medvl.models.volume import SliceTower
    from medvl.provenance import RANDOM_HINT
    from medvl.radiology.embed import TOWER_SEED

    if get_tower_entry(name).modality != "volume":
        raise ConfigError(f"tower '{name}' does not encode volumes")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TOWER_SEED)
        tower = create_tower(name)
    if not isinstance(tower, SliceTower):
        raise ConfigError(f"slice bags need a 2.5-D tower (slices2.5d, slices2.5d-tiny), not '{name}'")
    if getattr(tower, "random_weights", False) and not random_weights:
        raise ConfigError(f"volume tower '{name}' has no weights (a random initialisation): give a tower with "
                          f"weights, or {RANDOM_HINT}")
    return tower.to(device).eval()


def slice_features(array: np.ndarray, tower: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(features [D', F], coords [D', 2])`` of one preprocessed ``[1, D, H, W]`` volume (``D' = D / stride``)."""
    import torch

    device = next(tower.parameters()).device
    with torch.inference_mode():
        tokens = tower.encode_tokens(torch.as_tensor(array, dtype=torch.float32)[None].to(device))[0]
    feats = tokens.float().cpu().numpy()
    index = np.arange(len(feats)) * tower.config.slice_stride
    return feats, np.stack([index, np.zeros_like(index)], 1).astype(np.int64)


def slice_bags(cases: list[Any], config: CTPreprocessConfig, tower_name: str, out: str | Path, cache: Any = None,
               *, device: str = "cpu", skip_errors: bool = False, random_weights: bool = False,
               **options: Any) -> dict[str, Any]:
    """Preprocess ``cases`` and write one slice-feature file per case into ``out``; returns a summary.

    Without ``skip_errors`` the first failing case stops the batch (:class:`medvl.batch.BatchPolicy`); with it,
    failing cases are listed in ``failed``."""
    from medvl.radiology.preprocess import iter_preprocess

    out = Path(out)
    tower = load_slice_tower(tower_name, device, random_weights=random_weights)
    attrs = {"encoder": tower_name, "modality": "volume-slices", "slice_stride": tower.config.slice_stride,
             "ct_preprocess": config_hash(config.to_dict())}
    written, failed = [], []
    for result in iter_preprocess(cases, config, cache, skip_errors=skip_errors, **options):
        if result.error is not None:
            failed.append(result.record())
            continue
        feats, coords = slice_features(result.entry.array, tower)
        path = FeatureStore(out / f"{result.case.case_id}.h5").write(TileTable(coords, attrs, feats))
        written.append({"case_id": result.case.case_id, "slices": len(feats), "file": str(path)})
    return {"out": str(out), "written": len(written), "dim": int(tower.embed_dim), "cases": written,
            "failed": failed}
