"""Label QA's orchestration: merging and ranking suspects, mark-as-correct decisions, the CSV and the summary."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import drain
from napari_posekit.core.label_qa import (
    CSV_COLUMNS,
    DecisionsError,
    check_labels,
    decisions_path,
    default_csv_path,
    iter_check_labels,
    mark_correct,
    rank_suspects,
    read_decisions,
    summary,
    training_warnings,
    write_suspects_csv,
)
from napari_posekit.core.label_suspects import CheckReport, LabelSet, Suspect, project_label_set

PARTS = ("snout", "leftear", "rightear", "tailbase")
A = "labeled-data/v1/img000.png"
B = "labeled-data/v1/img001.png"
C = "labeled-data/v2/img000.png"


def labels_at(root, n: int = 3) -> LabelSet:
    images = (A, B, C)[:n]
    xy = np.array([[[10.0, 10.0], [5.0, 20.0], [15.0, 20.0], [10.0, 40.0]]] * n) + np.arange(n)[:, None, None]
    for image in images:
        (root / image).parent.mkdir(parents=True, exist_ok=True)
    return LabelSet(images, PARTS, xy, root, pairs=(("leftear", "rightear"),))


@pytest.fixture
def found(monkeypatch) -> list[Suspect]:
    """What the fast checks find: the test fills this list (a stand-in for the real checks)."""
    import napari_posekit.core.label_checks as checks

    suspects: list[Suspect] = []
    monkeypatch.setattr(checks, "fast_checks", lambda labels: (list(suspects), ["a note"], ["swaps"]))
    return suspects


def swap(image=A, score=3.0) -> Suspect:
    return Suspect(image, ("leftear", "rightear"), "swap", score, "ears look swapped", [[15, 20], [5, 20]])


def far(image=A, part="leftear", score=2.0, kind="disagreement") -> Suspect:
    return Suspect(image, (part,), kind, score, f"{part} is 30 px from the model", [[14, 21]])


def test_overlapping_suspects_of_one_image_merge_into_the_strongest():
    ranked = rank_suspects([far(), swap(), far(part="tailbase", score=1.5)])
    assert len(ranked) == 2
    top = ranked[0]
    assert top.kind == "swap" and top.bodyparts == ("leftear", "rightear")
    assert top.evidence == ("disagreement",) and top.score == pytest.approx(3.0 + 0.5 * 2.0)
    assert top.reason.startswith("ears look swapped") and "leftear is 30 px from the model" in top.reason
    assert np.array_equal(top.suggested, [[15, 20], [5, 20]])  # the strongest's fix wins
    assert ranked[1].bodyparts == ("tailbase",) and ranked[1].score == 1.5


def test_merging_is_transitive_and_fills_the_fix_of_extra_parts(tmp_path):
    labels = labels_at(tmp_path)
    # snout-leftear geometry, leftear-rightear swap, rightear disagreement: one mistake
    geometry = Suspect(A, ("snout", "leftear"), "geometry", 4.0, "snout to leftear too long", [[10, 10], [6, 20]])
    no_fix = Suspect(A, ("rightear",), "disagreement", 1.2, "rightear off")
    ranked = rank_suspects([swap(), geometry, no_fix], labels)
    assert len(ranked) == 1
    merged = ranked[0]
    assert merged.kind == "geometry" and merged.bodyparts == ("snout", "leftear", "rightear")
    assert merged.evidence == ("swap", "disagreement")
    assert merged.score == pytest.approx(4.0 + 0.5 * (3.0 + 1.2))
    # snout and leftear from geometry, rightear from the swap (the next strongest with a fix)
    assert np.array_equal(merged.suggested, [[10, 10], [6, 20], [5, 20]])
    # a part nobody suggests a fix for stays where it is (with labels), or the merged suspect has no fix
    with_unfixed = rank_suspects(
        [geometry, Suspect(A, ("leftear", "tailbase"), "collapse", 1.0, "at one point")], labels
    )
    assert np.array_equal(with_unfixed[0].suggested, [[10, 10], [6, 20], [10, 40]])
    without = rank_suspects([geometry, Suspect(A, ("leftear", "tailbase"), "collapse", 1.0, "at one point")])
    assert without[0].suggested is None and without[0].bodyparts == ("snout", "leftear", "tailbase")


def test_same_kind_adds_no_score_and_other_images_never_merge():
    ranked = rank_suspects([far(score=2.0), far(score=1.5, kind="disagreement"), far(image=B, score=5.0)])
    assert [s.image for s in ranked] == [B, A]
    assert ranked[1].score == 2.0 and ranked[1].evidence == ()
    # no shared body part: two suspects on one image stay apart
    assert len(rank_suspects([far(part="snout"), far(part="tailbase")])) == 2


def test_ranking_is_deterministic_whatever_the_input_order():
    suspects = [
        swap(A),
        swap(B),
        far(C, score=3.0),
        far(A, part="snout", score=3.0, kind="geometry"),
        Suspect(B, ("tailbase",), "duplicate", 1.0, "same pixels as another image"),
        far(B, score=2.5),
    ]
    rng = np.random.default_rng(0)
    orders = {
        tuple(
            (s.image, s.kind, s.bodyparts, round(s.score, 9), s.reason)
            for s in rank_suspects(list(rng.permutation(suspects)))
        )
        for _ in range(20)
    }
    assert len(orders) == 1
    ranked = rank_suspects(suspects)
    assert [round(s.score, 3) for s in ranked] == sorted((round(s.score, 3) for s in ranked), reverse=True)
    assert (ranked[0].image, ranked[0].kind) == (B, "swap")  # 3 + half of 2.5
    # equal scores: image, then kind order (swap before geometry before disagreement)
    assert [(s.image, s.kind) for s in ranked[1:4]] == [(A, "swap"), (A, "geometry"), (C, "disagreement")]


def test_marked_correct_is_dismissed_until_the_labels_move(tmp_path, found):
    labels = labels_at(tmp_path)
    path = mark_correct(labels, swap())
    assert path == tmp_path / "labeled-data" / "v1" / "label_checks.json" == decisions_path(labels, A)
    mark_correct(labels, far(C))
    (decision,) = read_decisions(labels)[:1]
    assert decision["image"] == A and decision["kind"] == "swap" and decision["bodyparts"] == ["leftear", "rightear"]
    assert decision["xy"] == [[5.0, 20.0], [15.0, 20.0]] and decision["time"].endswith("Z")
    assert len(read_decisions(labels)) == 2  # one per folder file, both kept
    mark_correct(labels, swap())  # marking again replaces, never duplicates
    assert len(json.loads(path.read_text())["decisions"]) == 1

    found.extend([swap(), swap(B), far(C)])

    def run(labels, **kw):
        return drain(iter_check_labels(labels, **kw))[1]

    report = run(labels)
    assert [s.image for s in report.suspects] == [B] and report.dismissed == 2
    assert report.image_scores.tolist() == [0.0, 3.0, 0.0]
    assert run(labels, apply_decisions=False).dismissed == 0
    # a sub-pixel wobble keeps the decision; a real edit is judged again
    xy = labels.xy.copy()
    xy[0, 1] += 0.005
    assert run(labels.with_xy(xy)).dismissed == 2
    xy[0, 1] += 2.0
    report = run(labels.with_xy(xy))
    assert {s.image for s in report.suspects} == {A, B} and report.dismissed == 1
    # a body part deleted since is an edit too
    xy = labels.xy.copy()
    xy[2, 1] = np.nan
    assert run(labels.with_xy(xy)).dismissed == 1


def test_a_corrupt_decisions_file_is_named_and_never_overwritten(tmp_path, found):
    labels = labels_at(tmp_path)
    path = decisions_path(labels, A)
    path.write_text("{ not json")
    with pytest.raises(DecisionsError, match="label_checks.json.*fix or remove"):
        mark_correct(labels, swap())
    assert path.read_text() == "{ not json"
    with pytest.raises(DecisionsError, match=str(path)):
        read_decisions(labels)
    bad_xy = {"image": A, "kind": "swap", "bodyparts": ["leftear", "rightear"], "xy": [[1, 2], ["x", 3]]}
    for content in ({"decisions": [{"image": A}]}, {"decisions": [bad_xy]}, [1, 2]):
        path.write_text(json.dumps(content))
        with pytest.raises(DecisionsError, match="not a label check decisions file"):
            mark_correct(labels, swap())
    # a run of the checks goes on and says which file it could not use
    found.append(swap())
    report = drain(iter_check_labels(labels))[1]
    assert len(report.suspects) == 1 and any(str(path) in note for note in report.notes)
    with pytest.raises(ValueError, match="not an image"):
        mark_correct(labels, swap(image="labeled-data/v1/nope.png"))


def test_progress_and_report_fields(tmp_path, found):
    labels = labels_at(tmp_path)
    found.extend([far(), swap()])
    events, report = drain(iter_check_labels(labels))
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
    assert all(isinstance(e["message"], str) for e in events)
    assert report.checks == ["swaps"] and report.notes == ["a note"] and report.seconds >= 0
    assert len(report.suspects) == 1 and report.image_scores[0] == report.suspects[0].score


def test_csv_has_one_row_per_suspect_most_suspect_first(tmp_path):
    labels = labels_at(tmp_path)
    delete = Suspect(B, ("snout",), "extra", 1.5, "snout labeled where the model sees nothing", [[np.nan, np.nan]])
    none = Suspect(C, ("tailbase",), "duplicate", 1.1, "same image as labeled-data/v1/img001.png")
    suspects = rank_suspects([swap(score=3.0), far(), delete, none], labels)
    report = CheckReport(labels, suspects, np.zeros(3), checks=["swaps"])
    path = write_suspects_csv(report, default_csv_path(tmp_path))
    assert path == tmp_path / "label-checks.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    table = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert [r["rank"] for r in table] == ["1", "2", "3"]
    assert [r["image"] for r in table] == [A, B, C]
    first = table[0]
    assert first["bodypart"] == "leftear,rightear" and first["kind"] == "swap" and first["evidence"] == "disagreement"
    assert first["suggested_x"] == "15.00,5.00" and first["suggested_y"] == "20.00,20.00"
    assert float(first["score"]) == pytest.approx(4.0)
    assert table[1]["suggested_x"] == table[1]["suggested_y"] == "" and "delete the snout label" in table[1]["reason"]
    assert table[2]["suggested_x"] == "" and table[2]["reason"] == "same image as labeled-data/v1/img001.png"


def test_summary_counts_kinds_lists_the_top_and_notes(tmp_path):
    labels = labels_at(tmp_path)
    suspects = rank_suspects([swap(), far(B), far(C, score=1.2)], labels)
    report = CheckReport(labels, suspects, np.zeros(3), ["swaps", "geometry"], ["geometry: no skeleton"], 2, 0.25)
    text = summary(report, top=2)
    assert "3 labeled images, 4 body parts; checks: swaps, geometry" in text
    assert "3 suspects: 2 far from the cross-validated model, 1 left/right swapped" in text
    assert f"1. {A} [leftear, rightear] swap, score 3.00" in text and "ears look swapped" in text
    assert "... and 1 more" in text and "2 marked as correct earlier" in text
    assert "note: geometry: no skeleton" in text and "took 0.2 s" in text
    assert "no suspects" in summary(CheckReport(labels, [], np.zeros(3)))


def test_check_labels_takes_a_label_set_and_reports_progress(tmp_path, found):
    labels = labels_at(tmp_path)
    found.append(swap())
    seen = []
    report = check_labels(labels, progress=seen.append)
    assert [s.kind for s in report.suspects] == ["swap"] and seen and seen[-1]["progress"] == 1.0


def test_training_warns_about_strong_swaps_and_counts_the_rest(tmp_path, found, monkeypatch):
    labels = labels_at(tmp_path)
    found.extend([swap(A, score=4.0), swap(B, score=1.2), far(C)])
    messages = training_warnings(labels)
    assert messages == [
        f"{A}: ears look swapped; swapped? (trained as labeled)",
        "3 label suspects (2 swap, 1 disagreement): run 'posekit check-labels' or the Label QA widget to review them",
    ]
    mark_correct(labels, swap(A))
    assert training_warnings(labels) == [
        "2 label suspects (1 swap, 1 disagreement): run 'posekit check-labels' or the Label QA widget to review them"
    ]
    found.clear()
    assert training_warnings(labels) == []

    def broken(labels):
        raise RuntimeError("boom")

    import napari_posekit.core.label_checks as checks

    monkeypatch.setattr(checks, "fast_checks", broken)
    assert training_warnings(labels) == ["the label checks failed (RuntimeError: boom); training goes on"]


def test_train_project_warns_before_training_and_respects_decisions(tmp_path, monkeypatch):
    """The real fast checks on a sample project with one image's ears swapped; training itself is stubbed out."""
    from napari_posekit.core.collected_data import read_collected, write_collected
    from napari_posekit.core.sample import write_sample_project
    from napari_posekit.core.workflow import train_project

    def no_training(*args, **kwargs):
        yield {"progress": 1.0, "epoch": 1}
        return tmp_path / "checkpoint.pt"

    monkeypatch.setattr("napari_posekit.core.train.iter_train", no_training)
    project = write_sample_project(tmp_path, n_frames=24, height=64, width=96).parent
    path = next((project / "labeled-data").glob("*/CollectedData_*.h5"))
    df = read_collected(path)
    values = df.to_numpy().copy()
    values[5, 2:6] = np.r_[values[5, 4:6], values[5, 2:4]]  # leftear <-> rightear on the sixth image
    df.iloc[:, :] = values
    write_collected(df, path.parent)
    key = f"labeled-data/{path.parent.name}/{df.index[5][2]}"

    def warnings():
        events, _ = drain(train_project(project, epochs=1))
        return [e["message"] for e in events if e.get("event") == "warning"]

    first = warnings()
    assert any(
        m.startswith(f"{key}: leftear and rightear") and m.endswith("swapped? (trained as labeled)") for m in first
    )
    assert first[-1].startswith("1 label suspects (1 swap)")
    (suspect,) = check_labels(project).suspects
    mark_correct(project_label_set(project), suspect)
    assert warnings() == []


def test_cross_validation_adds_its_suspects_merged_with_the_fast_ones(tmp_path, found, monkeypatch):
    """A stand-in cross-validation whose model puts one ear elsewhere; the real disagreement check judges it."""
    from napari_posekit.core import label_cv

    rng = np.random.default_rng(1)
    base = np.array([[10.0, 10.0], [5.0, 20.0], [15.0, 20.0], [10.0, 40.0]])
    xy = base + rng.normal(0, 1.0, (30, 4, 2))
    images = tuple(f"labeled-data/v1/img{i:03d}.png" for i in range(30))
    (tmp_path / "labeled-data" / "v1").mkdir(parents=True)
    labels = LabelSet(images, PARTS, xy, tmp_path, pairs=(("leftear", "rightear"),))
    predicted = xy + rng.normal(0, 0.5, xy.shape)
    predicted[3, 1] = xy[3, 1] + [25.0, 0.0]  # the model sees leftear 25 px away on image 3
    calls = {}

    def stand_in(labels, *, folds, max_minutes, stop, device, **kw):
        calls.update(folds=folds, max_minutes=max_minutes, device=device)
        for k in range(folds):
            yield {"progress": k / folds, "message": f"fold {k + 1} of {folds}"}
        fold = np.arange(len(labels.images)) % folds
        return label_cv.CrossValidation(fold, predicted, np.full((30, 4), 0.95), 1.0, ["a cv note"])

    monkeypatch.setattr(label_cv, "iter_cross_validate", stand_in)
    found.append(
        Suspect(images[3], ("leftear", "snout"), "geometry", 1.5, "leftear out of shape", [[30, 20], [10, 10]])
    )
    events, report = drain(iter_check_labels(labels, cross_validate=True, folds=3, max_minutes=0.5, device="cpu"))
    assert calls == {"folds": 3, "max_minutes": 0.5, "device": "cpu"}
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and any(e["message"] == "fold 2 of 3" for e in events)
    assert report.checks == ["swaps", "cross-validated model"] and "a cv note" in report.notes
    top = report.suspects[0]
    assert top.image == images[3] and "leftear" in top.bodyparts
    assert {top.kind, *top.evidence} >= {"geometry", "disagreement"}
    assert report.image_scores[3] == top.score and report.image_scores.argmax() == 3
