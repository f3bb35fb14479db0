"""Cross-validated predictions (a tiny end-to-end run) and the checks on them (hand-made predictions)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import drain
from napari_posekit.core.label_cv import (
    FLOOR_PX,
    CrossValidation,
    check_model_disagreement,
    fold_assignment,
    iter_cross_validate,
)
from napari_posekit.core.label_suspects import SUSPECT_SCORE, LabelSet, project_label_set
from napari_posekit.core.options import TrainOptions

PARTS = ("snout", "leftear", "rightear", "tailbase")


def _labels(n: int = 40, seed: int = 0) -> LabelSet:
    rng = np.random.default_rng(seed)
    base = np.array([[100.0, 50.0], [90.0, 40.0], [90.0, 60.0], [60.0, 50.0]])
    xy = base[None] + rng.uniform(-30, 30, size=(n, 1, 2))
    return LabelSet(tuple(f"labeled-data/v/img{i:03d}.png" for i in range(n)), PARTS, xy, None, (), ())


def _cv(labels: LabelSet, noise: float = 1.5, conf: float = 0.95, seed: int = 1) -> CrossValidation:
    """Predictions near the labels (Gaussian noise of ``noise`` px), all confident."""
    rng = np.random.default_rng(seed)
    n, k = labels.xy.shape[:2]
    xy = np.where(np.isnan(labels.xy), 70.0, labels.xy) + rng.normal(0, noise, size=(n, k, 2))
    return CrossValidation(np.arange(n) % 5, xy, np.full((n, k), conf), 1.0, [])


def test_folds_are_seeded_balanced_and_cover_every_image():
    a = fold_assignment(23, 5, seed=3)
    assert sorted(np.bincount(a)) == [4, 4, 5, 5, 5]
    assert np.array_equal(a, fold_assignment(23, 5, seed=3))
    assert not np.array_equal(a, fold_assignment(23, 5, seed=4))
    assert np.array_equal(np.sort(fold_assignment(3, 5)), [0, 1, 2])  # fewer images than folds


def test_clean_labels_give_no_suspects():
    labels = _labels()
    suspects, notes = check_model_disagreement(labels, _cv(labels))
    assert suspects == []
    assert notes == []


def test_a_moved_label_is_flagged_with_the_prediction_as_the_fix():
    labels = _labels()
    cv = _cv(labels)
    xy = labels.xy.copy()
    xy[7, 0] += (12.0, 0.0)  # snout 12 px off
    xy[9, 3] += (0.0, 30.0)  # tail base 30 px off
    moved = labels.with_xy(xy)
    suspects, _ = check_model_disagreement(moved, cv)
    assert {(s.image, s.bodyparts) for s in suspects} == {
        (labels.images[7], ("snout",)),
        (labels.images[9], ("tailbase",)),
    }
    by_part = {s.bodyparts[0]: s for s in suspects}
    assert all(s.kind == "disagreement" and s.score >= SUSPECT_SCORE for s in suspects)
    assert by_part["tailbase"].score > 1.8 * by_part["snout"].score  # 30 px is much stronger than 12 px
    assert np.allclose(by_part["snout"].suggested, cv.xy[7, 0][None])
    assert "snout is 1" in by_part["snout"].reason and "never saw" in by_part["snout"].reason
    assert "typical" in by_part["snout"].reason


def test_the_threshold_follows_each_parts_typical_error():
    labels = _labels()
    cv = _cv(labels)
    rng = np.random.default_rng(5)
    cv.xy[:, 3] = labels.xy[:, 3] + rng.normal(0, 6.0, size=(len(labels.images), 2))  # a hard body part
    xy = labels.xy.copy()
    xy[4, 3] += (12.0, 0.0)  # 12 px is ordinary for this part
    xy[4, 0] += (12.0, 0.0)  # but not for the snout
    suspects, _ = check_model_disagreement(labels.with_xy(xy), cv)
    flagged = {s.bodyparts for s in suspects if s.image == labels.images[4]}
    assert ("snout",) in flagged
    assert ("tailbase",) not in flagged


def test_a_small_typical_error_is_floored():
    labels = _labels()
    cv = _cv(labels, noise=0.01)
    xy = labels.xy.copy()
    xy[3, 1] += (1.5 * FLOOR_PX, 0.0)  # far beyond a 0.01 px wobble, but within the floor's threshold
    suspects, _ = check_model_disagreement(labels.with_xy(xy), cv)
    assert suspects == []


def test_unconfident_predictions_and_unpredicted_images_are_not_judged():
    labels = _labels()
    cv = _cv(labels)
    xy = labels.xy.copy()
    xy[2, 0] += (25.0, 0.0)
    xy[5, 0] += (25.0, 0.0)
    cv.confidence[2, 0] = 0.3  # below pcutoff, above the "extra" level
    cv.fold[5] = -1
    cv.xy[5] = np.nan
    cv.confidence[5] = np.nan
    suspects, notes = check_model_disagreement(labels.with_xy(xy), cv, pcutoff=0.6)
    assert suspects == []
    assert any("1 image(s) without a held-out prediction" in n for n in notes)
    flagged, _ = check_model_disagreement(labels.with_xy(xy), cv, pcutoff=0.25)
    assert [(s.image, s.bodyparts) for s in flagged] == [(labels.images[2], ("snout",))]


def test_a_label_on_another_body_part_says_so():
    labels = _labels()
    cv = _cv(labels)
    xy = labels.xy.copy()
    xy[11, 0] = cv.xy[11, 3] + (0.5, 0.0)  # the snout clicked on the tail base
    suspects, _ = check_model_disagreement(labels.with_xy(xy), cv)
    (s,) = suspects
    assert s.bodyparts == ("snout",)
    assert "tailbase" in s.reason and "wrong body part" in s.reason


def test_exchanged_labels_are_one_suspect_whose_fix_exchanges_them():
    labels = _labels()
    cv = _cv(labels)
    xy = labels.xy.copy()
    xy[6, [1, 2]] = xy[6, [2, 1]]
    suspects, _ = check_model_disagreement(labels.with_xy(xy), cv)
    (s,) = suspects
    assert set(s.bodyparts) == {"leftear", "rightear"}
    assert "exchanged" in s.reason
    fixed = dict(zip(s.bodyparts, s.suggested))
    assert np.allclose(fixed["leftear"], labels.xy[6, 1]) and np.allclose(fixed["rightear"], labels.xy[6, 2])


def test_an_exchanged_left_right_pair_is_found_even_with_rough_predictions():
    labels = _labels()
    labels = LabelSet(labels.images, PARTS, labels.xy, None, (), (("leftear", "rightear"),))
    cv = _cv(labels, noise=5.0, conf=0.5)  # rough, unsure models: nothing passes the distance threshold
    xy = labels.xy.copy()
    xy[6, [1, 2]] = xy[6, [2, 1]]  # the ears are 20 px apart
    suspects, _ = check_model_disagreement(labels.with_xy(xy), cv)
    (s,) = suspects
    assert (s.image, s.bodyparts, s.kind) == (labels.images[6], ("leftear", "rightear"), "disagreement")
    assert s.score >= SUSPECT_SCORE and "exchanged" in s.reason
    assert np.allclose(s.suggested, labels.xy[6, [1, 2]])
    assert check_model_disagreement(labels, cv)[0] == []


def test_missing_and_extra_labels():
    labels = _labels()
    cv = _cv(labels)
    xy = labels.xy.copy()
    xy[8, 2] = np.nan  # unlabeled, but the model is sure it is there
    xy[10, 1] = np.nan  # unlabeled, and the model is unsure: nothing to say
    labels = labels.with_xy(xy)
    cv.confidence[8, 2] = 0.99
    cv.confidence[10, 1] = 0.5
    cv.confidence[12, 3] = 0.01  # labeled where the model sees nothing
    cv.confidence[13, 3] = 0.3  # unsure, not sure it is absent
    suspects, _ = check_model_disagreement(labels, cv)
    got = {(s.kind, s.image, s.bodyparts) for s in suspects}
    assert got == {("missing", labels.images[8], ("rightear",)), ("extra", labels.images[12], ("tailbase",))}
    missing = next(s for s in suspects if s.kind == "missing")
    extra = next(s for s in suspects if s.kind == "extra")
    assert np.allclose(missing.suggested, cv.xy[8, 2][None])
    assert np.isnan(extra.suggested).all()
    assert missing.score >= SUSPECT_SCORE and extra.score >= SUSPECT_SCORE


def test_extra_needs_the_part_to_be_usually_confident():
    labels = _labels()
    cv = _cv(labels)
    cv.confidence[:, 3] = 0.3  # the model never trusts the tail base
    cv.confidence[12, 3] = 0.01
    suspects, _ = check_model_disagreement(labels, cv)
    assert [s for s in suspects if s.kind == "extra"] == []


def test_no_predictions_and_wrong_shapes():
    labels = _labels(6)
    suspects, notes = check_model_disagreement(labels, CrossValidation.empty(6, 4))
    assert suspects == [] and "no image" in notes[0]
    with pytest.raises(ValueError, match="does not fit"):
        check_model_disagreement(labels, CrossValidation.empty(5, 4))


def test_too_few_images_or_no_folder_predict_nothing():
    labels = _labels(3)
    one = labels.with_xy(np.concatenate([labels.xy[:1], np.full((2, 4, 2), np.nan)]))
    with_root = LabelSet(one.images, one.bodyparts, one.xy, Path("/nonexistent"))
    _, cv = drain(iter_cross_validate(with_root))
    assert (cv.fold == -1).all()
    assert "1 labeled image(s) have no image file" in cv.notes[0] and "img000.png" in cv.notes[0]
    assert "0 labeled image(s); at least 2" in cv.notes[1]
    _, cv = drain(iter_cross_validate(labels))
    assert (cv.fold == -1).all() and "no project folder" in cv.notes[0]


TINY = TrainOptions(backbone="resnet18", pretrained=False, epochs=1, batch_size=4, input_size=(64, 64))


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("posekit-cv-*")}


def test_cross_validation_end_to_end(tiny_project_copy, torch_threads):
    labels = project_label_set(tiny_project_copy)  # 8 labeled images
    before_files = sorted(p for p in tiny_project_copy.rglob("*"))
    before_tmp = _leftovers()
    items, cv = drain(iter_cross_validate(labels, folds=3, max_minutes=2.0, options=TINY, device="cpu"))
    assert sorted(np.bincount(cv.fold)) == [2, 3, 3]
    assert np.isfinite(cv.xy).all() and ((cv.confidence >= 0) & (cv.confidence <= 1)).all()
    assert [i["message"] for i in items if "predicting" in i["message"]] == [
        f"fold {f} of 3: predicting" for f in (1, 2, 3)
    ]
    progress = [i["progress"] for i in items]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert cv.seconds > 0
    assert sorted(p for p in tiny_project_copy.rglob("*")) == before_files
    assert _leftovers() == before_tmp
    suspects, _ = check_model_disagreement(labels, cv)  # runs on real output
    assert all(s.image in labels.images for s in suspects)


def test_stop_and_close_end_cleanly(tiny_project_copy, torch_threads):
    labels = project_label_set(tiny_project_copy)
    before_tmp = _leftovers()
    calls = {"n": 0}

    def stop_after_first_fold() -> bool:
        return "done" in calls

    work = iter_cross_validate(labels, folds=4, max_minutes=2.0, options=TINY, stop=stop_after_first_fold)
    items = []
    try:
        while True:
            item = next(work)
            items.append(item)
            if item["message"] == "fold 1 of 4: done":
                calls["done"] = True
    except StopIteration as done:
        cv = done.value
    assert set(cv.fold.tolist()) == {-1, 0}
    assert any("stopped after fold 1 of 4" in n for n in cv.notes)
    assert _leftovers() == before_tmp

    work = iter_cross_validate(labels, folds=4, max_minutes=2.0, options=TINY)
    next(work)
    next(work)
    work.close()
    assert _leftovers() == before_tmp
