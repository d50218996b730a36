"""AppTest on the demo workspace: the draft report panel, the export buttons, neighbours of the right kind, and
label/macro images kept private."""

import re

from streamlit.testing.v1 import AppTest

from tests.apps.test_pages import run_page
from tests.reliability.test_phi import _rendered


def _shown(at: AppTest) -> str:
    """Every string the page rendered, image captions included."""
    return "\n".join(_rendered(at._tree))


def _downloads(at: AppTest) -> list[str]:
    return [str(getattr(e, "proto", e).label) for e in at.get("download_button")]


def test_report_panel_lists_codes_and_is_labelled_research(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Zero-shot_diagnosis")
    assert "Report (draft)" in [s.value for s in at.subheader]
    (draft,) = [c.value for c in at.code if c.value.startswith("DRAFT")]
    assert "research output" in draft and "Findings:" in draft
    assert re.search(r"1\. .+ \[(DOID|ICD10CM|ONCOTREE):[^;]+; (SCT|I10|99DOID|99ONCOTREE) [^\]]+\] probability", draft)
    assert "Download DICOM SR (TID 1500)" in _downloads(at)
    # a free-text class has no code: the page says so instead of offering a file
    at.radio(key="zs_ds_mode").set_value("custom list").run()
    at.text_area(key="zs_ds_list").set_value("breast cancer, odd blue cells").run()
    assert not at.exception
    assert any("No DICOM SR" in e.value and "odd blue cells" in e.value for e in at.error)
    assert "Download DICOM SR (TID 1500)" not in _downloads(at)


def test_slide_viewer_exports_and_keeps_neighbours_within_the_kind(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Slide_viewer")
    labels = _downloads(at)
    assert "QuPath detections (GeoJSON)" in labels and any(x.startswith("DICOM SEG (tissue") for x in labels)
    # the demo's cohort lists the bundled copy of its slide: that H&E slide is the one neighbour, no ultrasound image
    shown = _shown(at)
    assert "· H&E slide ·" in shown and "breast ultrasound" not in shown
    at.checkbox(key="slide_mix").check().run()
    assert not at.exception and "· breast ultrasound ·" in _shown(at)  # mixing is an explicit choice


def test_label_and_macro_images_only_on_opt_in(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Slide_viewer")
    assert "This slide has: label, macro, thumbnail" in _shown(at)
    assert "shown at your request" not in _shown(at)
    at.sidebar.checkbox(key="slide_show_private").check().run()
    assert not at.exception
    shown = _shown(at)
    assert "label image (shown at your request)" in shown and "macro image (shown at your request)" in shown
