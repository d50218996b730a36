"""Zero-shot classification against disease concepts.

A class is a concept of the knowledge graph; its prompts are its name and synonyms through prompt templates. The class
embedding is the mean of the L2-normalised prompt embeddings, normalised again (prompt ensembling). Probabilities are
a softmax of cosine similarities over a temperature (calibrated on a labelled set when one is given). Output is
hierarchy-consistent: the probability of a concept includes the probability of its descendants among the classes,
a prediction implies its ancestors, and below ``abstain_below`` the classifier backs off to the most specific
ancestor that is confident enough, or abstains.

Core objects work on arrays (:class:`ZeroShotClassifier`, :class:`PresenceClassifier`); the ``from_graph``
constructors take a model with ``encode_text`` and a :class:`~medvl.knowledge.DiseaseGraph`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from medvl.config import Config, dataclass, field
from medvl.errors import ConfigError
from medvl.tasks.vectors import l2_normalise, softmax

NORMAL_ID = "normal"
NORMAL_NAMES = ("normal tissue", "benign tissue", "non-neoplastic tissue")


@dataclass
class ZeroShotConfig(Config):
    """Zero-shot settings.

    Attributes:
        templates: template set name ("pathology", "radiology"), a template file, or template strings.
        temperature: softmax temperature over cosine similarities (CLIP's 1/logit_scale).
        abstain_below: abstain (or back off to a parent) when the top probability is below this.
        synonym_scopes: synonym scopes used besides the concept name.
        presence_templates: positive / negative templates for presence scoring of volumes.
    """

    templates: list[str] = field(default_factory=lambda: ["pathology"])
    temperature: float = 0.01
    abstain_below: float | None = None
    synonym_scopes: list[str] = field(default_factory=lambda: ["EXACT"])
    presence_templates: tuple[str, str] = ("{} is present", "no {}")

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ConfigError("ZeroShotConfig.temperature must be positive")
        if self.abstain_below is not None and not 0 < self.abstain_below < 1:
            raise ConfigError("ZeroShotConfig.abstain_below must be in (0, 1)")

    def template_arg(self) -> str | list[str]:
        return self.templates[0] if len(self.templates) == 1 else list(self.templates)


# ---------------------------------------------------------------------------------------------- text embeddings
_TEXT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encode_texts(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised text embeddings ``[N, D]``, cached per model object and prompt string."""
    import torch

    cache: dict[str, np.ndarray] = _TEXT_CACHE.setdefault(model, {})
    todo = [t for t in dict.fromkeys(texts) if t not in cache]
    with torch.inference_mode():
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            vectors = model.encode_text(list(chunk)).float().cpu().numpy()
            cache.update(zip(chunk, vectors, strict=True))
    out = np.stack([cache[t] for t in texts]).astype(np.float32)
    return l2_normalise(out)


def ensemble(prompt_vectors: np.ndarray) -> np.ndarray:
    """Mean of normalised prompt embeddings, normalised again."""
    return l2_normalise(l2_normalise(prompt_vectors).mean(axis=0))


def class_embeddings(model: Any, prompts: dict[str, list[str]]) -> np.ndarray:
    """One ensembled embedding per class from ``{class_id: [prompt, ...]}``."""
    texts = [p for ps in prompts.values() for p in ps]
    vectors = encode_texts(model, texts)
    out, start = [], 0
    for ps in prompts.values():
        out.append(ensemble(vectors[start : start + len(ps)]))
        start += len(ps)
    return np.stack(out).astype(np.float32)


# ---------------------------------------------------------------------------------------------- classifier
class ZeroShotClassifier:
    """Cosine-similarity classifier over class text embeddings, with hierarchy and abstention.

    Args:
        class_ids: one id per class (concept ids, or free names).
        class_embeddings: ``[C, D]`` class embeddings (normalised here).
        names: display name per class.
        ancestors: ``{class_id: [ancestor ids]}`` from the graph (any depth); used for consistent output.
        temperature: softmax temperature.
        abstain_below: confidence threshold for abstention.
    """

    def __init__(self, class_ids: Sequence[str], class_embeddings: np.ndarray, names: Sequence[str] | None = None,
                 ancestors: dict[str, list[str]] | None = None, temperature: float = 0.01,
                 abstain_below: float | None = None):
        if len(class_ids) != len(class_embeddings):
            raise ValueError(f"{len(class_ids)} class ids for {len(class_embeddings)} class embeddings")
        if len(set(class_ids)) != len(class_ids):
            raise ConfigError("class ids must be unique")
        self.class_ids = list(class_ids)
        self.class_embeddings = l2_normalise(np.atleast_2d(class_embeddings))
        self.names = list(names) if names is not None else list(class_ids)
        self.ancestors = {k: list(v) for k, v in (ancestors or {}).items()}
        self.temperature = float(temperature)
        self.abstain_below = abstain_below
        self._build_hierarchy()

    def _build_hierarchy(self) -> None:
        """``contains[i, j]`` is True when class j is class i or one of its descendants (among the classes)."""
        index = {c: i for i, c in enumerate(self.class_ids)}
        n = len(self.class_ids)
        self.contains_ = np.eye(n, dtype=bool)
        for j, cid in enumerate(self.class_ids):
            for anc in self.ancestors.get(cid, []):
                if anc in index:
                    self.contains_[index[anc], j] = True

    @property
    def dim(self) -> int:
        return int(self.class_embeddings.shape[1])

    # -------------------------------------------------------------- constructors
    @classmethod
    def from_graph(cls, model: Any, graph: Any, ids: Sequence[str], config: ZeroShotConfig | None = None,
                   extra_classes: dict[str, Sequence[str]] | None = None) -> ZeroShotClassifier:
        """Classes from graph concepts (prompts from names and synonyms) plus optional free-text classes.

        Args:
            model: anything with ``encode_text(list[str]) -> Tensor`` (a :class:`MultiModalModel`).
            graph: a :class:`~medvl.knowledge.DiseaseGraph`.
            ids: concept ids.
            config: templates, temperature, abstention.
            extra_classes: ``{class_id: [names]}`` for classes not in the graph (e.g. "normal").
        """
        from medvl.knowledge.templates import load_templates, render_prompts

        cfg = config or ZeroShotConfig()
        resolved = [graph.resolve(i) for i in ids]
        prompts = graph.prompts(resolved, cfg.template_arg(), scopes=tuple(cfg.synonym_scopes))
        names = [graph.concept(i).name for i in resolved]
        ancestors = {i: graph.ancestors(i) for i in resolved}
        templates = load_templates(cfg.template_arg())
        for cid, cnames in (extra_classes or {}).items():
            prompts[cid] = render_prompts(list(cnames), templates)
            names.append(cnames[0])
        emb = class_embeddings(model, prompts)
        return cls(list(prompts), emb, names, ancestors, cfg.temperature, cfg.abstain_below)

    @classmethod
    def from_names(cls, model: Any, classes: dict[str, Sequence[str]],
                   config: ZeroShotConfig | None = None) -> ZeroShotClassifier:
        """Classes from free text: ``{class_id: [name, synonym, ...]}`` through the templates."""
        from medvl.knowledge.templates import load_templates, render_prompts

        cfg = config or ZeroShotConfig()
        templates = load_templates(cfg.template_arg())
        prompts = {cid: render_prompts(list(names), templates) for cid, names in classes.items()}
        return cls(list(prompts), class_embeddings(model, prompts), [n[0] for n in classes.values()], None,
                   cfg.temperature, cfg.abstain_below)

    # -------------------------------------------------------------- scoring
    def similarities(self, x: np.ndarray) -> np.ndarray:
        """Cosine similarities ``[N, C]`` of (joint-space) embeddings to the classes."""
        x = l2_normalise(np.atleast_2d(x))
        if x.shape[1] != self.dim:
            raise ConfigError(f"embeddings are {x.shape[1]}-d but the class embeddings are {self.dim}-d "
                              "(image and text must come from the same model)")
        return x @ self.class_embeddings.T

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Softmax over classes ``[N, C]``."""
        return softmax(self.similarities(x) / self.temperature)

    def hierarchical_proba(self, proba: np.ndarray) -> np.ndarray:
        """Probability of each class or any of its descendants (parents are never below their children)."""
        return proba @ self.contains_.T.astype(proba.dtype)

    def predict(self, x: np.ndarray) -> list[str | None]:
        """Predicted class id per row (None where the classifier abstains)."""
        return [r["prediction"] for r in self.decide(self.predict_proba(x))]

    def decide(self, proba: np.ndarray, top_k: int = 5) -> list[dict[str, Any]]:
        """Decision records: prediction (with hierarchy back-off / abstention), implied parents and top-k classes."""
        hier = self.hierarchical_proba(proba)
        records = []
        for p, h in zip(proba, hier, strict=True):
            best = int(np.argmax(p))
            chosen = self._back_off(best, h)
            pred = None if chosen is None else self.class_ids[chosen]
            order = np.argsort(-p)[:top_k]
            records.append({
                "prediction": pred,
                "name": None if chosen is None else self.names[chosen],
                "probability": float(h[chosen]) if chosen is not None else float(p[best]),
                "abstained": chosen is None,
                "backed_off": chosen is not None and chosen != best,
                "implies": [] if pred is None else list(self.ancestors.get(pred, [])),
                "top": [{"id": self.class_ids[i], "name": self.names[i], "probability": float(p[i]),
                         "with_descendants": float(h[i])} for i in order],
            })
        return records

    def _back_off(self, best: int, hier: np.ndarray) -> int | None:
        if self.abstain_below is None or hier[best] >= self.abstain_below:
            return best
        index = {c: i for i, c in enumerate(self.class_ids)}
        # nearest ancestor first: graph.ancestors lists them by distance
        for anc in self.ancestors.get(self.class_ids[best], []):
            if anc in index and hier[index[anc]] >= self.abstain_below:
                return index[anc]
        return None

    # -------------------------------------------------------------- calibration
    def calibrate(self, x: np.ndarray, y: Sequence[int] | np.ndarray) -> ZeroShotClassifier:
        """Fit the temperature on a labelled set (minimum negative log-likelihood); returns self."""
        from scipy.optimize import minimize_scalar

        sims = self.similarities(x)
        y = np.asarray(y, dtype=int)

        def nll(log_t: float) -> float:
            logits = sims / np.exp(log_t)
            logits = logits - logits.max(axis=1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            return float(-logp[np.arange(len(y)), y].mean())

        res = minimize_scalar(nll, bounds=(np.log(1e-4), np.log(10.0)), method="bounded")
        self.temperature = float(np.exp(res.x))
        self.calibration_nll_ = float(res.fun)
        return self

    def describe(self) -> list[dict[str, Any]]:
        return [{"id": c, "name": n} for c, n in zip(self.class_ids, self.names, strict=True)]


class PresenceClassifier:
    """Multi-label presence scores from positive/negative prompt pairs ("{disease} is present" / "no {disease}").

    ``p(present) = softmax([cos(x, pos), cos(x, neg)] / T)[0]`` per disease.
    """

    def __init__(self, class_ids: Sequence[str], positive: np.ndarray, negative: np.ndarray,
                 names: Sequence[str] | None = None, temperature: float = 0.01, threshold: float = 0.5):
        self.class_ids = list(class_ids)
        self.positive, self.negative = l2_normalise(np.atleast_2d(positive)), l2_normalise(np.atleast_2d(negative))
        self.names = list(names) if names is not None else list(class_ids)
        self.temperature = float(temperature)
        self.threshold = float(threshold)

    @classmethod
    def from_names(cls, model: Any, classes: dict[str, Sequence[str]],
                   config: ZeroShotConfig | None = None) -> PresenceClassifier:
        """``classes``: ``{class_id: [name, synonym, ...]}``; each name through the positive/negative templates."""
        from medvl.knowledge.templates import render_prompts

        cfg = config or ZeroShotConfig()
        pos_t, neg_t = cfg.presence_templates
        pos = class_embeddings(model, {c: render_prompts(list(n), [pos_t]) for c, n in classes.items()})
        neg = class_embeddings(model, {c: render_prompts(list(n), [neg_t]) for c, n in classes.items()})
        return cls(list(classes), pos, neg, [n[0] for n in classes.values()], cfg.temperature)

    @classmethod
    def from_graph(cls, model: Any, graph: Any, ids: Sequence[str],
                   config: ZeroShotConfig | None = None) -> PresenceClassifier:
        resolved = [graph.resolve(i) for i in ids]
        scopes = tuple((config or ZeroShotConfig()).synonym_scopes)
        return cls.from_names(model, {i: graph.concept(i).names(scopes) for i in resolved}, config)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``[N, C]`` probability that each disease is present."""
        x = l2_normalise(np.atleast_2d(x))
        if x.shape[1] != self.positive.shape[1]:
            raise ConfigError(f"embeddings are {x.shape[1]}-d but the prompts are {self.positive.shape[1]}-d")
        pos, neg = x @ self.positive.T, x @ self.negative.T
        return 1.0 / (1.0 + np.exp(-(pos - neg) / self.temperature))

    def decide(self, proba: np.ndarray) -> list[dict[str, Any]]:
        return [{"present": [self.class_ids[i] for i in np.flatnonzero(p >= self.threshold)],
                 "scores": [{"id": c, "name": n, "probability": float(v)}
                            for c, n, v in zip(self.class_ids, self.names, p, strict=True)]} for p in proba]
