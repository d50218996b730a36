"""Slide label and macro images stay private: listed by name, never read, thumbnailed or exported by default.

The bundled Aperio slide (CMU-1-Small-Region) carries a label, a macro photograph and a thumbnail.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medvl.cli.main import app
from medvl.errors import InputError
from medvl.io.slide import open_slide
from medvl.io.slide.slide import PRIVATE_ASSOCIATED


def test_label_and_macro_are_refused_without_opt_in(svs_path):
    with open_slide(svs_path) as s:
        assert {"label", "macro"} <= set(s.associated) and {"label", "macro"} <= PRIVATE_ASSOCIATED
        for name in ("label", "macro"):
            with pytest.raises(InputError, match="patient identifiers"):
                s.associated_image(name)
        label = s.associated_image("label", allow_private=True)  # the opt-in reads it
        assert label.ndim == 3 and label.shape[2] == 3 and label.std() > 0
        assert s.associated_image("thumbnail").shape[2] == 3  # the slide's own downsample is not private


def test_slide_info_lists_names_and_nothing_more(svs_path):
    result = CliRunner().invoke(app, ["slide", "info", str(svs_path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert sorted(info["associated"]) == ["label", "macro", "thumbnail"]
    with open_slide(svs_path) as s:
        sizes = {str(v) for n in ("label", "macro") for v in s.associated_image(n, allow_private=True).shape[:2]}
    # no size, pixel or property of the associated images in the output beyond their names
    assert not any(k.startswith("associated_") for k in info)
    assert "label" in result.stdout and not any(f'"{v}"' in result.stdout for v in sizes)


def test_thumbnail_and_tiles_are_read_from_the_pyramid_not_the_macro(svs_path, tmp_path):
    with open_slide(svs_path) as s:
        thumb = s.thumbnail(256)
        macro = s.associated_image("macro", allow_private=True)
        w, h = s.dimensions
    assert thumb.shape[:2] == (256, round(256 * w / h))  # the slide's aspect, not the glass photograph's
    assert abs(thumb.shape[1] / thumb.shape[0] - macro.shape[1] / macro.shape[0]) > 0.2
    result = CliRunner().invoke(app, ["slide", "tile", str(svs_path), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    from PIL import Image

    png = next(tmp_path.glob("*_tissue.png"))
    written = np.asarray(Image.open(png))
    assert written.shape[1] / written.shape[0] == pytest.approx(w / h, rel=0.02)
