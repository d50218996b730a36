"""Demo step ``ct``: inspect the example CT, preprocess it into the cache, crop around the kidneys, embed it."""

from __future__ import annotations

from typing import Any

from medvl.demo.layout import CT_LABELS_FILE, CT_SMALL_FILE, VOLUME_TOWER
from medvl.demo.steps import demo_step
from medvl.workspace import Workspace


@demo_step("ct", "CT: info, preprocessing into the cache, kidney-centred crop, tiny 3-D embedding", needs=("data",))
def step_ct(ws: Workspace) -> dict[str, Any]:
    import shutil

    from medvl.io.volume import load_volume, volume_info
    from medvl.radiology.cache import VolumeCache
    from medvl.radiology.embed import embed_cases, load_volume_encoder
    from medvl.radiology.preprocess import CTCase, preprocess_case
    from medvl.radiology.transforms import CTPreprocessConfig, OrganCropConfig
    from medvl.resources import bundled

    image, labels = ws.ct / CT_SMALL_FILE, ws.ct / CT_LABELS_FILE
    for name, dst in (("ct_small", image), ("ct_labels", labels)):  # the data step copies them; be self-sufficient
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundled(name), dst)
    info = volume_info(load_volume(image))
    whole = CTPreprocessConfig(spacing=(3.0, 3.0, 3.0), spatial_size=(128, 128, 32))
    kidneys = CTPreprocessConfig(spacing=(1.5, 1.5, 3.0), spatial_size=(128, 128, 32),
                                 organ_crop=OrganCropConfig(labels=["kidneys"], box_mm=(192.0, 192.0, 96.0)),
                                 foreground_crop=False)
    full = preprocess_case(CTCase(image, "example_ct_sm"), whole, VolumeCache(ws.volumes, whole))
    case = CTCase(image, "example_ct_sm", labels=labels)
    crop = preprocess_case(case, kidneys, VolumeCache(ws.volumes, kidneys))
    out = ws.volumes / "demo_ct_embeddings.npz"
    tower = load_volume_encoder(VOLUME_TOWER, device="cpu", random_weights=True)  # a tiny tower: random, on purpose
    summary = embed_cases([case], kidneys, tower, out, VolumeCache(ws.volumes, kidneys))
    return {
        "shape": info["shape"],
        "spacing_mm": info["spacing_mm"],
        "orientation": info["orientation"],
        "hu_range": [info["hu_min"], info["hu_max"]],
        "preprocessed_shape": list(full.array.shape),
        "kidney_crop_shape": list(crop.array.shape),
        "kidney_crop_cached": crop.hit,
        "embedding": str(out.relative_to(ws.root)),
        "embed_dim": summary["embed_dim"],
        "tower": VOLUME_TOWER,
        "random_weights": True,
    }
