"""The Refine widget's controller without a viewer: predictions, candidates, accepting, saving, retraining."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import drain
from napari_posekit.controllers import refine
from napari_posekit.core.collected_data import read_collected
from napari_posekit.core.frames import frame_image_name, frame_of_image
from napari_posekit.core.inference import output_paths
from napari_posekit.core.labels import LabelStore
from napari_posekit.core.outliers import OutlierError, outlier_scores
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.refine import find_machinelabels, load_refinement
from napari_posekit.core.sample import write_sample_project
from napari_posekit.core.synthetic import make_behaviour

N_FRAMES, HEIGHT, WIDTH = 40, 64, 96
SCORER = "DLC_resnet18_sampleshuffle1_10"


@pytest.fixture(scope="module")
def truth():
    return make_behaviour(N_FRAMES, HEIGHT, WIDTH, seed=0)


@pytest.fixture
def sample(tmp_path, truth):
    """A project (6 labeled frames) and its video with a prediction file in which the snout jumps on frame 17."""
    project = write_sample_project(tmp_path, n_frames=N_FRAMES, height=HEIGHT, width=WIDTH, n_labeled=6).parent
    video = next((project / "videos").glob("*.mp4"))
    xy = truth.keypoints.copy() + 0.3
    xy[17, 0] += 12.0
    write_predictions(output_paths(video, SCORER)["h5"], xy, np.full(xy.shape[:2], 0.95), list(truth.bodyparts), SCORER)
    return project, video


def _predictions(truth, origin="test") -> refine.Predictions:
    xy = truth.keypoints.copy() + 0.3
    xy[17, 0] += 12.0
    return refine.Predictions(xy, np.full(xy.shape[:2], 0.95), list(truth.bodyparts), SCORER, origin)


def _find_task(controller, project, video, **overrides):
    kwargs = {
        "video": "video-id",
        "video_name": video.stem,
        "video_path": video,
        "source": str(video),
        "n_frames": N_FRAMES,
        "project": project,
        "bodyparts": None,
        "n": 2,
        "fresh": False,
        "options": {"methods": ("jump",), "epsilon": 6.0, "p_bound": 0.01},
        "shown": lambda: None,
    }
    return controller.find_task(**{**kwargs, **overrides})


# --------------------------------------------------------------------------- predictions
def test_predictions_from_points_checks_the_video_and_orders_the_body_parts():
    names = ["tail", "snout"]
    xy = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)
    likelihood = np.full((3, 2), 0.9)
    frames = np.repeat(np.arange(3), 2)
    p = refine.predictions_from_points(
        xy,
        likelihood,
        names,
        frames=frames,
        n_frames=3,
        bodyparts=["snout", "tail"],
        name="v predictions",
        scorer="DLC_x",
        checkpoint="/m/checkpoint.pt",
    )
    assert p.bodyparts == ["snout", "tail"] and np.array_equal(p.xy[:, 0], xy[:, 1])
    assert p.origin == "layer 'v predictions'" and p.scorer == "DLC_x" and p.checkpoint == Path("/m/checkpoint.pt")
    with pytest.raises(OutlierError, match="frame 7 but the video has 3 frames"):
        refine.predictions_from_points(
            xy, likelihood, names, frames=np.array([0, 7]), n_frames=3, bodyparts=None, name="v"
        )
    with pytest.raises(OutlierError, match="covers 2 of the video's 3 frames"):
        refine.predictions_from_points(
            xy, likelihood, names, frames=np.array([0, 2]), n_frames=3, bodyparts=None, name="v"
        )
    with pytest.raises(OutlierError, match=r"lack the project's body parts \['ear'\]"):
        refine.predictions_from_points(xy, likelihood, names, frames=frames, n_frames=3, bodyparts=["ear"], name="v")


def test_predictions_are_current_for_the_model_that_made_them(tmp_path, truth):
    p = _predictions(truth)
    checkpoint = tmp_path / "checkpoint.pt"
    assert p.is_current(None, None) and p.is_current(checkpoint, ("x", 1))  # no model named: any predictions
    p.checkpoint = tmp_path / "other.pt"
    assert not p.is_current(checkpoint, None)
    p.model_key = ("a", 1)
    assert p.is_current(checkpoint, ("a", 1)) and not p.is_current(checkpoint, ("a", 2))  # fine-tuned since


# --------------------------------------------------------------------------- finding
def test_find_task_picks_the_predictions_and_the_job_finds_the_jump(sample, truth):
    project, video = sample
    controller = refine.RefineController()
    task = _find_task(controller, project, video)
    assert task.predictions is None and task.model is None
    assert task.prediction_file == output_paths(video, SCORER)["h5"]  # no model: the file beside the video
    assert task.folder == project / "labeled-data" / video.stem
    _, c = drain(refine.iter_find(task, lambda: False))
    assert 17 in c.picked and not c.analysed and c.predictions.origin.startswith("file ")
    assert c.excluded == {frame_of_image(p.name) for p in task.folder.glob("*.png")}
    text = controller.found(c)
    assert controller.candidates is c and "frames flagged" in text and "picked" in text
    assert controller.cache == {}  # read from a file, not analysed here: not kept

    shown = _predictions(truth, "layer 'v predictions'")  # a layer that shows predictions wins over the file
    assert _find_task(controller, project, video, shown=lambda: shown).predictions is shown
    controller.cache["video-id"] = cached = _predictions(truth, "cached")  # made here: wins over both
    assert _find_task(controller, project, video, shown=lambda: shown).predictions is cached
    with pytest.raises(ValueError, match="tick at least one criterion"):
        _find_task(controller, project, video, options={"methods": ()})
    with pytest.raises(OutlierError, match="no trained model to analyse"):
        _find_task(controller, project, video, fresh=True)
    output_paths(video, SCORER)["h5"].unlink()
    with pytest.raises(OutlierError, match="has no predictions and the project has no trained model"):
        _find_task(refine.RefineController(), project, video)


def test_candidate_rows_rank_by_score_and_say_what_became_of_each_frame(truth):
    p = _predictions(truth)
    scores = outlier_scores(p.xy, p.likelihood, epsilon=6.0)
    ranking = sorted(range(N_FRAMES), key=lambda f: (-scores.combined[f], f))
    c = refine.Candidates(
        "v", "v", None, p, scores, picked=ranking[:2], pool=ranking[:5], excluded={ranking[2]}, options={}
    )
    rows = refine.candidate_rows(c, accepted={ranking[0]}, corrected={ranking[3]})
    assert [r.frame for r in rows] == sorted(ranking[:5], key=lambda f: (-scores.combined[f], f))
    status = {r.frame: r.status for r in rows}
    assert status == {
        ranking[0]: "accepted",
        ranking[1]: "picked",
        ranking[2]: "in project",
        ranking[3]: "corrected",
        ranking[4]: "",
    }
    checkable = {r.frame for r in rows if r.checkable}
    assert checkable == {ranking[1], ranking[4]}
    assert rows[0].texts()[0] == str(rows[0].frame) and rows[0].texts()[1] == f"{rows[0].score:.2f}"


# --------------------------------------------------------------------------- accepting and saving
def test_accept_write_correct_and_save(sample, truth):
    project, video = sample
    controller = refine.RefineController()
    with pytest.raises(ValueError, match="find outliers first"):
        controller.accept_task([17], project)
    controller.found(drain(refine.iter_find(_find_task(controller, project, video), lambda: False))[1])
    with pytest.raises(ValueError, match="check the frames"):
        controller.accept_task([], project)
    with pytest.raises(ValueError, match="choose the project"):
        controller.accept_task([17], None)
    labeled = sorted(controller.candidates.excluded)
    task = controller.accept_task([18, 17, labeled[0]], project)
    accepted = refine.write_accepted(task)
    assert accepted.frames == [17, 18] and accepted.taken == [labeled[0]]  # a frame in the project is left alone
    folder = task.folder
    assert all((folder / frame_image_name(f, N_FRAMES)).is_file() for f in (17, 18))
    assert find_machinelabels(folder) == [accepted.machine_file]

    refinement = load_refinement(folder)  # what the folder shows: human labels, else machine labels
    store = LabelStore(refinement.images, refinement.bodyparts, refinement.xy)
    controller.corrections = corrections = refine.Corrections(folder, store, refinement.scorer)
    controller.accepted(accepted.frames)
    assert {frame_of_image(name) for name in corrections.accepted} == {17, 18} and corrections.unsaved
    assert controller.candidates.excluded >= {17, 18}
    with pytest.raises(ValueError, match="save the corrections"):
        controller.accept_task([20], project)
    i17 = corrections.index(17)
    corrections.record(store.set(i17, "snout", tuple(truth.keypoints[17, 0])))  # drag the jumped snout back
    corrections.record(store.set(i17, "tailbase", None))  # delete a part
    assert corrections.deleted_cells() == [(corrections.images[i17], "tailbase")]
    saved = controller.save()
    assert sorted(saved.images) == sorted(n for n in corrections.images if frame_of_image(n) in (17, 18))
    assert len(saved.result.added) == 2 and saved.result.deleted == [(corrections.images[i17], "tailbase")]
    assert controller.corrected == set(saved.images) and not corrections.accepted and not corrections.touched
    assert controller.corrected_frames() == {17, 18}
    assert "2 frames added" in refine.saved_text(saved) and "1 body parts deleted" in refine.saved_text(saved)
    human = read_collected(next(folder.glob("CollectedData_*.h5")))
    row = human.loc[tuple(corrections.images[i17].split("/"))]
    scorer = refinement.scorer
    assert (row[(scorer, "snout", "x")], row[(scorer, "snout", "y")]) == tuple(truth.keypoints[17, 0])
    assert np.isnan(row[(scorer, "tailbase", "x")])


# --------------------------------------------------------------------------- retraining
def test_retrain_options_and_checks(tmp_path, sample):
    project, _ = sample
    checkpoint = tmp_path / "dlc-models" / "it" / "mouseJan1-trainset95shuffle3-block" / "train" / "checkpoint.pt"
    assert refine.retrain_kwargs(checkpoint, 5, 0, batch_size=2) == {
        "epochs": 5,
        "max_minutes": None,
        "split": "block",
        "shuffle": 3,
        "batch_size": 2,
    }
    assert refine.retrain_kwargs(checkpoint, 0, 1.5)["max_minutes"] == 1.5
    with pytest.raises(ValueError, match="set a number of epochs or a time budget"):
        refine.retrain_kwargs(checkpoint, 0, 0)
    controller = refine.RefineController()
    with pytest.raises(ValueError, match="choose a project"):
        controller.retrain_task(None, 5, 0)
    with pytest.raises(ValueError, match="no trained model yet"):
        controller.retrain_task(project, 5, 0)
    controller.corrections = SimpleNamespace(unsaved=True)
    with pytest.raises(ValueError, match="save the corrections first: training reads the saved labels"):
        controller.retrain_task(project, 5, 0)


def _evaluation(errors: dict[str, float], test: set[str], checkpoint="/m/a-trainset95shuffle1/train/checkpoint.pt"):
    images = list(errors)
    per_image = pd.DataFrame(
        {
            "image": images,
            "split": ["test" if i in test else "train" for i in images],
            "snout_error_px": [errors[i] for i in images],
            "tail_error_px": [2 * errors[i] for i in images],
        }
    )
    per_image["mean_error_px"] = 99.0  # not a body part: left out
    return SimpleNamespace(
        per_image=per_image,
        checkpoint=Path(checkpoint),
        error=lambda split: float(np.mean([1.5 * errors[i] for i in test])),
    )


def test_errors_before_and_after_on_the_corrected_and_the_other_frames(tmp_path):
    before = _evaluation({"a": 4.0, "b": 2.0, "c": 1.0}, test={"c"})
    after = _evaluation({"a": 2.0, "b": 2.0, "c": 1.0}, test={"c"})
    result = refine.Retrained(tmp_path / "m-trainset95shuffle1" / "train" / "checkpoint.pt", before, after, False)
    comparison = refine.compare_errors(result, corrected={"a"})
    assert comparison["before"]["corrected"] == pytest.approx(6.0) and comparison["after"]["corrected"] == 3.0
    assert comparison["before"]["earlier"] == pytest.approx(2.25) and comparison["after"]["n_earlier"] == 2
    assert comparison["after"]["all"] == pytest.approx(2.5) and comparison["after"]["test"] == 1.5
    rows = refine.comparison_rows(result, comparison)
    assert [cells[0] for _, cells in rows] == ["6.00", "3.00"] and rows[0][0].startswith("before (a-trainset")
    text = refine.comparison_text(result, comparison)
    assert "test error 1.50 px" in text and "on the same frames" in text and "1 corrected frames" in text
    lone = refine.Retrained(result.checkpoint, None, after, False, before_error="too few images")
    rows = refine.comparison_rows(lone, refine.compare_errors(lone, set()))
    assert rows[0][1] == ["–"] * len(refine.COMPARISON_COLUMNS)
    assert "could not be evaluated: too few images" in refine.comparison_text(lone, {})
    assert math.isnan(refine.compare_errors(lone, set())["after"]["corrected"])


def test_job_progress_turns_events_into_a_fraction_and_a_text():
    find = refine.JobProgress("find")
    assert (
        find.record({"event": "analyze", "done": 5, "total": 10, "fps": 12.5})
        == "Analysing: 5/10 frames · 12.5 frames/s"
    )
    assert find.fraction == pytest.approx(0.4)
    assert find.record({"event": "select", "progress": 0.5}) == "Reading the candidate frames…"
    assert find.fraction == pytest.approx(0.9)  # after an analysis, selecting is the last fifth
    train = refine.JobProgress("retrain", lambda s: f"{s:.0f}s")
    assert train.record({"event": "stage", "text": "Evaluating…"}) == "Evaluating…"
    train.record({"event": "step", "epoch": 1, "loss": 0.5, "progress": 0.5, "eta_s": 7})
    text = train.record({"event": "evaluated", "epoch": 1, "test_error_px": 3.25, "progress": 0.5, "eta_s": 7})
    assert text == "Fine-tuning: epoch 1 · loss 0.5000 · test 3.25 px · ETA 7s" and train.fraction == 0.425
