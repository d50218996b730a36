"""Whole-slide image reading behind one interface, over a table of backends.

:func:`open_slide` (:mod:`~medvl.io.slide.slide`) picks a backend from :data:`BACKENDS` by file type: OpenSlide
(:mod:`~medvl.io.slide.openslide_reader`) for the vendor formats and tiled TIFF, tiffslide
(:mod:`~medvl.io.slide.tiffslide_reader`) for TIFFs OpenSlide refuses, wsidicom (:mod:`~medvl.io.slide.dicom_reader`)
for DICOM whole-slide images. A backend implements :class:`~medvl.io.slide.base.SlideBackend`; add one to
:data:`~medvl.io.slide.backends.BACKENDS`.
"""

from __future__ import annotations

from medvl.io.slide.backends import BACKENDS, supported_suffixes
from medvl.io.slide.base import SlideBackend, SlideMeta, SlideReader, slide_id_of
from medvl.io.slide.slide import MPP_OVERRIDE_HINT, PLAUSIBLE_MPP, Slide, open_slide

__all__ = [
    "BACKENDS",
    "MPP_OVERRIDE_HINT",
    "PLAUSIBLE_MPP",
    "Slide",
    "SlideBackend",
    "SlideMeta",
    "SlideReader",
    "open_slide",
    "slide_id_of",
    "supported_suffixes",
]
