"""The typed pipeline file read by ``medvl run PIPELINE.yaml``.

A pipeline names a cohort manifest, one model (a checkpoint folder, a registered model name, or an inline model
config), the per-case steps of each modality, and the cohort steps that run once over all finished cases::

    name: demo-cohort
    manifest: demo-cohort.csv          # relative to this file
    model: {name: tiny-clip, seed: 0, random_weights: true}  # or {config: {...}} or {name: path/to/checkpoint}
    steps:
      slide: [tile, extract, zeroshot]
      ct: [preprocess, embed, zeroshot]
    cohort_steps: [index, survival]
    slide: {tiles: {mpp: 1.0, size: 224, min_tissue: 0.25}, extract: {batch_size: 32}}
    ct: {preprocess: {spacing: [3, 3, 3], spatial_size: [64, 64, 32]}}
    zeroshot: {classes: ["DOID:1612", "DOID:1324"], method: topk}
    survival: {covariates: [age], model: {pca_components: 2}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from medvl.config import Config, dataclass, field, read_config_file
from medvl.errors import ConfigError
from medvl.pathology.settings import SlideSettings
from medvl.tasks.survival.model import SurvivalConfig

__all__ = ["CTSteps", "IndexStep", "ModelSource", "PipelineConfig", "SurvivalStep", "ZeroShotStep"]


@dataclass
class ModelSource(Config):
    """The one model every step uses.

    Attributes:
        name: a medvl checkpoint folder, or a registered model name (``medvl.models.list_models()``).
        config: an inline ``ModelConfig`` mapping (towers, embed_dim) instead of ``name``.
        seed: seed of the initial weights when the model is built from a name or config. The pipeline writes
            such a model once as a checkpoint in the workspace, so every worker (process or Ray actor) loads the
            very same weights.
        random_weights: allow towers without weights (a model built from a name or config, or a checkpoint that
            records random towers): a random initialisation is never used without saying so, and every output
            records it.
    """

    name: str | None = None
    config: dict[str, Any] | None = None
    seed: int = 0
    random_weights: bool = False

    def validate(self) -> None:
        if (self.name is None) == (self.config is None):
            raise ConfigError("model: give exactly one of 'name' (checkpoint folder or registered name) or 'config'")


@dataclass
class CTSteps(Config):
    """CT preprocessing (a ``CTPreprocessConfig`` mapping, as ``medvl ct preprocess --config``) and embedding."""

    preprocess: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1
    allow_non_ct: bool = False
    allow_irregular: bool = False

    def preprocess_config(self) -> Any:
        from medvl.radiology.transforms import CTPreprocessConfig

        return CTPreprocessConfig.from_dict(dict(self.preprocess), source="pipeline ct.preprocess")


@dataclass
class ZeroShotStep(Config):
    """Zero-shot classes and pooling (the options of ``medvl zeroshot``)."""

    classes: list[str] = field(default_factory=list)
    node: str | None = None
    method: Literal["topk", "mean", "keep"] = "topk"
    topk: int = 50
    slide_templates: str = "pathology"
    ct_templates: str = "radiology"
    temperature: float = 0.01
    abstain_below: float | None = None


@dataclass
class IndexStep(Config):
    """The retrieval index over the cohort's slides (``medvl index build --model``)."""

    level: Literal["slide", "tile"] = "slide"
    kind: str = "auto"


@dataclass
class SurvivalStep(Config):
    """A survival model over the cases with ``time``/``event`` (``medvl survival fit`` then ``predict``).

    Attributes:
        covariates: manifest columns used as clinical covariates.
        embeddings: add each case's joint-space embedding (PCA-reduced) to the covariates.
        model: the survival model's settings (a ``SurvivalConfig`` mapping, as ``medvl survival fit --config``);
            a cohort of a few cases gets a stronger ridge penalty and two components by default.
        times: times at which survival probabilities are predicted.
    """

    covariates: list[str] = field(default_factory=list)
    embeddings: bool = True
    model: SurvivalConfig = field(default_factory=lambda: SurvivalConfig(penalizer=0.1, pca_components=2))
    times: list[float] = field(default_factory=list)


DEFAULT_STEPS = {"slide": ["tile", "extract", "zeroshot"], "ct": ["preprocess", "embed", "zeroshot"]}


@dataclass
class PipelineConfig(Config):
    """A whole cohort pipeline.

    Attributes:
        manifest: cohort manifest (CSV/Parquet); a relative path is read from the pipeline file's folder.
        model: the model used by every step.
        name: run name: outputs go to ``<workspace>/runs/<name>``.
        steps: per-modality ordered per-case steps (names from the step registry).
        slide: tiling, tissue and extraction settings (a ``SlideSettings`` mapping, as ``medvl slide --config``);
            ``device`` of the pipeline overrides ``slide.extract.device``.
        cohort_steps: steps run once over all finished cases (``index``, ``survival``).
        workers: parallel case workers (processes for ``local``, actors for ``ray``).
        threads_per_worker: torch threads in each worker.
        device: ``auto``, ``cpu``, ``cuda``.
        gpus_per_worker: GPUs each Ray actor reserves (``None``: 1 when the cluster has GPUs and ``device`` is not
            ``cpu``, else 0; fractions pack several actors on one GPU).
    """

    manifest: Path
    model: ModelSource
    name: str = "cohort"
    steps: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_STEPS.items()})
    cohort_steps: list[str] = field(default_factory=lambda: ["index", "survival"])
    slide: SlideSettings = field(default_factory=SlideSettings)
    ct: CTSteps = field(default_factory=CTSteps)
    zeroshot: ZeroShotStep = field(default_factory=ZeroShotStep)
    index: IndexStep = field(default_factory=IndexStep)
    survival: SurvivalStep = field(default_factory=SurvivalStep)
    workers: int = 2
    threads_per_worker: int = 1
    device: str = "cpu"
    gpus_per_worker: float | None = None

    def validate(self) -> None:
        if self.workers < 0 or self.threads_per_worker < 1:
            raise ConfigError("workers must be >= 0 and threads_per_worker >= 1")
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ConfigError(f"name: '{self.name}' must be a plain folder name")
        from medvl.pipelines.steps import check_steps

        check_steps(self.steps, self.cohort_steps)

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> PipelineConfig:
        """Read a pipeline file; ``manifest`` is resolved against the file's folder; ``overrides`` replace keys."""
        path = Path(path)
        data = read_config_file(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        if "manifest" in data and data["manifest"] is not None:
            manifest = Path(str(data["manifest"])).expanduser()
            data["manifest"] = manifest if manifest.is_absolute() else (path.parent / manifest).resolve()
        model = data.get("model")
        if isinstance(model, dict) and isinstance(model.get("name"), str):
            candidate = path.parent / model["name"]
            if not Path(model["name"]).is_absolute() and candidate.is_dir():
                data["model"] = {**model, "name": str(candidate.resolve())}
        return cls.from_dict(data, source=str(path))
