"""Text corpora as training data: reports from a cohort manifest's ``report`` column, plain-text or JSONL files.

Each corpus is read, split into sentences or report sections (or kept whole), filtered by length, and mixed with
the others: a corpus's ``upsample`` factor repeats its texts (Medical-BERT localisation: a small in-domain corpus
up-sampled against a larger general one; a fractional part repeats a seeded subset). Texts are deduplicated across
corpora (case- and space-folded) before mixing, and every text that matches a held-out evaluation text (``exclude``:
the same corpus formats) is removed, so an evaluation never scores a text the encoder was trained on.

The dataset has one field, ``text``, for the text objectives (``mlm``, ``rtd``, ``distill``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from medvl.config import Config
from medvl.errors import ConfigError, InputError
from medvl.train.data.registry import register_dataset

__all__ = ["CorpusConfig", "TextCorpus", "TextCorpusOptions", "fold_text", "read_corpus", "split_sections",
           "split_sentences", "with_corpus"]

# a sentence ends at . ! ? followed by space and an upper-case letter, digit or quote; not after a one-letter or a
# common abbreviation (e.g., i.e., Dr., vs., approx.), nor inside a decimal number
_ABBREV = r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bDr\.)(?<!\bvs\.)(?<!\bapprox\.)(?<!\bNo\.)(?<!\b[A-Za-z]\.)"
_SENTENCE_END = re.compile(_ABBREV + r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# a section heading: an upper-case phrase followed by a colon at a line start or after a sentence end
_SECTION = re.compile(
    r"(?:(?<=\n)|(?<=^)|(?<=[.!?]\s))\s*([A-Z][A-Z /&()-]{2,40}):\s*")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (a rule-based splitter that keeps abbreviations and decimals together)."""
    out = []
    for line in re.split(r"\n\s*\n", text):
        out += [s.strip() for s in _SENTENCE_END.split(" ".join(line.split())) if s.strip()]
    return out


def split_sections(text: str) -> list[str]:
    """Sections of a report: the text under each upper-case heading (``FINDINGS:``, ``IMPRESSION:``); a report
    without headings is one section."""
    parts = _SECTION.split(text)
    # re.split with one group: [before, heading1, body1, heading2, body2, ...]
    bodies = [parts[0], *parts[2::2]]
    return [" ".join(b.split()) for b in bodies if b.strip()]


def fold_text(text: str) -> str:
    """Case- and space-folded text: the key of deduplication and of the held-out check."""
    return " ".join(text.casefold().split())


@dataclass
class CorpusConfig(Config):
    """One corpus.

    Attributes:
        path: a folder of corpus files, or a ``.txt`` file (one text per line, or per blank-line-separated
            paragraph with ``paragraphs``), a ``.jsonl`` file (one object per line) or a ``.csv``/``.tsv`` manifest.
        format: ``auto`` (from the suffix), ``text``, ``jsonl``, ``csv``, or ``graph``: the names, synonyms and
            definitions of the bundled disease-graph ``sources`` (``doid_ncit``, ``oncotree``, ``icd10cm``, ...).
        sources: the graph sources of ``format: graph``.
        columns: the CSV columns or JSONL keys whose texts are joined into one document (default ``report`` for a
            manifest, ``text`` for JSONL).
        split: ``sentence``, ``section`` (report headings) or ``none`` (one text per document).
        upsample: how many times each text of this corpus appears (fractional: a seeded subset once more).
        paragraphs: plain text: a document is a blank-line-separated paragraph instead of a line.
        name: a label for the dataset's summary (default: the file name).
    """

    path: str = ""
    format: Literal["auto", "text", "jsonl", "csv", "graph"] = "auto"
    sources: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    split: Literal["sentence", "section", "none"] = "sentence"
    upsample: float = 1.0
    paragraphs: bool = False
    name: str = ""

    def validate(self) -> None:
        if self.upsample <= 0:
            raise ConfigError(f"CorpusConfig.upsample: must be positive ({self.path})")
        if (self.format == "graph") != bool(self.sources) or (self.format != "graph" and not self.path):
            raise ConfigError("CorpusConfig: give 'path' (a file or folder), or format: graph with 'sources'")


@dataclass
class TextCorpusOptions(Config):
    """Options of the ``text-corpus`` dataset.

    Attributes:
        corpora: the corpora mixed into the dataset.
        exclude: held-out evaluation texts (same formats, split the same way as each is configured): every corpus
            text equal to one of them after folding, or (``exclude_match: contained``) containing one of them of at
            least ``min_chars``, is removed.
        exclude_match: ``contained`` or ``exact``.
        min_chars, max_chars: texts shorter are dropped, longer are cut at a word boundary.
        dedup: drop repeated texts (after folding), keeping the first.
        seed: the seed of fractional up-sampling.
    """

    corpora: list[CorpusConfig]
    exclude: list[CorpusConfig] = field(default_factory=list)
    exclude_match: Literal["contained", "exact"] = "contained"
    min_chars: int = 8
    max_chars: int = 2000
    dedup: bool = True
    seed: int = 0

    def validate(self) -> None:
        if not self.corpora:
            raise ConfigError("text-corpus: name at least one corpus in 'corpora'")
        if self.min_chars < 1 or self.max_chars < self.min_chars:
            raise ConfigError("text-corpus: need 1 <= min_chars <= max_chars")


def _format(corpus: CorpusConfig) -> str:
    if corpus.format != "auto":
        return corpus.format
    suffix = Path(corpus.path).suffix.lower()
    formats = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "csv"}
    if suffix not in formats:
        raise InputError(corpus.path, f"cannot tell the corpus format from '{suffix}' (set format: text|jsonl|csv)")
    return formats[suffix]


def _read_csv(path: Path, columns: list[str]) -> list[str]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"no column '{missing[0]}' (columns: {', '.join(reader.fieldnames or [])})")
        return [" \n".join(row[c] for c in columns if row[c] and row[c].strip()) for row in reader]


def _read_jsonl(path: Path, keys: list[str]) -> list[str]:
    docs = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise InputError(path, f"line {number} is not JSON") from None
            if not isinstance(obj, dict) or not any(k in obj for k in keys):
                raise InputError(path, f"line {number}: no key {' or '.join(repr(k) for k in keys)}")
            docs.append(" \n".join(str(obj[k]) for k in keys if obj.get(k)))
    return docs


_SUFFIXES = (".txt", ".text", ".jsonl", ".csv", ".tsv")


def read_corpus(corpus: CorpusConfig) -> list[str]:
    """The documents of one corpus, before splitting (an :class:`InputError` naming the file when it is unusable).
    A folder is every corpus file in it (``.txt``, ``.jsonl``, ``.csv``, ``.tsv``; sorted by name)."""
    if corpus.format == "graph":
        return _graph_documents(corpus.sources)
    path = Path(corpus.path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES and p.is_file())
        if not files:
            raise InputError(path, f"no corpus file ({', '.join(_SUFFIXES)}) in this folder")
        return [doc for f in files for doc in read_corpus(dataclasses.replace(corpus, path=str(f)))]
    if not path.is_file():
        raise InputError(path, "corpus file not found")
    kind = _format(corpus)
    try:
        if kind == "csv":
            return _read_csv(path, corpus.columns or ["report"])
        if kind == "jsonl":
            return _read_jsonl(path, corpus.columns or ["text"])
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text") from None
    return re.split(r"\n\s*\n", text) if corpus.paragraphs else text.splitlines()


def _graph_documents(sources: list[str]) -> list[str]:
    from medvl.knowledge import BuildConfig, cached_graph

    docs = []
    for concept in cached_graph(BuildConfig(sources=sources)):
        docs += [f"{concept.name}: {d}" for d in concept.definitions] or [concept.name]
        docs += [s.text for s in concept.synonyms]
    return docs


def _texts(corpus: CorpusConfig, min_chars: int, max_chars: int) -> list[str]:
    splitters = {"sentence": split_sentences, "section": split_sections, "none": lambda t: [" ".join(t.split())]}
    out = []
    for doc in read_corpus(corpus):
        for text in splitters[corpus.split](doc):
            if len(text) > max_chars:
                text = text[:max_chars].rsplit(" ", 1)[0]
            if len(text) >= min_chars:
                out.append(text)
    return out


def _held_out(corpora: list[CorpusConfig], min_chars: int) -> tuple[set[str], re.Pattern | None]:
    folded = {fold_text(t) for c in corpora for t in _texts(c, 1, sys.maxsize)}
    long = sorted((t for t in folded if len(t) >= min_chars), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(t) for t in long)) if long else None
    return folded, pattern


@register_dataset("text-corpus", TextCorpusOptions)
class TextCorpus:
    """Mixed, deduplicated texts of several corpora with the held-out texts removed (see the module docstring).

    Attributes:
        unique: the distinct texts kept, in corpus order.
        counts: per corpus: texts read, kept after dedup and the held-out check, and in the mix after up-sampling.
    """

    fields: ClassVar[dict[str, str]] = {"text": "text"}

    def __init__(self, options: TextCorpusOptions):
        self.options = options
        folded_out, pattern = _held_out(options.exclude, options.min_chars)
        pattern = pattern if options.exclude_match == "contained" else None
        seen: set[str] = set()
        self.unique: list[str] = []
        self.counts: dict[str, dict[str, int]] = {}
        mix: list[int] = []
        rng = np.random.default_rng(options.seed)
        for corpus in options.corpora:
            texts = _texts(corpus, options.min_chars, options.max_chars)
            kept = []
            for text in texts:
                key = fold_text(text)
                if key in folded_out or (pattern is not None and pattern.search(key)):
                    continue
                if options.dedup and key in seen:
                    continue
                seen.add(key)
                kept.append(len(self.unique))
                self.unique.append(text)
            mixed = _upsample(kept, corpus.upsample, rng)
            mix += mixed
            label = corpus.name or Path(corpus.path).name or "+".join(corpus.sources)
            self.counts[label] = {"read": len(texts), "kept": len(kept), "mixed": len(mixed)}
        if not self.unique:
            names = ", ".join(c.path for c in options.corpora)
            raise InputError(names, "the corpus is empty: no text is left after splitting, the length filter "
                                    f"(min_chars {options.min_chars}) and removing held-out texts")
        self.order = np.asarray(mix, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.order)

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        return {"text": self.unique[int(self.order[index])]}

    def texts(self) -> list[str]:
        return list(self.unique)


def with_corpus(config: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    """A training config (as a mapping) with the path of every ``text-corpus`` corpus called ``name`` set to
    ``path``; a :class:`ConfigError` when the recipe has none."""
    hits = 0
    for node in [config.get("data"), *(stage.get("data") for stage in config.get("stages", []))]:
        if node and node.get("dataset") == "text-corpus":
            for corpus in node.get("options", {}).get("corpora", []):
                if corpus.get("name") == name:
                    corpus["path"] = path
                    hits += 1
    if not hits:
        raise ConfigError(f"--corpus: this recipe has no text-corpus corpus named '{name}'")
    return config


def _upsample(indices: list[int], factor: float, rng: np.random.Generator) -> list[int]:
    whole = math.floor(factor)
    out = indices * whole
    extra = round((factor - whole) * len(indices))
    if extra:
        out += [indices[i] for i in sorted(rng.choice(len(indices), size=extra, replace=False))]
    return out
