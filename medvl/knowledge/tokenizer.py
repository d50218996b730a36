"""Ontology-driven tokenizer (K-Tokeniser idea): concept mentions become single concept tokens.

:class:`ConceptTokenizer` wraps a Hugging Face tokenizer. It finds concept mentions with a
:class:`~medvl.knowledge.tagger.ConceptTagger` (longest match over names and synonyms), replaces each mention by the
concept's token (``[DOID:1612]``), and tokenizes the result; the concept tokens are added to the vocabulary.
:meth:`ConceptTokenizer.init_embeddings` resizes a text model's embedding table and sets each new row to the mean of
the sub-word embeddings of the concept's names, so no re-pre-training is needed before fine-tuning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.atomic import atomic_write_json
from medvl.errors import InputError
from medvl.knowledge.tagger import ConceptTagger, Mention

if TYPE_CHECKING:
    from medvl.knowledge.graph import DiseaseGraph

CONCEPTS_FILE = "medvl_concepts.json"


def concept_token(concept_id: str) -> str:
    return f"[{concept_id}]"


class ConceptTokenizer:
    """A Hugging Face tokenizer that knows disease concepts.

    Args:
        tokenizer: a Hugging Face (fast or slow) tokenizer; concept tokens are added to it.
        tagger: finds the mentions (its concepts should be those in ``names``).
        names: concept id -> names used to initialise its embedding (name first, then synonyms).
    """

    def __init__(self, tokenizer: Any, tagger: ConceptTagger, names: dict[str, list[str]]):
        from transformers import AddedToken

        self.tokenizer = tokenizer
        self.tagger = tagger
        self.names = names
        self.tokens = {cid: concept_token(cid) for cid in names}
        vocab = tokenizer.get_vocab()
        missing = [t for t in self.tokens.values() if t not in vocab]
        if missing:
            # normalized=False: the token must match literally, even in an uncased (lower-casing) tokenizer
            tokenizer.add_tokens([AddedToken(t, normalized=False, single_word=False) for t in missing])
        self.token_ids = {cid: tokenizer.convert_tokens_to_ids(t) for cid, t in self.tokens.items()}

    @classmethod
    def from_graph(cls, tokenizer: Any, graph: DiseaseGraph, ids: Iterable[str] | None = None,
                   scopes: Sequence[str] = ("EXACT",)) -> ConceptTokenizer:
        """Concept tokens for ``ids`` (default: every Disease Ontology concept) of ``graph``.

        Args:
            tokenizer: a Hugging Face tokenizer, or a path to a model directory to load one from.
            graph: the disease graph.
            ids: the concepts that get tokens.
            scopes: synonym scopes that count as mentions of a concept.
        """
        if isinstance(tokenizer, (str, Path)):
            tokenizer = _load_hf_tokenizer(tokenizer)
        ids = list(ids) if ids is not None else graph.subgraph_ids("DOID")
        ids = [graph.resolve(i) for i in ids]
        names = {cid: graph.concept(cid).names(tuple(scopes)) for cid in ids}
        return cls(tokenizer, ConceptTagger.from_graph(graph, ids, scopes=scopes), names)

    # ------------------------------------------------------------------ text
    def find(self, text: str) -> list[Mention]:
        return [m for m in self.tagger.find(text) if m.concept_id in self.tokens]

    def rewrite(self, text: str) -> str:
        """``text`` with each concept mention replaced by its concept token."""
        out, pos = [], 0
        for m in self.find(text):
            out.append(text[pos:m.start])
            out.append(self.tokens[m.concept_id])
            pos = m.end
        out.append(text[pos:])
        return "".join(out)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(self.rewrite(text))

    def __call__(self, texts: str | Sequence[str], **kwargs: Any) -> Any:
        """Tokenize like the wrapped tokenizer (same keyword arguments), after concept rewriting."""
        if isinstance(texts, str):
            return self.tokenizer(self.rewrite(texts), **kwargs)
        return self.tokenizer([self.rewrite(t) for t in texts], **kwargs)

    def __len__(self) -> int:
        return len(self.tokenizer)

    # ------------------------------------------------------------------ model
    def init_embeddings(self, model: Any) -> int:
        """Resize ``model``'s input embeddings to the vocabulary and initialise every concept token's row as the
        mean of the sub-word embeddings of the concept's names; returns the number of rows set."""
        import torch

        try:
            model.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        except TypeError:  # older transformers
            model.resize_token_embeddings(len(self.tokenizer))
        table = model.get_input_embeddings().weight
        special = set(self.tokenizer.all_special_ids)
        done = 0
        with torch.no_grad():
            for cid, names in self.names.items():
                rows = []
                for name in names:
                    pieces = [i for i in self.tokenizer(name, add_special_tokens=False)["input_ids"]
                              if i not in special]
                    if pieces:
                        rows.append(table[pieces].mean(dim=0))
                if rows:
                    table[self.token_ids[cid]] = torch.stack(rows).mean(dim=0)
                    done += 1
        return done

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        """Save the Hugging Face tokenizer (with the concept tokens) and the concept lexicon."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        atomic_write_json(directory / CONCEPTS_FILE, {"format": "medvl-concept-tokenizer", "version": 1,
                                                      "names": self.names, "tagger": self.tagger.to_dict()},
                          indent=None)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ConceptTokenizer:
        directory = Path(directory)
        path = directory / CONCEPTS_FILE
        if not path.is_file():
            raise InputError(directory, f"not a concept tokenizer directory ({CONCEPTS_FILE} missing)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tagger, names = ConceptTagger.from_dict(data["tagger"]), data["names"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"corrupt concept tokenizer file ({exc})") from None
        return cls(_load_hf_tokenizer(directory), tagger, names)


def _load_hf_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "tokenizer directory not found")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot load a Hugging Face tokenizer ({exc})") from None
