"""CT manifests: the cohort manifest's column names (``label_map`` for label maps, ``labels`` for diagnoses)."""

from __future__ import annotations

import logging

from medvl.radiology.cases import read_ct_cases


def test_label_maps_come_from_the_label_map_column(tmp_path, ct_small, ct_labels):
    (tmp_path / "seg").mkdir()
    local = tmp_path / "seg" / "k2_seg.nii.gz"
    local.write_bytes(ct_labels.read_bytes())
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,modality,path,labels,label_map\n"
                        f"k1,CT,{ct_small},DOID:263,{ct_labels}\n"
                        f"k2,CT,{ct_small},DOID:4450,seg/k2_seg.nii.gz\n"
                        f"k3,CT,{ct_small},DOID:263,\n"
                        "s1,slide,x.svs,DOID:4450,\n")
    cases = read_ct_cases(manifest, labels=tmp_path / "default.nii.gz")
    assert [c.case_id for c in cases] == ["k1", "k2", "k3"]
    assert cases[0].labels == ct_labels
    assert cases[1].labels == local  # relative to the manifest's folder
    assert cases[2].labels == tmp_path / "default.nii.gz"  # no label map in the row: the command line's


def test_label_maps_under_labels_are_not_read_and_a_hint_says_where(tmp_path, ct_small, ct_labels, caplog):
    manifest = tmp_path / "old.csv"
    manifest.write_text(f"case_id,path,labels\nk1,{ct_small},{ct_labels}\n")
    with caplog.at_level(logging.WARNING, logger="medvl"):
        cases = read_ct_cases(manifest)
    assert cases[0].labels is None
    assert "'label_map'" in caplog.text and str(ct_small) not in caplog.text
