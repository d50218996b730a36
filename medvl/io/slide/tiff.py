"""TIFF facts read before a backend opens a slide: the signature, the channels, and whether the file is intact."""

from __future__ import annotations

import logging
from pathlib import Path

from medvl.errors import InputError, reason

__all__ = ["channels_of", "check_tiff_intact", "is_tiff", "tiff_channels"]


def tiff_channels(path: Path) -> tuple[int, str | None]:
    """Samples per pixel of a TIFF's main image and a note when they are not RGB (read with tifffile)."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        axes, shape = series.axes, series.shape
        page = tf.pages[0]
        photometric = getattr(page.photometric, "name", str(page.photometric))
    channels = 1
    for ax, n in zip(axes, shape, strict=False):
        if ax in "CS":
            channels *= int(n)
    if channels == 3 and photometric in ("RGB", "YCBCR"):
        return 3, None
    if channels in (3, 4) and photometric in ("RGB", "YCBCR"):
        return channels, None
    return channels, f"{channels} channel(s), photometric {photometric}, axes {axes}"


_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


class _Collect(logging.Handler):
    """Keeps tifffile's warnings (a broken page chain) for the error message instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        self.messages.append(text.split("> ", 1)[1] if text.startswith("<") and "> " in text else text)


def is_tiff(path: Path) -> bool:
    """Whether ``path`` is a file that starts with a TIFF or BigTIFF signature (SVS, NDPI, tiled TIFF, ...)."""
    if path.is_dir():
        return False
    with open(path, "rb") as fh:
        return fh.read(4) in _TIFF_MAGIC


def check_tiff_intact(path: Path) -> None:
    """Refuse a TIFF-based slide (SVS, TIFF, ...) cut short: page chain or tile data past the end of the file.

    The coarse-level probe at open time reads one corner; a copy that stopped mid-transfer often still has that
    corner and would only fail hours into a cohort run.
    """
    if not is_tiff(path):
        return
    import tifffile

    size, collect, logger = path.stat().st_size, _Collect(), logging.getLogger("tifffile")
    logger.addHandler(collect)
    try:
        with tifffile.TiffFile(path) as tf:
            end = max((int(o) + int(c) for page in tf.pages
                       for o, c in zip(getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ()),
                                       strict=False)), default=0)
    except Exception as exc:  # tifffile's own error types; the message names the file and the reason
        raise InputError(path, f"not a readable slide: truncated or damaged TIFF ({reason(exc)})") from None
    finally:
        logger.removeHandler(collect)
    broken = [m for m in collect.messages if "offset" in m]
    if end > size or broken:
        detail = broken[0] if broken else f"image data runs to byte {end}"
        raise InputError(path, f"not a readable slide: truncated or damaged TIFF ({detail}; the file has {size} bytes)")


#: suffixes of plain TIFF containers whose channels are checked (multiplexed OME-TIFF and Akoya/PerkinElmer QPTIFF
#: files hold one grayscale plane per marker: they open for ``slide info`` and are never read as RGB)
CHANNEL_CHECKED = (".tif", ".tiff", ".qptiff")


def channels_of(path: Path) -> tuple[int, str | None]:
    if path.suffix.lower() not in CHANNEL_CHECKED:
        return 3, None
    try:
        return tiff_channels(path)
    except Exception:  # not parseable by tifffile: let the backends report the file
        return 3, None
