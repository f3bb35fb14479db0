"""Label suspects in the Training and Refine widgets, in a real viewer, with the real fast checks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Points

from napari_posekit._napari import _training_widget
from napari_posekit._napari._refine_widget import RefineWidget
from napari_posekit._napari._training_widget import TrainingWidget
from napari_posekit.controllers.refine import LabelRow
from napari_posekit.controllers.training import TrainingRun
from napari_posekit.core.collected_data import collected_to_arrays, read_collected, write_collected
from napari_posekit.core.inference import output_paths
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.synthetic import make_behaviour

N_FRAMES, HEIGHT, WIDTH = 40, 64, 96
SWAPPED = 3  # the labeled image whose ears are swapped
SCORER = "DLC_resnet18_sampleshuffle1_10"
TIMEOUT = 30_000


def _swap_ears(h5: Path, row: int) -> str:
    """Exchange leftear and rightear in image ``row`` of a CollectedData file; returns the image key."""
    df = read_collected(h5)
    keys, parts, xy = collected_to_arrays(df)
    xy = np.array(xy)
    left, right = parts.index("leftear"), parts.index("rightear")
    xy[row, [left, right]] = xy[row, [right, left]]
    df.iloc[row] = xy[row].ravel()
    write_collected(df, h5)
    return keys[row]


@pytest.fixture
def swapped(tmp_path):
    """A sample project (12 labeled frames, one with its ears swapped) and a prediction file of its video."""
    from napari_posekit.core.sample import write_sample_project

    project = write_sample_project(tmp_path, n_frames=N_FRAMES, height=HEIGHT, width=WIDTH, n_labeled=12).parent
    h5 = next((project / "labeled-data").glob("*/CollectedData_*.h5"))
    key = _swap_ears(h5, SWAPPED)
    video = next((project / "videos").glob("*.mp4"))
    truth = make_behaviour(N_FRAMES, HEIGHT, WIDTH, seed=0)
    xy = truth.keypoints.copy() + 0.3
    xy[17, 0] += 14.0  # the snout jumps away on one frame and back
    write_predictions(output_paths(video, SCORER)["h5"], xy, np.full(xy.shape[:2], 0.95), list(truth.bodyparts), SCORER)
    return project, h5, key, video


def test_training_widget_counts_label_suspects_and_follows_saves(make_napari_viewer, qtbot, swapped, monkeypatch):
    project, h5, key, _video = swapped
    widget = TrainingWidget(make_napari_viewer())
    assert not widget.labels_label.isVisibleTo(widget)  # no project, no line
    widget.project.setText(str(project / "config.yaml"))
    qtbot.waitUntil(lambda: not widget.label_jobs.busy, timeout=TIMEOUT)
    # one suspect: the swap (the appearance check may agree and lead the merged suspect)
    assert re.fullmatch(
        r"Labels: 1 suspect \(1 (swap|appearance)\) — review them in Label QA", widget.labels_label.text()
    )
    assert widget.labels_label.toolTip().startswith(f"Most suspect: {key}: ")
    assert "look swapped" in widget.labels_label.toolTip()
    assert widget.start_button.isEnabled() and not widget.busy  # advice, never a block

    # a training warning that repeats the line is not shown again; others are
    shown: list[str] = []
    monkeypatch.setattr(_training_widget, "show_warning", shown.append)
    widget.run = TrainingRun(project)
    repeat = (
        f"{key}: leftear and rightear are on the opposite sides from 11 of 12 frames; swapped? (trained as labeled)"
    )
    summary = "1 label suspects (1 swap): run 'posekit check-labels' or the Label QA widget to review them"
    for message in (repeat, summary, "labeled-data/x/img9.png: no such image; left out"):
        widget._on_progress(None, {"event": "warning", "message": message})
    assert shown == ["labeled-data/x/img9.png: no such image; left out"] and widget.run.warnings == 1

    # fixing the labels and saving them (any widget, or outside napari): the line follows within the poll
    _swap_ears(h5, SWAPPED)
    stat = h5.stat()
    os.utime(h5, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))  # a new time even on coarse clocks
    qtbot.waitUntil(lambda: widget.labels_label.text() == "Labels: no suspects found", timeout=TIMEOUT)
    widget._on_progress(None, {"event": "warning", "message": summary})
    assert shown[-1] == summary  # the line says none now: training's warning is news

    # Check labels reruns on demand; a folder that is not a project clears the line
    widget.check_labels_button.click()
    qtbot.waitUntil(lambda: not widget.label_jobs.busy, timeout=TIMEOUT)
    assert widget.labels_label.text() == "Labels: no suspects found"
    widget.project.setText(str(project / "videos"))
    assert not widget.labels_label.isVisibleTo(widget)


def test_refine_widget_ranks_label_suspects_with_outlier_frames(make_napari_viewer, qtbot, swapped):
    project, _h5, key, video = swapped
    viewer = make_napari_viewer()
    [video_layer] = viewer.open(str(video), plugin="napari-posekit")
    widget = RefineWidget(viewer)
    assert widget.project_path() == project and not widget.include_labels.isChecked()
    widget.epsilon.setValue(6.0)
    widget.count.setValue(3)
    assert widget.find_outliers() is not None  # the prediction file beside the video (no model in the project)
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    frames_only = [r.frame for r in widget.rows_shown]
    assert frames_only and all(not isinstance(r, LabelRow) for r in widget.rows_shown)
    scores = [float(widget.table.item(r, 1).text()) for r in range(widget.table.rowCount())]

    widget.include_labels.setChecked(True)
    qtbot.waitUntil(lambda: not widget.label_jobs.busy, timeout=TIMEOUT)
    rows = widget.rows_shown
    labels = [r for r in rows if isinstance(r, LabelRow)]
    assert labels and labels[0].image == key and {"leftear", "rightear"} <= set(labels[0].bodyparts)
    assert "look swapped" in labels[0].reason
    assert [r.frame for r in rows if not isinstance(r, LabelRow)] == frames_only  # the frames keep their order
    merged = [float(widget.table.item(r, 1).text()) for r in range(widget.table.rowCount())]
    assert merged == sorted(merged, reverse=True)
    frame_scores = [float(widget.table.item(r, 1).text()) for r, row in enumerate(rows) if row.frame is not None]
    assert frame_scores == pytest.approx([s + 1 for s in scores], abs=0.011)  # 1 + combined: threshold at 1
    r = rows.index(labels[0])
    assert widget.table.item(r, 0).text() == "label" and widget.table.columnSpan(r, 2) == 4
    assert widget.table.item(r, 2).text() == f"label: {labels[0].describe()}"
    assert labels[0].describe().endswith(f" in {Path(key).stem}") and "leftear" in labels[0].describe()
    assert widget.labels_label.text().startswith("Label suspects: 1 suspect (1 ")
    assert sorted(widget._checked_frames()) == sorted(widget.candidates.picked)  # only frames can be accepted

    # choosing the suspect opens the project's labels at that image; the video's layers are hidden meanwhile
    widget.jump_to_row(r)
    layer = viewer.layers.selection.active
    assert isinstance(layer, Points) and Path(layer.metadata["folder"]).name == Path(key).parent.name
    images = [name.replace("\\", "/") for name in layer.metadata["images"]]
    assert viewer.dims.current_step[0] == images.index(key) and layer.visible and not video_layer.visible
    assert (
        widget.status.text().startswith(f"{Path(key).parent.name}/{Path(key).name}: ")
        and "Label QA" in widget.status.text()
    )
    n_layers = len(viewer.layers)
    widget.jump_to_row(r)  # open already: not opened twice
    assert len(viewer.layers) == n_layers

    # back to a video frame: the video again, the labels hidden
    f = next(i for i, row in enumerate(rows) if row.frame is not None)
    widget.jump_to_row(f)
    assert video_layer.visible and not layer.visible and viewer.dims.current_step[0] == rows[f].frame
    widget.include_labels.setChecked(False)
    assert [r.frame for r in widget.rows_shown] == frames_only and not widget.labels_label.isVisibleTo(widget)
