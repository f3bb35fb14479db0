"""One label session per keypoints layer: edits through the Labeling and the Refine widget are journaled once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mouse import click

from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit._napari._refine_widget import RefineWidget
from napari_posekit._napari.label_session import existing_session, session_for
from napari_posekit._napari.layers import keypoints_layer_data, layer_to_xy
from napari_posekit.core.inference import output_paths
from napari_posekit.core.labels import journal_path
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.sample import write_sample_project
from napari_posekit.core.synthetic import make_behaviour

N_FRAMES, HEIGHT, WIDTH = 40, 64, 96
SCORER = "DLC_resnet18_sampleshuffle1_10"
TIMEOUT = 120_000


pytestmark = pytest.mark.usefixtures("torch_threads")


def _rows(layer, image: int, bodypart: str) -> np.ndarray:
    mask = np.round(layer.data[:, 0]).astype(int) == image
    return np.flatnonzero(mask & (layer.features["bodypart"].astype(object) == bodypart).to_numpy())


def _journal(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]


def test_one_session_per_layer_closed_with_the_layer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    images = [f"labeled-data/v/img{i}.png" for i in range(3)]
    data, kwargs, _ = keypoints_layer_data(np.full((3, 2, 2), np.nan), ["snout", "tail"], name="keypoints")
    kwargs["metadata"].update(images=images, journal=str(journal_path(tmp_path / "CollectedData_me.h5")))
    layer = viewer.add_points(data, **kwargs)
    first = LabelingWidget(viewer)
    second = LabelingWidget(viewer)
    session = session_for(layer, viewer)
    assert first.session is session and second.session is session and existing_session(layer) is session
    layer.mode = "add"
    click(layer, 1, 10, 20)  # one click, seen by two widgets: one edit
    assert session.store.unsaved_edits == 1 and len(_journal(session.store.journal)) == 1
    assert first.store.xy[1, 0].tolist() == [10, 20] and "0/3 frames complete" in second.progress.text()
    changes = []
    session.subscribe(changes.append)
    viewer.layers.remove(layer)
    assert session.closed and [c.kind for c in changes] == ["closed"]
    assert existing_session(layer) is None and first.session is None and second.session is None
    assert session.store.journal.exists()  # the unsaved edit stays there for recovery


def test_edits_through_labeling_and_refine_are_journaled_once_and_recovered(make_napari_viewer, qtbot, tmp_path):
    config = write_sample_project(tmp_path, n_frames=N_FRAMES, height=HEIGHT, width=WIDTH, n_labeled=6)
    project = config.parent
    video = next((project / "videos").glob("*.mp4"))
    truth = make_behaviour(N_FRAMES, HEIGHT, WIDTH, seed=0)
    xy = truth.keypoints.copy() + 0.3
    xy[17, 0] += 12.0  # the snout jumps away on frame 17
    write_predictions(output_paths(video, SCORER)["h5"], xy, np.full(xy.shape[:2], 0.95), list(truth.bodyparts), SCORER)

    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="napari-posekit")
    labeling = LabelingWidget(viewer)
    refine = RefineWidget(viewer)
    viewer.window.add_dock_widget(labeling, area="right", name="Labeling")
    viewer.window.add_dock_widget(refine, area="right", name="Refine")
    refine.count.setValue(2)
    refine.epsilon.setValue(6.0)
    assert refine.find_outliers() is not None
    qtbot.waitUntil(lambda: not refine.busy, timeout=TIMEOUT)
    assert 17 in refine.candidates.picked
    assert refine.accept([17]) is not None
    qtbot.waitUntil(lambda: not refine.busy, timeout=TIMEOUT)
    layer = refine.session.layer
    assert labeling.layer is layer and labeling.session is refine.session  # one session for both widgets
    images = layer.metadata["images"]
    frame = next(i for i, name in enumerate(images) if name.endswith("img17.png"))
    journal = Path(layer.metadata["journal"])
    start = np.array(refine.session.store.xy)

    # Refine's way: drag a machine label, delete another (select, Delete)
    moved = layer.data.copy()
    moved[_rows(layer, frame, "snout")[0], 1:] = truth.keypoints[17, 0, ::-1]
    layer.data = moved
    layer.selected_data = set(_rows(layer, frame, "tailbase").tolist())
    layer.remove_selected()
    # the Labeling widget's way: click the deleted body part back, undo, redo
    viewer.dims.set_current_step(0, frame)
    labeling.set_current(3)
    layer.mode = "add"
    click(layer, frame, 30.5, 40.25)
    labeling.undo()
    labeling.redo()

    entries = _journal(journal)
    assert [e["label"] for e in entries] == ["changed", "removed", "added", "undo added", "added"]
    assert refine.session.store.unsaved_edits == 5 and labeling.store is refine.session.store
    assert refine.corrections.touched == {images[frame]} and refine.save_button.isEnabled()
    assert "5 unsaved edits" in refine.refine_label.text() and "unsaved edits" in labeling.progress.text()
    expected = np.array(refine.session.store.xy)
    assert expected[frame, 3].tolist() == [30.5, 40.25]
    assert expected[frame, 0].tolist() == truth.keypoints[17, 0].tolist()
    changed = ~((expected == start) | (np.isnan(expected) & np.isnan(start))).all(axis=2)
    assert np.argwhere(changed).tolist() == [[frame, 0], [frame, 3]]

    # the session ends without saving (the layer goes); a fresh one on the same folder recovers exactly that
    viewer.layers.remove(layer)
    assert refine.session is None and labeling.session is None
    viewer2 = make_napari_viewer()
    _, points = viewer2.open(str(journal.parent), plugin="napari-posekit")
    fresh = session_for(points, viewer2)
    assert fresh.pending == 5
    np.testing.assert_array_equal(fresh.store.xy, start)
    assert fresh.recover() == 5
    np.testing.assert_array_equal(fresh.store.xy, expected)
    np.testing.assert_array_equal(layer_to_xy(points, len(images), fresh.bodyparts)[0], expected)
