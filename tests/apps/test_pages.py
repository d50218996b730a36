"""AppTest: every page loads on the demo workspace, and its main interaction changes what is shown."""

import pytest
from streamlit.testing.v1 import AppTest

from medvl.apps.catalog import pseudonym
from tests.apps.conftest import page_path

TIMEOUT = 180


def run_page(name: str) -> AppTest:
    at = AppTest.from_file(page_path(name), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not for clinical use" in w.value for w in at.warning)
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.caption, *at.markdown, *at.success, *at.warning, *at.info, *at.error)]
    parts += [e.value for e in at.sidebar.caption]
    return "\n".join(map(str, parts))


def test_ct_viewer_slices_window_and_labels(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("CT_viewer")
    shown = texts(at)
    assert "spacing 3.00 × 3.00 × 3.00 mm" in shown and "label map loaded" in shown
    assert "axial 16/30" in shown and "level 40 HU, width 400 HU" in shown
    # the demo's CT embeddings were made with a kidney box: it is offered first, read from the workspace cache
    assert "192×192×96 mm box around kidneys · used for the CT embeddings" in at.sidebar.selectbox(key="ct_crop").value
    assert "128×128×32 voxels of 1.5 × 1.5 × 3 mm (from the workspace cache)" in shown
    before = at.dataframe[0].value["structure"].tolist()
    at.slider(key="ct_axial").set_value(5).run()
    at.sidebar.selectbox(key="ct_preset").set_value("lung").run()
    assert not at.exception
    shown = texts(at)
    assert "axial 6/30" in shown and "level -600 HU, width 1500 HU" in shown
    assert at.dataframe[0].value["structure"].tolist() != before  # other organs on another slice
    at.sidebar.selectbox(key="ct_preset").set_value("custom").run()
    at.sidebar.slider(key="ct_level").set_value(300).run()
    assert "level 300 HU" in texts(at)


def test_slide_viewer_tile_classes_and_neighbours(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Slide_viewer")
    shown = texts(at)
    assert "2220×2967 px" in shown and "0.499 µm/px" in shown and "CMU-1" not in shown  # never the file name
    assert "Heatmap: probability of" in shown
    # the demo model was trained on 32x32 grayscale ultrasound: said beside its heatmap of H&E tiles (issue 16)
    assert sum("trained on ultrasound, grayscale images" in w.value for w in at.warning) == 1
    assert not any(s.key in ("slide_x", "slide_y", "slide_size") for s in at.sidebar.slider)  # no slider view
    first = at.number_input(key="slide_tile").value
    assert f"Tile {first}: level-0 x" in shown  # the best tile of the heatmap class is selected at first
    table = at.dataframe[0].value
    assert table["probability"].is_monotonic_decreasing and len(table) >= 5
    assert any("Definition:" in m.value for m in at.markdown)  # ontology context of the top class
    other = (first + 7) % 55
    at.number_input(key="slide_tile").set_value(other).run()
    assert not at.exception
    assert f"Tile {other}: level-0 x" in texts(at)
    assert not at.dataframe[0].value.equals(table)
    subheaders = [s.value for s in at.subheader]
    assert "Most similar tiles on this slide" in subheaders and "Nearest cases to the tile" in subheaders


def test_slide_without_mpp_asks_for_it(viewer_workspace, on_workspace):
    on_workspace(viewer_workspace)
    at = run_page("Slide_viewer")
    at.selectbox(key="slide_pick").set_value(next(o for o in at.selectbox(key="slide_pick").options
                                                 if o == pseudonym(viewer_workspace / "slides" / "nompp.tiff",
                                                                   "slide"))).run()
    assert not at.exception
    assert any("physical pixel size is unknown" in w.value for w in at.warning)
    assert "unknown µm/px" in texts(at) and any("need the slide's µm per pixel" in i.value for i in at.info)
    at.number_input(key="slide_mpp").set_value(0.5).run()
    assert not at.exception
    shown = texts(at)
    assert "0.500 µm/px (entered)" in shown and "Heatmap: probability of" in shown and "Tile " in shown


def test_ct_viewer_shows_missing_slices_and_the_model_box(viewer_workspace, on_workspace):
    on_workspace(viewer_workspace)
    at = run_page("CT_viewer")
    gap = next(o for o in at.selectbox(key="ct_pick").options if o == pseudonym(viewer_workspace / "ct" / "gap", "ct"))
    at.selectbox(key="ct_pick").set_value(gap).run()
    assert not at.exception
    assert any("missing slices: 3 slice(s)" in w.value and "violet bands" in w.value for w in at.warning)
    at.slider(key="ct_axial").set_value(10).run()
    assert "axial 11/30 · missing from the series" in texts(at)
    at.slider(key="ct_axial").set_value(12).run()
    assert "axial 13/30" in texts(at) and "axial 13/30 · missing" not in texts(at)


def test_zero_shot_ranks_with_ontology_context(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Zero-shot_diagnosis")
    table = at.dataframe[0].value
    assert len(table) >= 5 and table["probability"].is_monotonic_decreasing
    assert any("Definition:" in m.value for m in at.markdown) and any("Ancestor path:" in m.value for m in at.markdown)
    at.radio(key="zs_ds_mode").set_value("custom list").run()
    at.text_area(key="zs_ds_list").set_value("kidney cancer, breast cancer, lung cancer").run()
    assert not at.exception
    names = set(at.dataframe[0].value["diagnosis"])
    assert names == {"kidney cancer", "breast cancer", "lung cancer"}
    # a high abstention threshold makes the classifier abstain or back off
    at.slider(key="zs_abstain").set_value(0.95).run()
    assert at.warning and any("Abstained" in w.value for w in at.warning) or any(
        "backed off" in s.value for s in at.success)


def test_a_model_with_random_weights_gets_a_badge(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Zero-shot_diagnosis")
    assert not any("Random weights" in w.value for w in at.sidebar.warning)  # the trained demo model
    cohort_model = next(o for o in at.sidebar.selectbox(key="zs_model").options if o.startswith("pipeline-"))
    at.sidebar.selectbox(key="zs_model").set_value(cohort_model).run()
    assert not at.exception
    assert any("Random weights" in w.value for w in at.sidebar.warning)


def test_zero_shot_bad_disease_is_a_message(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Zero-shot_diagnosis")
    at.text_input(key="zs_ds_node").set_value("no such disease xyz").run()
    assert not at.exception
    assert any("no disease named" in e.value for e in at.error)


def test_retrieval_text_and_case_queries(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Retrieval")
    header = at.subheader[0].value
    assert header.startswith("Top 8 of")
    first = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert len(first) == 8 and any("Reference label" in c.value for c in at.caption)
    at.slider(key="rt_k").set_value(3).run()
    assert at.subheader[0].value.startswith("Top 3 of")
    at.radio(key="rt_mode").set_value("case").run()
    assert not at.exception
    # the first case is the demo's slide: its neighbours are H&E slides only; an ultrasound case gets ultrasound cases
    assert at.subheader[0].value.endswith("H&E slide cases")
    assert all("H&E slide" in m.value for m in at.markdown if m.value.startswith("**#"))
    options = at.selectbox(key="rt_case").options
    at.selectbox(key="rt_case").select_index(next(i for i, o in enumerate(options) if "breast ultrasound" in o)).run()
    second = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert len(second) == 3 and second != first[:3] and all("breast ultrasound" in m for m in second)
    at.checkbox(key="rt_mix").check().run()
    assert not at.exception and at.subheader[0].value.startswith("Top 3 of")


def test_survival_without_table_says_so(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Survival")
    if at.metric:  # a demo that ships a survival table: the curves are shown
        assert at.metric[0].label == "C-index"
    else:
        assert any("no survival table" in i.value for i in at.info)


def test_survival_curves_and_patient(survival_workspace, on_workspace):
    on_workspace(survival_workspace)
    at = run_page("Survival")
    metrics = {m.label: m.value for m in at.metric}
    assert 0.5 < float(metrics["C-index"]) <= 1.0
    assert float(metrics["log-rank p (low vs high risk)"]) < 0.05
    assert metrics["patients / events"].startswith("871 / ")
    shown = texts(at)
    assert "TCGA-" not in shown  # patient identifiers never appear
    before = next(m.value for m in at.markdown if "predicted risk" in m.value)
    at.selectbox(key="sv_patient").set_value(5).run()
    after = next(m.value for m in at.markdown if "predicted risk" in m.value)
    assert after != before and after.startswith("**patient-")


@pytest.mark.parametrize("page", ["Slide_viewer", "CT_viewer", "Zero-shot_diagnosis", "Retrieval", "Survival"])
def test_pages_on_empty_workspace(page, empty_workspace, on_workspace):
    on_workspace(empty_workspace)
    at = run_page(page)
    assert any("is empty" in i.value for i in at.info)


def test_non_slide_upload_is_a_message(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("Slide_viewer")
    at.radio(key="slide_source").set_value("upload a slide").run()
    at.get("file_uploader")[0].set_value(("scan.svs", b"this is not a slide at all", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert at.error, "expected an error message"
    assert "Upload" not in at.error[0].value and at.error[0].value


def test_unreadable_ct_upload_is_a_message(demo_workspace, on_workspace):
    on_workspace(demo_workspace)
    at = run_page("CT_viewer")
    at.radio(key="ct_source").set_value("upload a NIfTI").run()
    at.get("file_uploader")[0].set_value(("study.nii.gz", b"\x1f\x8b broken gzip", "application/gzip"))
    at.run()
    assert not at.exception
    assert any("NIfTI" in e.value or "nifti" in e.value.lower() for e in at.error), [e.value for e in at.error]
