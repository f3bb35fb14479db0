"""The demo's viewer part: the pipeline's outputs in napari through the plugin's reader, widgets and layers."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Points, Tracks, Vectors

from conftest import TINY_DEMO, torch_thread_limit
from napari_posekit._napari._analysis_widget import AnalysisWidget
from napari_posekit._napari._training_widget import TrainingWidget
from napari_posekit.core.demo_pipeline import DemoOptions, run_pipeline
from napari_posekit.demo import _telling_frame, save_screenshot, show_results

TINY = DemoOptions(**TINY_DEMO)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with torch_thread_limit():  # two cores shared with whatever else runs
        return run_pipeline(tmp_path_factory.mktemp("demo"), TINY)


def test_viewer_shows_video_predictions_skeleton_tracks_and_widgets(make_napari_viewer, qtbot, result):
    viewer = make_napari_viewer()
    shown = show_results(viewer, result)
    video = shown["video"]
    assert isinstance(video, Image) and video.data.shape[0] == TINY.n_frames
    assert video.metadata["video"]["path"] == str(result.video)
    name = video.name
    points, skeleton, tracks = (
        viewer.layers[f"{name} predictions"],
        viewer.layers[f"{name} skeleton"],
        viewer.layers[f"{name} tracks"],
    )
    assert isinstance(points, Points) and isinstance(skeleton, Vectors) and isinstance(tracks, Tracks)
    assert len(points.data) == TINY.n_frames * 4  # every frame, every body part
    assert set(points.features["bodypart"]) == {"snout", "leftear", "rightear", "tailbase"}
    truth = viewer.layers["ground truth"]
    assert isinstance(truth, Points) and not truth.visible and len(truth.data) == TINY.n_frames * 4

    analysis = shown["analysis"]
    assert isinstance(analysis, AnalysisWidget) and isinstance(shown["training"], TrainingWidget)
    assert analysis.current_analysis() is not None and analysis.save_button.isEnabled()
    assert analysis.model.text() == str(result.project)
    docked = set(viewer.window._dock_widgets)
    assert any(name.startswith("Analysis") for name in docked) and any(name.startswith("Training") for name in docked)
    assert 0 <= viewer.dims.current_step[0] < TINY.n_frames

    path = save_screenshot(viewer, result.output_dir / "screenshot.png", shown["training"])
    assert path.is_file() and path.stat().st_size > 0
    assert shown["training"].evaluation is not None  # the evaluation table filled before the screenshot


def test_telling_frame_is_where_the_animal_moved_most():
    xy = np.zeros((100, 2, 2))
    xy[60:70, :, 0] = np.arange(10)[:, None] * 5.0  # walks right over frames 60..69, then stays
    xy[70:, :, 0] = 45.0
    assert 69 <= _telling_frame(xy, tail=20) <= 75
    assert _telling_frame(np.full((3, 2, 2), np.nan), 20) == 0
