"""The draft report panel of the diagnosis page and the DICOM / QuPath files its download buttons hand out.

The draft lists the top findings with their codes (:func:`medvl.tasks.interop.codes.concept_code`), probabilities,
the decision or abstention, and the evidence regions (for a slide, the tiles that score highest for the finding,
in level-0 pixels and µm). It is labelled as research output. Downloads are built in memory from the same library
functions as ``medvl zeroshot --dicom-sr`` and ``medvl slide qupath``; a class without a code gives a message
instead of a file.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from medvl.tasks.interop.codes import concept_code

__all__ = ["DRAFT_LABEL", "ct_seg_zip", "draft_report", "evidence_tiles", "qupath_bytes", "report_text",
           "slide_seg_zip", "sr_bytes"]

DRAFT_LABEL = "DRAFT: research output of medvl, not for clinical use. Check every finding before use."


def evidence_tiles(classifier: Any, tiles: Any, class_id: str, k: int = 3,
                   mpp: float | None = None) -> list[dict[str, Any]]:
    """The ``k`` tiles of a slide that score highest for ``class_id``: level-0 box, µm box when mpp is known."""
    if tiles is None or class_id not in classifier.class_ids or not len(tiles.coords):
        return []
    proba = classifier.predict_proba(tiles.embeddings)[:, classifier.class_ids.index(class_id)]
    out = []
    for i in np.argsort(-proba)[:k]:
        x, y = (int(v) for v in tiles.coords[i])
        size = int(round(tiles.patch_size_level0))
        row: dict[str, Any] = {"tile": int(i), "x": x, "y": y, "size": size, "probability": float(proba[i])}
        if mpp:
            row["um"] = [round(x * mpp, 1), round(y * mpp, 1), round(size * mpp, 1)]
        out.append(row)
    return out


def draft_report(record: dict[str, Any], graph: Any, evidence: list[dict[str, Any]] | None = None,
                 top: int = 3) -> dict[str, Any]:
    """The draft as data: findings (name, id, code, probability), decision, abstention, evidence, notes."""
    findings = []
    for t in record["top"][:top]:
        code = concept_code(graph, t["id"])
        findings.append({"name": t["name"], "id": t["id"], "probability": float(t["probability"]),
                         "code": None if code is None else f"{code.scheme} {code.value}",
                         "standard_code": bool(code and code.standard)})
    notes = [DRAFT_LABEL]
    if any(f["code"] is None for f in findings):
        notes.append("Free-text classes have no code in any ontology.")
    if any(f["code"] and not f["standard_code"] for f in findings):
        notes.append("Codes starting with 99 are ontology ids under a private scheme (no SNOMED CT or ICD-10 code "
                     "is known for them).")
    return {"findings": findings, "abstained": bool(record["abstained"]),
            "decision": None if record["abstained"] else record["name"], "backed_off": bool(record["backed_off"]),
            "evidence": evidence or [], "notes": notes}


def report_text(draft: dict[str, Any]) -> str:
    """The draft as plain text for the clinician to copy."""
    lines = [draft["notes"][0], ""]
    if draft["abstained"]:
        lines.append("Decision: abstained (no finding is confident enough).")
    else:
        lines.append(f"Decision: {draft['decision']}" + (" (backed off to a parent)" if draft["backed_off"] else ""))
    lines.append("Findings:")
    for i, f in enumerate(draft["findings"], 1):
        lines.append(f"  {i}. {f['name']} [{f['id']}; {f['code'] or 'no code'}] probability {f['probability']:.2f}")
    if draft["evidence"]:
        lines.append("Evidence regions (level-0 pixels x, y, side):")
        lines += [f"  tile {e['tile']}: {e['x']}, {e['y']}, {e['size']} px"
                  + (f" ({e['um'][0]}, {e['um'][1]} µm, side {e['um'][2]} µm)" if "um" in e else "")
                  + f", p={e['probability']:.2f}" for e in draft["evidence"]]
    lines += ["", *draft["notes"][1:]]
    return "\n".join(lines).rstrip() + "\n"


def sr_bytes(record: dict[str, Any], graph: Any, model_source: str, case_key: str, modality: str) -> bytes:
    """The DICOM SR of a decision record, as file bytes.

    Raises:
        InputError: a class without a code (nothing is built).
    """
    from medvl.tasks.interop.sr import ModelInfo, build_zeroshot_sr

    sr, _ = build_zeroshot_sr(record, graph, ModelInfo.of(model_source), case_key, modality)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _dcm(ds: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def slide_seg_zip(slide: Any, classifier: Any, tiles: Any, class_ids: list[str], graph: Any,
                  threshold: float = 0.5) -> bytes:
    """A zip of the slide's DICOM SEG (tissue, and each class's tiles at or above ``threshold``) and its source.

    Raises:
        InputError: a class without a code.
    """
    from medvl.pathology.tissue import detect_tissue
    from medvl.tasks.interop.codes import code_concepts
    from medvl.tasks.interop.seg import ClassMask, rasterise_tiles, slide_segmentation

    codes = code_concepts(graph, [(c, c) for c in class_ids])
    mask, thumb = detect_tissue(slide)
    proba = classifier.predict_proba(tiles.embeddings)
    classes = [ClassMask(codes[c], rasterise_tiles(tiles.coords, tiles.patch_size_level0,
                                                   proba[:, classifier.class_ids.index(c)] >= threshold,
                                                   mask.mask.shape, mask.scale), threshold) for c in class_ids]
    pixel_um = None if slide.mpp is None else float(mask.scale[0] * slide.mpp)
    source, seg = slide_segmentation(thumb, mask.mask, slide.slide_id, classes, pixel_um=pixel_um)
    return _zip({"seg.dcm": _dcm(seg), "seg_source.dcm": _dcm(source)})


def qupath_bytes(classifier: Any, tiles: Any) -> bytes:
    """The slide's tile probabilities (every class of the classifier) as QuPath detections (GeoJSON bytes)."""
    import json

    from medvl.pathology.qupath import detections_geojson

    proba = classifier.predict_proba(tiles.embeddings)
    data = detections_geojson(tiles.coords, tiles.patch_size_level0, proba, list(classifier.names))
    return (json.dumps(data) + "\n").encode()


def ct_seg_zip(source: str, config: Any, labels: str | None = None) -> bytes:
    """A zip of the DICOM SEG of the CT region the model sees (``config``'s chain) and its de-identified source
    series (:func:`medvl.tasks.interop.ctseg.write_ct_seg`)."""
    import tempfile
    from pathlib import Path

    from medvl.tasks.interop.ctseg import write_ct_seg

    with tempfile.TemporaryDirectory(prefix="medvl-ctseg-") as tmp:
        write_ct_seg(tmp, source, config, labels)
        files = sorted(p for p in Path(tmp).rglob("*.dcm"))
        return _zip({str(p.relative_to(tmp)): p.read_bytes() for p in files})
