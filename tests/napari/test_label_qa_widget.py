"""Label QA widget in a real viewer: check, look, fix with one click, undo, mark as correct, save."""

from __future__ import annotations

import datetime
import shutil

import numpy as np
import pytest
from app_model.types import KeyBinding
from qtpy.QtCore import QPoint, Qt

from conftest import require_shared
from napari_posekit._napari import _label_qa_widget
from napari_posekit._napari._label_qa_widget import LabelQAWidget
from napari_posekit._napari.label_qa_layers import CURRENT, layer_names
from napari_posekit.core.collected_data import collected_to_arrays, read_collected, update_collected
from napari_posekit.core.config import write_config
from napari_posekit.core.project import default_config

PARTS = ["snout", "leftear", "rightear", "tailbase"]
N, H, W = 30, 64, 80
SWAPPED, FAR = 7, 15  # img007 has its ears swapped, img015 its tailbase far from the body


def _mice(seed: int = 0) -> np.ndarray:
    """``(N, 4, 2)`` mice seen from above, leftear always on the same side of the body."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform([25, 22], [W - 25, H - 22], size=(N, 2))
    angle = rng.uniform(0, 2 * np.pi, N)
    ahead = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    side = np.stack([-ahead[:, 1], ahead[:, 0]], axis=1)
    xy = np.stack(
        [centre + 12 * ahead, centre + 5 * ahead + 5 * side, centre + 5 * ahead - 5 * side, centre - 12 * ahead],
        axis=1,
    )
    return xy + rng.normal(0, 0.3, xy.shape)


@pytest.fixture
def project(tmp_path):
    """A project of 30 noise images with a mouse's labels on each; two mistakes planted."""
    import imageio.v3 as iio

    root = tmp_path / "qa-me-2026-12-01"
    folder = root / "labeled-data" / "v"
    folder.mkdir(parents=True)
    write_config(
        root / "config.yaml",
        default_config("qa", "me", datetime.date(2026, 12, 1), root, {}, PARTS, []),
    )
    rng = np.random.default_rng(1)
    images = []
    for i in range(N):
        iio.imwrite(folder / f"img{i:03d}.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        images.append(f"labeled-data/v/img{i:03d}.png")
    xy = _mice()
    xy[SWAPPED, [1, 2]] = xy[SWAPPED, [2, 1]]
    xy[FAR, 3] += [0.0, 25.0]
    update_collected(folder / "CollectedData_me.h5", images, PARTS, xy, "me")
    return root


def _open(viewer, folder) -> LabelQAWidget:
    _image, points = viewer.open(str(folder), plugin="napari-posekit")
    widget = LabelQAWidget(viewer)
    widget.jobs.synchronous = True
    assert widget.layer is points
    return widget


def _saved(folder) -> np.ndarray:
    _names, parts, xy = collected_to_arrays(read_collected(next(folder.glob("CollectedData_*.h5"))))
    return xy[:, [parts.index(p) for p in PARTS]]


def test_check_look_fix_undo_mark_and_save(make_napari_viewer, qtbot, project):
    folder = project / "labeled-data" / "v"
    before = _saved(folder)
    viewer = make_napari_viewer()
    widget = _open(viewer, folder)
    qtbot.addWidget(widget)
    points = widget.layer
    assert not widget.swap_button.isEnabled() and widget.summary.text() == "Not checked yet."

    widget.check()
    suspects = widget.controller.visible()
    found = {(s.image, s.kind) for s in suspects}
    assert {("labeled-data/v/img007.png", "swap"), ("labeled-data/v/img015.png", "geometry")} <= found
    assert widget.table.rowCount() == len(suspects)
    # the first suspect is chosen and its image shown
    top = suspects[0]
    assert widget.controller.current is top and widget.table.currentRow() == 0
    assert viewer.dims.current_step[0] == widget.images.index(top.image)

    # a click on the row of img007 shows it: its labels ringed, crosses where the swap puts them
    row7 = next(r for r in range(widget.table.rowCount()) if widget.table.item(r, 1).text() == "img007")
    rect = widget.table.visualItemRect(widget.table.item(row7, 1))
    qtbot.mouseClick(widget.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    swap = widget.controller.current
    assert (swap.image, swap.kind) == ("labeled-data/v/img007.png", "swap")
    assert viewer.dims.current_step[0] == SWAPPED
    rings, crosses, lines = (viewer.layers[name] for name in layer_names(widget.layer))
    ringed = rings.data[np.isclose(rings.border_color, CURRENT).all(axis=1)]
    np.testing.assert_allclose(ringed[:, 0], SWAPPED)
    np.testing.assert_allclose(np.sort(ringed[:, 2]), np.sort(before[SWAPPED, [1, 2], 0]))
    np.testing.assert_allclose(np.sort(crosses.data[:, 2]), np.sort(before[SWAPPED, [1, 2], 0]))
    assert len(lines.data) == 2 and len(rings.data) > len(ringed)  # the other suspects' rings stay orange
    assert viewer.layers.selection.active is widget.layer  # the keypoints keep their keys
    assert widget.swap_button.isEnabled() and "img007" in widget.detail.text()

    # the plot: a click at its left edge shows image 0 (no suspect there)
    plot = widget.curve._plot_rect()
    qtbot.mouseClick(widget.curve, Qt.MouseButton.LeftButton, pos=QPoint(int(plot.left()) + 1, 20))
    assert viewer.dims.current_step[0] == 0

    # the kind filter
    geometry = next(i for i in range(widget.kind_box.count()) if widget.kind_box.itemData(i) == "geometry")
    assert widget.kind_box.itemText(geometry).startswith("out of shape (")
    widget.kind_box.setCurrentIndex(geometry)
    assert {widget.table.item(r, 3).text() for r in range(widget.table.rowCount())} == {"geometry"}
    widget.kind_box.setCurrentIndex(0)
    assert widget.table.rowCount() == len(suspects)

    # swap: one edit of the layer's session; undo takes it back
    widget.select(swap)
    assert widget.fix("swap")
    store = widget.session.store
    np.testing.assert_array_equal(store.xy[SWAPPED, [1, 2]], before[SWAPPED, [2, 1]])
    frame7 = widget.layer.data[np.round(widget.layer.data[:, 0]) == SWAPPED]
    assert len(frame7) == 4
    assert widget.table.item(row7, 5).text() == "fixed"
    widget.undo()
    np.testing.assert_array_equal(store.xy[SWAPPED], before[SWAPPED])
    assert widget.table.item(row7, 5).text() == ""
    widget.fix("swap")
    widget.layer.keymap[KeyBinding.from_str("Ctrl+Z")](widget.layer)  # on the keypoints layer, no Labeling widget
    np.testing.assert_array_equal(store.xy[SWAPPED], before[SWAPPED])
    widget.fix("swap")

    # mark as correct: it leaves the list now and after a rerun
    far = widget.controller.first_on("labeled-data/v/img015.png")
    widget.select(far)
    path = widget.mark_correct()
    assert path is not None and path.exists()
    assert far not in widget.controller.visible()

    assert widget.save()
    saved = _saved(folder)
    np.testing.assert_array_equal(saved[SWAPPED, [1, 2]], before[SWAPPED, [2, 1]])
    np.testing.assert_array_equal(np.delete(saved, SWAPPED, axis=0), np.delete(before, SWAPPED, axis=0))
    widget.check()
    images = [s.image for s in widget.controller.visible()]
    assert "labeled-data/v/img007.png" not in images and "labeled-data/v/img015.png" not in images
    assert widget.controller.report.dismissed >= 1 and not widget.session.store.unsaved_edits

    # the QA layers leave with the keypoints layer
    viewer.layers.remove(widget.layer)
    assert widget.layer is None and not any(name in viewer.layers for name in layer_names(points))
    assert widget.summary.text() == "Not checked yet." and not widget.check_button.isEnabled()


def test_opens_from_the_plugin_menu_and_fits_a_narrow_dock(make_napari_viewer, project):
    viewer = make_napari_viewer()
    _image, points = viewer.open(str(project / "labeled-data" / "v"), plugin="napari-posekit")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-posekit", "Label QA")
    assert isinstance(widget, LabelQAWidget) and widget.viewer is viewer and widget.layer is points
    assert widget.minimumSizeHint().width() <= 400


def test_without_a_keypoints_layer_it_says_what_to_open(make_napari_viewer, qtbot, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(_label_qa_widget, "show_error", errors.append)
    widget = LabelQAWidget(make_napari_viewer())
    qtbot.addWidget(widget)
    assert not widget.check_button.isEnabled() and not widget.swap_button.isEnabled()
    assert widget.check() is None
    assert errors and "open a project's labels first" in widget.status.text()


def test_openfield_img0102_swap_is_first_and_one_click_fixes_it(make_napari_viewer, qtbot, tmp_path):
    src = require_shared("dlc_openfield-Pranav-2018-10-30")
    root = tmp_path / "openfield"
    shutil.copytree(src / "labeled-data", root / "labeled-data")
    shutil.copy(src / "config.yaml", root / "config.yaml")
    folder = root / "labeled-data" / "m4s1"
    before = _saved(folder)
    viewer = make_napari_viewer()
    widget = _open(viewer, folder)
    qtbot.addWidget(widget)
    widget.check()
    top = widget.controller.visible()[0]
    assert (top.image, top.kind, top.bodyparts) == ("labeled-data/m4s1/img0102.png", "swap", ("leftear", "rightear"))
    assert viewer.dims.current_step[0] == 102 and widget.controller.current is top
    qtbot.mouseClick(widget.swap_button, Qt.MouseButton.LeftButton)
    assert widget.table.item(0, 5).text() == "fixed"
    qtbot.mouseClick(widget.save_button, Qt.MouseButton.LeftButton)
    saved = _saved(folder)
    np.testing.assert_array_equal(saved[102, [1, 2]], before[102, [2, 1]])
    np.testing.assert_array_equal(np.delete(saved, 102, axis=0), np.delete(before, 102, axis=0))


def test_rings_crosses_and_lines_of_a_suspect():
    from napari_posekit._napari.label_qa_layers import focus_box, rings, suggestion
    from napari_posekit.core.label_suspects import Suspect

    images = ["labeled-data/v/a.png", "labeled-data/v/b.png"]
    xy = np.array([[[1.0, 2.0], [3.0, 4.0], [np.nan, np.nan], [7.0, 8.0]]] * 2)
    # move snout, delete leftear, place rightear (not labeled yet)
    s = Suspect(images[1], ("snout", "leftear", "rightear"), "disagreement", 2.0, "r", [[10, 20], [np.nan] * 2, [5, 6]])
    crosses, lines = suggestion(xy, images, PARTS, s)
    np.testing.assert_array_equal(crosses, [[1, 20, 10], [1, 6, 5]])  # frame, y, x; nothing where the fix deletes
    np.testing.assert_array_equal(lines, [[[1, 2, 1], [0, 18, 9]]])  # only from a placed label to its cross
    other = Suspect(images[0], ("tailbase",), "geometry", 1.5, "t")
    points, chosen = rings(xy, images, PARTS, [s, other], s)
    np.testing.assert_array_equal(points, [[0, 8, 7], [1, 2, 1], [1, 4, 3]])  # the chosen suspect's rings last
    np.testing.assert_array_equal(chosen, [False, True, True])
    assert suggestion(xy, images, PARTS, other)[0].shape == (0, 3)
    centre, side = focus_box(np.array([[0.0, 0.0], [10.0, 300.0], [np.nan, np.nan]]))
    np.testing.assert_array_equal(centre, [5.0, 150.0])
    assert side == 380.0 and focus_box(np.full((2, 2), np.nan)) is None
