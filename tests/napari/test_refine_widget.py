"""Refine widget: the whole active-learning loop in a real viewer, and bad input as messages that lose nothing."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from napari.layers import Points

from conftest import TINY_PROJECT, TINY_TRAINING
from napari_posekit._napari import _refine_widget, jobs
from napari_posekit._napari._analysis_widget import AnalysisWidget
from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit._napari._refine_widget import RefineWidget
from napari_posekit._napari.refine_layers import MACHINE_SYMBOL, point_sources
from napari_posekit._napari.score_curve import ScoreCurve
from napari_posekit.core.collected_data import read_collected
from napari_posekit.core.config import read_config
from napari_posekit.core.frames import frame_image_name, frame_of_image
from napari_posekit.core.inference import output_paths
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.refine import find_machinelabels, read_machinelabels
from napari_posekit.core.sample import write_sample_project
from napari_posekit.core.synthetic import make_behaviour
from napari_posekit.core.train import load_checkpoint
from napari_posekit.core.workflow import evaluate_project, latest_checkpoint

N_FRAMES, HEIGHT, WIDTH = TINY_PROJECT["n_frames"], TINY_PROJECT["height"], TINY_PROJECT["width"]
TIMEOUT = 120_000

pytestmark = pytest.mark.usefixtures("torch_threads")


def _sample(tmp_path, n_labeled):
    config = write_sample_project(tmp_path, n_frames=N_FRAMES, height=HEIGHT, width=WIDTH, n_labeled=n_labeled)
    return _video_and_truth(config.parent)


def _video_and_truth(project):
    video = next((project / "videos").glob("*.mp4"))
    truth = make_behaviour(N_FRAMES, HEIGHT, WIDTH, seed=0)  # what write_sample_project rendered
    return project, video, truth


def _rows(layer: Points, image: int, bodypart: str | None = None) -> np.ndarray:
    mask = np.round(layer.data[:, 0]).astype(int) == image
    if bodypart is not None:
        mask &= (layer.features["bodypart"].astype(object) == bodypart).to_numpy()
    return np.flatnonzero(mask)


def test_score_curve_maps_clicks_to_frames(qtbot):
    curve = ScoreCurve()
    qtbot.addWidget(curve)
    curve.resize(300, 120)
    assert curve.frame_at(100.0) is None
    curve.set_scores(np.r_[np.zeros(50), 5.0, np.zeros(49)], picked=[50], accepted=set())
    plot = curve._plot_rect()
    assert curve.frame_at(plot.left()) == 0 and curve.frame_at(plot.right()) == 99
    assert curve.frame_at(plot.center().x()) in (49, 50)
    xs, ys = ScoreCurve._peaks(np.r_[np.zeros(500), 7.0, np.zeros(499)], 50)
    assert len(xs) <= 100 and ys.max() == 7.0  # a one-frame peak survives the decimation
    curve.grab()  # paints without error
    assert frame_of_image("labeled-data/v/img007.png") == 7 and frame_of_image("CollectedData_x.h5") is None


def test_find_correct_save_retrain_loop(make_napari_viewer, qtbot, tmp_path, tiny_project_copy, monkeypatch):
    started = time.perf_counter()
    errors: list[str] = []
    monkeypatch.setattr(_refine_widget, "show_error", errors.append)
    project, video, truth = _video_and_truth(tiny_project_copy)  # 8 labeled frames, a model trained for 2 epochs
    first_model = latest_checkpoint(project)
    folder = project / "labeled-data" / video.stem
    collected = next(folder.glob("CollectedData_*.h5"))
    human_before = read_collected(collected)
    scorer = read_config(project)["scorer"]

    viewer = make_napari_viewer()
    [video_layer] = viewer.open(str(video), plugin="napari-posekit")
    analysis = AnalysisWidget(viewer)
    analysis.model.setText(str(project))
    assert analysis.analyze("Whole video") is not None
    qtbot.waitUntil(lambda: not analysis.busy, timeout=TIMEOUT)
    widget = RefineWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right", name="Refine")
    viewer.window.resize(1400, 950)
    assert widget.project_path() == project  # the video lies in the project's videos/
    assert widget.video_box.currentText() == video_layer.name
    assert widget.retrain_button.isEnabled() and not widget.accept_button.isEnabled()

    # find outliers: the Analysis widget's predictions are used, not analysed again
    widget.count.setValue(4)
    widget.epsilon.setValue(3.0)
    assert widget.find_outliers() is not None
    assert widget.find_outliers() is None  # one job at a time
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    c = widget.candidates
    assert c is not None and c.predictions.origin == f"layer '{video_layer.name} predictions'"
    labeled_frames = {frame_of_image(k) for k in human_before.index.map("/".join)}
    assert len(c.picked) == 4 and not set(c.picked) & labeled_frames  # frames in the project are not offered
    assert c.excluded == labeled_frames
    assert widget.table.rowCount() >= 4 and sorted(widget._checked_frames()) == sorted(c.picked)
    scores = [float(widget.table.item(r, 1).text()) for r in range(widget.table.rowCount())]
    assert scores == sorted(scores, reverse=True)
    assert len(widget.curve.scores) == N_FRAMES and widget.curve.picked == c.picked
    row = next(r for r in range(widget.table.rowCount()) if int(widget.table.item(r, 0).text()) == c.picked[-1])
    widget.jump_to_row(row)
    assert viewer.dims.current_step[0] == c.picked[-1] and widget.curve.current == c.picked[-1]
    assert widget.accept_button.isEnabled()

    # accept: PNGs and machine labels in the project, opened as an editable layer, machine labels distinct
    accepted = sorted(c.picked)
    assert widget.accept() is not None  # written and read back in a job
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    layer = widget.session.layer
    assert isinstance(layer, Points) and layer.mode == "select"
    names = [frame_image_name(f, N_FRAMES) for f in accepted]
    assert all((folder / name).is_file() for name in names)
    [machine_file] = find_machinelabels(folder)
    assert [k.split("/")[-1] for k in read_machinelabels(machine_file).index.map("/".join)] == names
    images = layer.metadata["images"]
    index = {frame_of_image(name): i for i, name in enumerate(images)}
    sources = point_sources(layer)
    machine_rows = np.isin(np.round(layer.data[:, 0]).astype(int), [index[f] for f in accepted])
    assert (sources[machine_rows] == "machine").all() and (sources[~machine_rows] == "human").all()
    assert machine_rows.sum() == 4 * len(accepted)
    assert (layer.symbol[machine_rows] == MACHINE_SYMBOL).all()
    assert (layer.symbol[~machine_rows] != MACHINE_SYMBOL).all()
    assert np.allclose(layer.border_color[machine_rows, :3], (1.0, 0.85, 0.0))
    assert viewer.dims.current_step[0] == index[accepted[0]] and not video_layer.visible
    statuses = {
        int(widget.table.item(r, 0).text()): widget.table.item(r, 5).text() for r in range(widget.table.rowCount())
    }
    assert all(statuses[f] == "accepted" for f in accepted)
    widget.jump_to_frame(accepted[1])  # an accepted frame shows in the refine layer
    assert viewer.dims.current_step[0] == index[accepted[1]]
    qtbot.wait(50)
    viewer.screenshot(path=str(tmp_path / "refine_widget.png"), canvas_only=False)

    # the person deletes an invisible point and drags the wrong ones to where they belong
    hidden = (accepted[0], "tailbase")
    layer.selected_data = set(_rows(layer, index[hidden[0]], hidden[1]).tolist())
    layer.remove_selected()
    assert widget.deleted_cells() == [(images[index[hidden[0]]], "tailbase")]
    assert widget.retrain() is None and "save the corrections" in errors.pop()  # training reads saved labels
    moved = layer.data.copy()
    bodyparts = list(layer.metadata["bodyparts"])
    for f in accepted:
        for k, bp in enumerate(bodyparts):
            for row in _rows(layer, index[f], bp):
                x, y = truth.keypoints[f, k]
                if np.hypot(moved[row, 2] - x, moved[row, 1] - y) > 0.5:
                    moved[row, 1:] = (y, x)
    layer.data = moved
    assert widget.session.store.unsaved_edits == 2 and widget.save_button.isEnabled()

    # save: the accepted frames join the human labels; nothing else changes
    assert widget.save() is not None
    assert not layer.editable  # no edits while the job writes
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    result = widget.saved
    assert layer.editable and result is not None and sorted(k.split("/")[-1] for k in result.added) == names
    human_after = read_collected(collected)
    assert len(human_after) == len(human_before) + len(accepted)
    old = human_after.loc[human_before.index]
    assert old.columns.equals(human_before.columns)
    assert np.array_equal(old.to_numpy().view(np.uint64), human_before.to_numpy().view(np.uint64))  # bit for bit
    for f in accepted:
        key = ("labeled-data", video.stem, frame_image_name(f, N_FRAMES))
        row = human_after.loc[key]
        for k, bp in enumerate(bodyparts):
            values = (row[(scorer, bp, "x")], row[(scorer, bp, "y")])
            if (f, bp) == hidden:
                assert np.isnan(values).all()  # the deleted point stays deleted
            else:
                assert np.allclose(values, truth.keypoints[f, k])
    assert (point_sources(layer) == "human").all() and not widget.corrections.unsaved
    assert not any(
        k.split("/")[-1] in names
        for path in find_machinelabels(folder)
        for k in read_machinelabels(path).index.map("/".join)
    )  # no longer offered as machine labels
    statuses = {
        int(widget.table.item(r, 0).text()): widget.table.item(r, 5).text() for r in range(widget.table.rowCount())
    }
    assert all(statuses[f] == "corrected" for f in accepted)
    # reopened, the folder shows the saved labels: the deleted point is gone
    _, reopened = viewer.open(str(folder), plugin="napari-posekit")
    assert len(_rows(reopened, index[hidden[0]], "tailbase")) == 0
    assert len(_rows(reopened, index[hidden[0]])) == 3
    viewer.layers.remove(reopened)

    # retrain from the current checkpoint, re-analyse, compare before and after
    widget.epochs.setValue(4)
    widget.minutes.setValue(0)
    assert widget.retrain(batch_size=4, device="cpu") is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert not errors, errors
    retrained = widget.retrained
    new_model = latest_checkpoint(project)
    assert retrained is not None and retrained.checkpoint == new_model and not retrained.stopped
    meta = load_checkpoint(new_model)[2]
    start = meta["train_config"]["init_weights"]  # fine-tuned from the first model (kept under a new name)
    assert start != str(new_model) and meta["epoch"] == 4
    assert load_checkpoint(start)[2]["epoch"] == TINY_TRAINING["epochs"]
    assert first_model == new_model  # the latest model keeps its name, the earlier one was renamed
    corrected = {f"labeled-data/{video.stem}/{name}" for name in names}
    assert widget.corrected == corrected
    comparison = widget.comparison
    assert comparison["before"]["n_corrected"] == comparison["after"]["n_corrected"] == len(accepted)
    assert comparison["after"]["corrected"] < comparison["before"]["corrected"]
    # the same, computed here: both models on the corrected frames against the corrected labels
    errors_px = []
    for checkpoint in (start, new_model):
        table = evaluate_project(project, checkpoint, write=False).per_image
        part_errors = table.loc[table["image"].isin(corrected), [f"{bp}_error_px" for bp in bodyparts]]
        errors_px.append(float(np.nanmean(part_errors.to_numpy())))
    assert errors_px[1] < errors_px[0]
    assert errors_px == pytest.approx([comparison["before"]["corrected"], comparison["after"]["corrected"]])
    assert not widget.eval_table.isHidden() and widget.eval_table.rowCount() == 2
    assert float(widget.eval_table.item(1, 0).text()) == pytest.approx(errors_px[1], abs=0.01)
    # both models measured on the same held-out images: the fine-tune kept its parent's test set
    held_out = [evaluate_project(project, c, write=False) for c in (start, new_model)]
    tests = [set(e.per_image.loc[e.per_image["split"] == "test", "image"]) for e in held_out]
    assert tests[0] == tests[1] and tests[0] and not tests[0] & corrected
    assert float(widget.eval_table.item(1, 1).text()) == pytest.approx(held_out[1].error("test"), abs=0.01)
    assert comparison["before"]["test"] == pytest.approx(held_out[0].error("test"))
    assert "on the same frames" in widget.eval_label.text()
    # re-analysed with the new model: a layer with its predictions, new scores over the old curve
    predictions = widget.predictions_layer
    assert predictions is not None and predictions.metadata["checkpoint"] == str(new_model)
    assert len(predictions.data) == N_FRAMES * len(bodyparts)
    assert widget.candidates.previous is not None and widget.curve.previous is not None
    assert output_paths(video, widget.candidates.predictions.scorer)["h5"].is_file()
    print(
        f"loop test {time.perf_counter() - started:.1f} s; corrected-frame error {errors_px[0]:.2f} -> "
        f"{errors_px[1]:.2f} px"
    )


def _predictions(truth, frames=N_FRAMES, jump_at=None):
    xy = truth.keypoints[:frames].copy() + 0.3
    likelihood = np.full(xy.shape[:2], 0.95)
    if jump_at is not None:
        xy[jump_at, 0] += 12.0  # the snout jumps away for one frame
    return xy, likelihood


def test_bad_input_is_a_message_and_nothing_is_lost(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(_refine_widget, "show_error", errors.append)
    monkeypatch.setattr(jobs, "show_error", errors.append)  # failures of a job
    project, video, truth = _sample(tmp_path, n_labeled=6)
    folder = project / "labeled-data" / video.stem
    bodyparts = list(truth.bodyparts)
    viewer = make_napari_viewer()
    [video_layer] = viewer.open(str(video), plugin="napari-posekit")
    widget = RefineWidget(viewer)
    assert widget.project_path() == project

    # no predictions and no model
    assert widget.find_outliers() is None
    assert "has no predictions and the project has no trained model" in errors[-1]

    # predictions of a video whose frame count changed (the file is read in the job)
    h5 = output_paths(video, "DLC_resnet18_sampleshuffle1_10")["h5"]
    write_predictions(h5, *_predictions(truth, frames=N_FRAMES - 5), bodyparts, "DLC_resnet18_sampleshuffle1_10")
    assert widget.find_outliers() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert f"have {N_FRAMES - 5} frames but the video has {N_FRAMES}" in errors[-1]
    assert "Cannot find outliers" in widget.status.text() and widget.candidates is None
    # a predictions layer past the end of the video
    wrong = viewer.add_points(
        np.array([[N_FRAMES + 4, 10.0, 10.0]]),
        name=f"{video_layer.name} predictions",
        features=pd.DataFrame({"bodypart": pd.Categorical(["snout"], categories=bodyparts), "likelihood": [0.9]}),
        metadata={"bodyparts": bodyparts, "posekit_predictions": True, "readonly": True, "video": str(video)},
    )
    assert widget.find_outliers() is None and f"frame {N_FRAMES + 4} but the video has {N_FRAMES}" in errors[-1]
    viewer.layers.remove(wrong)
    assert widget.candidates is None and widget.busy is False

    # good predictions (one jump) find the jump
    write_predictions(h5, *_predictions(truth, jump_at=17), bodyparts, "DLC_resnet18_sampleshuffle1_10")
    widget.count.setValue(2)
    widget.epsilon.setValue(6.0)
    assert widget.find_outliers() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    c = widget.candidates
    assert c.predictions.origin == f"file {h5.name}" and 17 in c.picked and set(c.picked) <= {17, 18}

    # the folder open with unsaved edits: Accept refuses and writes nothing
    _, labels = viewer.open(str(folder), plugin="napari-posekit")
    labeling = LabelingWidget(viewer)
    assert labeling.layer is labels
    edited = labels.data.copy()
    edited[0, 1:] += 1.5
    labels.data = edited
    files = sorted(p.name for p in folder.iterdir())
    n_layers = len(viewer.layers)
    assert widget.accept() is None and "unsaved edits" in errors[-1] and labels.name in errors[-1]
    assert sorted(p.name for p in folder.iterdir()) == files and len(viewer.layers) == n_layers
    # saved: Accept replaces that layer by one with the new frames, the edit kept
    labeling.save()
    assert widget.accept([17]) is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    layer = widget.session.layer
    assert layer is not None and labels not in viewer.layers
    assert sum(1 for other in viewer.layers if other.metadata.get("folder") == str(folder)) == 2  # images + points
    first = layer.metadata["images"].index(labels.metadata["images"][0])
    assert np.allclose(layer.data[_rows(layer, first)][0], edited[0])
    # a second Accept while the corrections are unsaved is refused too
    layer.data = layer.data + np.array([0.0, 0.5, 0.0])
    assert widget.accept([18]) is None and "save the corrections" in errors[-1]
    assert not (folder / frame_image_name(18, N_FRAMES)).exists()
