"""Analysis widget: live layers, p-cutoff, ranges, stop, save, filter, labeled video, errors; the predictions reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Points, Tracks, Vectors

from conftest import TINY_PROJECT
from napari_posekit._napari import _analysis_widget, jobs
from napari_posekit._napari._analysis_widget import AnalysisWidget
from napari_posekit._napari._predictions_reader import napari_get_reader
from napari_posekit._napari.layers import prediction_colors, skeleton_vectors, tracks_data
from napari_posekit.core.config import read_config, write_config
from napari_posekit.core.filtering import filtered_path
from napari_posekit.core.inference import output_paths
from napari_posekit.core.labeled_video import bodypart_colors, labeled_video_path
from napari_posekit.core.predictions import read_predictions, write_predictions
from napari_posekit.core.synthetic import make_behaviour
from napari_posekit.core.video import read_metadata

N_FRAMES = TINY_PROJECT["n_frames"]
TIMEOUT = 60_000

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def trained(tiny_trained_project):
    """The shared sample project (40-frame video, 8 labeled frames) with its small model; tests only read it."""
    video = next((tiny_trained_project / "videos").glob("*.mp4"))
    return tiny_trained_project, video


def _open(viewer, trained, tmp_path):
    """The project's video opened by the plugin, copied so each test writes its own files."""
    project, video = trained
    copy = tmp_path / video.name
    shutil.copy(video, copy)
    [layer] = viewer.open(str(copy), plugin="napari-posekit")
    widget = AnalysisWidget(viewer)
    widget.model.setText(str(project))
    return widget, layer, copy


def _run(qtbot, widget, which="Whole video"):
    job = widget.analyze(which)
    assert job is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    return job


def _result(qtbot, job):
    """What a job (saving, export) returned, once it ended."""
    assert job is not None
    qtbot.waitUntil(lambda: job.finished, timeout=TIMEOUT)
    return job.result


def test_layer_data_helpers():
    xy = np.array([[[1.0, 2.0], [3.0, 4.0], [np.nan, np.nan]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    keep = np.isfinite(xy).all(axis=2)
    vectors = skeleton_vectors(xy, ["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "x")], keep=keep)
    assert vectors.shape == (3, 2, 3)
    assert vectors[0].tolist() == [[0, 2, 1], [0, 2, 2]]  # frame 0, a -> b: start (y, x), then (0, dy, dx)
    assert vectors[2].tolist() == [[1, 8, 7], [0, 2, 2]]  # b -> c only on frame 1, where c is found
    tracks, parts = tracks_data(xy, keep)
    assert tracks[:, 0].tolist() == [0, 0, 1, 1, 2] and tracks[:, 1].tolist() == [0, 1, 0, 1, 1]
    assert tracks[-1].tolist() == [2, 1, 10, 9] and parts.tolist() == [0, 0, 1, 1, 2]
    assert np.allclose(prediction_colors(["a", "b", "c"])[:, :3] * 255, bodypart_colors(3))


def test_analyze_the_whole_video_then_save_and_read_back(make_napari_viewer, qtbot, trained, tmp_path):
    viewer = make_napari_viewer()
    project, _ = trained
    later = AnalysisWidget(viewer)
    viewer.open(str(project / "config.yaml"), plugin="napari-posekit")
    assert later.model.text() == str(project)  # the model box follows an opened project
    widget, video_layer, video = _open(viewer, trained, tmp_path)
    assert AnalysisWidget(viewer).model.text() == str(project)  # so does a widget opened later
    assert widget.video_box.currentText() == video_layer.name  # the video, not the labeled-data stack
    assert widget.range_box.currentText() == "Whole video" and widget.fast.isChecked()
    assert widget.pcutoff.value() == pytest.approx(0.6)
    assert not widget.save_button.isEnabled()  # nothing to save yet

    _run(qtbot, widget)
    assert widget.status.text().startswith(f"Analysed {N_FRAMES} frames of {video_layer.name}")
    assert widget.jobs.running("analyze") is None and widget.analyze_button.isEnabled()
    assert not widget.stop_button.isEnabled()
    analysis = widget.current_analysis()
    bodyparts = analysis.bodyparts
    k = len(bodyparts)
    points = viewer.layers[f"{video_layer.name} predictions"]
    assert isinstance(points, Points) and points is widget.shown_layers(analysis)["points"]
    assert points.data.shape == (N_FRAMES * k, 3) and np.isfinite(points.data).all()
    assert points.data[:, 0].tolist() == np.repeat(np.arange(N_FRAMES), k).tolist()
    assert list(points.features["bodypart"]) == bodyparts * N_FRAMES
    likelihood = points.features["likelihood"].to_numpy()
    assert ((likelihood >= 0) & (likelihood <= 1)).all()
    assert np.allclose(points.face_color[:k, :3], bodypart_colors(k) / 255)
    assert points.metadata["readonly"] and points.metadata["bodyparts"] == bodyparts
    assert np.array_equal(points.shown, likelihood >= 0.6)
    assert (
        (points.data[:, 1] >= -1) & (points.data[:, 1] <= 64) & (points.data[:, 2] >= -1) & (points.data[:, 2] <= 96)
    ).all()

    # the p-cutoff hides points, skeleton edges and track points below it
    widget.pcutoff.setValue(0.0)
    qtbot.waitUntil(lambda: points.shown.all(), timeout=2000)
    tracks = viewer.layers[f"{video_layer.name} tracks"]
    skeleton = viewer.layers[f"{video_layer.name} skeleton"]
    assert isinstance(tracks, Tracks) and isinstance(skeleton, Vectors)
    assert len(np.unique(tracks.data[:, 0])) == k and len(tracks.data) == N_FRAMES * k
    assert len(skeleton.data) == N_FRAMES * len(analysis.skeleton)
    widget.pcutoff.setValue(1.0)
    widget.apply_pcutoff()
    assert not points.shown.any() and len(skeleton.data) == 0
    assert tracks.metadata["empty"] and len(tracks.data) == 1  # a lone vertex: napari's Tracks cannot be empty
    cut = float(np.median(likelihood))
    widget.pcutoff.setValue(cut)
    widget.apply_pcutoff()
    assert np.array_equal(points.shown, likelihood >= cut)
    assert len(tracks.data) == int((likelihood >= cut).sum()) and not tracks.metadata["empty"]
    # tracks in the body parts' colours, and the tail length follows the box
    assert np.allclose(
        tracks.track_colors[:, :3],
        np.repeat(bodypart_colors(k) / 255, np.bincount(tracks.data[:, 0].astype(int), minlength=k), axis=0),
        atol=1e-3,
    )
    widget.tail_length.setValue(7)
    assert tracks.tail_length == 7

    # save: DeepLabCut's files beside the video, equal to the layer
    h5 = _result(qtbot, widget.save_predictions())  # written in a job
    assert h5 == output_paths(video, analysis.scorer)["h5"] and h5.with_suffix(".csv").is_file()
    saved = read_predictions(h5)
    assert saved.bodyparts == bodyparts and saved.scorer == analysis.scorer and saved.scorer.startswith("DLC_")
    assert saved.frames.tolist() == list(range(N_FRAMES))
    assert np.allclose(saved.xy[:, :, ::-1].reshape(-1, 2), points.data[:, 1:])
    assert np.allclose(saved.likelihood.ravel(), likelihood)
    assert Path(saved.metadata["video"]).resolve() == video.resolve()
    assert saved.metadata["analysed_frames"] == [[0, N_FRAMES]]

    # the reader opens it as a read-only keypoints layer with the same colours
    reader = napari_get_reader(str(h5))
    assert reader is not None
    data, kwargs, kind = reader(str(h5))[0]
    assert kind == "points" and np.allclose(data, points.data)
    assert np.array_equal(kwargs["shown"], likelihood >= 0.6)
    assert np.allclose(kwargs["face_color"], points.face_color)
    n_layers = len(viewer.layers)
    [opened] = viewer.open(str(h5), plugin="napari-posekit")
    assert len(viewer.layers) == n_layers + 1 and isinstance(opened, Points)
    assert opened.name == h5.stem and opened.metadata["scorer"] == analysis.scorer
    assert list(opened.features["bodypart"]) == bodyparts * N_FRAMES
    assert opened.metadata["bodyparts"] == bodyparts and opened.metadata["path"] == str(h5)


def test_filter_preview_save_filtered_and_export_labeled_video(make_napari_viewer, qtbot, trained, tmp_path):
    viewer = make_napari_viewer()
    widget, video_layer, video = _open(viewer, trained, tmp_path)
    _run(qtbot, widget)
    widget.pcutoff.setValue(0.0)
    widget.apply_pcutoff()
    n_layers = len(viewer.layers)
    widget.filter_method.setCurrentText("Savitzky–Golay")
    widget.filter_window.setValue(6)  # even: the next odd window is used
    analysis = widget.preview_filter()
    assert analysis is not None and analysis.filter_options == {"method": "savgol", "window": 7}
    assert len(viewer.layers) == n_layers + 2
    raw = viewer.layers[f"{video_layer.name} predictions"]
    filtered = viewer.layers[f"{video_layer.name} predictions (filtered)"]
    filtered_tracks = viewer.layers[f"{video_layer.name} tracks (filtered)"]
    assert isinstance(filtered, Points) and isinstance(filtered_tracks, Tracks)
    assert filtered.data.shape == raw.data.shape and not np.allclose(filtered.data, raw.data)
    assert np.array_equal(filtered.data[:, 0], raw.data[:, 0])
    assert filtered.metadata["filtered"] and filtered.opacity < 1
    assert viewer.layers.selection.active is not filtered  # the preview does not take the selection
    # a second preview updates the same layers
    widget.filter_method.setCurrentText("median")
    widget.preview_filter()
    assert len(viewer.layers) == n_layers + 2

    path = _result(qtbot, widget.save_filtered())
    h5 = output_paths(video, analysis.scorer)["h5"]
    assert path == filtered_path(h5) and path.name.endswith("_filtered.h5")
    saved = read_predictions(path)
    assert np.allclose(saved.xy[:, :, ::-1].reshape(-1, 2), filtered.data[:, 1:])
    assert saved.metadata["filter"] == {"method": "median", "window": 7, "pcutoff": 0.0}

    job = widget.export_video()
    assert job is not None and job.progress_bar is not None and widget.jobs.running("export") is job
    qtbot.waitUntil(lambda: widget.jobs.running("export") is None, timeout=TIMEOUT)
    out = labeled_video_path(h5)
    assert h5.is_file()  # the raw predictions were saved first, the video lies beside them
    assert widget.last_output == out and out.is_file() and read_metadata(out).n_frames == N_FRAMES
    assert job.progress_bar is None and "Wrote the labeled video" in widget.status.text()


def test_current_frame_range_and_stop_on_an_image_stack(make_napari_viewer, qtbot, trained, tmp_path):
    project, _ = trained
    viewer = make_napari_viewer()
    frames = make_behaviour(160, 64, 96, seed=5).frames
    stack = viewer.add_image(frames, rgb=True, name="stack")
    viewer.add_image(np.zeros((64, 96)), name="flat")  # 2D: not in the list
    widget = AnalysisWidget(viewer)
    assert [widget.video_box.itemText(i) for i in range(widget.video_box.count())] == ["stack"]
    widget.model.setText(str(project / "config.yaml"))

    viewer.dims.set_current_step(0, 17)
    _run(qtbot, widget, "Current frame")
    points = viewer.layers["stack predictions"]
    k = len(widget.current_analysis().bodyparts)
    assert points.data[:, 0].tolist() == [17] * k
    assert widget.status.text().startswith("Analysed frame 17 of stack")

    widget.first.setValue(30)
    widget.last.setValue(39)
    _run(qtbot, widget, "Frame range")
    assert sorted(set(points.data[:, 0].astype(int))) == [17, *range(30, 40)]  # added to what was there

    # stop after the first block: what was analysed stays
    job = widget.analyze("Whole video")
    job.worker.yielded.connect(lambda event: event["event"] == "chunk" and widget.stop())
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    analysis = widget.current_analysis()
    done = int(analysis.analysed.sum())
    assert 16 <= done < 160 and widget.status.text().startswith("Stopped:")
    assert len(points.data) == done * k and np.isfinite(points.data).all()

    # an image stack has no video file: Save needs a path
    path = _result(qtbot, widget.save_predictions(tmp_path / "stackDLC_test.h5"))
    saved = read_predictions(path)
    assert saved.n_frames == 160 and np.isnan(saved.xy[~analysis.analysed]).all()
    assert np.isfinite(saved.xy[analysis.analysed]).all()
    stack.name = "clip"  # the list follows a renamed layer, and so does the choice
    assert widget.video_box.currentText() == "clip" and widget.current_analysis() is analysis


def test_bad_models_are_messages_and_leave_the_layers(make_napari_viewer, qtbot, trained, tmp_path, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(_analysis_widget, "show_error", errors.append)
    monkeypatch.setattr(jobs, "show_error", errors.append)  # a job's failure
    viewer = make_napari_viewer()
    widget, video_layer, _ = _open(viewer, trained, tmp_path)
    n_layers = len(viewer.layers)

    widget.model.setText(str(tmp_path / "nowhere"))
    assert widget.analyze() is None and "no such project, checkpoint or model file" in errors[-1]
    widget.model.setText(str(tmp_path))  # a folder without a model
    _run(qtbot, widget)
    assert errors[-1].startswith("Analysis failed") and len(viewer.layers) == n_layers
    not_a_checkpoint = tmp_path / "model.pt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    widget.model.setText(str(not_a_checkpoint))
    _run(qtbot, widget)
    assert errors[-1].startswith("Analysis failed") and len(viewer.layers) == n_layers
    assert widget.current_analysis() is None and widget.analyze_button.isEnabled()

    # a model whose project now has other body parts: the error, and the earlier predictions stay
    project, _ = trained
    widget.model.setText(str(project))
    widget.pcutoff.setValue(0.0)
    _run(qtbot, widget, "Current frame")
    points = viewer.layers[f"{video_layer.name} predictions"]
    before = points.data.copy()
    changed = tmp_path / "changed"
    shutil.copytree(project, changed)
    config = read_config(changed / "config.yaml")
    config["bodyparts"] = [*config["bodyparts"], "tailtip"]
    write_config(changed / "config.yaml", config)
    widget.model.setText(str(changed))
    _run(qtbot, widget)
    assert "trained for body parts" in errors[-1] and "Analysis failed" in widget.status.text()
    assert np.array_equal(points.data, before) and len(viewer.layers) == n_layers + 3


def test_predictions_reader_accepts_dlc_files_only(tmp_path):
    xy = np.random.default_rng(0).uniform(0, 50, (5, 2, 2))
    likelihood = np.array([[0.9, 0.1]] * 5)
    h5 = write_predictions(
        tmp_path / "videoDLC_resnet50_testOct30shuffle1_100.h5",
        xy,
        likelihood,
        ["nose", "tail"],
        "DLC_resnet50_testOct30shuffle1_100",
    )
    for path in (h5, h5.with_suffix(".csv")):
        data, kwargs, kind = napari_get_reader(str(path))(str(path))[0]
        assert kind == "points" and data.shape == (10, 3)
        assert kwargs["shown"].tolist() == [True, False] * 5
        assert kwargs["metadata"]["bodyparts"] == ["nose", "tail"] and kwargs["metadata"]["readonly"]
    (tmp_path / "CollectedData_me.h5").write_bytes(h5.read_bytes())
    assert napari_get_reader(str(tmp_path / "CollectedData_me.h5")) is None
    assert napari_get_reader(str(tmp_path / "video.h5")) is None  # no DLC scorer in the name
    broken = tmp_path / "brokenDLC_x.h5"
    broken.write_bytes(b"nonsense")
    with pytest.warns(UserWarning, match="cannot open the predictions"):
        assert napari_get_reader(str(broken)) is None
