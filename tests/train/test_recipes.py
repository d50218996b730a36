"""The GPU recipes under medvl/configs/recipes/ and their tiny CPU twins: every recipe is a valid config, each twin
has the recipe's stages, objectives, inputs, losses and data path, and the twins train on real data."""

from __future__ import annotations

import json
import shutil

import pytest

from medvl.resources import config_dir
from medvl.train import TrainConfig
from tests.train.test_manifest_slides import slide_cohort  # noqa: F401  (the fixture)

RECIPES = ("keep-pathology", "renalclip-ct", "slide-report")


def _shape(cfg: TrainConfig) -> list:
    out = []
    for i, stage in enumerate(cfg.stages):
        data = cfg.stage_data(i)
        out.append((stage.name, stage.objective, stage.inputs, [loss.name for loss in stage.losses],
                    stage.precompute, stage.train_only, stage.multilabel, data.dataset, data.sampler,
                    {k: data.options.get(k) for k in ("modality", "reader", "labels_from")},
                    [e.name for e in stage.evaluate], stage.best_metric))
    return out


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_has_a_tiny_twin_of_the_same_shape(name):
    recipe = TrainConfig.from_file(config_dir() / "recipes" / f"{name}.yaml")
    twin = TrainConfig.from_file(config_dir() / "recipes" / "tiny" / f"{name}.yaml")
    assert _shape(twin) == _shape(recipe)
    assert recipe.precision == "bf16" and twin.precision == "fp32"
    assert recipe.model_config.towers.keys() == twin.model_config.towers.keys()


def _run_twin(name: str, folder, tmp_path) -> dict:
    from tests.train.test_manifest_data import _train

    config = folder / f"{name}.yaml"
    shutil.copy(config_dir() / "recipes" / "tiny" / f"{name}.yaml", config)
    return _train(config, tmp_path / "run")


def test_keep_pathology_twin_trains_on_slide_tiles(slide_cohort, tmp_path):  # noqa: F811
    summary = _run_twin("keep-pathology", slide_cohort.parent, tmp_path)
    assert summary["best"]["metric"] == "recall@1"
    assert summary["evaluations"]["keep"]["heldout"]["after"]["items"] == 8


def test_slide_report_twin_aligns_feature_bags_with_reports(slide_cohort, tmp_path):  # noqa: F811
    summary = _run_twin("slide-report", slide_cohort.parent, tmp_path)
    after = summary["evaluations"]["slide-report"]["heldout"]["after"]
    assert after["items"] == 2 and "recall@1" in after
    meta = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert meta["domains"]["bag"]["modality"] == "slide"


def test_renalclip_twin_runs_both_stages_on_ct(tmp_path):
    from medvl.resources import bundled
    from tests.train.cohort import write_manifest

    small = bundled("ct_small")
    reports = [("clear cell renal cell carcinoma with hydronephrosis", "malignant"),
               ("angiomyolipoma of the kidney, no renal cell carcinoma", "benign")]
    rows = [{"case_id": f"k{i}", "modality": "ct", "path": str(small), "report": reports[i % 2][0],
             "labels": reports[i % 2][1], "split": "test" if i >= 4 else "train"} for i in range(6)]
    write_manifest(tmp_path / "manifest.csv", rows)
    summary = _run_twin("renalclip-ct", tmp_path, tmp_path)
    assert summary["stages"] == ["report-attributes", "align-frozen-text"]
    attributes = json.loads((tmp_path / "run" / "data" / "report-attributes.counts.json").read_text())
    assert attributes["classes"] == ["DOID:11111", "DOID:3314", "DOID:4467"]
    meta = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert meta["preprocessing"]["volume"]["spatial_size"] == [24, 24, 12]


def test_an_adapted_text_tower_plugs_into_the_renalclip_recipe(tmp_path):
    """The text tower of a text-dapt run (MLM on the bundled DO texts) replaces the RenalCLIP twin's text tower with
    one line (`text: {name: checkpoint, options: {path: RUN/model}}`): it starts from the adapted weights, stays frozen
    as the recipe says, and the trained model's config holds the tower itself, not a pointer to the run."""
    import yaml
    from safetensors.torch import load_file

    from medvl.models import create_model
    from medvl.resources import bundled
    from medvl.train import train
    from tests.train.cohort import write_manifest
    from tests.train.test_manifest_data import _train

    adapted = tmp_path / "dapt"
    train(TrainConfig.from_file(config_dir() / "recipes" / "text-dapt-mlm-tiny.yaml"), adapted)
    rows = [{"case_id": f"k{i}", "modality": "ct", "path": str(bundled("ct_small")),
             "report": ["clear cell renal cell carcinoma", "angiomyolipoma of the kidney"][i % 2],
             "labels": ["malignant", "benign"][i % 2], "split": "test" if i >= 4 else "train"} for i in range(6)]
    write_manifest(tmp_path / "manifest.csv", rows)
    recipe = yaml.safe_load((config_dir() / "recipes" / "tiny" / "renalclip-ct.yaml").read_text())
    recipe["model_config"]["towers"]["text"] = {"name": "checkpoint", "options": {"path": str(adapted / "model")}}
    (tmp_path / "renalclip.yaml").write_text(yaml.safe_dump(recipe))
    summary = _train(tmp_path / "renalclip.yaml", tmp_path / "run")
    assert summary["stages"] == ["report-attributes", "align-frozen-text"]
    meta = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert meta["model"]["towers"]["text"]["name"] == "hf-text-tiny" and "path" not in meta["model"]["towers"]["text"]
    before = {k: v for k, v in load_file(str(adapted / "model" / "model.safetensors")).items()
              if k.startswith("towers.text.")}
    after = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert before and all(torch_equal(after[k], v) for k, v in before.items())  # adapted, then kept frozen
    model = create_model(tmp_path / "run" / "model")
    assert model.random_weights["text"] is False and model.encode_text(["renal mass"]).shape == (1, 16)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_checkpoint_tower_names_what_is_wrong(tmp_path):
    from medvl.errors import ConfigError, InputError
    from medvl.models import create_model
    from medvl.models.multimodal import ModelConfig

    def build(options):
        return create_model(ModelConfig.from_dict({"towers": {"text": {"name": "checkpoint", "options": options}},
                                                   "embed_dim": 8}), random_weights=True)

    with pytest.raises(InputError, match="not a medvl checkpoint folder"):
        build({"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="takes one option, path"):
        build({"path": str(tmp_path), "layers": 2})
