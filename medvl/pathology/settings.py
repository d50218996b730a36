"""The settings of the slide steps in one typed config: ``medvl slide --config FILE`` and ``slide:`` of a pipeline.

Each setting is declared once, in its own dataclass (:class:`~medvl.pathology.tiling.TileConfig`,
:class:`~medvl.pathology.tissue.TissueConfig`, :class:`~medvl.pathology.extract.ExtractConfig`); this file only
groups them. A settings file reads::

    tiles: {mpp: 0.5, size: 224, overlap: 0, min_tissue: 0.25}
    tissue: {seg_mpp: 4.0}
    extract: {batch_size: 64, workers: 2, device: auto}
"""

from __future__ import annotations

from medvl.config import Config, dataclass, field
from medvl.pathology.extract import ExtractConfig
from medvl.pathology.tiling import TileConfig
from medvl.pathology.tissue import TissueConfig

__all__ = ["SlideSettings"]


@dataclass
class SlideSettings(Config):
    """Tiling, tissue detection and feature extraction settings of whole-slide images.

    Attributes:
        tiles: the tile grid (mpp, size, overlap, min_tissue).
        tissue: tissue detection.
        extract: how feature extraction runs (batch size, reader threads, device).
    """

    tiles: TileConfig = field(default_factory=TileConfig)
    tissue: TissueConfig = field(default_factory=TissueConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
