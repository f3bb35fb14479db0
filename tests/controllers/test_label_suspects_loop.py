"""Label suspects in the Training and Refine controllers: the advice line, when it is out of date, the merged ranking."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_posekit.controllers import refine
from napari_posekit.controllers.training import (
    LabelAdvice,
    LabelChecks,
    check_project_labels,
    kind_counts,
    labels_fingerprint,
)
from napari_posekit.core.collected_data import collected_to_arrays, read_collected, write_collected
from napari_posekit.core.label_suspects import CheckReport, LabelSet, Suspect
from napari_posekit.core.sample import write_sample_project

IMAGES = ("labeled-data/m4s1/img0102.png", "labeled-data/m4s1/img0007.png", "labeled-data/v2/img0003.png")
PARTS = ("snout", "leftear", "rightear", "tailbase")


def _report(*suspects: Suspect, dismissed: int = 0, notes=()) -> CheckReport:
    labels = LabelSet(IMAGES, PARTS, np.zeros((len(IMAGES), len(PARTS), 2)))
    return CheckReport(labels, list(suspects), np.zeros(len(IMAGES)), ["swaps"], list(notes), dismissed)


SWAP = Suspect(IMAGES[0], ("leftear", "rightear"), "swap", 4.5, "leftear and rightear look swapped: 115 of 116 agree")
MOVED = Suspect(IMAGES[1], ("snout",), "geometry", 2.0, "snout is 31 px from where the other parts put it")
WOBBLE = Suspect(IMAGES[2], ("tailbase",), "geometry", 1.1, "tailbase is 11 px off")


@pytest.fixture
def project(tmp_path):
    return write_sample_project(tmp_path, n_frames=36, height=64, width=96, n_labeled=12).parent


def test_advice_text_counts_kinds_and_tooltip_gives_the_top_reason(tmp_path):
    advice = LabelAdvice(tmp_path, report=_report(SWAP, MOVED, WOBBLE, dismissed=2, notes=["duplicates: no images"]))
    assert advice.text() == "Labels: 3 suspects (2 geometry, 1 swap) — review them in Label QA"
    tip = advice.tooltip().splitlines()
    assert tip[0] == f"Most suspect: {IMAGES[0]}: {SWAP.reason}"
    assert "2 suspects marked as correct are not counted." in tip and "duplicates: no images" in tip
    assert LabelAdvice(tmp_path, report=_report(SWAP)).text() == "Labels: 1 suspect (1 swap) — review them in Label QA"
    assert LabelAdvice(tmp_path, report=_report()).text() == "Labels: no suspects found"
    failed = LabelAdvice(tmp_path, error="no labeled-data/*/CollectedData_*.h5 files")
    assert failed.text().startswith("Labels: not checked — no labeled-data") and failed.suspects == []
    swaps = [SWAP, Suspect(IMAGES[1], ("leftear", "rightear"), "swap", 3.0, "x"), MOVED]
    assert kind_counts(swaps) == "2 swaps, 1 geometry"


def test_check_project_labels_reports_unreadable_labels_as_advice(tmp_path, project):
    calls = []
    advice = check_project_labels(project, check=lambda root: calls.append(root) or _report(MOVED))
    assert calls == [project] and advice.text().startswith("Labels: 1 suspect (1 geometry)")
    assert advice.fingerprint == labels_fingerprint(project) and advice.seconds >= 0
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text("Task: x\nbodyparts: [a, b]\n")
    empty = check_project_labels(tmp_path / "empty")
    assert empty.report is None and "label some frames first" in empty.error
    assert "Labels: not checked" in empty.text()


def test_checks_are_stale_after_a_save_another_project_or_a_decision(project, tmp_path):
    checks = LabelChecks()
    assert checks.stale(project) and not checks.stale(None)
    assert checks.text(project, checking=False)[0] == "Labels: checking…" and checks.text(None, False) == ("", "")
    checks.checked(check_project_labels(project, check=lambda root: _report(SWAP)))
    assert not checks.stale(project) and checks.stale(tmp_path)
    assert checks.text(project, checking=False)[0].startswith("Labels: 1 suspect (1 swap)")
    # a save of the labels (a new file time) makes it stale; so does a decision file beside them
    h5 = next((project / "labeled-data").glob("*/CollectedData_*.h5"))
    stat = h5.stat()
    os.utime(h5, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert checks.stale(project)
    checks.checked(check_project_labels(project, check=lambda root: _report()))
    (h5.parent / "label_checks.json").write_text("[]")
    assert checks.stale(project)


def test_training_warnings_that_repeat_the_label_line_are_recognised(project):
    checks = LabelChecks()
    swap = {
        "event": "warning",
        "message": "labeled-data/v/img1.png: leftear and rightear are on the opposite "
        "sides from 11 of 12 frames; swapped? (trained as labeled)",
    }
    summary = {
        "event": "warning",
        "message": "2 label suspects (1 swap, 1 geometry): run 'posekit check-labels' "
        "or the Label QA widget to review them",
    }
    other = {"event": "warning", "message": "labeled-data/v/img9.png: image file missing; left out"}
    assert not checks.shown_already(swap, project)  # nothing shown yet: training's warnings are the only word
    assert checks.shown_already(swap, project, checking=True)  # the line will say it in a moment
    checks.checked(check_project_labels(project, check=lambda root: _report(SWAP, MOVED)))
    assert checks.shown_already(swap, project) and checks.shown_already(summary, project)
    assert not checks.shown_already(other, project) and not checks.shown_already({"event": "step"}, project)
    checks.checked(check_project_labels(project, check=lambda root: _report()))
    assert not checks.shown_already(summary, project)  # the line says none: training's word is news


def _candidates(scores):
    """Candidates whose combined scores are ``scores`` (the flagged frames are the pool, the first two picked)."""
    n = len(scores)
    s = SimpleNamespace(
        combined=np.asarray(scores, float), jump_px=np.zeros(n), uncertain=np.zeros(n), fitting_px=np.zeros(n)
    )
    flagged = [int(f) for f in np.flatnonzero(np.asarray(scores) > 0)]
    return SimpleNamespace(scores=s, picked=flagged[:2], pool=flagged, excluded=set())


def test_common_scale_puts_both_thresholds_at_one():
    assert refine.common_score(0.0) == 1.0 and refine.common_score(1.0) == 2.0
    frames = refine.candidate_rows(_candidates([0, 0.2, 0, 1.0, 3.5]), set(), set())
    assert [r.frame for r in frames] == [4, 3, 1]
    labels = refine.label_rows([SWAP, MOVED, WOBBLE])
    merged = refine.merged_rows(frames, labels)
    # frame 4: 4.5, swap 4.5 (a tie: the frame first), frame 3: 2.0, moved snout 2.0, frame 1: 1.2, wobble 1.1
    assert [(type(r).__name__, r.frame if r.frame is not None else r.image) for r in merged] == [
        ("CandidateRow", 4),
        ("LabelRow", IMAGES[0]),
        ("CandidateRow", 3),
        ("LabelRow", IMAGES[1]),
        ("CandidateRow", 1),
        ("LabelRow", IMAGES[2]),
    ]
    assert [r.score for r in merged] == pytest.approx([4.5, 4.5, 2.0, 2.0, 1.2, 1.1])
    assert merged[0].checkable and merged[0].texts()[1] == "4.50"  # frames keep their columns, on the common scale
    swap = merged[1]
    assert not swap.checkable and not swap.picked and swap.frame is None
    assert swap.texts() == ["label", "4.50", "label: leftear/rightear swapped in img0102"]
    assert swap.tooltip() == f"{IMAGES[0]}: {SWAP.reason}"
    assert "Label QA" in swap.status_text() and SWAP.reason in swap.status_text()
    assert refine.label_rows([MOVED])[0].describe() == "snout out of shape in img0007"


def test_controller_rows_include_label_suspects_only_when_asked(project):
    controller = refine.RefineController()
    controller.candidates = _candidates([0, 2.0, 0.5])
    plain = controller.rows(project)
    assert [r.frame for r in plain] == [1, 2] and [r.score for r in plain] == [2.0, 0.5]  # the frames' own scores
    assert controller.labels_text(project, checking=False) == ""
    controller.include_labels = True
    assert controller.labels_text(None, checking=False) == "Label suspects: choose the project first."
    assert controller.labels_text(project, checking=True) == "Label suspects: checking…"
    assert controller.rows(project) == plain  # not checked yet: the frames alone
    controller.label_checks.checked(check_project_labels(project, check=lambda root: _report(SWAP, WOBBLE)))
    rows = controller.rows(project)
    assert [getattr(r, "frame", None) or r.image for r in rows] == [IMAGES[0], 1, 2, IMAGES[2]]
    assert controller.labels_text(project, checking=False).startswith("Label suspects: 2 suspects (1 swap, 1 geometry)")
    assert controller.rows(Path("/elsewhere")) == plain  # another project's suspects are not shown
    controller.candidates = None
    assert [r.image for r in controller.rows(project)] == [IMAGES[0], IMAGES[2]]  # suspects without a search


def test_real_checks_find_a_planted_swap_in_a_sample_project(project):
    h5 = next((project / "labeled-data").glob("*/CollectedData_*.h5"))
    df = read_collected(h5)
    keys, parts, xy = collected_to_arrays(df)
    xy = np.array(xy)
    left, right = parts.index("leftear"), parts.index("rightear")
    xy[3, [left, right]] = xy[3, [right, left]]
    df.iloc[3] = xy[3].ravel()
    write_collected(df, h5)
    advice = check_project_labels(project)
    assert advice.error is None, advice.error
    top = advice.suspects[0]
    assert (
        "swap" in (top.kind, *top.evidence)
        and top.image.endswith(Path(keys[3]).name)
        and set(top.bodyparts) == {"leftear", "rightear"}
    )
    n = len(advice.suspects)
    assert advice.text().startswith(f"Labels: {n} suspect") and "look swapped" in advice.tooltip().splitlines()[0]
