"""The real DeepLabCut project: open, label, save, reopen — nothing lost, files stay DLC's."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit._napari._project_reader import napari_get_reader


@pytest.fixture
def project(tmp_path):
    src = require_shared("dlc_openfield-Pranav-2018-10-30")
    dst = tmp_path / "openfield"
    shutil.copytree(src / "labeled-data", dst / "labeled-data")
    shutil.copy(src / "config.yaml", dst / "config.yaml")
    return dst


def test_reader_ignores_other_paths(tmp_path):
    assert napari_get_reader(str(tmp_path / "movie.mp4")) is None
    assert napari_get_reader(str(tmp_path)) is None  # an empty folder is not a labels folder


@pytest.mark.parametrize("which", ["folder", "h5", "csv", "config"])
def test_every_entry_point_gives_the_same_labels(make_napari_viewer, project, which):
    folder = project / "labeled-data" / "m4s1"
    path = {
        "folder": folder,
        "h5": folder / "CollectedData_Pranav.h5",
        "csv": folder / "CollectedData_Pranav.csv",
        "config": project / "config.yaml",
    }[which]
    viewer = make_napari_viewer()
    image, points = viewer.open(str(path), plugin="napari-posekit")
    assert image.data.shape == (116, 480, 640, 3)
    assert points.data.shape == (464, 3)
    assert points.metadata["bodyparts"] == ["snout", "leftear", "rightear", "tailbase"]
    original = pd.read_hdf(folder / "CollectedData_Pranav.h5")
    first = original.iloc[0]
    snout = points.data[(points.data[:, 0] == 0) & (points.features["bodypart"] == "snout").to_numpy()][0]
    assert snout[2] == first[("Pranav", "snout", "x")] and snout[1] == first[("Pranav", "snout", "y")]


def test_label_save_reopen_round_trip(make_napari_viewer, project):
    folder = project / "labeled-data" / "m4s1"
    original = pd.read_hdf(folder / "CollectedData_Pranav.h5")
    viewer = make_napari_viewer()
    _image, points = viewer.open(str(folder), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    assert widget.layer is points
    assert "116/116 frames complete" in widget.progress.text()
    # move the snout of frame 5, delete the tailbase of frame 7, then save
    moved = points.data.copy()
    row5 = np.flatnonzero((moved[:, 0] == 5) & (points.features["bodypart"] == "snout").to_numpy())[0]
    moved[row5, 1:] = [100.25, 200.5]
    points.data = moved
    row7 = np.flatnonzero((points.data[:, 0] == 7) & (points.features["bodypart"] == "tailbase").to_numpy())[0]
    points.selected_data = {row7}
    points.remove_selected()
    widget.save()
    assert not (folder / ".CollectedData_Pranav.posekit-journal.jsonl").exists()

    expected = original.copy()
    expected.iloc[5, expected.columns.get_loc(("Pranav", "snout", "x"))] = 200.5
    expected.iloc[5, expected.columns.get_loc(("Pranav", "snout", "y"))] = 100.25
    expected.iloc[7, expected.columns.get_loc(("Pranav", "tailbase", "x"))] = np.nan
    expected.iloc[7, expected.columns.get_loc(("Pranav", "tailbase", "y"))] = np.nan
    assert isinstance(original.index, pd.Index) and original.index[0] == "labeled-data/m4s1/img0000.png"
    pd.testing.assert_frame_equal(pd.read_hdf(folder / "CollectedData_Pranav.h5"), expected, check_exact=True)
    saved_csv = pd.read_csv(folder / "CollectedData_Pranav.csv", header=[0, 1, 2], index_col=0)
    pd.testing.assert_frame_equal(saved_csv, expected, check_exact=True, check_names=False)

    # reopen: the deletion and the move persist
    viewer2 = make_napari_viewer()
    _, points2 = viewer2.open(str(folder), plugin="napari-posekit")
    assert points2.data.shape == (463, 3)


def test_writer_saves_a_keypoints_layer_as_collected_data(make_napari_viewer, project, tmp_path):
    folder = project / "labeled-data" / "m4s1"
    viewer = make_napari_viewer()
    _, points = viewer.open(str(folder), plugin="napari-posekit")
    out = tmp_path / "export" / "CollectedData_Pranav.h5"
    out.parent.mkdir()
    viewer.layers.selection = {points}
    written = viewer.layers.save(str(out), selected=True, plugin="napari-posekit")
    assert sorted(written) == sorted([str(out), str(out.with_suffix(".csv"))])
    pd.testing.assert_frame_equal(pd.read_hdf(out), pd.read_hdf(folder / "CollectedData_Pranav.h5"), check_exact=True)


def test_writer_and_labeling_save_keep_the_same_rows(make_napari_viewer, project):
    """Both saves keep every row the file had, empty or of an image gone from the folder, and add no empty row."""
    from napari_posekit.core.collected_data import read_collected, write_collected

    folder = project / "labeled-data" / "m4s1"
    h5, csv = folder / "CollectedData_Pranav.h5", folder / "CollectedData_Pranav.csv"
    df = read_collected(h5)
    df.iloc[2] = np.nan  # every label of img0002 removed: its row stays, empty (DeepLabCut's GUIs keep such rows)
    df = df.drop(index="labeled-data/m4s1/img0010.png")  # extracted, no label yet: no row is added
    gone = df.iloc[[5]].set_axis(["labeled-data/m4s1/img9999.png"])  # labels of an image no longer in the folder
    df = pd.concat([df, gone])
    write_collected(df, folder)

    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="img9999.png"):
        _, points = viewer.open(str(folder), plugin="napari-posekit")
    viewer.layers.selection = {points}
    viewer.layers.save(str(h5), selected=True, plugin="napari-posekit")  # napari's writer, over its own file
    pd.testing.assert_frame_equal(read_collected(h5), df, check_exact=True)
    pd.testing.assert_frame_equal(read_collected(csv), df, check_exact=True)
    written = csv.read_bytes()

    LabelingWidget(viewer).save()  # the Labeling widget's save: the same rows, the same bytes
    assert csv.read_bytes() == written
    pd.testing.assert_frame_equal(read_collected(h5), df, check_exact=True)


LABELING_SESSION = """
import sys, time
import napari
from napari_posekit._napari._labeling import LabelingWidget
viewer = napari.Viewer(show=False)
_, points = viewer.open(sys.argv[1], plugin="napari-posekit")
widget = LabelingWidget(viewer)
for k in range(1000):
    data = points.data.copy()
    data[k % len(data), 1:] = [10.0 + k, 20.0 + k]  # drag one point
    points.data = data
    print(k, flush=True)
    time.sleep(0.02)
"""


def test_sigkill_during_labeling_loses_no_edit(make_napari_viewer, project):
    import os
    import signal
    import subprocess
    import sys

    folder = project / "labeled-data" / "m4s1"
    proc = subprocess.Popen([sys.executable, "-c", LABELING_SESSION, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        done = -1
        while done < 30:
            line = proc.stdout.readline()
            assert line, "the labeling session ended early"
            done = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    viewer = make_napari_viewer()
    _, points = viewer.open(str(folder), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    assert widget.recover_button.isVisibleTo(widget)
    widget.recover()
    for k in range(done + 1):  # every edit reported before the kill is back
        assert points.data[k % len(points.data), 1:].tolist() == [10.0 + k, 20.0 + k], k
    pd.testing.assert_frame_equal(  # nothing on disk was touched by the crash
        pd.read_hdf(folder / "CollectedData_Pranav.h5"),
        pd.read_hdf(require_shared("dlc_openfield-Pranav-2018-10-30") / "labeled-data/m4s1/CollectedData_Pranav.h5"),
    )


def test_skeleton_edited_in_the_widget_is_drawn_and_saved_to_the_config(make_napari_viewer, project):
    from napari_posekit.core.config import read_config

    folder = project / "labeled-data" / "m4s1"
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    assert len(widget.skeleton_layer.data) == 0  # the openfield config has no skeleton
    widget.skeleton_edit.setText("snout-leftear, snout-rightear, leftear-tailbase")
    widget._on_skeleton_edited()
    assert len(widget.skeleton_layer.data) == 3 * 116
    widget.skeleton_edit.setText("snout-nose")
    widget._on_skeleton_edited()  # unknown body part: refused, skeleton unchanged
    assert len(widget.skeleton_layer.data) == 3 * 116
    widget.save()
    config = read_config(project / "config.yaml")
    assert config["skeleton"] == [["snout", "leftear"], ["snout", "rightear"], ["leftear", "tailbase"]]
    assert config["Task"] == "openfield" and config["pcutoff"] == 0.4  # the rest untouched


def test_machine_labels_fill_gaps_and_never_overwrite_human_labels(make_napari_viewer, project):
    from napari_posekit.core.collected_data import write_collected

    folder = project / "labeled-data" / "m4s1"
    original = pd.read_hdf(folder / "CollectedData_Pranav.h5")
    human = original.copy()
    human.iloc[:10] = np.nan  # frames 0-9 not labeled by a person yet
    write_collected(human, folder)
    machine = original.copy() + 3.0  # predictions, 3 px off everywhere
    for bp in ["snout", "leftear", "rightear", "tailbase"]:
        machine[("Pranav", bp, "likelihood")] = 0.9
    machine = machine.sort_index(axis=1, level=1, sort_remaining=False)
    machine.to_hdf(folder / "machinelabels-iter0.h5", key="df_with_missing", mode="w")

    viewer = make_napari_viewer()
    _, points = viewer.open(str(folder), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    assert points.data.shape == (464, 3)
    assert len(widget.machine) == 40  # 10 frames x 4 body parts came from the machine
    ringed = np.isclose(points.border_color[:, 0], 1.0) & np.isclose(points.border_color[:, 2], 0.0)
    assert ringed.sum() == 40
    # review one machine label: drag it
    row = np.flatnonzero((points.data[:, 0] == 2) & (points.features["bodypart"] == "leftear").to_numpy())[0]
    moved = points.data.copy()
    moved[row, 1:] = [250.0, 60.0]
    points.data = moved
    assert len(widget.machine) == 39
    widget.save()

    saved = pd.read_hdf(folder / "CollectedData_Pranav.h5")
    pd.testing.assert_frame_equal(saved.iloc[10:], original.iloc[10:], check_exact=True)  # humans untouched
    assert saved.loc[saved.index[2], ("Pranav", "leftear", "x")] == 60.0
    assert (
        saved.loc[saved.index[3], ("Pranav", "snout", "x")]
        == original.loc[original.index[3], ("Pranav", "snout", "x")] + 3.0
    )
