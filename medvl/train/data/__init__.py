"""Training datasets: the registry and interface (:mod:`.registry`) and the built-in datasets.

``breastmnist`` (:mod:`.breastmnist`): bundled BreastMNIST images with captions from the disease graph.
``graph-groups`` (:mod:`.graph_groups`): texts of the disease graph's KEEP semantic groups (the knowledge-encoder
stage). ``ct`` (:mod:`.ct`): CT volumes. ``bags`` and ``breastmnist-bags`` (:mod:`.bags`): bags of embeddings
(slides' tiles, volumes' slices, images' patches) with labels and survival outcomes. ``text-pairs``
(:mod:`.text_pairs`): query/document pairs of a table. Add a dataset with ``@register_dataset(name, Options)`` in a
module of this package and list the module in ``DATASETS``'s built-ins.
"""

from __future__ import annotations

from medvl.train.data.breastmnist import ULTRASOUND_TEMPLATES, BreastMNISTOptions, BreastMNISTPairs, class_captions
from medvl.train.data.graph_groups import GraphGroupOptions, GraphGroupPairs
from medvl.train.data.registry import (
    DATASETS,
    TrainDataset,
    build_dataset,
    collate,
    dataset_options,
    list_datasets,
    pad_bags,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "ULTRASOUND_TEMPLATES",
    "BreastMNISTOptions",
    "BreastMNISTPairs",
    "GraphGroupOptions",
    "GraphGroupPairs",
    "TrainDataset",
    "build_dataset",
    "class_captions",
    "collate",
    "dataset_options",
    "list_datasets",
    "pad_bags",
    "register_dataset",
]
