"""Reader of OBO 1.2 flat files (Disease Ontology and any user OBO file).

Only ``[Term]`` stanzas become concepts; ``[Typedef]`` and ``[Instance]`` stanzas are read and skipped. Obsolete terms
are dropped, but their ids resolve to the ``replaced_by`` term when there is one. Problems that would silently change
the graph raise :class:`~medvl.errors.InputError` naming the file and line; harmless ones (an empty synonym) are
returned as warnings carrying the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from medvl.errors import InputError
from medvl.knowledge.concept import SCOPES, Concept, Synonym

#: cross-reference prefixes as written in DO files -> the vocabulary keys medvl uses
XREF_PREFIXES = {
    "UMLS_CUI": "UMLS",
    "UMLS": "UMLS",
    "NCI": "NCI",
    "NCIT": "NCI",
    "ICDO": "ICDO",
    "ICD-O": "ICDO",
    "ICD10CM": "ICD10CM",
    "ICD-10-CM": "ICD10CM",
    "ICD9CM": "ICD9CM",
    "MESH": "MESH",
    "MSH": "MESH",
    "OMIM": "MIM",
    "MIM": "MIM",
    "ORDO": "ORDO",
    "GARD": "GARD",
    "EFO": "EFO",
    "KEGG": "KEGG",
}

_STANZA = re.compile(r"^\[(?P<kind>[A-Za-z]+)\]\s*$")
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(.*)$')


def normalise_xref(raw: str) -> tuple[str, str] | None:
    """``"UMLS_CUI:C0018923"`` -> ``("UMLS", "C0018923")``; ``SNOMEDCT_US_2025_09_01`` -> ``SNOMEDCT``."""
    prefix, sep, code = raw.partition(":")
    if not sep or not code:
        return None
    prefix = prefix.strip()
    if prefix.startswith("SNOMEDCT"):
        key = "SNOMEDCT"
    else:
        key = XREF_PREFIXES.get(prefix.upper(), prefix.upper())
    return key, code.strip()


@dataclass
class OboFile:
    """What one OBO file contributed."""

    path: Path
    ontology: str = ""
    concepts: list[Concept] = field(default_factory=list)
    #: obsolete id -> replacement id
    replaced: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _unquote(value: str, where: str) -> tuple[str, str]:
    match = _QUOTED.match(value)
    if not match:
        raise InputError(where, f"expected a quoted string, got {value[:60]!r}")
    text = re.sub(r"\\(.)", r"\1", match.group(1))
    return text, match.group(2)


def _strip_comment(value: str) -> str:
    # "DOID:175 ! vascular cancer": the part after " ! " is a comment
    return value.split(" ! ", 1)[0].strip()


class _TermBuilder:
    """Collects the tags of one [Term] stanza."""

    def __init__(self, path: Path, line: int):
        self.path, self.line = path, line
        self.tags: list[tuple[str, str, int]] = []

    def where(self, line: int) -> str:
        return f"{self.path}: line {line}"

    def build(self, out: OboFile) -> Concept | None:
        concept = Concept(id="", name="", source="", origin=f"{self.path.name}:{self.line}")
        flags = {"is_obsolete": "", "replaced_by": ""}
        for tag, value, line in self.tags:
            if tag in ("id", "name"):
                setattr(concept, tag, value.strip())
            elif tag in flags:
                flags[tag] = _strip_comment(value)
            else:
                self._apply(concept, tag, value, line, out)
        if not concept.id:
            raise InputError(self.path, f"line {self.line}: [Term] stanza without an id")
        if ":" not in concept.id:
            raise InputError(self.path, f"line {self.line}: id {concept.id!r} is not a CURIE (PREFIX:code)")
        if flags["is_obsolete"].lower() == "true":
            if flags["replaced_by"]:
                out.replaced[concept.id] = flags["replaced_by"]
            return None
        if not concept.name:
            raise InputError(self.path, f"line {self.line}: term {concept.id} has no name")
        concept.source = concept.id.split(":", 1)[0]
        return concept

    def _apply(self, concept: Concept, tag: str, value: str, line: int, out: OboFile) -> None:
        if tag == "is_a":
            parent = _strip_comment(value).split()[0] if value.strip() else ""
            if not parent:
                raise InputError(self.path, f"line {line}: empty is_a in term {concept.id or '?'}")
            if parent not in concept.parents:
                concept.parents.append(parent)
        elif tag == "def":
            text, _ = _unquote(value, self.where(line))
            if text.strip():
                concept.definitions.append(text.strip())
        elif tag == "synonym":
            self._synonym(concept, value, line, out)
        elif tag == "xref":
            parsed = normalise_xref(_strip_comment(value).split(" ", 1)[0])
            if parsed is not None and parsed[1] not in concept.xrefs.setdefault(parsed[0], []):
                concept.xrefs[parsed[0]].append(parsed[1])
        elif tag == "alt_id":
            concept.alt_ids.append(_strip_comment(value))

    def _synonym(self, concept: Concept, value: str, line: int, out: OboFile) -> None:
        text, rest = _unquote(value, self.where(line))
        scope = rest.split(" ", 1)[0].upper() if rest else "RELATED"
        if scope not in SCOPES:
            raise InputError(self.path, f"line {line}: unknown synonym scope {scope!r} (expected one of {SCOPES})")
        text = " ".join(text.split())
        if not text:
            out.warnings.append(f"{self.path}: line {line}: empty synonym in term {concept.id or '?'} skipped")
            return
        syn = Synonym(text, scope)
        if syn not in concept.synonyms and text != concept.name:
            concept.synonyms.append(syn)


class _Parser:
    """Line-by-line state of one file."""

    def __init__(self, path: Path):
        self.path = path
        self.out = OboFile(path=path)
        self.seen: dict[str, int] = {}
        self.term: _TermBuilder | None = None
        self.in_header = True

    def flush(self) -> None:
        term = self.term
        if term is None:
            return
        concept = term.build(self.out)
        ident = next((v.strip() for t, v, _ in term.tags if t == "id"), "")
        if ident in self.seen:
            raise InputError(self.path, f"line {term.line}: duplicate id {ident} (first defined at line "
                                        f"{self.seen[ident]})")
        self.seen[ident] = term.line
        if concept is not None:
            self.out.concepts.append(concept)

    def stanza(self, line: str, number: int) -> None:
        match = _STANZA.match(line)
        if not match:
            raise InputError(self.path, f"line {number}: malformed stanza header {line[:60]!r}")
        self.flush()
        self.in_header = False
        self.term = _TermBuilder(self.path, number) if match.group("kind") == "Term" else None

    def tag(self, line: str, number: int) -> None:
        tag, sep, value = line.partition(":")
        if not sep or not tag or " " in tag.strip():
            raise InputError(self.path, f"line {number}: expected 'tag: value', got {line[:60]!r}")
        if self.in_header:
            if tag == "ontology":
                self.out.ontology = value.strip()
        elif self.term is not None:
            self.term.tags.append((tag.strip(), value.strip(), number))


def read_obo(path: str | Path) -> OboFile:
    """Parse an OBO file.

    Raises:
        InputError: the file is missing, a stanza header or tag line is malformed, a term lacks an id or name, or an
            id appears twice in the file (naming both lines).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "OBO file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    parser = _Parser(path)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("!"):
            continue
        if line.startswith("["):
            parser.stanza(line, number)
        else:
            parser.tag(line, number)
    parser.flush()
    if not parser.out.concepts:
        raise InputError(path, "no [Term] stanzas found (is this an OBO file?)")
    return parser.out
