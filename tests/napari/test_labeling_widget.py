"""The labeling widget in a real viewer, driven by simulated clicks and keys."""

from __future__ import annotations

import numpy as np
import pytest
from mouse import click

from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit._napari.layers import keypoints_layer_data, layer_to_xy, skeleton_vectors
from napari_posekit.core.labels import LabelStore, journal_path

PARTS = ["snout", "leftear", "rightear", "tailbase"]
SKELETON = [["snout", "leftear"], ["snout", "rightear"], ["leftear", "tailbase"]]


def press(widget, key):
    widget.key_bindings[key](widget.layer)


@pytest.fixture
def labeling(make_napari_viewer, behaviour, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(behaviour.frames[:6], rgb=True, name="frames")
    images = [f"labeled-data/v/img{i}.png" for i in range(6)]
    data, kwargs, _ = keypoints_layer_data(np.full((6, 4, 2), np.nan), PARTS, name="keypoints")
    kwargs["metadata"].update(
        images=images, skeleton=SKELETON, journal=str(journal_path(tmp_path / "CollectedData_me.h5"))
    )
    layer = viewer.add_points(data, **kwargs)
    saved = []
    widget = LabelingWidget(viewer, save=lambda store, lyr: saved.append(np.array(store.xy)))
    viewer.window.add_dock_widget(widget)
    viewer.dims.current_step = (0, 0, 0)
    return viewer, widget, layer, saved


def test_clicks_place_body_parts_in_order_and_skeleton_follows(labeling):
    _viewer, widget, layer, _ = labeling
    assert widget.layer is layer and widget.current == 0
    for k, (x, y) in enumerate([(10, 20), (12, 15), (14, 25), (40, 22)]):
        assert widget.current == k  # each click advances to the next unplaced body part
        click(layer, 0, x, y)
    xy, _ = layer_to_xy(layer, 6, PARTS)
    assert xy[0].tolist() == [[10, 20], [12, 15], [14, 25], [40, 22]]
    assert list(layer.features["bodypart"]) == PARTS
    assert "1/6 frames complete" in widget.progress.text()
    assert len(widget.skeleton_layer.data) == 3
    colors = {tuple(c) for c in layer.face_color}
    assert len(colors) == 4  # one colour per body part


def test_keys_undo_copy_next_and_save(labeling):
    viewer, widget, layer, saved = labeling
    for x, y in [(10, 20), (12, 15), (14, 25), (40, 22)]:
        click(layer, 0, x, y)
    press(widget, "d")  # next frame
    assert viewer.dims.current_step[0] == 1
    click(layer, 1, 30, 30)  # snout on frame 1
    press(widget, "c")  # copy the rest from frame 0
    assert widget.store.xy[1].tolist() == [[30, 30], [12, 15], [14, 25], [40, 22]]
    press(widget, "Control-z")  # undo the copy
    assert np.isnan(widget.store.xy[1, 1:]).all() and len(layer.data) == 5
    press(widget, "Control-Shift-z")  # redo it
    assert len(layer.data) == 8
    assert widget.current == 1  # the click on frame 1 advanced from snout to leftear
    press(widget, "Down")
    assert widget.current == 2
    press(widget, "Up")
    press(widget, "Up")
    press(widget, "Up")
    assert widget.current == 3  # wraps around
    press(widget, "n")  # next frame that is not fully labeled
    assert viewer.dims.current_step[0] == 2
    # clicking a body part that is already placed on the frame moves it (no duplicate)
    widget.go_to_frame(1)
    widget.set_current(0)
    click(layer, 1, 33, 31)
    assert widget.store.xy[1, 0].tolist() == [33, 31] and len(layer.data) == 8
    # deleting the selected point persists in the store
    layer.selected_data = {len(layer.data) - 1}
    layer.remove_selected()
    assert widget.store.placed()[1].sum() == 3
    widget.save()
    assert len(saved) == 1 and np.array_equal(saved[0], widget.store.xy, equal_nan=True)
    assert "saved" in widget.progress.text()


def test_edits_are_journaled_and_offered_back(labeling, make_napari_viewer, tmp_path):
    _viewer, widget, layer, _ = labeling
    click(layer, 0, 10, 20)
    click(layer, 0, 12, 15)
    journal = widget.store.journal
    widget.detach()  # the session ends without saving
    assert journal.exists()

    viewer2 = make_napari_viewer()
    data, kwargs, _ = keypoints_layer_data(np.full((6, 4, 2), np.nan), PARTS, name="keypoints")
    kwargs["metadata"].update(images=layer.metadata["images"], journal=str(journal))
    layer2 = viewer2.add_points(data, **kwargs)
    widget2 = LabelingWidget(viewer2)
    assert widget2.recover_button.isVisibleTo(widget2) and "2 unsaved" in widget2.recover_button.text()
    widget2.recover()
    xy, _ = layer_to_xy(layer2, 6, PARTS)
    assert xy[0, :2].tolist() == [[10, 20], [12, 15]]


def test_skeleton_vectors_and_validation():
    xy = np.full((2, 4, 2), np.nan)
    xy[1, 0] = (1, 2)
    xy[1, 1] = (4, 6)
    vectors = skeleton_vectors(xy, PARTS, SKELETON)
    assert vectors.tolist() == [[[1, 2, 1], [0, 4, 3]]]
    store = LabelStore.empty(["a"], PARTS)
    assert store.progress() == (0, 0, 1)
