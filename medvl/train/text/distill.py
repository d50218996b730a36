"""``distill``: a compact student text tower matches a frozen teacher (Well-Read Students; DistilBERT).

The student is the run's text tower: a smaller pre-trained encoder, or the teacher's own encoder truncated to a few
layers (``hf-text`` with ``layers: 2``, evenly spread). Per batch, the student's sentence embedding (the tower's
pooled output) matches the teacher's by cosine (``1 - cos``) or MSE; with ``token_weight > 0`` the student's token
distributions over the vocabulary (last hidden states against the tied input embeddings, at ``temperature``) also
match the teacher's by KL divergence, which needs the same tokenizer. Students narrower than the teacher need
``projection: true`` (a linear map to the teacher's width, trained with the student). The teacher's fingerprint is
kept in the trainer state: resuming with another teacher is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.train.config import StageConfig
from medvl.train.objectives import register_objective
from medvl.train.text.common import TextObjective, global_mean

__all__ = ["DistillConfig", "DistillObjective"]


@dataclass
class DistillConfig(Config):
    """Options of ``distill`` (``objective_options``).

    Attributes:
        teacher: a checkpoint folder or registered model whose text tower teaches; empty: an ``hf-text`` tower of
            ``teacher_path`` (default: the offline MiniLM).
        teacher_path: a local Hugging Face encoder folder for the teacher (when ``teacher`` is empty).
        loss: ``cosine`` (1 - cos of sentence embeddings) or ``mse``.
        projection: map the student's embedding to the teacher's width with a trained linear layer.
        token_weight: weight of the token-distribution KL term (0: off).
        temperature: softmax temperature of the token distributions.
        teacher_random_weights: accept a teacher without trained weights (the tiny test teachers only).
    """

    teacher: str = ""
    teacher_path: str | None = None
    loss: Literal["cosine", "mse"] = "cosine"
    projection: bool = False
    token_weight: float = 0.0
    temperature: float = 2.0
    teacher_random_weights: bool = False

    def validate(self) -> None:
        if self.token_weight < 0 or self.temperature <= 0:
            raise ConfigError("DistillConfig: token_weight must be >= 0 and temperature positive")


def _teacher_tower(cfg: DistillConfig) -> Any:
    from medvl.models import create_model
    from medvl.models.registry import create_tower

    if cfg.teacher:
        model = create_model(cfg.teacher, random_weights=cfg.teacher_random_weights)
        if "text" not in model.towers:
            raise ConfigError(f"distill: the teacher {cfg.teacher} has no text tower")
        return model.towers["text"]
    return create_tower("hf-text", **({"path": cfg.teacher_path} if cfg.teacher_path else {}))


def tower_fingerprint(tower: nn.Module) -> str:
    """A hash of a tower's weights (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


class DistillHead(nn.Module):
    """The student-side parameters of distillation (an optional projection) and the teacher's fingerprint."""

    def __init__(self, student_dim: int, teacher_dim: int, projection: bool, fingerprint: str):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim) if projection else None
        self.register_buffer("teacher_fingerprint", torch.tensor(list(fingerprint.encode()), dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) if self.proj is not None else x

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        saved = state_dict.get(prefix + "teacher_fingerprint")
        if saved is not None and not torch.equal(saved.cpu(), self.teacher_fingerprint.cpu()):
            raise ConfigError("distill: this run was trained with another teacher (its fingerprint "
                              f"{bytes(saved.tolist()).decode()} != {bytes(self.teacher_fingerprint.tolist()).decode()}"
                              "); resume with the teacher that wrote it or use a new --out")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_objective("distill")
class DistillObjective(TextObjective):
    """Sentence-embedding (and optionally token-distribution) distillation (see the module docstring)."""

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__(model, stage, dataset, seed)
        try:
            self.cfg = DistillConfig.from_dict(stage.objective_options)
        except ConfigError as exc:
            raise ConfigError(f"stage '{stage.name}' objective_options: {exc}") from None
        with torch.random.fork_rng(devices=[]):  # a randomly initialised (tiny) teacher is the same on every resume
            torch.manual_seed(seed)
            self.teacher = _teacher_tower(self.cfg)
        self.teacher.requires_grad_(False)
        self.teacher.max_length = self.tower.max_length  # both read the same tokens of a text
        s_dim, t_dim = self.tower.embed_dim, self.teacher.embed_dim
        if s_dim != t_dim and not self.cfg.projection:
            raise ConfigError(f"distill: the student's embeddings are {s_dim}-d and the teacher's {t_dim}-d; set "
                              "projection: true to learn a map between them")
        if self.cfg.token_weight and self.teacher.tokenizer.get_vocab() != _hf(self.tower.tokenizer).get_vocab():
            raise ConfigError("distill: token distributions need the teacher's tokenizer (the student's differs)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = DistillHead(s_dim, t_dim, self.cfg.projection, tower_fingerprint(self.teacher))

    def train(self, mode: bool = True) -> DistillObjective:
        super().train(mode)
        self.teacher.eval()  # the teacher is fixed: no dropout
        return self

    def _token_kl(self, student: tuple, teacher: tuple) -> torch.Tensor:
        (hs, mask), (ht, _) = student, teacher
        t = self.cfg.temperature
        keep = mask.bool()
        logits_s = hs[keep].float() @ self.embeddings().float().T / t
        emb_t = self.teacher.model.get_input_embeddings().weight.float()
        logits_t = ht[keep].float() @ emb_t.T / t
        total = F.kl_div(F.log_softmax(logits_s, -1), F.log_softmax(logits_t, -1), log_target=True,
                         reduction="sum")
        return global_mean(total, keep.sum()) * t * t

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        texts = batch[self.field]
        # token distributions compare the same tokens: the student's tokenization feeds both towers then
        student_in = self.tower.tokenize(texts)
        with torch.no_grad():
            t_hidden, t_mask = self.teacher.encode_tokens_masked(student_in if self.cfg.token_weight else texts)
            t_emb = self.teacher.pool(t_hidden, t_mask)
        s_hidden, s_mask = self.tower.encode_tokens_masked(student_in)
        s_emb = self.head(self.tower.pool(s_hidden, s_mask))
        with torch.autocast(s_emb.device.type, enabled=False):
            s32, t32 = s_emb.float(), t_emb.float()
            if self.cfg.loss == "cosine":
                sentence = (1 - F.cosine_similarity(s32, t32, dim=-1)).mean()
            else:
                sentence = F.mse_loss(s32, t32)
            loss, logs = sentence, {f"loss_{self.cfg.loss}": float(sentence.detach())}
            if self.cfg.token_weight:
                kl = self._token_kl((s_hidden, s_mask), (t_hidden, t_mask))
                loss = loss + self.cfg.token_weight * kl
                logs["loss_token_kl"] = float(kl.detach())
        return loss, logs


def _hf(tokenizer: Any) -> Any:
    return getattr(tokenizer, "tokenizer", tokenizer) if hasattr(tokenizer, "rewrite") else tokenizer
