"""``posekit check-labels``: the summary, the CSV and where it goes, dismissed suspects, and bad input."""

from __future__ import annotations

import csv

import pytest

from conftest import require_shared, writable_copy
from napari_posekit.cli import main
from napari_posekit.core.label_qa import mark_correct
from napari_posekit.core.label_suspects import Suspect, project_label_set
from napari_posekit.core.sample import write_sample_project


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample_project(tmp_path_factory.mktemp("checks"), n_frames=12, height=64, width=96).parent


@pytest.fixture
def project(sample, tmp_path):
    return writable_copy(sample, tmp_path / sample.name)


@pytest.fixture
def found(monkeypatch, project) -> list[Suspect]:
    """The fast checks find one swap on the project's first image (a stand-in for the real checks)."""
    import napari_posekit.core.label_checks as checks

    image = project_label_set(project).images[0]
    suspects = [Suspect(image, ("leftear", "rightear"), "swap", 4.0, "ears look swapped", [[1, 2], [3, 4]])]
    monkeypatch.setattr(checks, "fast_checks", lambda labels: (list(suspects), ["geometry: a note"], ["swaps"]))
    return suspects


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_summary_and_csv_in_the_project_by_default(project, found, capsys):
    assert main(["check-labels", str(project / "config.yaml")]) == 0
    out = capsys.readouterr().out
    target = project / "label-checks.csv"
    assert f"suspects written: {target}" in out
    assert "1 suspect: 1 left/right swapped" in out and "ears look swapped" in out and "note: geometry: a note" in out
    (row,) = rows(target)
    assert row["image"] == found[0].image and row["kind"] == "swap" and row["suggested_x"] == "1.00,3.00"


def test_marked_correct_is_left_out_unless_asked(project, found, tmp_path, capsys):
    mark_correct(project_label_set(project), found[0])
    output = tmp_path / "out" / "suspects.csv"
    output.parent.mkdir()
    assert main(["check-labels", str(project), "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "no suspects" in out and "1 marked as correct earlier" in out and rows(output) == []
    assert not (project / "label-checks.csv").exists()
    assert main(["check-labels", str(project), "--output", str(output), "--show-dismissed"]) == 0
    assert len(rows(output)) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--folds", "1"], "at least 2 folds"),
        (["--max-minutes", "0"], "must be more than 0"),
        (["--output", "no/such/folder/out.csv"], "cannot write the suspects CSV"),
    ],
)
def test_bad_options_are_clear_errors(project, found, extra, message, capsys):
    assert main(["check-labels", str(project), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_not_a_project_or_no_labels_is_a_clear_error(project, tmp_path, capsys):
    assert main(["check-labels", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a DeepLabCut project folder" in err and "Traceback" not in err
    for file in (project / "labeled-data").glob("*/CollectedData_*"):
        file.unlink()
    assert main(["check-labels", str(project)]) == 1
    err = capsys.readouterr().err
    assert "no labeled-data/*/CollectedData_*.h5 files" in err and "Traceback" not in err


def test_the_openfield_ear_swap_comes_first(tmp_path, capsys):
    source = require_shared("dlc_openfield-Pranav-2018-10-30")
    project = writable_copy(source, tmp_path / source.name)
    assert main(["check-labels", str(project)]) == 0
    out = capsys.readouterr().out
    table = rows(project / "label-checks.csv")
    assert table[0]["image"] == "labeled-data/m4s1/img0102.png" and table[0]["kind"] == "swap"
    assert set(table[0]["bodypart"].split(",")) == {"leftear", "rightear"}
    assert "1. labeled-data/m4s1/img0102.png" in out
