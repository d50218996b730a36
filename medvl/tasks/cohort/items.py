"""The items of a cohort that duplicate detection compares: pictures (images, slide thumbnails, CT views) and texts.

Each manifest row gives at most one picture (by its modality, through :data:`PICTURE_READERS`) and at most one text
(its ``report`` cell, or the file of a ``text`` row). A picture carries the hash of its file bytes, the hash of its
decoded pixels and the 2-D view that the perceptual hashes and thumbnail vectors are computed on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError, reason
from medvl.hashing import content_hash
from medvl.io.manifest import ManifestRow
from medvl.tasks.cohort.hashes import pixel_hash

__all__ = ["PICTURE_READERS", "Picture", "Pool", "normalise_text", "read_items"]


@dataclass
class Picture:
    """One row's picture: ``file_hash`` (bytes), ``pixels`` (decoded content hash) and ``view`` (2-D array)."""

    file_hash: str
    pixels: str
    view: np.ndarray


@dataclass
class Pool:
    """Items of one kind: their manifest rows, case ids, splits and payloads (pictures or texts), aligned."""

    kind: str
    rows: list[int] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    paths: list[Path | None] = field(default_factory=list)
    payloads: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: ManifestRow, payload: Any, path: Path | None) -> None:
        split = row.get("split")
        self.rows.append(row.row)
        self.case_ids.append(row.case_id)
        self.splits.append(None if split is None else str(split).strip())
        self.modalities.append(row.modality)
        self.paths.append(path)
        self.payloads.append(payload)


# ------------------------------------------------------------------------------------------------ pictures
def _read_image(path: Path) -> Picture:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "RGB", "RGBA") else img)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(path, f"cannot read image ({reason(exc)})") from None
    return Picture(content_hash(path), pixel_hash(arr), arr)


def _read_slide(path: Path) -> Picture:
    from medvl.io.slide import open_slide

    slide = open_slide(path)
    try:
        thumb = slide.thumbnail(512)
    finally:
        slide.close()
    return Picture(content_hash(path), pixel_hash(thumb), thumb)


def _read_ct(path: Path) -> Picture:
    from medvl.io.volume import load_volume

    vol = load_volume(path)
    arr = np.asarray(vol.array, dtype=np.float32)
    # a mean-intensity projection through the volume's third axis, soft-tissue window: one 2-D view per study
    view = np.clip((arr.mean(axis=2) + 160.0) / 400.0, 0, 1) * 255.0
    return Picture(content_hash(path), pixel_hash(arr), view.astype(np.uint8))


#: canonical manifest modality -> reader of its picture
PICTURE_READERS: dict[str, Callable[[Path], Picture]] = {"image": _read_image, "slide": _read_slide, "ct": _read_ct}


# ------------------------------------------------------------------------------------------------ texts
_DEID = re.compile(r"\bx{2,}\b", re.IGNORECASE)  # de-identification placeholders (IU reports: "XXXX")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalise_text(text: str) -> str:
    """Lower case, de-identification placeholders and punctuation removed, whitespace collapsed."""
    return " ".join(_NON_WORD.sub(" ", _DEID.sub(" ", text.lower())).split())


def _row_text(row: ManifestRow, column: str) -> str | None:
    value = row.get(column)
    if value is not None and str(value).strip():
        return str(value)
    if row.modality == "text" and row.path.is_file():
        try:
            return row.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(row.path, f"row {row.row}: cannot read the report ({reason(exc)})") from None
    return None


def read_items(rows: list[ManifestRow], text_column: str = "report") -> tuple[Pool, Pool]:
    """Pictures and texts of the manifest rows (rows of a modality without a reader give only their text)."""
    pictures, texts = Pool("picture"), Pool("text")
    for row in rows:
        reader = PICTURE_READERS.get(row.modality)
        if reader is not None:
            try:
                pictures.add(row, reader(row.path), row.path)
            except InputError:
                raise
            except Exception as exc:  # a reader's own failure names the row
                raise InputError(row.path, f"row {row.row}: cannot read the {row.modality} ({reason(exc)})") from None
        text = _row_text(row, text_column)
        if text is not None and normalise_text(text):
            texts.add(row, text, None)
    return pictures, texts
