"""The one registry class: duplicate names refused, unknown names listed, built-ins imported on first use."""

import sys

import pytest

from medvl.errors import ConfigError
from medvl.registry import Registry


def test_register_get_and_list_in_order():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)

    @reg.register("a")
    def a():
        return 1

    assert reg.get("b") == 2 and reg.get("a") is a
    assert reg.names() == ["a", "b"] and [n for n, _ in reg.items()] == ["b", "a"]
    assert "a" in reg and "c" not in reg and len(reg) == 2


def test_duplicate_and_unknown_names_are_clear_errors():
    reg: Registry[int] = Registry("widget", hint=" (or a folder)")
    reg.add("one", 1)
    with pytest.raises(ConfigError, match="widget 'one' is already registered"):
        reg.add("one", 2)
    assert reg.get("one") == 1
    with pytest.raises(ConfigError, match=r"^unknown widget 'two'; known: one \(or a folder\)$"):
        reg.get("two")


def test_builtin_modules_load_on_first_lookup_and_a_misspelt_one_fails_loudly():
    reg: Registry[int] = Registry("widget", builtins=("medvl.no_such_module",))
    with pytest.raises(ModuleNotFoundError):
        reg.names()
    with pytest.raises(ModuleNotFoundError):  # not silently marked loaded after the failure
        reg.get("x")


def test_towers_models_losses_datasets_and_steps_share_the_class():
    from medvl.losses.registry import LOSSES
    from medvl.models.registry import TOWERS
    from medvl.models.zoo import MODELS
    from medvl.pipelines.steps import COHORT_STEPS, STEPS
    from medvl.train.data import DATASETS
    from medvl.train.evaluations import EVALUATIONS
    from medvl.train.objectives import OBJECTIVES
    from medvl.train.samplers import SAMPLERS

    for reg in (TOWERS, MODELS, LOSSES, DATASETS, OBJECTIVES, SAMPLERS, EVALUATIONS, COHORT_STEPS, *STEPS.values()):
        assert isinstance(reg, Registry) and len(reg) > 0
    assert "timm-tiny" in TOWERS and "tiny-clip" in MODELS and "medvl.models.text" in sys.modules
    known = ("bags, breastmnist, breastmnist-bags, ct-reports, graph-groups, manifest, text-corpus, text-pairs, "
             "webdataset")
    with pytest.raises(ConfigError, match=f"unknown dataset 'nope'; known: {known}"):
        DATASETS.get("nope")
    known = "bag_survival, contrastive, distill, lexical, masked_embedding, mlm, rtd, supervised"
    with pytest.raises(ConfigError, match=f"unknown objective 'nope'; known: {known}"):
        OBJECTIVES.get("nope")
    assert SAMPLERS.names() == ["distinct", "event-balanced", "group-balanced", "shuffled"]
    assert "synonym-linking" in EVALUATIONS
