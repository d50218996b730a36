"""Masks as DICOM Segmentation objects (highdicom): a slide's tissue mask and per-class heatmaps.

A SEG must reference the DICOM images it segments. A slide file that is not DICOM (SVS, tiled TIFF, ...) has none,
so medvl first encodes the pixels it segmented (the slide's thumbnail at the mask's resolution) as a de-identified
DICOM Secondary Capture image in slide coordinates, and the SEG references that image: the pair opens in any DICOM
tool, with the mask on the pixels it was computed from. Segment 1 is the tissue (SCT 85756007 "Tissue"); one
segment per heatmap class follows (its concept's code, :mod:`.codes`), tiles at or above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_path
from medvl.errors import InputError, require
from medvl.io.deid import Deidentifier
from medvl.pathology.regions import tile_scores_file
from medvl.tasks.interop.codes import ConceptCode
from medvl.tasks.interop.subject import MANUFACTURER, SOFTWARE, subject_dataset
from medvl.tasks.zeroshot.classifier import NORMAL_ID

__all__ = ["ClassMask", "SlideSegWriter", "rasterise_tiles", "slide_segmentation", "write_pair"]

_TISSUE = ("85756007", "SCT", "Tissue")
_ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")
_IMAGE_PROCESSING = ("110001", "DCM", "Image Processing")
_AI = ("123110", "DCM", "Artificial Intelligence")
#: slide backends that read DICOM WSI: their SEG references the WSI's own instances
DICOM_BACKENDS = frozenset({"wsidicom", "pydicom-frames"})


@dataclass
class ClassMask:
    """One class's thresholded heatmap on the mask grid."""

    code: ConceptCode
    mask: np.ndarray
    threshold: float


def rasterise_tiles(coords: np.ndarray, size_level0: float, keep: np.ndarray, shape: tuple[int, int],
                    scale: tuple[float, float]) -> np.ndarray:
    """A bool mask of ``shape`` covering the tiles where ``keep`` is true (level-0 boxes mapped by ``scale``)."""
    out = np.zeros(shape, dtype=bool)
    h, w = shape
    for (x, y) in np.asarray(coords, dtype=np.float64)[np.asarray(keep, bool)]:
        x0, y0 = int(np.floor(x / scale[0])), int(np.floor(y / scale[1]))
        x1, y1 = int(np.ceil((x + size_level0) / scale[0])), int(np.ceil((y + size_level0) / scale[1]))
        out[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    return out


def _segment(hd: Any, number: int, label: str, category: tuple[str, str, str], kind: Any, algorithm: Any) -> Any:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label[:64], segmented_property_category=hd.sr.CodedConcept(*category),
        segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)


def _source_image(hd: Any, thumb: np.ndarray, case_key: str) -> Any:
    """The thumbnail as a de-identified Secondary Capture image (the SEG's source)."""
    subject = subject_dataset(case_key, "SM")
    deid = Deidentifier()
    image = hd.sc.SCImage(
        pixel_array=np.ascontiguousarray(thumb, dtype=np.uint8), photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="SLIDE", study_instance_uid=subject.StudyInstanceUID,
        series_instance_uid=deid.remap_uid(f"medvl.slide-source.{case_key}"), series_number=901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, patient_id=subject.PatientID,
        patient_name="", patient_birth_date="", patient_sex="", accession_number="", study_id="", study_date="",
        study_time="", referring_physician_name="", container_identifier=subject.PatientID,
        specimen_descriptions=[hd.SpecimenDescription(specimen_id=subject.PatientID,
                                                      specimen_uid=deid.remap_uid(f"medvl.specimen.{case_key}"))])
    image.Modality = "SM"  # slide microscopy, captured by conversion (SC Equipment's conversion type stays DI)
    image.SeriesDescription = "medvl slide thumbnail (segmentation source)"
    image.PatientIdentityRemoved = "YES"
    image.DeidentificationMethod = subject.DeidentificationMethod
    return image


def segment_descriptions(classes: list[ClassMask], model: str = "medvl") -> list[Any]:
    """Segment 1 the tissue, then one per class (its concept's code, the model as its algorithm)."""
    hd = require("highdicom", "interop", "DICOM SEG output")
    tissue_algo = hd.AlgorithmIdentificationSequence(name="medvl tissue detection", version=SOFTWARE,
                                                     family=hd.sr.CodedConcept(*_IMAGE_PROCESSING))
    segments = [_segment(hd, 1, "tissue", _TISSUE, hd.sr.CodedConcept(*_TISSUE), tissue_algo)]
    class_algo = hd.AlgorithmIdentificationSequence(name=model[:64], version=SOFTWARE,
                                                    family=hd.sr.CodedConcept(*_AI))
    for i, c in enumerate(classes):
        segments.append(_segment(hd, i + 2, f"{c.code.meaning} >= {c.threshold:g}", _ABNORMAL, c.code.coded(),
                                 class_algo))
    return segments


def _scale_note(pixel_um: float | None) -> str:
    return "masks on the slide thumbnail" + ("" if pixel_um is None else f", {pixel_um:.4g} um per pixel")


def slide_segmentation(thumb: np.ndarray, tissue: np.ndarray, case_key: str, classes: list[ClassMask] | None = None,
                       pixel_um: float | None = None, model: str = "medvl") -> tuple[Any, Any]:
    """The source image and the SEG of a slide's tissue mask (and thresholded class heatmaps).

    Args:
        thumb: RGB uint8 ``[h, w, 3]`` thumbnail the masks are on.
        tissue: bool ``[h, w]`` tissue mask.
        case_key: the slide's id (only hashed into pseudonyms and UIDs).
        classes: per-class masks on the same grid.
        pixel_um: µm of the slide per thumbnail pixel, when the slide's mpp is known (stated in the SEG's content
            description: a pixel spacing would need a section thickness, which a slide file does not record).
        model: name recorded as the algorithm of the class segments.
    """
    hd = require("highdicom", "interop", "DICOM SEG output")
    classes = classes or []
    if tissue.shape != thumb.shape[:2] or any(c.mask.shape != tissue.shape for c in classes):
        raise InputError(None, f"masks must be on the thumbnail's grid {thumb.shape[:2]}")
    source = _source_image(hd, thumb, case_key)
    segments = segment_descriptions(classes, model)
    labels = np.stack([tissue, *[c.mask for c in classes]], axis=-1).astype(np.uint8)[None]  # [1, h, w, segments]
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=Deidentifier().remap_uid(f"medvl.slide-seg.{case_key}"),
        series_number=902, sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="medvl", software_versions=SOFTWARE, device_serial_number="0",
        omit_empty_frames=False, content_description=_scale_note(pixel_um))
    seg.SeriesDescription = "medvl tissue and heatmap segments (research)"
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = source.DeidentificationMethod
    return source, seg


def write_pair(out_dir: str | Path, stem: str, source: Any, seg: Any) -> dict[str, str]:
    """Write ``<stem>_seg_source.dcm`` and ``<stem>_seg.dcm`` atomically (the source first, so a SEG never
    references a missing file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"source": out_dir / f"{stem}_seg_source.dcm", "seg": out_dir / f"{stem}_seg.dcm"}
    for key, ds in (("source", source), ("seg", seg)):
        with atomic_path(paths[key]) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    return {k: str(v) for k, v in paths.items()}


class SlideSegWriter:
    """The ``on_grid`` step of ``medvl slide tile --dicom-seg``: writes ``<out>/<slide_id>_seg.dcm`` and its source.

    Args:
        out_dir: folder of the DICOM files.
        tile_scores: optional ``.npz`` of ``medvl zeroshot --tile-scores`` (one slide): one segment per class, the
            tiles whose probability is at least ``threshold``.
        threshold: probability threshold of the class segments.
        graph: the knowledge graph (codes of the classes); loaded when needed.
    """

    def __init__(self, out_dir: str | Path, tile_scores: str | Path | None = None, threshold: float = 0.5,
                 graph: Any = None):
        if not 0 < threshold <= 1:
            raise InputError(None, f"--seg-threshold must be in (0, 1], got {threshold}")
        self.out_dir, self.threshold, self._graph = Path(out_dir), threshold, graph
        self.scores = None if tile_scores is None else tile_scores_file(tile_scores)
        if self.scores is not None:
            from medvl.tasks.interop.codes import code_concepts

            ids = [c for c in self.scores["class_ids"] if c != NORMAL_ID]
            self.codes = code_concepts(self.graph, [(c, c) for c in ids])  # refuse uncoded classes up front

    @property
    def graph(self) -> Any:
        if self._graph is None:
            from medvl.knowledge import default_graph

            self._graph = default_graph()
        return self._graph

    def class_masks(self, mask: Any, grid: Any) -> list[ClassMask]:
        if self.scores is None:
            return []
        s = self.scores
        size = float(s["patch_size_level0"]) or float(grid.patch_size_level0)
        out = []
        for j, cid in enumerate(s["class_ids"]):
            if cid == NORMAL_ID:
                continue
            keep = s["scores"][:, j] >= self.threshold
            out.append(ClassMask(self.codes[cid], rasterise_tiles(s["coords"], size, keep, mask.mask.shape,
                                                                  mask.scale), self.threshold))
        return out

    def __call__(self, slide: Any, mask: Any, thumb: np.ndarray, grid: Any) -> dict[str, Any]:
        classes = self.class_masks(mask, grid)
        names = ["tissue", *[c.code.meaning for c in classes]]
        if slide.backend in DICOM_BACKENDS:  # reference the WSI itself
            from medvl.tasks.interop.wsiseg import wsi_segmentation

            _, seg = wsi_segmentation(Path(slide.path), [mask.mask, *[c.mask for c in classes]],
                                      segment_descriptions(classes), slide.slide_id)
            path = self.out_dir / f"{slide.slide_id}_seg.dcm"
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                seg.save_as(tmp, enforce_file_format=True)
            return {"dicom_seg": str(path), "dicom_seg_source": "the DICOM WSI (de-identified UIDs)",
                    "segments": names}
        pixel_um = None if slide.mpp is None else float(mask.scale[0] * slide.mpp)
        source, seg = slide_segmentation(thumb, mask.mask, slide.slide_id, classes, pixel_um=pixel_um)
        paths = write_pair(self.out_dir, slide.slide_id, source, seg)
        return {"dicom_seg": paths["seg"], "dicom_seg_source": paths["source"], "segments": names}
