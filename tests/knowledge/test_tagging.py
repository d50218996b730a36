"""`medvl ontology tag` over files and stdin: JSONL records, negation, qualifiers, clear errors, no partial output."""

from __future__ import annotations

import json

from tests.conftest import assert_clean_error, run_cli

TEXTS = [
    "No evidence of pneumothorax.",
    "",
    "Moderately differentiated adenocarcinoma of the colon, grade 2.",
    "Small left pleural effusion without pneumonia.",
]


def test_tag_one_text_json():
    res = run_cli("ontology", "tag", "No pneumothorax; poorly differentiated carcinoma.", "--json")
    assert res.returncode == 0, res.stderr
    record = res.json()
    assert [(m["text"], m["negated"], m["qualifiers"]) for m in record["mentions"]] == [
        ("pneumothorax", True, {}), ("poorly differentiated carcinoma", False, {"differentiation": "poorly"})]
    assert record["labels"] == [record["mentions"][1]["id"]]


def test_tag_a_text_file_to_jsonl(tmp_path):
    src = tmp_path / "captions.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "tags.jsonl"
    res = run_cli("ontology", "tag", "--input", str(src), "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    assert res.json()["texts"] == 3 and res.json()["negated"] == 2
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 3, 4]  # the empty line is skipped, numbering kept
    assert records[0]["mentions"][0]["negated"] is True and records[0]["labels"] == []
    assert records[1]["mentions"][0]["qualifiers"] == {"differentiation": "moderately", "grade": "2"}
    assert [m["negated"] for m in records[2]["mentions"]] == [False, True]
    assert "text" not in records[0]  # reports may carry identifiers: not copied unless asked


def test_tag_csv_column_and_jsonl_key(tmp_path):
    csv_file = tmp_path / "reports.csv"
    csv_file.write_text('id,report\n1,"No pneumothorax, no pleural effusion."\n2,Emphysema.\n', encoding="utf-8")
    res = run_cli("ontology", "tag", "--input", str(csv_file), "--column", "report", "--keep-text")
    assert res.returncode == 0, res.stderr
    records = res.json_lines()
    assert [r["line"] for r in records] == [1, 2] and records[1]["text"] == "Emphysema."
    assert [m["negated"] for m in records[0]["mentions"]] == [True, True] and records[1]["labels"]
    jsonl = tmp_path / "caps.jsonl"
    jsonl.write_text(json.dumps({"caption": "Pneumonia is excluded."}) + "\n", encoding="utf-8")
    res = run_cli("ontology", "tag", "-i", str(jsonl), "--column", "caption")
    assert res.json_lines()[0]["mentions"][0]["negated"] is True


def test_tag_stdin(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "medvl", "ontology", "tag", "-"], input="No pneumonia.\nPneumonia.\n",
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["mentions"][0]["negated"] for r in records] == [True, False]
    assert "tagged 2 texts" in proc.stderr


def test_tag_bad_inputs_are_clear_errors_and_leave_no_output(tmp_path):
    out = tmp_path / "o.jsonl"
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("id,findings\n1,No pneumonia.\n", encoding="utf-8")
    assert_clean_error(run_cli("ontology", "tag", "-i", str(csv_file), "-o", str(out)), "r.csv", "no column 'text'",
                       "findings")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "No pneumonia."}\n{"text": oops}\n', encoding="utf-8")
    assert_clean_error(run_cli("ontology", "tag", "-i", str(bad), "-o", str(out)), "b.jsonl", "line 2")
    assert_clean_error(run_cli("ontology", "tag", "-i", str(tmp_path / "missing.txt")), "missing.txt", "not found")
    assert_clean_error(run_cli("ontology", "tag", "x", "-i", str(csv_file)), "not both")
    assert not out.exists() and not list(tmp_path.glob(".o.jsonl*"))
