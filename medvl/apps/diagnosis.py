"""Zero-shot diagnosis for the apps: disease sets from the knowledge graph, the classifier, ontology context.

A disease set is a graph node with its subtypes (children or all descendants) or a custom list of concept ids,
concept names and free text. Probabilities are a softmax of cosine similarities at the model's learned temperature
(its ``logit_scale``, fitted with the contrastive loss); below the abstention threshold the classifier backs off to a
confident ancestor or abstains (:class:`~medvl.tasks.zeroshot.ZeroShotClassifier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medvl.errors import InputError

SCOPES = ("children", "descendants")
MAX_CLASSES = 200


@dataclass(frozen=True)
class DiseaseSet:
    """Classes of a zero-shot question: concept ids and free-text classes (``{name: [name]}``)."""

    ids: tuple[str, ...]
    free: tuple[tuple[str, tuple[str, ...]], ...] = field(default_factory=tuple)
    label: str = ""

    @property
    def size(self) -> int:
        return len(self.ids) + len(self.free)

    def free_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.free}


def find_concept(graph: Any, text: str) -> str:
    """A concept id from an id or a name (best exact search hit); InputError when nothing matches."""
    text = text.strip()
    if not text:
        raise InputError(None, "no disease given")
    if text in graph:
        return graph.resolve(text)
    hits = graph.search(text, k=1)
    if not hits or hits[0].match != "exact":
        near = f" (closest: {hits[0].name})" if hits else ""
        raise InputError(None, f"no disease named '{text}' in the knowledge graph{near}")
    return hits[0].concept_id


def node_set(graph: Any, node: str, scope: str = "children") -> DiseaseSet:
    """A node and its children (or all its descendants)."""
    if scope not in SCOPES:
        raise InputError(None, f"unknown scope '{scope}' (known: {', '.join(SCOPES)})")
    root = find_concept(graph, node)
    subtypes = graph.children(root) if scope == "children" else graph.descendants(root)
    ids = tuple(dict.fromkeys([root, *subtypes]))
    if len(ids) < 2:
        raise InputError(None, f"'{graph.concept(root).name}' has no subtypes: add classes with a custom list")
    if len(ids) > MAX_CLASSES:
        raise InputError(None, f"'{graph.concept(root).name}' has {len(ids)} {scope}; choose a narrower node")
    return DiseaseSet(ids, (), f"{graph.concept(root).name} and its {scope}")


def custom_set(graph: Any, text: str) -> DiseaseSet:
    """Comma- or line-separated classes: ids and exact concept names map to concepts, the rest stay free text."""
    ids: list[str] = []
    free: dict[str, tuple[str, ...]] = {}
    for item in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not item:
            continue
        try:
            ids.append(find_concept(graph, item))
        except InputError:
            free[item] = (item,)
    ids = list(dict.fromkeys(ids))
    if len(ids) + len(free) < 2:
        raise InputError(None, "give at least two classes, separated by commas")
    return DiseaseSet(tuple(ids), tuple(free.items()), "custom list")


def model_temperature(model: Any) -> float:
    """1 / the model's learned logit scale (its contrastive temperature)."""
    scale = getattr(model, "scale", None)
    try:
        value = float((scale() if callable(scale) else model.logit_scale.exp()).detach())
    except (AttributeError, TypeError):
        return 0.01
    return 1.0 / max(value, 1e-3)


def build_classifier(space: Any, graph: Any, dset: DiseaseSet, abstain_below: float | None = None):
    """A :class:`~medvl.tasks.zeroshot.ZeroShotClassifier` for the set, at the model's temperature."""
    from medvl.tasks.zeroshot.classifier import ZeroShotConfig
    from medvl.tasks.zeroshot.run import build_classifier as tasks_classifier

    config = ZeroShotConfig(temperature=model_temperature(space.model), abstain_below=abstain_below)
    return tasks_classifier(space, graph, list(dset.ids), dset.free_dict(), config)


def diagnose(classifier: Any, vector: np.ndarray, top_k: int = 10) -> dict[str, Any]:
    """Decision record for one case embedding: prediction (or abstention) and ranked classes."""
    proba = classifier.predict_proba(np.atleast_2d(vector))
    return classifier.decide(proba, top_k=top_k)[0]


def ontology_context(graph: Any, concept_id: str) -> dict[str, Any] | None:
    """Name, synonyms, definition and ancestor path of a concept (None for free-text classes)."""
    if concept_id not in graph:
        return None
    c = graph.concept(concept_id)
    path = [graph.concept(i).name for i in graph.primary_path(c.id)]
    return {"id": c.id, "name": c.name, "synonyms": [s.text for s in c.synonyms],
            "definition": c.definition or "(no definition in the ontology)", "source": c.source,
            "path": " › ".join(reversed(path))}
