"""Small slides in real file formats, written with tifffile, for the whole-slide tests.

The pixel content is a drawn H&E-like scene (pink/purple tissue with a hole on white glass) so tissue detection has
something real to find; the files themselves are genuine tiled-pyramid, strip and multichannel TIFFs that OpenSlide
and tiffslide read like scanner output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def he_scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8: white glass with an elliptical pink tissue piece holding a round hole, plus purple nuclei."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.full((height, width, 3), 242, np.float32) + rng.normal(0, 2, (height, width, 3))
    cx, cy = width * 0.45, height * 0.5
    tissue = ((xx - cx) / (width * 0.3)) ** 2 + ((yy - cy) / (height * 0.35)) ** 2 < 1
    hole = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) * 0.08) ** 2
    tissue &= ~hole
    pink = np.array([225, 140, 185], np.float32)
    img[tissue] = pink + rng.normal(0, 8, (int(tissue.sum()), 3))
    nuclei = tissue & (rng.random((height, width)) < 0.02)
    img[nuclei] = np.array([110, 60, 150], np.float32)
    return img.clip(0, 255).astype(np.uint8)


def _resolution(mpp: float) -> dict:
    return {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}


def write_pyramid_tiff(path: Path, width: int = 1024, height: int = 768, mpp: float = 0.25, levels: int = 3,
                       tile: int = 128, image: np.ndarray | None = None) -> Path:
    """A tiled pyramidal TIFF (one IFD per level, each half the previous), with the level-0 mpp in its tags."""
    import tifffile
    from PIL import Image

    base = he_scene(width, height) if image is None else image
    with tifffile.TiffWriter(path) as tw:
        img = base
        for level in range(levels):
            tw.write(img, tile=(tile, tile), photometric="rgb", compression="zlib",
                     subfiletype=0 if level == 0 else 1, **_resolution(mpp * 2**level))
            img = np.asarray(Image.fromarray(img).resize((max(1, img.shape[1] // 2), max(1, img.shape[0] // 2))))
    return path


def write_strip_tiff(path: Path, width: int = 600, height: int = 400, mpp: float = 0.5) -> Path:
    """A plain (non-tiled, single-level) strip TIFF, the kind OpenSlide refuses."""
    import tifffile

    tifffile.imwrite(path, he_scene(width, height, seed=1), photometric="rgb", rowsperstrip=16, **_resolution(mpp))
    return path


def write_fluorescence_tiff(path: Path, width: int = 512, height: int = 512, channels: int = 4) -> Path:
    """A multiplexed-fluorescence style TIFF: ``channels`` uint16 planes (not RGB)."""
    import tifffile

    rng = np.random.default_rng(2)
    data = rng.integers(0, 4000, (channels, height, width), dtype=np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate", tile=(128, 128),
                     **_resolution(0.5))
    return path


def write_blank_tiff(path: Path, width: int = 512, height: int = 512, mpp: float = 0.5) -> Path:
    """Empty glass: a tiled TIFF with no tissue at all."""
    rng = np.random.default_rng(3)
    glass = (243 + rng.normal(0, 2, (height, width, 3))).clip(0, 255).astype(np.uint8)
    return write_pyramid_tiff(path, width, height, mpp=mpp, levels=1, image=glass)


def write_truncated_copy(src: Path, dst: Path, keep: float = 0.3) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def write_dicom_wsi(folder: Path, width: int = 512, height: int = 384, tile: int = 128, mpp: float = 0.5,
                    levels: int = 2) -> Path:
    """A DICOM VL Whole Slide Microscopy series (TILED_FULL, native RGB frames), one instance per level."""
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame_ref = generate_uid(), generate_uid(), generate_uid()
    img = he_scene(width, height)
    for level in range(levels):
        h, w = img.shape[:2]
        ty, tx = -(-h // tile), -(-w // tile)
        pad = np.full((ty * tile, tx * tile, 3), 255, np.uint8)
        pad[:h, :w] = img
        frames = pad.reshape(ty, tile, tx, tile, 3).transpose(0, 2, 1, 3, 4).reshape(-1, tile, tile, 3)
        ds = Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_ref
        ds.Modality = "SM"
        ds.ImageType = ["ORIGINAL" if level == 0 else "DERIVED", "PRIMARY", "VOLUME",
                        "NONE" if level == 0 else "RESAMPLED"]
        ds.DimensionOrganizationType = "TILED_FULL"
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = w, h
        ds.Columns = ds.Rows = tile
        ds.NumberOfFrames = len(frames)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.TotalPixelMatrixFocalPlanes, ds.NumberOfOpticalPaths = 1, 1
        spacing_mm = mpp * 2**level / 1000
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight, ds.ImagedVolumeDepth = w * spacing_mm, h * spacing_mm, 0.001
        pm = Dataset()
        pm.PixelSpacing, pm.SliceThickness, pm.SpacingBetweenSlices = [spacing_mm, spacing_mm], 0.001, 0.001
        shared = Dataset()
        shared.PixelMeasuresSequence = Sequence([pm])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        origin = Dataset()
        origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = 20, 40
        ds.TotalPixelMatrixOriginSequence = Sequence([origin])
        ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]  # Type 1 in the VL WSI IOD: rows along -y, columns along -x
        op = Dataset()
        op.OpticalPathIdentifier = "1"
        ill = Dataset()
        ill.CodeValue, ill.CodingSchemeDesignator, ill.CodeMeaning = "111744", "DCM", "Brightfield illumination"
        op.IlluminationTypeCodeSequence = Sequence([ill])
        col = Dataset()
        col.CodeValue, col.CodingSchemeDesignator, col.CodeMeaning = "414298005", "SCT", "Full Spectrum"
        op.IlluminationColorCodeSequence = Sequence([col])
        ds.OpticalPathSequence = Sequence([op])
        ds.ContainerIdentifier = "slide-1"
        ds.FocusMethod, ds.ExtendedDepthOfField = "AUTO", "NO"
        ds.InstanceNumber = level + 1
        ds.PixelData = frames.tobytes()
        ds.save_as(folder / f"level{level}.dcm", enforce_file_format=True)
        img = np.asarray(Image.fromarray(img).resize((max(1, w // 2), max(1, h // 2))))
    return folder


def write_single_file_dicom_wsi(path: Path, width: int = 300, height: int = 200, tile: int = 128, mpp: float = 0.5,
                                sparse: bool = False) -> Path:
    """One VL Whole Slide Microscopy file holding one level, as converters export it: ImageType without ``VOLUME``
    and no DimensionOrganizationType (wsidicom refuses it). ``sparse``: per-frame plane positions, frames shuffled."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    folder = write_dicom_wsi(path.parent / f".{path.stem}_src", width, height, tile, mpp, levels=1)
    ds = pydicom.dcmread(folder / "level0.dcm")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    del ds.DimensionOrganizationType
    if sparse:
        tx = -(-width // tile)
        n = int(ds.NumberOfFrames)
        frames = np.frombuffer(ds.PixelData, np.uint8).reshape(n, tile, tile, 3)
        order = np.random.default_rng(0).permutation(n)
        groups = []
        for i in order:
            pos = Dataset()
            pos.ColumnPositionInTotalImagePixelMatrix = int(i % tx) * tile + 1
            pos.RowPositionInTotalImagePixelMatrix = int(i // tx) * tile + 1
            group = Dataset()
            group.PlanePositionSlideSequence = Sequence([pos])
            groups.append(group)
        ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
        ds.PixelData = frames[order].tobytes()
    ds.save_as(path, enforce_file_format=True)
    import shutil

    shutil.rmtree(folder)
    return path


def write_qptiff(path: Path, width: int = 640, height: int = 512, markers: tuple[str, ...] = ("DAPI", "CD8", "PanCK",
                                                                                               "FoxP3")) -> Path:
    """A multiplexed immunofluorescence file in the Akoya/PerkinElmer QPTIFF layout: one tiled grayscale page per
    marker, each with its QPI XML description (tifffile reads it as a ``CYX`` series)."""
    import tifffile

    rng = np.random.default_rng(4)
    with tifffile.TiffWriter(path) as tw:
        for name in markers:
            desc = ('<?xml version="1.0" encoding="utf-8"?><PerkinElmer-QPI-ImageDescription><DescriptionVersion>2'
                    f'</DescriptionVersion><ImageType>FullResolution</ImageType><Name>{name}</Name>'
                    '</PerkinElmer-QPI-ImageDescription>')
            tw.write(rng.integers(0, 255, (height, width), dtype=np.uint8), photometric="minisblack",
                     tile=(128, 128), description=desc, software="PerkinElmer-QPI", metadata=None,
                     **_resolution(0.5))
    return path
#: ink colours of the pen-mark slide (RGB), drawn as strokes across the tissue
INKS = {"red": (215, 25, 35), "green": (35, 150, 70), "blue": (30, 60, 190)}


def artefact_scene(width: int = 2048, height: int = 1536, seed: int = 3) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The H&E scene with a red, a green and a blue pen stroke (each 80 px wide) and one out-of-focus square (a
    Gaussian blur of sigma 8 px). Returns the image and where each artefact is (bool masks at full size)."""
    from scipy import ndimage as ndi

    img = he_scene(width, height, seed).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    truth = {}
    for i, (name, rgb) in enumerate(INKS.items()):
        y = int(height * (0.25 + 0.25 * i))
        stroke = (np.abs(yy - y - (xx - width * 0.3) * 0.1) < 40) & (xx > width * 0.2) & (xx < width * 0.5)
        img[stroke] = rgb
        truth[name] = stroke
    x0, y0, side = int(width * 0.5), int(height * 0.3), int(height * 0.35)
    box = (slice(y0, y0 + side), slice(x0, x0 + side))
    img[box] = ndi.gaussian_filter(img[box], (8, 8, 0))
    truth["blur"] = np.zeros((height, width), bool)
    truth["blur"][box] = True
    return img.clip(0, 255).astype(np.uint8), truth
