"""Zero-shot diagnosis: class prompts from the knowledge graph, cosine classifiers, slide pooling, batch runs.

``classifier`` (text embeddings of prompts, :class:`ZeroShotClassifier`, :class:`PresenceClassifier`), ``slide``
(tile embeddings -> slide prediction: mean, MI-Zero top-k, KEEP's rule), ``run`` (one case file -> JSON record, as
``medvl zeroshot`` writes it).
"""

from __future__ import annotations

from medvl.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("NORMAL_ID", "NORMAL_NAMES", "PresenceClassifier", "ZeroShotClassifier", "ZeroShotConfig",
                     "class_embeddings", "encode_texts", "ensemble"), "medvl.tasks.zeroshot.classifier"),
    **dict.fromkeys(("POOLING", "SlidePrediction", "slide_zeroshot"), "medvl.tasks.zeroshot.slide"),
    **dict.fromkeys(("build_classifier", "case_ref", "classify_case", "resolve_classes"), "medvl.tasks.zeroshot.run"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
