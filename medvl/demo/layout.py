"""What the demo steps share: the bundled inputs' places in the workspace and the names of the models they make."""

from __future__ import annotations

from pathlib import Path

from medvl.workspace import Workspace

#: the bundled whole-slide image, as copied into ``slides/``
SLIDE_FILE = "CMU-1-Small-Region.svs"
#: the small CT volume and its organ label map (``ct/``), used by the ``ct`` step
CT_SMALL_FILE = "example_ct_sm.nii.gz"
CT_LABELS_FILE = "example_ct_sm_labels.nii.gz"
#: the disease graph in the workspace (``graph/``)
GRAPH_FILE = "graph.json.gz"
#: tile encoder of the ``slides`` step and volume tower of the ``ct`` step (tiny: CPU, seconds)
TILE_ENCODER = "timm-tiny"
VOLUME_TOWER = "resnet3d-tiny"
#: the model the ``train`` step trains into ``models/<name>`` (run in ``runs/<name>``); ``tasks`` reuses it
TRAIN_MODEL = "breastmnist-clip"
#: training recipe and cohort pipeline, under the configs folder
TRAIN_RECIPE = "demo-breastmnist.yaml"
COHORT_PIPELINE = "pipelines/demo-cohort.yaml"


def bundled_copies(ws: Workspace) -> dict[str, Path]:
    """Bundled file name (:data:`medvl.resources.BUNDLED`) -> where the ``data`` step copies it."""
    return {
        "slide": ws.slides / SLIDE_FILE,
        "ct": ws.ct / "example_ct.nii.gz",
        "ct_small": ws.ct / CT_SMALL_FILE,
        "ct_labels": ws.ct / CT_LABELS_FILE,
    }
