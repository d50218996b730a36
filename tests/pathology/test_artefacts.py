"""Artefact filters on the tissue mask: pen marks, out of focus, and the deep-segmenter slot, shown in the PNG and
GeoJSON, on a slide with drawn ink and a blurred square and on the real CMU-1 slide (which has neither)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medvl.errors import ConfigError, InputError
from medvl.io.slide import open_slide
from medvl.pathology.artefacts import ArtefactConfig, SegmenterConfig, pen_mask
from medvl.pathology.pipeline import SlideJob, tile_slide
from medvl.pathology.tiling import TileConfig
from medvl.pathology.tissue import ARTEFACT_CLASSES, TissueConfig, detect_tissue
from tests.pathology import synthetic_slides as syn


@pytest.fixture(scope="module")
def artefact_slide(tmp_path_factory):
    image, truth = syn.artefact_scene()
    path = syn.write_pyramid_tiff(tmp_path_factory.mktemp("art") / "inked.tiff", 2048, 1536, mpp=0.5, image=image)
    return path, truth


def _on_grid(mask: np.ndarray, shape) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(shape[::-1], Image.Resampling.NEAREST)) > 127


def _detect(path, *filters, **artefacts):
    with open_slide(path) as slide:
        return detect_tissue(slide, TissueConfig(artefacts=ArtefactConfig(filters=list(filters), **artefacts)))


def test_pen_and_blur_leave_the_mask(artefact_slide):
    path, truth = artefact_slide
    plain, _ = _detect(path)
    mask, _ = _detect(path, "pen", "blur")
    ink = _on_grid(truth["red"] | truth["green"] | truth["blue"], mask.mask.shape)
    assert plain.mask[ink].mean() > 0.95  # the saturation rule alone takes ink for tissue
    assert not (mask.mask & ink).any()
    assert (mask.artefacts["pen"] & ink).sum() / ink.sum() > 0.95
    blurred = _on_grid(truth["blur"], mask.mask.shape) & plain.mask
    assert (mask.artefacts["blur"] & blurred).sum() / blurred.sum() > 0.4
    assert not (mask.artefacts["blur"] & ~blurred).any()
    assert (mask.artefacts["pen"] & ~ink).sum() < 1.2 * ink.sum()  # only the dilated edges of the strokes


def test_each_ink_colour_is_found():
    image, truth = syn.artefact_scene(1024, 768)
    found = pen_mask(image, px_um=0.5)
    for colour in syn.INKS:
        assert (found[colour] & truth[colour]).sum() / truth[colour].sum() > 0.95, colour


def test_real_slide_has_no_false_artefacts(svs_path):
    mask, _ = _detect(svs_path, "pen", "blur")
    assert mask.artefact_fractions() == {"pen": 0.0, "blur": 0.0}
    assert mask.tissue_fraction > 0.3


def test_geojson_and_png_show_the_artefacts(artefact_slide, tmp_path):
    path, _ = artefact_slide
    tissue = TissueConfig(artefacts=ArtefactConfig(filters=["pen", "blur"]))
    record = tile_slide(SlideJob("inked", path), tmp_path, TileConfig(mpp=1.0, size=64), tissue)
    assert record["status"] == "ok" and record["artefacts"]["pen"] > 0.05 and record["artefacts"]["blur"] > 0.01
    features = json.loads((tmp_path / "inked_tissue.geojson").read_text())["features"]
    classes = {f["properties"]["classification"]["name"] for f in features}
    assert classes == {"Tissue", "Pen mark", "Out of focus"}
    png = np.asarray(Image.open(tmp_path / "inked_tissue.png"))
    magenta = np.array(ARTEFACT_CLASSES["pen"][1])
    assert (np.abs(png.astype(int) - (0.4 * 255 + 0.6 * magenta)).max(axis=2) < 60).mean() > 0.02
    # a tile file made with other filters is re-tiled, not reused
    again = tile_slide(SlideJob("inked", path), tmp_path, TileConfig(mpp=1.0, size=64), TissueConfig())
    assert again["status"] == "ok" and "artefacts" not in again


class _GreenIsNotTissue(torch.nn.Module):
    """A tiny segmenter: class 1 (tissue) scores red minus green of the normalised input, class 0 the opposite."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0], self.conv.weight[1, 1] = 1.0, -1.0
            self.conv.weight[0] = -self.conv.weight[1]
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x)


def test_exported_segmenter_slot(artefact_slide, tmp_path):
    """GrandQC-style: a torch.export program (.pt2) with dynamic input size, as LazySlide ships GrandQC."""
    path, truth = artefact_slide
    exported = tmp_path / "seg.pt2"
    program = torch.export.export(_GreenIsNotTissue(), (torch.zeros(1, 3, 96, 96),))
    torch.export.save(program, str(exported))
    seg = SegmenterConfig(path=str(exported), mean=(0, 0, 0), std=(1, 1, 1), mpp=4.0, tile_px=96)
    mask, _ = _detect(path, "segmenter", segmenter=seg)
    green = _on_grid(truth["green"], mask.mask.shape)
    assert mask.mask[green].mean() < 0.05 and mask.artefacts["segmenter"][green].mean() > 0.95
    assert mask.mask[_on_grid(truth["red"], mask.mask.shape)].mean() > 0.9  # red ink is "tissue" for this model


def test_torchvision_segmenter_weights(artefact_slide, tmp_path):
    """HEST-style weights: a torchvision segmentation state dict (safetensors) for the architecture the config
    names; here every pixel scores as background, so no tissue is left and the slide reports no_tissue."""
    from safetensors.torch import save_file
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2)
    with torch.no_grad():
        for head in (model.classifier.low_classifier, model.classifier.high_classifier):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([5.0, -5.0]))
    weights = tmp_path / "hest.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    seg = SegmenterConfig(path=str(weights), arch="lraspp_mobilenet_v3_large", mpp=8.0)
    tissue = TissueConfig(artefacts=ArtefactConfig(filters=["segmenter"], segmenter=seg))
    record = tile_slide(SlideJob("inked", artefact_slide[0]), tmp_path, TileConfig(mpp=1.0, size=64), tissue)
    assert record["status"] == "no_tissue" and record["artefacts"]["segmenter"] > 0.1
    bad = SegmenterConfig(path=str(weights), arch="deeplabv3_resnet50", mpp=8.0)
    with pytest.raises(InputError, match="weights do not match torchvision deeplabv3_resnet50"):
        _detect(artefact_slide[0], "segmenter", segmenter=bad)


def test_bad_filter_settings_are_clear():
    with pytest.raises(ConfigError, match="unknown artefact filter 'ink'; known: blur, pen, segmenter"):
        ArtefactConfig(filters=["ink"])
    with pytest.raises(ConfigError, match="--segmenter PATH"):
        ArtefactConfig(filters=["segmenter"])
