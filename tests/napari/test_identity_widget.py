"""Identities widget in a real viewer: open, next crossing moves the frame, swap recolours the layers, undo, save."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared
from napari_posekit._napari import _identity_widget
from napari_posekit._napari._identity_widget import IdentityWidget
from napari_posekit.core.identity_edits import swap_from
from napari_posekit.core.multianimal import Tracks, read_tracks, write_tracks

T = 60


def _animal(x0: float, vx: float, y: float) -> np.ndarray:
    x = x0 + vx * np.arange(T, dtype=float)
    xy = np.stack([np.stack([x + dx, np.full(T, y)], axis=1) for dx in (6.0, 0.0, -6.0)], axis=1)
    return np.concatenate([xy, np.full((T, 3, 1), 0.9)], axis=2)


@pytest.fixture
def swapped(tmp_path):
    """A DeepLabCut predictions file of two animals passing each other, swapped by the tracker at frame 33."""
    poses = np.stack([_animal(40.0, 3.0, 100.0), _animal(220.0, -3.0, 104.0)], axis=1)
    truth = Tracks(poses, ["female", "male"], ["head", "thorax", "tail"], np.arange(T), skeleton=[("head", "tail")])
    path = tmp_path / "pairDLC_resnet50_flyJan1shuffle1_100.h5"
    write_tracks(path, swap_from(truth, 33, 0, 1))
    return path, truth


def _points_of(layer, individual: str) -> np.ndarray:
    return layer.data[np.asarray(layer.features["individual"]) == individual]


def test_open_step_swap_undo_save(make_napari_viewer, swapped):
    path, truth = swapped
    viewer = make_napari_viewer()
    widget = IdentityWidget(viewer)
    widget.jobs.synchronous = True
    viewer.window.add_dock_widget(widget)
    widget.open(path)
    session = widget.session
    assert session is not None and session.individuals == ["female", "male"]
    points = widget.layers.points
    names = [layer.name for layer in viewer.layers]
    assert f"{path.stem} female" in names and f"{path.stem} male" in names and f"{path.stem} skeleton" in names
    female_face = points.face_color[np.asarray(points.features["individual"]) == "female"][0].copy()

    widget.go_to(0)
    viewer.keymap[next(k for k in viewer.keymap if str(k) == "N")](viewer)  # the N shortcut
    assert viewer.dims.current_step[0] == 33  # the frame where the swap happened
    assert "female and male came close" in widget.crossing.text()
    assert widget.timeline.current == 33
    late = _points_of(points, "female")
    np.testing.assert_allclose(late[late[:, 0] == 40][:, 2], truth.poses[40, 1, :, 0])  # "female" shows the male

    widget.swap_from()
    assert widget.status.text() == "Swapped female and male from frame 33 on (1 edit)."
    assert widget.layers.points is points  # updated in place
    fixed = _points_of(points, "female")
    np.testing.assert_allclose(fixed[fixed[:, 0] == 40][:, 2], truth.poses[40, 0, :, 0])
    assert np.allclose(points.face_color[np.asarray(points.features["individual"]) == "female"], female_face)
    assert viewer.dims.current_step[0] == 33  # the frame stays

    widget.undo()
    assert widget.status.text().startswith("Undid: Swapped") and session.n_edits == 0
    np.testing.assert_array_equal(_points_of(points, "female"), late)
    widget.redo()
    assert session.n_edits == 1 and widget.save_button.isEnabled()
    widget.save()
    corrected = path.with_name(f"{path.stem}_corrected.h5")
    assert "Saved" in widget.status.text() and corrected.is_file()
    np.testing.assert_allclose(read_tracks(corrected).poses, truth.poses, equal_nan=True)
    assert not widget.save_button.isEnabled()

    widget.timeline.frame_clicked.emit(12)  # the timeline moves the viewer
    assert viewer.dims.current_step[0] == 12


def test_centered_pair_opens_stitched_with_its_video(make_napari_viewer, tmp_path, monkeypatch):
    folder = require_shared("sleap_centered_pair_predictions")
    viewer = make_napari_viewer()
    viewer.open(str(folder / "centered_pair_predictions.slp"), plugin="napari-posekit")
    widget = IdentityWidget(viewer)
    widget.jobs.synchronous = True
    assert widget.file_box.currentText().endswith("centered_pair_predictions.slp")
    widget._use_chosen()
    assert widget.session.stitched_from == 27 and widget.session.individuals == ["animal1", "animal2"]
    assert "stitched from 27 tracks" in widget.summary.text()
    assert not viewer.layers["centered_pair_predictions.slp"].visible  # the raw fragments are hidden
    widget.next_crossing()
    assert widget.crossing.text().startswith("Crossing ")

    # the shared data is read-only: saving asks where instead (the folder is made to look read-only everywhere)
    asked = []
    monkeypatch.setattr(_identity_widget.os, "access", lambda *_args: False)
    monkeypatch.setattr(
        _identity_widget.QFileDialog,
        "getSaveFileName",
        lambda *args: (asked.append(args[1]) or str(tmp_path / "pair_corrected.slp"), ""),
    )
    widget.swap_from()
    widget.save()
    assert asked and "read-only" in asked[0]
    assert "Saved pair_corrected.slp apart from centered_pair_predictions.slp" in widget.status.text()
    again = read_tracks(tmp_path / "pair_corrected.slp")
    assert again.individuals == ["animal1", "animal2"] and again.n_frames == 1100
