"""AppTest on the demo workspace: the draft report panel, the export buttons, neighbours of the right kind, and
label/macro images kept private."""

import re

from streamlit.testing.v1 import AppTest

from tests.apps.test_pages import run_page, texts


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
    shown = texts(at)
    assert "breast ultrasound" not in shown  # the demo's one slide has no H&E neighbour: no ultrasound instead
    assert any("No other H&E slide" in i.value for i in at.info)
    at.checkbox(key="slide_mix").check().run()
    assert not at.exception and "breast ultrasound" in texts(at)  # mixing is an explicit choice


def test_label_and_macro_images_only_on_opt_in(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Slide_viewer")
    images = len(at.get("imgs"))
    assert "label, macro, thumbnail" in texts(at)
    assert not any("shown at your request" in str(i.proto) for i in at.get("imgs"))
    at.sidebar.checkbox(key="slide_show_private").check().run()
    assert not at.exception
    assert len(at.get("imgs")) > images and any("shown at your request" in str(i.proto) for i in at.get("imgs"))
