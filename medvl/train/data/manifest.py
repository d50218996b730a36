"""Training data from a cohort manifest: one registered dataset (``manifest``) for every modality.

The manifest is the one ``medvl run`` reads (``case_id, modality, path, report, labels, split``; paths relative to
the manifest; ``labels`` holds concept ids or class names separated by ``;``). ``modality`` picks its rows and their
reader (:mod:`medvl.train.data.readers`): ``image`` files through the one image transform, ``ct`` volumes through
the radiology chain and cache. Each item pairs the file with its text; its KEEP group comes from the concepts the
text asserts (:mod:`medvl.train.data.concepts`), its ``label`` from ``labels`` or from the tagged concepts.

Every row is checked when the dataset is built (:mod:`medvl.train.data.rows`): a bad row is an error naming its row
and column, or with ``skip_bad`` it is left out and listed in the run folder. The counts (rows, tagged rows, groups,
items per concept, skipped rows) are logged and written to the run folder before the first step
(:meth:`ManifestPairs.write_report`). :meth:`ManifestPairs.heldout` gives the same data for a ``val`` or ``test``
split (the ``heldout`` evaluation).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from medvl.atomic import atomic_write_text
from medvl.config import Config
from medvl.errors import ConfigError
from medvl.log import get_logger
from medvl.train.data.concepts import ConceptOptions, ConceptTags, build_groups
from medvl.train.data.registry import register_dataset
from medvl.train.data.rows import CheckedRows, check_labels, check_rows

__all__ = ["ManifestOptions", "ManifestPairs"]

log = get_logger(__name__)

#: manifest modality -> its default reader (``medvl.train.data.readers``)
DEFAULT_READERS = {"image": "image", "ct": "ct", "slide": "slide-tiles"}


@dataclass
class ManifestOptions(Config):
    """A cohort manifest as training data.

    Attributes:
        manifest: the CSV / TSV / Parquet manifest (relative: to ``root``, else to the working folder).
        root: the folder a relative ``manifest`` is found in (``medvl train`` sets the config file's folder).
        modality: the rows read (``image``, ``ct``).
        split: the split this dataset trains on.
        splits: known split names; a row with another is a bad row.
        default_split: the split of a row whose ``split`` cell is empty.
        text_column: the column holding each row's caption or report.
        labels_from: ``labels`` (the column), ``concepts`` (the tagged concepts, multi-hot) or ``none``.
        classes: the known labels (default: those of the training split); any other label is a bad row.
        concepts: how texts become concept groups (tagger, untagged items, hierarchy captions).
        image: the image transform (an ``ImageTransformConfig`` mapping: ``size``, ``channels``, ``mean``, ...).
        domain: the kind of data recorded in the checkpoint (``ultrasound``, ``slide``, ``photo``; default:
            ``image`` / ``ct``).
        preprocess: the CT chain (a ``CTPreprocessConfig`` mapping), for ``ct`` rows.
        cache: the volume cache folder, for ``ct`` rows.
        allow_non_ct: accept non-CT series.
        allow_irregular: accept series with missing slices.
        reader: how rows are read (default by modality: ``image``, ``ct``, ``slide-tiles``; also ``slide-features``).
        tiles_per_slide: ``slide-tiles``: items per slide per epoch (at most its tile count).
        max_open_slides: ``slide-tiles``: slide readers kept open.
        stain: ``slide-tiles``: the stain recorded in the checkpoint's domain (``H&E``).
        bag_size: ``slide-features``: tiles per bag.
        feature_dim: ``slide-features``: the bag tower's input dimension (default: the first bag's).
        augment: random flips of images.
        skip_bad: leave bad rows out (listed in the run folder) instead of refusing the manifest.
    """

    manifest: Path
    root: Path | None = None
    modality: str = "image"
    split: str = "train"
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    default_split: str = "train"
    text_column: str = "report"
    labels_from: Literal["labels", "concepts", "none"] = "labels"
    classes: list[str] | None = None
    concepts: ConceptOptions = field(default_factory=ConceptOptions)
    image: dict[str, Any] = field(default_factory=dict)
    domain: str | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)
    cache: Path | None = None
    allow_non_ct: bool = False
    allow_irregular: bool = False
    reader: str | None = None
    tiles_per_slide: int = 16
    max_open_slides: int = 16
    stain: str | None = "H&E"
    bag_size: int = 256
    feature_dim: int | None = None
    augment: bool = True
    skip_bad: bool = False

    def validate(self) -> None:
        if self.split not in self.splits or self.default_split not in self.splits:
            raise ConfigError(f"ManifestOptions.split: '{self.split}' / default_split '{self.default_split}' must be "
                              f"one of splits ({', '.join(self.splits)})")

    def reader_name(self) -> str:
        return self.reader or DEFAULT_READERS.get(self.modality, self.modality)

    def resolve(self, path: str | Path) -> Path:
        """A path of these options (``manifest``, ``cache``): relative ones are found in ``root`` when it is set."""
        path = Path(path).expanduser()
        return path if path.is_absolute() or self.root is None else Path(self.root) / path

    def manifest_path(self) -> Path:
        return self.resolve(self.manifest)


class _Source:
    """What every split of one manifest shares: the checked rows, the reader, the tagger and the classes."""

    def __init__(self, opts: ManifestOptions):
        from medvl.train.data.readers import READERS

        self.opts = opts
        self.reader = READERS.get(opts.reader_name())(opts)
        self.rows: CheckedRows = check_rows(
            opts.manifest_path(), opts.modality, self.reader, splits=opts.splits, default_split=opts.default_split,
            text_column=opts.text_column, skip_bad=opts.skip_bad)
        self.tags = ConceptTags(opts.concepts) if opts.concepts.tag or opts.labels_from == "concepts" else None
        self.classes: list[str] = []
        if opts.labels_from == "labels":
            self.classes = self._classes(self.rows.labels)
            check_labels(self.rows, self.classes, opts.skip_bad)
        self.asserted = [self.tags.asserted(t) if self.tags else [] for t in self.rows.texts]
        if opts.labels_from == "concepts":
            self.classes = self._classes(self.asserted)

    def _classes(self, found: list[list[str]]) -> list[str]:
        """The known labels: the configured ``classes``, else every label of the training split."""
        if self.opts.classes is not None:
            return list(self.opts.classes)
        return sorted({lab for labels, s in zip(found, self.rows.splits, strict=True) if s == self.opts.split
                       for lab in labels})


@register_dataset("manifest", ManifestOptions)
class ManifestPairs:
    """Items of one split of a cohort manifest: the file's tensor, its text, its concept group and its label."""

    def __init__(self, opts: ManifestOptions, source: _Source | None = None):
        self.opts = opts
        self.source = source or _Source(opts)
        reader = self.source.reader
        self.field = reader.field
        self.fields = {reader.field: reader.modality, "text": "text"}
        self.preprocessing = {reader.modality: reader.preprocessing}
        self.domains = {reader.modality: reader.domain}
        picked, self.occurrence, self.copies = [], [], []
        for i, s in enumerate(self.source.rows.splits):
            if s == opts.split:
                n = reader.items(self.source.rows.rows[i]) if hasattr(reader, "items") else 1
                picked += [i] * n
                self.occurrence += list(range(n))
                self.copies += [n] * n
        concepts = [self.source.asserted[i] for i in picked]
        row_numbers = [self.source.rows.rows[i].row for i in picked]
        table = build_groups(concepts, row_numbers, self.source.tags, opts.concepts.untagged)
        self.index = [picked[i] for i in table.kept]
        self.occurrence = [self.occurrence[i] for i in table.kept]
        self.copies = [self.copies[i] for i in table.kept]
        self.group_ids = table.group_ids
        self.group_names = table.group_names
        self.group_relatives = torch.as_tensor(table.group_relatives)
        self.label_names = self.source.classes
        self.groups = table
        self._captions: dict[int, list[str]] = {}
        if not self.index:
            raise ConfigError(f"dataset 'manifest': no '{opts.modality}' item in split '{opts.split}' "
                              f"({len(picked)} row(s) there, untagged: {opts.concepts.untagged})")

    # ------------------------------------------------------------------ the dataset interface
    def __len__(self) -> int:
        return len(self.index)

    def texts(self) -> list[str]:
        texts = [self.source.rows.texts[i] for i in self.index]
        if self.opts.concepts.hierarchy_fraction:
            texts += [c for g in range(len(self.group_names)) for c in self._hierarchy(g)]
        return list(dict.fromkeys(texts))

    def _hierarchy(self, group: int) -> list[str]:
        if group not in self._captions:
            name = self.group_names[group]
            concept = self.source.tags is not None and self.source.tags.is_concept(name)
            self._captions[group] = self.source.tags.hierarchy_captions(name) if concept else []
        return self._captions[group]

    def _text(self, k: int, rng: torch.Generator | None) -> str:
        text = self.source.rows.texts[self.index[k]]
        frac = self.opts.concepts.hierarchy_fraction
        if rng is not None and frac and torch.rand((), generator=rng) < frac:
            caps = self._hierarchy(self.group_ids[k])
            if caps:
                return caps[int(torch.randint(len(caps), (), generator=rng))]
        return text

    def labels_of(self, k: int) -> list[str]:
        """The labels of item ``k`` (the ``labels`` column or its tagged concepts)."""
        i = self.index[k]
        labels = self.source.rows.labels[i] if self.opts.labels_from == "labels" else self.source.asserted[i]
        return [lab for lab in labels if lab in self.label_names]

    @property
    def multilabel(self) -> bool:
        """Labels are multi-hot (some row has several, or they come from tagged concepts)."""
        if self.opts.labels_from == "concepts":
            return True
        return any(len(labels) != 1 for labels in self.source.rows.labels)

    def target(self, k: int) -> torch.Tensor | int:
        """The ``label`` field of item ``k``: a class index, or a multi-hot vector when labels are multi-label."""
        labels = self.labels_of(k)
        if not self.multilabel:
            return self.label_names.index(labels[0])
        hot = torch.zeros(len(self.label_names))
        hot[[self.label_names.index(lab) for lab in labels]] = 1.0
        return hot

    def item(self, index: int, rng: torch.Generator | None) -> dict[str, Any]:
        row = self.source.rows.rows[self.index[index]]
        out = {
            self.field: self.source.reader.load(row, rng if self.opts.augment else None, self.occurrence[index],
                                                self.copies[index]),
            "text": self._text(index, rng),
            "group": self.group_ids[index],
        }
        if self.label_names:
            out["label"] = self.target(index)
        return out

    # ------------------------------------------------------------------ held-out splits and records
    def heldout(self, split: str) -> ManifestPairs:
        """The same manifest's ``split`` (no augmentation, no hierarchy captions, every row kept as an item)."""
        opts = copy.deepcopy(self.opts)
        opts.split, opts.augment = split, False
        opts.concepts.hierarchy_fraction, opts.concepts.untagged = 0.0, "own-group"
        return ManifestPairs(opts, self.source)

    def counts(self) -> dict[str, Any]:
        """Rows, tagged rows, groups, items per concept, skipped rows (what is logged and saved before step 1)."""
        src = self.source
        tags = src.tags
        per_split: dict[str, int] = {}
        for s in src.rows.splits:
            per_split[s] = per_split.get(s, 0) + 1
        per_concept = {cid: {"name": tags.name(cid) if tags else cid, "items": n}
                       for cid, n in sorted(self.groups.items_per_concept.items(), key=lambda kv: -kv[1])}
        rows = sorted(set(self.index))
        in_split = sum(1 for s in src.rows.splits if s == self.opts.split)
        return {
            "manifest": str(src.rows.source), "modality": self.opts.modality, "split": self.opts.split,
            "manifest_rows": src.rows.total_rows, "usable_rows": len(src.rows.rows), "rows_per_split": per_split,
            "rows": len(rows), "items": len(self.index), "tagged_rows": sum(bool(src.asserted[i]) for i in rows),
            "dropped_untagged": in_split - len(rows),
            "groups": len(self.group_names), "concept_groups": self.groups.concept_groups,
            "items_per_concept": per_concept, "classes": list(self.label_names),
            "skipped_rows": len(src.rows.problems),
        }

    def write_report(self, out: Path, stage: str) -> dict[str, Any]:
        """Log the counts and write ``data/<stage>.counts.json`` and, when rows were skipped, ``.skipped.jsonl``."""
        return write_report(out, stage, self.counts(), self.source.rows.problems)


def write_report(out: Path, stage: str, counts: dict[str, Any], problems: list[Any]) -> dict[str, Any]:
    """Log a dataset's counts and write them (``data/<stage>.counts.json``) with its skipped rows
    (``data/<stage>.skipped.jsonl``, one :class:`~medvl.train.data.rows.RowProblem` a line)."""
    folder = Path(out) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{stage}.counts.json", json.dumps(counts, indent=2) + "\n")
    if problems:
        atomic_write_text(folder / f"{stage}.skipped.jsonl", "".join(json.dumps(p.to_dict()) + "\n" for p in problems))
        log.warning("stage '%s': skipped %d bad row(s), listed in %s", stage, len(problems),
                    folder / f"{stage}.skipped.jsonl")
    log.info("stage '%s' data: %s", stage, counts_text(counts))
    return counts


def counts_text(counts: dict[str, Any]) -> str:
    """The counts for people: one line, then the largest concept groups."""
    text = (f"{counts['rows']} {counts['modality']} rows in split '{counts['split']}' "
            f"({counts['tagged_rows']} tagged), {counts['groups']} groups ({counts['concept_groups']} concepts), "
            f"{counts['skipped_rows']} skipped row(s), {counts['dropped_untagged']} untagged dropped")
    top = list(counts["items_per_concept"].items())[:5]
    if top:
        text += "; largest: " + ", ".join(f"{v['name']} ({v['items']})" for _, v in top)
    return text
