"""The table of slide backends, in the order :func:`medvl.io.slide.open_slide` tries them."""

from __future__ import annotations

from medvl.io.slide.base import SlideBackend
from medvl.io.slide.dicom_frames import DicomFramesBackend
from medvl.io.slide.dicom_reader import DicomBackend
from medvl.io.slide.ome_tiff_reader import OmeTiffBackend
from medvl.io.slide.ome_zarr_reader import OmeZarrBackend
from medvl.io.slide.openslide_reader import OpenSlideBackend
from medvl.io.slide.tiffslide_reader import TiffSlideBackend

__all__ = ["BACKENDS", "supported_suffixes"]


#: backends in the order they are tried; a slide opens with the first one that reads it. OME-TIFF comes before
#: OpenSlide (which would read an OME-TIFF's first page as a generic TIFF, without its SubIFD pyramid or OME µm/px)
#: and claims only files with OME-XML; OME-Zarr comes before DICOM, and claims only folders with NGFF metadata. The
#: pydicom frame reader comes last: single-file DICOM WSI that wsidicom refuses.
BACKENDS: tuple[SlideBackend, ...] = (OmeTiffBackend(), OpenSlideBackend(), TiffSlideBackend(), OmeZarrBackend(),
                                      DicomBackend(), DicomFramesBackend())


def supported_suffixes() -> list[str]:
    return sorted({s for b in BACKENDS for s in b.suffixes})
