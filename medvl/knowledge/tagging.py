"""Tagging reports and captions at scale: read texts from a file or stdin, tag them in one process, write JSONL.

Inputs: a text file with one text per line, a CSV/TSV file or a JSONL file with the texts in a named column/key, or
``-`` for stdin (one text per line). Each output line is one JSON record::

    {"line": 3, "mentions": [{"start": 13, "end": 25, "text": "pneumothorax", "id": "ICD10CM:J93.9",
     "name": "Pneumothorax, unspecified", "negated": true, "qualifiers": {}, "candidates": [...]}], "labels": []}

``line`` is the input line (text file, stdin, JSONL) or data row (CSV, header excluded), 1-based. ``labels`` are the
concepts the text asserts (negated mentions excluded). The input text itself is left out unless asked for: reports may
carry identifiers.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from medvl.atomic import atomic_path
from medvl.config import Config, dataclass
from medvl.errors import ConfigError, InputError
from medvl.knowledge.tagger import ConceptTagger

#: input formats by file suffix (anything else: one text per line)
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
STDIN = "-"


@dataclass
class TagConfig(Config):
    """What ``medvl ontology tag --input`` reads and writes.

    Attributes:
        column: the column (CSV/TSV) or key (JSONL) holding the texts.
        keep_text: copy each input text into its record.
        with_candidates: list every candidate concept of a mention, not only the best.
    """

    column: str = "text"
    keep_text: bool = False
    with_candidates: bool = False

    def validate(self) -> None:
        if not self.column:
            raise ConfigError("TagConfig.column: name the column or key that holds the texts (--column)")


def read_texts(source: str | Path, column: str = "text", stdin: TextIO | None = None) -> Iterator[tuple[int, str]]:
    """``(line or row number, text)`` of every non-empty text in ``source`` (a path or ``-`` for stdin)."""
    if str(source) == STDIN:
        yield from _lines(stdin or sys.stdin)
        return
    path = Path(source)
    if not path.is_file():
        raise InputError(path, "input file not found")
    suffix = path.suffix.lower()
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if suffix in TABLE_SUFFIXES:
                yield from _table(fh, path, column, TABLE_SUFFIXES[suffix])
            elif suffix in JSONL_SUFFIXES:
                yield from _jsonl(fh, path, column)
            else:
                yield from _lines(fh)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _lines(fh: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(fh, start=1):
        text = line.strip()
        if text:
            yield number, text


def _table(fh: TextIO, path: Path, column: str, delimiter: str) -> Iterator[tuple[int, str]]:
    reader = csv.DictReader(fh, delimiter=delimiter)
    if reader.fieldnames is None:
        return
    if column not in reader.fieldnames:
        known = ", ".join(reader.fieldnames)
        raise InputError(path, f"no column {column!r} (columns: {known}); choose one with --column")
    try:
        for number, row in enumerate(reader, start=1):
            text = (row.get(column) or "").strip()
            if text:
                yield number, text
    except csv.Error as exc:
        raise InputError(path, f"row {reader.line_num}: {exc}") from None


def _jsonl(fh: TextIO, path: Path, key: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InputError(path, f"line {number}: not JSON ({exc})") from None
        if not isinstance(record, dict) or key not in record:
            raise InputError(path, f"line {number}: no key {key!r}; choose one with --column")
        value = record[key]
        if value is not None and not isinstance(value, str):
            raise InputError(path, f"line {number}: {key!r} is {type(value).__name__}, not text")
        if value and value.strip():
            yield number, value.strip()


class RecordMaker:
    """Tag one text into its JSONL record (concept names looked up once each)."""

    def __init__(self, tagger: ConceptTagger, name_of, config: TagConfig | None = None):
        self.tagger = tagger
        self.name_of = name_of
        self.config = config or TagConfig()
        self._names: dict[str, str] = {}

    def _name(self, concept_id: str) -> str:
        if concept_id not in self._names:
            self._names[concept_id] = self.name_of(concept_id)
        return self._names[concept_id]

    def __call__(self, number: int | None, text: str) -> dict[str, Any]:
        mentions = []
        for m in self.tagger.tag(text):
            item = m.to_dict()
            item["name"] = self._name(m.concept_id)
            if not self.config.with_candidates:
                item.pop("candidates")
            mentions.append(item)
        record: dict[str, Any] = {} if number is None else {"line": number}
        if self.config.keep_text:
            record["text"] = text
        record["mentions"] = mentions
        record["labels"] = list(dict.fromkeys(m["id"] for m in mentions if not m["negated"]))
        return record


def tag_to_jsonl(texts: Iterable[tuple[int, str]], make: RecordMaker, out: str | Path | TextIO) -> dict[str, Any]:
    """Tag every text and write one JSON line per text to ``out`` (a path, written atomically, or a text stream).

    Returns:
        Counts: ``texts``, ``with_concept``, ``mentions``, ``negated``, ``seconds``, ``texts_per_s``.
    """
    stats = {"texts": 0, "with_concept": 0, "mentions": 0, "negated": 0}
    start = time.perf_counter()

    def write(fh: TextIO) -> None:
        for number, text in texts:
            record = make(number, text)
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            stats["texts"] += 1
            stats["with_concept"] += bool(record["mentions"])
            stats["mentions"] += len(record["mentions"])
            stats["negated"] += sum(m["negated"] for m in record["mentions"])

    if isinstance(out, (str, Path)):
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            write(fh)
    else:
        write(out)
        out.flush()
    seconds = time.perf_counter() - start
    rate = round(stats["texts"] / seconds, 1) if seconds else None
    return {**stats, "seconds": round(seconds, 3), "texts_per_s": rate}


def stdin_text() -> TextIO:
    """stdin decoded as UTF-8 whatever the locale."""
    return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
