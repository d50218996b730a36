"""What a worker holds while it runs cases: the run layout, the pipeline config and the models, loaded once.

A :class:`RunSpec` is plain data (paths and the resolved config as a dict), so it travels to worker processes and Ray
actors; each of them builds one :class:`CaseContext` from it and keeps it for every case it runs. Models load lazily
on first use, so a resumed run whose cases are all finished never builds them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_json
from medvl.hashing import config_hash, content_hash
from medvl.pipelines.config import ModelSource, PipelineConfig

__all__ = ["CaseContext", "RunLayout", "RunSpec", "materialise_model"]


@dataclass(frozen=True)
class RunLayout:
    """Folders of one run under ``<workspace>/runs/<name>``."""

    root: Path
    volumes: Path

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def ct(self) -> Path:
        return self.root / "ct"

    @property
    def zeroshot(self) -> Path:
        return self.root / "zeroshot"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def survival(self) -> Path:
        return self.root / "survival"

    def create(self) -> RunLayout:
        for p in (self.features, self.ct, self.zeroshot, self.state, self.volumes):
            p.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs, as plain data: the resolved config, the run folders and the model checkpoint."""

    config: dict[str, Any]
    root: str
    volumes: str
    model_dir: str
    model_fingerprint: str

    def layout(self) -> RunLayout:
        return RunLayout(Path(self.root), Path(self.volumes))

    def pipeline(self) -> PipelineConfig:
        return PipelineConfig.from_dict(self.config)


def materialise_model(source: ModelSource, models_dir: Path) -> tuple[Path, str]:
    """The checkpoint folder every worker loads, and a fingerprint of its weights and config.

    A checkpoint folder is used as it is. A registered name or inline config is built once with ``seed`` and saved
    under ``models_dir`` (reused on later runs), so all workers and both backends share identical weights.
    """
    from medvl.models.checkpoint import is_checkpoint

    if source.name is not None and Path(source.name).expanduser().is_dir():
        folder = Path(source.name).expanduser().resolve()
    else:
        spec = {"name": source.name, "config": source.config, "seed": source.seed}
        folder = (models_dir / f"pipeline-{source.name or 'inline'}-{config_hash(spec)}").resolve()
        if not is_checkpoint(folder):
            _build_checkpoint(source, folder)
    return folder, _fingerprint(folder)


def _build_checkpoint(source: ModelSource, folder: Path) -> None:
    import torch

    from medvl.models import create_model, save_checkpoint

    target: Any = source.name
    if source.config is not None:
        from medvl.models.multimodal import ModelConfig

        target = ModelConfig.from_dict(dict(source.config), source="pipeline model.config")
    torch.manual_seed(source.seed)
    # untrained: no training-time preprocessing exists, so the pipeline's own config is the right one; the
    # checkpoint records its towers as random weights, and so does every output made with it
    model = create_model(target, random_weights=source.random_weights).eval()
    save_checkpoint(model, folder, extra={"untrained": True, "seed": source.seed})


def _fingerprint(folder: Path) -> str:
    """The model's part of every step key: the content of its weights (as every output's provenance records them)
    and of its config (structure, preprocessing, domains)."""
    from medvl.models.checkpoint import CONFIG, WEIGHTS
    from medvl.provenance import weights_hash

    return config_hash([weights_hash(folder / WEIGHTS), content_hash(folder / CONFIG)])


class CaseContext:
    """Per-worker state: config, folders, and lazily loaded models (the same loaders the CLI commands use)."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.config = spec.pipeline()
        self.layout = spec.layout()
        self.model_dir = Path(spec.model_dir)
        self._set_threads()

    def _set_threads(self) -> None:
        import torch

        torch.set_num_threads(self.config.threads_per_worker)

    @functools.cached_property
    def space(self) -> Any:
        """The joint space (model + source) zero-shot and the cohort steps use (``medvl zeroshot --model``)."""
        from medvl.tasks.space import JointSpace

        return JointSpace.load(self.model_dir, random_weights=self.config.model.random_weights)

    @functools.cached_property
    def graph(self) -> Any:
        from medvl.knowledge import default_graph

        return default_graph()

    @functools.cached_property
    def classes(self) -> tuple[list[str], dict[str, list[str]]]:
        from medvl.tasks.zeroshot.run import resolve_classes

        zs = self.config.zeroshot
        return resolve_classes(self.graph, zs.node, zs.classes)

    @functools.cached_property
    def tile_encoder(self) -> Any:
        """The slide tile encoder: the checkpoint's raw image tower, as ``medvl slide extract --encoder DIR`` builds
        it (the same function, on the joint space's model, loaded once)."""
        from medvl.pathology.extract import EncoderSpec, model_tile_encoder

        spec = EncoderSpec(name=str(self.model_dir), random_weights=self.config.model.random_weights)
        return model_tile_encoder(self.space.model, spec)

    @functools.cached_property
    def volume_encoder(self) -> Any:
        """The CT encoder: the checkpoint's volume tower in the joint space (``medvl ct embed --model DIR``)."""
        from medvl.radiology.embed import load_volume_encoder

        return load_volume_encoder(str(self.model_dir), device=self.config.device,
                                   random_weights=self.config.model.random_weights)

    @functools.cached_property
    def ct_preprocess(self) -> Any:
        cfg = self.config.ct.preprocess_config()
        enc = self.volume_encoder
        if enc.preprocess is not None:  # a checkpoint trained with a CT chain dictates it
            return enc.preprocess
        if enc.input_shape is not None:
            cfg = cfg.replace(spatial_size=tuple(reversed(enc.input_shape)))
        return cfg

    @functools.cached_property
    def volume_cache(self) -> Any:
        from medvl.radiology.cache import VolumeCache

        return VolumeCache(self.layout.volumes, self.ct_preprocess)

    def write_json(self, path: Path, obj: Any) -> Path:
        return atomic_write_json(path, obj)
