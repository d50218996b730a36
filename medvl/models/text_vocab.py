"""Concept-aware vocabulary for the Hugging Face text tower (K-Tokeniser; Medical-BERT vocabulary extension).

The ``vocab`` option of ``hf-text`` adds tokens to the tower's tokenizer before any training: a token per disease
concept (``[DOID:1612]``; mentions are rewritten to it by :class:`~medvl.knowledge.tokenizer.ConceptTokenizer`) and,
optionally, frequent domain words that the base vocabulary splits into many pieces. The embedding table is resized and
each new row initialised from the sub-word embeddings of the concept's name (``init: name``), the mean over its name
and synonyms (``synonyms``), or at random (``random``, the ablation). A checkpoint stores the tokenizer (with the
concept lexicon) and the resized table, so ``create_model`` and zero-shot prompts tokenize as training did.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from medvl.config import Config
from medvl.errors import ConfigError, InputError

__all__ = ["VocabConfig", "apply_vocab", "frequent_domain_words", "load_text_tokenizer"]


@dataclass
class VocabConfig(Config):
    """Tokens added to a text tower.

    Attributes:
        init: how new embedding rows start: ``name`` (mean of the name's sub-word embeddings), ``synonyms`` (mean
            over the name and synonyms) or ``random`` (normal, the encoder's initializer range).
        concepts: add a token per concept of ``concept_source`` in the graph of ``sources`` (``False``: words only).
        sources: graph sources (default: the bundled ones).
        concept_source: the source whose concepts get tokens (``DOID``).
        concept_ids: only these concepts (an unknown id is an error).
        words: domain words added as whole tokens.
        words_from: a text file; its ``max_words`` most frequent words that the base tokenizer splits into at least
            ``min_pieces`` pieces (and that occur ``min_count`` times) are added.
        holdout_file: texts (one per line) that must never become concept mentions: the held-out queries of an
            evaluation (synonym linking), which would otherwise turn into the concept's own token.
        seed: seed of ``random`` init.
    """

    init: Literal["name", "synonyms", "random"] = "synonyms"
    concepts: bool = True
    sources: list[str] | None = None
    concept_source: str = "DOID"
    concept_ids: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    words_from: str | None = None
    max_words: int = 500
    min_pieces: int = 3
    min_count: int = 5
    holdout_file: str | None = None
    seed: int = 0


def frequent_domain_words(path: str | Path, tokenizer: Any, max_words: int, min_pieces: int,
                          min_count: int) -> list[str]:
    """The most frequent (lower-cased) words of a text file that ``tokenizer`` splits into >= ``min_pieces``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "words_from: file not found")
    counts = Counter(re.findall(r"[a-z][a-z-]{3,}", path.read_text(encoding="utf-8", errors="replace").lower()))
    vocab = tokenizer.get_vocab()
    out = []
    for word, n in counts.most_common():
        if n < min_count or len(out) >= max_words:
            break
        if word not in vocab and len(tokenizer.tokenize(word)) >= min_pieces:
            out.append(word)
    return out


def _concept_tokenizer(cfg: VocabConfig, tokenizer: Any) -> Any:
    from medvl.knowledge import BuildConfig, cached_graph
    from medvl.knowledge.tokenizer import ConceptTokenizer

    graph = cached_graph(BuildConfig(sources=cfg.sources) if cfg.sources else BuildConfig())
    if cfg.concept_ids:
        unknown = [i for i in cfg.concept_ids if i not in graph]
        if unknown:
            raise ConfigError(f"vocab.concept_ids: unknown concept id(s) {', '.join(unknown[:5])} (not in the graph "
                              f"of {', '.join(cfg.sources or BuildConfig().sources)})")
        ids = cfg.concept_ids
    else:
        ids = graph.subgraph_ids(cfg.concept_source)
        if not ids:
            raise ConfigError(f"vocab.concept_source: the graph has no concept of source '{cfg.concept_source}'")
    out = ConceptTokenizer.from_graph(tokenizer, graph, ids)
    if cfg.holdout_file:
        _drop_held_out(out, cfg.holdout_file)
    return out


def _drop_held_out(concepts: Any, path: str) -> None:
    """Held-out texts are neither tagged as mentions nor used to initialise a concept's embedding."""
    from medvl.knowledge.text import normalise

    file = Path(path)
    if not file.is_file():
        raise InputError(file, "vocab.holdout_file: file not found")
    lines = file.read_text(encoding="utf-8").splitlines()
    held = {normalise(line) for line in lines}
    for line in lines:
        concepts.tagger.lexicon.pop(normalise(line), None)
        concepts.tagger.acronyms.pop(line.strip(), None)
    for cid, names in concepts.names.items():
        concepts.names[cid] = [names[0], *(n for n in names[1:] if normalise(n) not in held)]


def _pieces(tokenizer: Any, text: str) -> list[int]:
    special = set(tokenizer.all_special_ids)
    return [i for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i not in special]


def apply_vocab(cfg: VocabConfig, tokenizer: Any, model: Any) -> tuple[Any, dict[str, int]]:
    """Add the configured tokens to ``tokenizer``, resize ``model``'s embeddings and initialise the new rows.

    Returns:
        The tokenizer to use (a ``ConceptTokenizer`` around ``tokenizer`` when concepts are added) and counts of
        added words and concepts.
    """
    words = list(dict.fromkeys([w.lower() for w in cfg.words] + (frequent_domain_words(
        cfg.words_from, tokenizer, cfg.max_words, cfg.min_pieces, cfg.min_count) if cfg.words_from else [])))
    words = [w for w in words if w not in tokenizer.get_vocab()]
    sources: dict[str, list[list[int]]] = {w: [_pieces(tokenizer, w)] for w in words}  # before the words exist
    if words:
        from transformers import AddedToken

        tokenizer.add_tokens([AddedToken(w, single_word=True) for w in words])
    out = tokenizer
    if cfg.concepts:
        out = _concept_tokenizer(cfg, tokenizer)
        for cid, names in out.names.items():
            sources[out.tokens[cid]] = [_pieces(tokenizer, n) for n in (names if cfg.init == "synonyms" else names[:1])]
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    table = model.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(cfg.seed)
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        for token, piece_lists in sources.items():
            row = tokenizer.convert_tokens_to_ids(token)
            if row < old:
                continue  # the token was already in the vocabulary
            parts = [table[p].mean(0) for p in piece_lists if p and max(p) < old]
            if cfg.init == "random" or not parts:
                table[row] = torch.randn(table.shape[1], generator=generator) * std
            else:
                table[row] = torch.stack(parts).mean(0)
    return out, {"words": len(words), "concepts": len(out.names) if cfg.concepts else 0,
                 "vocab_size": len(tokenizer)}


def load_text_tokenizer(folder: str | Path) -> Any:
    """The tokenizer of a text-tower folder: a concept tokenizer where the folder holds its lexicon."""
    from transformers import AutoTokenizer

    from medvl.knowledge.tokenizer import CONCEPTS_FILE, ConceptTokenizer

    if (Path(folder) / CONCEPTS_FILE).is_file():
        return ConceptTokenizer.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(str(folder))
