"""Loss registry: a recipe names its losses (``infonce``, ``siglip``, ``filip``, ``knowledge_group``, ``intra``,
``bank``, ``hard_negative``, ``mlcd``, ``adaptive_pair``, ``token_mask``, ``supremix``).

Each registered loss takes a :class:`LossInputs` (the embeddings of one batch and the model's temperature) plus its
own options, and returns a scalar. Options are checked: an unknown option is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.registry import Registry

__all__ = ["LOSSES", "LossConfig", "LossInputs", "build_losses", "list_losses", "register_loss"]


@dataclass
class LossInputs:
    """What a batch gives the losses. ``a``/``b`` are local L2-normalised embeddings of paired rows.

    ``groups`` holds each row's semantic group id; ``group_relatives`` is a ``[G, G]`` bool matrix over group ids
    (True = related in the hierarchy: not a negative). ``a2``/``b2`` are second views (intra-modal term);
    ``tokens_*``/``mask_*`` token embeddings (FILIP). ``bank`` is ``[G, D]``, one embedding per group id (e.g. every
    concept's name), kept by the trainer for losses that classify among all groups. ``labels`` holds each row's
    concepts as a ``[N, K]`` multi-hot matrix (captions naming several concepts) or ``[N]`` class ids (MLCD).
    ``targets`` are continuous targets of the rows of ``a`` (e.g. log survival time), ``target_mask`` marks the rows
    whose target is known (SupReMix).
    """

    a: torch.Tensor
    b: torch.Tensor
    logit_scale: torch.Tensor
    logit_bias: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    group_relatives: torch.Tensor | None = None
    a2: torch.Tensor | None = None
    b2: torch.Tensor | None = None
    tokens_a: torch.Tensor | None = None
    tokens_b: torch.Tensor | None = None
    mask_a: torch.Tensor | None = None
    mask_b: torch.Tensor | None = None
    bank: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None


@dataclass
class LossConfig(Config):
    """One term of the objective: registered ``name``, ``weight`` and the loss's ``options``."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


LossFn = Callable[..., torch.Tensor]
#: name -> (loss function, the LossInputs fields it needs)
LOSSES: Registry[tuple[LossFn, tuple[str, ...]]] = Registry("loss")


def register_loss(name: str, needs: tuple[str, ...] = ()):
    """Register ``fn(inputs: LossInputs, **options)``; ``needs`` names the LossInputs fields it requires."""

    def decorator(fn: LossFn) -> LossFn:
        LOSSES.add(name, (fn, tuple(needs)))
        return fn

    return decorator


def list_losses() -> list[str]:
    return LOSSES.names()


@dataclass
class WeightedLoss:
    name: str
    weight: float
    fn: LossFn
    options: dict[str, Any]
    needs: tuple[str, ...]

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        for need in self.needs:
            if getattr(inputs, need) is None:
                raise ConfigError(f"loss '{self.name}' needs '{need}' but the batch does not provide it")
        return self.fn(inputs, **self.options)


def build_losses(configs: list[LossConfig]) -> list[WeightedLoss]:
    """Resolve loss configs against the registry; unknown names or options are a clear error."""
    built = []
    for cfg in configs:
        fn, needs = LOSSES.get(cfg.name)
        accepted = [p for p in inspect.signature(fn).parameters if p != "inputs"]
        for key in cfg.options:
            if key not in accepted:
                raise ConfigError(f"loss '{cfg.name}': unknown option '{key}' (known: {', '.join(accepted)})")
        built.append(WeightedLoss(cfg.name, cfg.weight, fn, dict(cfg.options), needs))
    return built


# ------------------------------------------------------------------------------------------------ built-in losses
@register_loss("infonce")
def _infonce(inputs: LossInputs, label_smoothing: float = 0.0, local_loss: bool = False,
             gather_with_grad: bool = True) -> torch.Tensor:
    from medvl.losses.contrastive import infonce_loss

    return infonce_loss(inputs.a, inputs.b, inputs.logit_scale, label_smoothing=label_smoothing,
                        local_loss=local_loss, gather_with_grad=gather_with_grad)


@register_loss("siglip", needs=("logit_bias",))
def _siglip(inputs: LossInputs) -> torch.Tensor:
    from medvl.losses.siglip import siglip_loss

    return siglip_loss(inputs.a, inputs.b, inputs.logit_scale, inputs.logit_bias)


@register_loss("filip", needs=("tokens_a", "tokens_b"))
def _filip(inputs: LossInputs) -> torch.Tensor:
    from medvl.losses.filip import filip_loss

    return filip_loss(inputs.tokens_a, inputs.tokens_b, inputs.logit_scale, inputs.mask_a, inputs.mask_b)


@register_loss("intra", needs=("a2",))
def _intra(inputs: LossInputs, side: str = "a") -> torch.Tensor:
    from medvl.losses.intra import intra_modal_loss

    if side not in ("a", "b"):
        raise ConfigError("loss 'intra': side must be 'a' or 'b'")
    v1, v2 = (inputs.a, inputs.a2) if side == "a" else (inputs.b, inputs.b2)
    if v2 is None:
        raise ConfigError(f"loss 'intra' (side {side}) needs a second view of '{side}'")
    return intra_modal_loss(v1, v2, inputs.logit_scale)


@register_loss("knowledge_group", needs=("groups",))
def _knowledge_group(inputs: LossInputs, use_hierarchy: bool = True) -> torch.Tensor:
    """KEEP's loss (medvl.losses.knowledge): rows of one semantic group are positives; relatives are not negatives.

    Features and group ids are gathered over processes (with gradient) and the full loss is computed everywhere,
    which gives the exact gradient of the global batch after DDP's averaging.
    """
    from medvl.losses.distributed import all_gather_no_grad, all_gather_with_grad
    from medvl.losses.knowledge import knowledge_group_loss

    a, b = all_gather_with_grad(inputs.a), all_gather_with_grad(inputs.b)
    groups = all_gather_no_grad(inputs.groups)
    exclude = None
    if use_hierarchy and inputs.group_relatives is not None:
        rel = inputs.group_relatives.to(groups.device)
        # one 2-D gather ([N, N]) rather than rows then columns ([N, G] first: slow for large graphs)
        exclude = rel[groups[:, None], groups[None, :]] & (groups[:, None] != groups[None, :])
    return knowledge_group_loss(a, b, groups, exclude_mask=exclude, logit_scale=inputs.logit_scale)


@register_loss("bank", needs=("groups", "bank"))
def _bank(inputs: LossInputs, use_hierarchy: bool = True) -> torch.Tensor:
    """Each ``b`` row classified among the bank of every group (medvl.losses.bank); local to each process."""
    from medvl.losses.bank import bank_loss

    relatives = inputs.group_relatives if use_hierarchy else None
    return bank_loss(inputs.b, inputs.bank, inputs.groups, inputs.logit_scale, relatives)


# ------------------------------------------------------------------------------------------------ sharper contrastive
@register_loss("hard_negative")
def _hard_negative(inputs: LossInputs, margin: float | None = 0.1, k: int = 8, beta: float = 0.0) -> torch.Tensor:
    """UniME (medvl.losses.hardneg): false negatives above the positive + ``margin`` removed, ``k`` hardest kept."""
    from medvl.losses.hardneg import hard_negative_loss

    if k < 0 or beta < 0:
        raise ConfigError("loss 'hard_negative': k and beta must be >= 0")
    return hard_negative_loss(inputs.a, inputs.b, inputs.logit_scale, margin=margin, k=k, beta=beta)


@register_loss("mlcd")
def _mlcd(inputs: LossInputs, margin: float = 0.0, detach_centres: bool = False) -> torch.Tensor:
    """MLCD (medvl.losses.mlcd): every concept a caption names is a positive centre; ``labels`` else ``groups``."""
    from medvl.losses.mlcd import mlcd_loss

    labels = inputs.labels if inputs.labels is not None else inputs.groups
    if labels is None:
        raise ConfigError("loss 'mlcd' needs concept labels ('concepts' field) or groups but the batch has neither")
    return mlcd_loss(inputs.a, inputs.b, labels, inputs.logit_scale, margin=margin, detach_centres=detach_centres)


@register_loss("adaptive_pair")
def _adaptive_pair(inputs: LossInputs, sharpness: float = 2.0) -> torch.Tensor:
    """ALIP (medvl.losses.alip): pairs weighted by image-caption (and caption-caption, with ``b2``) agreement."""
    from medvl.losses.alip import adaptive_pair_loss

    if sharpness < 0:
        raise ConfigError("loss 'adaptive_pair': sharpness must be >= 0")
    return adaptive_pair_loss(inputs.a, inputs.b, inputs.logit_scale, b2=inputs.b2, sharpness=sharpness)


@register_loss("token_mask", needs=("tokens_b",))
def _token_mask(inputs: LossInputs, mask_ratio: float = 0.3) -> torch.Tensor:
    """GA-DMS (medvl.losses.tokenmask): the caption's least attended tokens masked before pooling."""
    from medvl.losses.tokenmask import token_masked_loss

    if not 0 <= mask_ratio < 1:
        raise ConfigError("loss 'token_mask': mask_ratio must be in [0, 1)")
    return token_masked_loss(inputs.a, inputs.tokens_b, inputs.mask_b, inputs.logit_scale, mask_ratio=mask_ratio)


@register_loss("supremix", needs=("targets",))
def _supremix(inputs: LossInputs, delta: float | None = None, mix: float = 0.5) -> torch.Tensor:
    """SupReMix (medvl.losses.supremix): contrastive regression of ``a`` on ``targets`` with mixed pairs."""
    from medvl.losses.supremix import supremix_loss

    if not 0.0 <= mix <= 1.0 or (delta is not None and delta < 0):
        raise ConfigError("loss 'supremix': mix must be in [0, 1] and delta >= 0")
    return supremix_loss(inputs.a, inputs.targets, inputs.logit_scale, inputs.target_mask, delta=delta, mix=mix)
