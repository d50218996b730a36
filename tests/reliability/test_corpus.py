"""Every bad input of the corpus through every ``medvl`` entry point that accepts it.

Each run goes through the real command (``medvl.cli.main.app``) in-process with Typer's runner, which gives the same
exit status and stderr as the installed ``medvl`` script (one parity test below runs the script itself). A failure
must be exactly one ``error:`` line naming the file and the problem, no traceback, and no output left behind apart
from complete report files the entry point documents.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medvl.atomic import TMP_MARKER
from medvl.cli.main import app
from tests.conftest import assert_clean_error, run_cli
from tests.reliability.corpus import CASES, ENTRY_POINTS, Case, Expect

RUNS = [(case, ep) for case in CASES for ep in case.expect]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def made(corpus_dir):
    """Each input written once per module, on first use."""
    cache: dict[str, Path] = {}

    def get(case: Case) -> Path:
        if case.name not in cache:
            folder = corpus_dir / case.name
            folder.mkdir()
            cache[case.name] = case.make(folder)
        return cache[case.name]

    return get


def _left_behind(out: Path, allowed: tuple[str, ...]) -> list[str]:
    if not out.exists():
        return []
    files = [p for p in out.rglob("*") if p.is_file()]
    return [str(p.relative_to(out)) for p in files
            if TMP_MARKER in p.name or not any(p.match(pattern) for pattern in allowed)]


def _check_failure(result, path: Path, expect: Expect) -> None:
    assert result.exit_code != 0, result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # one line, nothing else on stderr
    assert path.name in lines[0], lines[0]
    assert expect.fragment in lines[0], (expect.fragment, lines[0])


@pytest.mark.parametrize(("case", "entry_point"), RUNS, ids=[f"{c.name}-{ep.replace(' ', '_')}" for c, ep in RUNS])
def test_bad_input(case: Case, entry_point: str, made, tmp_path):
    path = made(case)
    expect = case.expect[entry_point]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ENTRY_POINTS[entry_point](path, out))
    if expect.fails:
        _check_failure(result, path, expect)
    else:
        assert result.exit_code == int(expect.exit), result.stderr
        assert expect.fragment in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert _left_behind(out, expect.leaves) == []


def test_installed_command_matches_in_process_runs(made):
    """The ``medvl`` process itself: same one-line errors as the in-process runs (a few cases, one per area)."""
    by_name = {c.name: c for c in CASES}
    for name, entry_point in (("truncated_svs", "slide info"), ("nan_nifti", "ct info"),
                              ("malformed_obo", "ontology build")):
        case = by_name[name]
        path = made(case)
        result = run_cli(*ENTRY_POINTS[entry_point](path, path.parent / "out"))
        assert_clean_error(result, path.name, case.expect[entry_point].fragment)
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


def test_corpus_covers_every_issue_input():
    """The inputs the reliability issue lists are all in the corpus, each tried on at least one entry point."""
    names = {c.name for c in CASES}
    wanted = {"truncated_svs", "truncated_tiff", "jpeg_as_svs", "empty_svs", "empty_nifti", "empty_obo",
              "empty_table", "blank_slide", "implausible_mpp", "fluorescence", "mr_series", "gap_series",
              "mixed_series", "nopixel_series", "truncated_nifti", "nan_nifti", "malformed_obo", "bad_cohort"}
    assert wanted <= names
    assert all(c.expect and set(c.expect) <= set(ENTRY_POINTS) for c in CASES)
