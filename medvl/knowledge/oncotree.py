"""Reader of the OncoTree tumour-type tree (cBioPortal JSON export, nested ``children`` objects or a flat list)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medvl.errors import InputError
from medvl.knowledge.concept import Concept, Synonym
from medvl.knowledge.obo import normalise_xref

PREFIX = "ONCOTREE"


def _nodes(data: Any) -> Iterator[dict[str, Any]]:
    """Yield every node of a nested tree (dict of code -> node with ``children``) or a flat list of nodes."""
    stack = list(data.values()) if isinstance(data, dict) else list(data) if isinstance(data, list) else None
    if stack is None:
        raise TypeError("expected a JSON object or list")
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            raise TypeError(f"expected an object for each node, got {type(node).__name__}")
        yield node
        children = node.get("children") or {}
        stack.extend(children.values() if isinstance(children, dict) else children)


def _concept(node: dict[str, Any], path: Path) -> Concept:
    code = str(node.get("code") or "").strip()
    name = str(node.get("name") or "").strip()
    if not code or not name:
        raise InputError(path, f"OncoTree node without code or name: {json.dumps(node)[:80]}")
    parent = node.get("parent")
    xrefs: dict[str, list[str]] = {}
    for vocab, codes in (node.get("externalReferences") or {}).items():
        for value in codes if isinstance(codes, list) else [codes]:
            parsed = normalise_xref(f"{vocab}:{value}")
            if parsed and parsed[1] not in xrefs.setdefault(parsed[0], []):
                xrefs[parsed[0]].append(parsed[1])
    synonyms = []
    main_type = (node.get("mainType") or "").strip()
    if main_type and main_type.lower() != name.lower() and not node.get("children"):
        # a leaf's main type is a broader label for it ("Renal Cell Carcinoma" for CCRCC)
        synonyms.append(Synonym(main_type, "BROAD"))
    return Concept(
        id=f"{PREFIX}:{code}",
        name=name,
        synonyms=synonyms,
        parents=[f"{PREFIX}:{parent}"] if parent else [],
        xrefs=xrefs,
        source=PREFIX,
        origin=f"{path.name}:{code}",
    )


def read_oncotree(path: str | Path) -> list[Concept]:
    """Read an OncoTree JSON file into concepts ``ONCOTREE:<code>`` (the code itself is kept as an EXACT synonym).

    Raises:
        InputError: the file is missing, not JSON, not an OncoTree tree, or holds a code twice.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "OncoTree file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    concepts: dict[str, Concept] = {}
    try:
        for node in _nodes(data):
            concept = _concept(node, path)
            if concept.id in concepts:
                raise InputError(path, f"duplicate OncoTree code {concept.id.split(':', 1)[1]}")
            code = concept.id.split(":", 1)[1]
            if code.upper() != "TISSUE":
                concept.synonyms.insert(0, Synonym(code, "EXACT"))
            concepts[concept.id] = concept
    except TypeError as exc:
        raise InputError(path, f"not an OncoTree tree ({exc})") from None
    if not concepts:
        raise InputError(path, "no OncoTree nodes found")
    return sorted(concepts.values(), key=lambda c: c.id)
