"""Disease knowledge: ontology loaders, the disease graph, KEEP semantic groups, prompts, concept tokenizer.

Example:
    >>> from medvl.knowledge import default_graph
    >>> g = default_graph()
    >>> g.concept("DOID:1612").name
    'breast cancer'
"""

from medvl.knowledge.build import BuildConfig, build_graph, cached_graph, default_graph
from medvl.knowledge.concept import Concept, SemanticGroup, Synonym
from medvl.knowledge.graph import DiseaseGraph
from medvl.knowledge.groups import GroupConfig

__all__ = [
    "BuildConfig",
    "Concept",
    "DiseaseGraph",
    "GroupConfig",
    "SemanticGroup",
    "Synonym",
    "build_graph",
    "cached_graph",
    "default_graph",
]
