"""Typed training configuration (YAML/JSON): the run, its data and its stages.

A recipe is a list of stages; a single-stage recipe (``keep``) aligns two inputs contrastively, the ``two-stage``
recipe first enhances each encoder (text on graph groups, image on labels) and then aligns the image side to frozen,
pre-computed text embeddings. Unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.losses.registry import LossConfig
from medvl.models.multimodal import ModelConfig

__all__ = ["DataConfig", "EvalConfig", "ParamGroupConfig", "StageConfig", "TrainConfig"]


@dataclass
class DataConfig(Config):
    """Where batches come from.

    Attributes:
        dataset: a registered dataset (``breastmnist``, ``graph-groups``; ``medvl.train.data``).
        options: the dataset's own options.
        sampler: a registered sampler (``medvl.train.samplers``): ``shuffled`` pairs, ``group-balanced`` (G groups x
            K instances, KEEP), ``distinct`` (distinct items, optionally weighted, with hierarchy siblings) or
            ``event-balanced`` (survival batches with a fixed share of events).
        sampler_options: the sampler's own options (e.g. ``event_fraction`` of ``event-balanced``).
        batch_size: the global batch (over all processes) of one forward pass.
        groups_per_batch: G of the group-balanced sampler (K = batch_size / G).
        workers: DataLoader worker processes that read, decode and collate each batch (0: in the training process);
            the batches are the same either way.
    """

    dataset: str
    options: dict[str, Any] = field(default_factory=dict)
    sampler: str = "shuffled"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    groups_per_batch: int = 0
    workers: int = 0

    def validate(self) -> None:
        if self.batch_size <= 0 or self.workers < 0:
            raise ConfigError("DataConfig.batch_size must be positive and workers >= 0")


@dataclass
class ParamGroupConfig(Config):
    """Parameters whose name starts with ``prefix`` (e.g. ``towers.text``; ``head.``: the objective's own head, such
    as a new MLM head): frozen, or their own lr / weight decay."""

    prefix: str
    freeze: bool = False
    lr_scale: float = 1.0
    weight_decay: float | None = None

    @property
    def full_prefix(self) -> str:
        """The prefix among the objective's parameter names (the model's are under ``model.``)."""
        return self.prefix if self.prefix.startswith("head.") else f"model.{self.prefix}"


@dataclass
class EvalConfig(Config):
    """An evaluation the trainer runs before and after a stage: a registered ``name`` (``medvl.train.evaluations``)
    and its ``options``."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageConfig(Config):
    """One stage of a recipe.

    Attributes:
        name: a label for logs and checkpoints.
        objective: a registered objective (``medvl.train.objectives``): ``contrastive`` (two inputs aligned by
            ``losses``), ``supervised`` (a head on one tower), ``masked_embedding`` (LV-MAE over bags),
            ``bag_survival`` (Cox risk of bags) or ``lexical`` (a LexLIP head over a frozen text tower).
        objective_options: the objective's own typed options (the mask of ``masked_embedding``, of ``mlm``, ...).
        inputs: dataset fields fed to the model: ``[a, b]`` for contrastive, ``[x]`` for supervised.
        losses: terms of the contrastive objective.
        data: this stage's data (default: the run's ``data``).
        steps: optimizer steps (the stage ends earlier when ``max_minutes`` runs out).
        schedule: after the linear warm-up, ``cosine`` or ``linear`` decay to ``min_lr_ratio`` x lr, or ``constant``.
        max_minutes: time budget of the stage (0: none). The stage stops when it is spent, and the decay is
            budget-aware: it reaches its floor at the budget or at ``steps``, whichever comes first. Time-bounded
            stages are not bit-for-bit reproducible (the step count depends on the machine).
        betas, eps: AdamW's.
        precompute: inputs embedded once by the frozen model before the stage (two-stage: the text side).
        train_only: parameter-name prefixes trained in this stage; everything else frozen (ULIP-style binding).
        freeze_layers: ``{modality: n}``: freeze the input embedding and the lowest ``n`` layers of that tower.
        cache_frozen: compute the output of the frozen layers once for every text of the dataset, before the stage
            (checked against the full forward pass first), and run only the trainable layers per step.
        dropout: keep dropout in the trained towers (False: they run in eval mode, deterministic forward passes).
        bank_every: re-encode the group bank (for the ``bank`` loss) every N steps.
        evaluate: evaluations run before and after the stage (``metrics.jsonl``, ``summary.json``).
        eval_every: also run them every N optimizer steps (0: only before and after).
        best_metric: keep the checkpoint with the best value of this figure of the evaluations (``recall@1``,
            ``auc``, ...) in ``best/`` (``best.json`` says which step); measured after steps and at the end.
        best_mode: ``max`` or ``min``: which direction is better.
        multilabel: supervised with a sigmoid per label (labels are a multi-hot ``label`` field).
    """

    name: str = "align"
    objective: str = "contrastive"
    objective_options: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=lambda: ["image", "text"])
    losses: list[LossConfig] = field(default_factory=lambda: [LossConfig("infonce")])
    data: DataConfig | None = None
    steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_minutes: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_accum: int = 1
    max_grad_norm: float | None = None
    param_groups: list[ParamGroupConfig] = field(default_factory=list)
    precompute: list[str] = field(default_factory=list)
    train_only: list[str] = field(default_factory=list)
    freeze_layers: dict[str, int] = field(default_factory=dict)
    cache_frozen: bool = False
    dropout: bool = True
    bank_every: int = 50
    evaluate: list[EvalConfig] = field(default_factory=list)
    eval_every: int = 0
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"
    multilabel: bool = False

    def validate(self) -> None:
        if not self.inputs:
            raise ConfigError("StageConfig.inputs: name at least one dataset field")
        if self.steps <= 0 or self.grad_accum <= 0:
            raise ConfigError("StageConfig.steps and grad_accum must be positive")
        if self.eval_every < 0 or (self.best_metric and not self.evaluate):
            raise ConfigError("StageConfig.eval_every must be >= 0, and best_metric needs evaluations (evaluate)")
        if self.max_minutes < 0 or self.bank_every <= 0:
            raise ConfigError("StageConfig.max_minutes must be >= 0 and bank_every positive")
        if any(n <= 0 for n in self.freeze_layers.values()):
            raise ConfigError("StageConfig.freeze_layers: layer counts must be positive")
        if self.cache_frozen and not self.freeze_layers:
            raise ConfigError("StageConfig.cache_frozen: needs freeze_layers (there is nothing to cache)")
        unknown = [p for p in self.precompute if p not in self.inputs]
        if unknown:
            raise ConfigError(f"StageConfig.precompute: '{unknown[0]}' is not one of the inputs")


@dataclass
class TrainConfig(Config):
    """A training run.

    Attributes:
        recipe: a label (``keep``, ``two-stage``, ...) written to the run's records.
        model: a registered model name or a checkpoint folder to start from.
        model_config: a full model config instead of ``model``.
        data: default data of every stage.
        stages: the recipe's stages, run in order.
        precision: ``fp32`` or ``bf16`` (autocast).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        checkpoint_every: write a resumable checkpoint every N optimizer steps (and at the end of each stage).
        keep_checkpoints: how many resumable checkpoints to keep.
        grad_checkpointing: enable gradient checkpointing in towers that support it.
        threads: CPU threads per process (``None``: torch's default; 1 is fastest on a busy shared machine).
    """

    stages: list[StageConfig]
    recipe: str = "custom"
    model: str = "tiny-clip"
    model_config: ModelConfig | None = None
    data: DataConfig | None = None
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "auto"
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 10
    grad_checkpointing: bool = False
    find_unused_parameters: bool = False
    threads: int | None = None
    tensorboard: bool = True

    def validate(self) -> None:
        if not self.stages:
            raise ConfigError("TrainConfig.stages: at least one stage is needed")
        for i, stage in enumerate(self.stages):
            if stage.data is None and self.data is None:
                raise ConfigError(f"TrainConfig.stages[{i}] ({stage.name}): no data (set 'data' on the run or stage)")
        if self.checkpoint_every <= 0 or self.keep_checkpoints <= 0:
            raise ConfigError("TrainConfig.checkpoint_every and keep_checkpoints must be positive")

    def with_data_options(self, **options: Any) -> TrainConfig:
        """A copy with ``options`` set in the data of every stage whose dataset takes all of them (e.g. the graph file
        of ``graph-groups``); a :class:`ConfigError` when no stage's dataset does."""
        import dataclasses

        from medvl.train.data import dataset_options

        data = self.to_dict()
        hits = 0
        for node in [data.get("data"), *(stage.get("data") for stage in data["stages"])]:
            if node is None:
                continue
            known = {f.name for f in dataclasses.fields(dataset_options(node["dataset"]))}
            if set(options) <= known:
                node["options"] = {**node.get("options", {}), **options}
                hits += 1
        if not hits:
            raise ConfigError(f"no dataset of this recipe takes {', '.join(sorted(options))}")
        return TrainConfig.from_dict(data)

    def stage_data(self, index: int) -> DataConfig:
        return self.stages[index].data or self.data  # type: ignore[return-value]
