"""What a workspace holds, found by looking at its folders: slides and their features, CT volumes and label maps,
model checkpoints, the knowledge graph, retrieval indexes, survival tables and models, and what ``medvl run`` left
under ``runs/<name>/`` (the cohort's slides with their features, its CT volumes, its indexes).

A DICOM series folder is recognised by its files' content (the ``DICM`` signature), whatever their suffix: scanners
and PACS exports often write files without ``.dcm``.

Files are shown to users by pseudonym (:func:`pseudonym`), never by name: file names of clinical data often carry
accession numbers or patient identifiers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.apps.slideview import SLIDE_SUFFIXES
from medvl.log import get_logger

log = get_logger(__name__)

CT_NAMES = (".nii", ".nii.gz")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
#: words in a NIfTI name that mark a label map rather than an image
LABEL_WORDS = ("label", "seg", "mask")


def pseudonym(value: str | Path, prefix: str = "case") -> str:
    """A stable, non-identifying display name for a file or an id (hash of its name)."""
    name = Path(value).name if isinstance(value, Path) else str(value)
    return f"{prefix}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", *CT_NAMES, *SLIDE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _label_base(path: Path) -> str:
    """The image name a label map belongs to: its name up to the first ``_label``/``_seg``/``_mask`` part."""
    stem = _stem(path)
    cut = [i for w in LABEL_WORDS for sep in "_-." if (i := stem.lower().find(sep + w)) > 0]
    return stem[: min(cut)] if cut else stem


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))


@dataclass
class Catalog:
    """The contents of one workspace."""

    root: Path
    slides: list[Path] = field(default_factory=list)
    features: dict[str, Path] = field(default_factory=dict)
    cts: list[Path] = field(default_factory=list)
    label_maps: list[Path] = field(default_factory=list)
    models: list[Path] = field(default_factory=list)
    #: vision-language model cards installed in the model store (``medvl models unpack``) that can serve zero-shot
    model_cards: list[str] = field(default_factory=list)
    graph: Path | None = None
    indexes: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    survival_models: list[Path] = field(default_factory=list)

    @property
    def cache_dir(self) -> Path:
        """Where the apps keep what they computed and may need again (tile encodings of slides)."""
        from medvl.workspace import Workspace

        return Workspace(self.root).cache

    @property
    def empty(self) -> bool:
        return not any((self.slides, self.cts, self.models, self.indexes, self.tables, self.graph))

    def features_for(self, slide: Path) -> Path | None:
        return self.features.get(_stem(slide))

    def annotations_for(self, slide: Path) -> list[Path]:
        """GeoJSON annotations of a slide: ``annotations/<slide>*.geojson`` and the tissue outline that
        ``medvl slide tile`` writes beside the features (``features/<slide>_tissue.geojson``)."""
        stem = _stem(slide)
        found = [p for folder in ("annotations", "features") for p in _files(self.root / folder, (".geojson",))
                 if _stem(p) == stem or p.name.startswith(stem + "_")]
        return sorted(found)

    def labels_for(self, ct: Path) -> Path | None:
        """The label map named after the CT (``x.nii.gz`` -> ``x_labels.nii.gz``, ``x_seg.nii.gz``, ...)."""
        stem = _stem(ct)
        matches = [p for p in self.label_maps if _label_base(p) == stem]
        return min(matches, key=lambda p: len(p.name)) if matches else None

    def summary(self) -> list[dict[str, Any]]:
        """One row per kind of content, with a count (what the home page shows)."""
        return [
            {"content": "slides", "count": len(self.slides)},
            {"content": "slide feature files", "count": len(self.features)},
            {"content": "CT volumes", "count": len(self.cts)},
            {"content": "CT label maps", "count": len(self.label_maps)},
            {"content": "models", "count": len(self.models)},
            {"content": "knowledge graph", "count": int(self.graph is not None)},
            {"content": "retrieval indexes", "count": len(self.indexes)},
            {"content": "tables", "count": len(self.tables)},
            {"content": "survival models", "count": len(self.survival_models)},
        ]


#: files looked at to decide whether a folder holds a DICOM series
DICOM_PROBE_FILES = 20


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def is_dicom_folder(folder: Path) -> bool:
    """Whether ``folder`` (or a subfolder, one level down) holds DICOM files, by signature, not by suffix."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")][:DICOM_PROBE_FILES]
    if any(_is_dicom_file(p) for p in files):
        return True
    subs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")][:DICOM_PROBE_FILES]
    return any(_is_dicom_file(p) for d in subs for p in sorted(d.iterdir())[:DICOM_PROBE_FILES] if p.is_file())


def _run_cases(run_config: Path) -> list[Any]:
    """The manifest rows of a ``medvl run`` (from its resolved ``run_config.json``); none when unreadable."""
    import json

    from medvl.errors import MedvlError
    from medvl.io.manifest import read_manifest

    try:
        resolved = json.loads(run_config.read_text())
        if isinstance(resolved, dict) and "manifest" not in resolved:  # a training run's folder: no cohort
            return []
        return list(read_manifest(Path(resolved["manifest"]), check_paths=False).rows)
    except (OSError, ValueError, KeyError, TypeError, MedvlError) as exc:
        log.warning("run %s: its manifest cannot be read (%s); its outputs are not listed", run_config.parent.name,
                    type(exc).__name__)
        return []


def _add_runs(cat: Catalog, root: Path) -> None:
    """Slides (with their features), CT volumes and indexes of every ``medvl run`` in the workspace."""
    for config in sorted((root / "runs").glob("*/run_config.json")):
        folder = config.parent
        rows = _run_cases(config)
        by_id = {r.case_id: r for r in rows}
        for h5 in _files(folder / "features", (".h5", ".hdf5")):
            row = by_id.get(h5.stem)
            if row is not None and row.path.exists() and row.path not in cat.slides:
                cat.slides.append(row.path)
                cat.features[_stem(row.path)] = h5
        cat.cts += [r.path for r in rows if r.modality == "ct" and r.path.exists() and r.path not in cat.cts]
        cat.indexes += sorted(p.parent for p in (folder / "index").rglob("index.json"))


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def model_badge(model_dir: str | Path) -> str | None:
    """What the pages show beside a model whose towers hold random weights (``None`` for a trained model); read
    from its checkpoint record, without loading it."""
    from medvl.errors import MedvlError
    from medvl.models.checkpoint import read_checkpoint_config, recorded_random_weights

    try:
        random = [m for m, r in recorded_random_weights(read_checkpoint_config(model_dir)).items() if r]
    except MedvlError:
        return None
    if not random:
        return None
    return (f"Random weights: the {', '.join(random)} tower(s) of this model were never trained; its outputs are "
            "not diagnoses.")


def zero_shot_cards(workspace: str | Path) -> list[str]:
    """Names of the cards installed in the model store (``MEDVL_MODELS``, else the workspace's) that can serve as a
    zero-shot model (:func:`medvl.models.card_models.zero_shot_problem`); read from their cards, nothing loads."""
    from medvl.errors import MedvlError
    from medvl.models.card_models import zero_shot_problem
    from medvl.models.store import ModelStore

    store = ModelStore(workspace=workspace)
    found = []
    for name in store.names():
        try:
            if zero_shot_problem(store.card(name)) is None:
                found.append(name)
        except MedvlError:  # an unreadable card: `medvl models check` says why
            continue
    return found


def scan_workspace(root: str | Path) -> Catalog:
    """Look through a workspace's standard folders (missing folders are simply empty)."""
    root = Path(root)
    cat = Catalog(root=root)
    if not root.is_dir():
        return cat
    cat.slides = _files(root / "slides", SLIDE_SUFFIXES)
    cat.features = {p.stem: p for p in _files(root / "features", (".h5", ".hdf5"))}
    for p in _files(root / "ct", CT_NAMES):
        (cat.label_maps if any(w in p.name.lower() for w in LABEL_WORDS) else cat.cts).append(p)
    if (root / "ct").is_dir():  # DICOM series folders, whatever their files' suffix
        cat.cts.extend(sorted(d for d in (root / "ct").iterdir() if d.is_dir() and is_dicom_folder(d)))
    models = root / "models"
    if models.is_dir():
        cat.models = sorted(d for d in models.iterdir() if d.is_dir() and _is_checkpoint(d))
    cat.model_cards = zero_shot_cards(root)
    for name in ("graph.json.gz", "graph.json"):
        if (root / "graph" / name).is_file():
            cat.graph = root / "graph" / name
            break
    if (root / "index").is_dir():
        cat.indexes = sorted(p.parent for p in (root / "index").rglob("index.json"))
    cat.tables = _files(root / "tables", TABLE_SUFFIXES)
    cat.survival_models = sorted({p.parent for sub in ("models", "runs") if (root / sub).is_dir()
                                  for p in (root / sub).rglob("survival_model.json")})
    if (root / "runs").is_dir():
        _add_runs(cat, root)
    cat.cts.sort(key=lambda p: cat.labels_for(p) is None)  # volumes with a label map first (stable otherwise)
    return cat
