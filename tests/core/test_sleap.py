"""SLEAP labels import (core.sleap) on the real SLEAP files and on small made-up ones."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from napari_posekit.core.sleap import SleapLabels, SleapLoadError, load_slp

FLY_NODES = [
    "head",
    "thorax",
    "abdomen",
    "wingL",
    "wingR",
    "forelegL4",
    "forelegR4",
    "midlegL4",
    "midlegR4",
    "hindlegL4",
    "hindlegR4",
    "eyeL",
    "eyeR",
]
FLY_EDGES = {("head", "eyeL"), ("head", "eyeR")} | {
    ("thorax", n)
    for n in [
        "head",
        "abdomen",
        "wingL",
        "wingR",
        "forelegL4",
        "forelegR4",
        "midlegL4",
        "midlegR4",
        "hindlegL4",
        "hindlegR4",
    ]
}


@pytest.fixture(scope="module")
def fly() -> SleapLabels:
    return load_slp(require_shared("sleap_fly_clip", "clip.slp"))


@pytest.fixture(scope="module")
def pair() -> SleapLabels:
    return load_slp(require_shared("sleap_centered_pair_predictions", "centered_pair_predictions.slp"))


# -- the two-fly clip: 1500 frames, tracks female/male, user instances ---------------


def test_fly_clip_structure(fly):
    assert fly.node_names == FLY_NODES
    assert len(fly.edges) == 12 and set(fly.edges) == FLY_EDGES
    assert fly.track_names == ["female", "male"]
    assert np.array_equal(fly.frame_indices, np.arange(1500))
    assert fly.xy.shape == (1500, 2, 13, 2) and fly.scores.shape == (1500, 2, 13)
    assert (fly.instance_kind == "user").all()
    assert np.isnan(fly.instance_score).all()
    # each frame has one female and one male
    assert (np.sort(fly.instance_track, axis=1) == [0, 1]).all()
    assert fly.n_videos == 1 and fly.video_index == 0
    assert fly.video_stored_path == "clip.mp4"
    assert fly.video_path == require_shared("sleap_fly_clip", "clip.mp4").resolve()
    assert fly.video_shape == (1500, 1024, 1024)


def test_fly_clip_points_and_scores(fly):
    missing = np.isnan(fly.xy).any(axis=-1)
    assert missing.sum() == 637  # 1.6 % of 39000
    assert (np.isnan(fly.xy[..., 0]) == np.isnan(fly.xy[..., 1])).all()
    # user points score 1.0, missing ones NaN
    assert (fly.scores[~missing] == 1.0).all() and np.isnan(fly.scores[missing]).all()


def test_fly_clip_matches_flat_csv(fly):
    csv = pd.read_csv(require_shared("sleap_fly_clip", "clip.labels.flat.csv"))
    assert len(csv) == fly.xy[..., 0].size
    csv = csv.dropna(subset=["x", "y"])
    table = fly.to_dataframe()
    assert len(table) == len(csv)
    merged = table.assign(node=table["node"].astype(str)).merge(
        csv, left_on=["frame", "track", "node"], right_on=["frame_idx", "track", "node"], suffixes=("", "_csv")
    )
    assert len(merged) == len(csv)
    assert np.array_equal(merged["x"], merged["x_csv"]) and np.array_equal(merged["y"], merged["y_csv"])

    # and a few coordinates by hand, straight from the arrays
    def at(frame, track, node):
        f = int(np.flatnonzero(fly.frame_indices == frame)[0])
        i = int(np.flatnonzero(fly.instance_track[f] == fly.track_names.index(track))[0])
        return tuple(fly.xy[f, i, FLY_NODES.index(node)])

    assert at(0, "female", "head") == (435.25, 415.75)
    assert at(0, "female", "thorax") == (396.25, 422.75)
    assert at(0, "male", "head") == (335.25, 444.75)
    assert np.isnan(at(0, "female", "midlegL4")).all()
    row = csv[(csv.frame_idx == 1234) & (csv.track == "male") & (csv.node == "abdomen")].iloc[0]
    assert at(1234, "male", "abdomen") == (row.x, row.y)


def test_dataframe_and_names(fly):
    table = fly.to_dataframe()
    assert list(table.columns) == ["frame", "instance", "individual", "track", "kind", "node", "x", "y", "score"]
    assert list(table["node"].cat.categories) == FLY_NODES
    assert set(table["individual"]) == {"female", "male"}
    assert (table["individual"] == table["track"]).all()
    names = fly.individual_names()
    assert names.shape == (1500, 2) and set(names.ravel()) == {"female", "male"}
    assert fly.edge_indices[0] == (FLY_NODES.index("head"), FLY_NODES.index("eyeL"))


# -- predictions: 24 nodes, video path stored elsewhere --------------------------------


def test_predictions_file(pair):
    assert len(pair.node_names) == 24
    assert pair.node_names[:6] == ["head", "neck", "thorax", "abdomen", "wingL", "wingR"]
    assert len(pair.track_names) == 27
    assert np.array_equal(pair.frame_indices, np.arange(1100))
    present = pair.instance_kind != ""
    assert present.sum() == 2274
    assert (pair.instance_kind[present] == "predicted").all()
    assert (pair.instance_kind[~present] == "").all() and (pair.instance_track[~present] == -1).all()
    assert np.isnan(pair.xy[~present]).all()
    assert np.isfinite(pair.instance_score[present]).all()
    placed = ~np.isnan(pair.xy).any(axis=-1)
    assert 0.85 < placed.sum() / (present.sum() * 24) < 0.93  # ~11 % of the points are NaN
    assert np.isfinite(pair.scores[placed]).all() and np.isnan(pair.scores[~placed]).all()
    assert 0 < np.median(pair.scores[placed]) < 1


def test_predictions_video_falls_back_to_the_file_beside(pair):
    assert pair.video_stored_path == "tests/data/json_format_v1/centered_pair_low_quality.mp4"
    beside = require_shared("sleap_centered_pair_predictions", "centered_pair_low_quality.mp4")
    assert pair.video_path == beside.resolve()
    assert pair.video_shape == (1100, 384, 384)


# -- made-up files: several videos, untracked instances, mixed kinds -------------------


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    """A .slp with two videos (one stored with a Windows path) and mixed instances."""
    import sleap_io as sio

    folder = tmp_path_factory.mktemp("slp")
    (folder / "two.mp4").write_bytes(b"not decoded here")
    sk = sio.Skeleton(["a", "b", "c"], edges=[("a", "b"), ("b", "c")])
    v1 = sio.Video(filename="/nowhere/one.mp4", open_backend=False)
    v2 = sio.Video(filename="C:\\data\\two.mp4", open_backend=False)
    track = sio.Track("t0")
    user = sio.Instance.from_numpy(np.array([[1.0, 2.0], [3.0, 4.0], [np.nan, np.nan]]), skeleton=sk)
    pred = sio.PredictedInstance.from_numpy(
        np.array([[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]),
        skeleton=sk,
        point_scores=np.array([0.5, 0.6, 0.7]),
        score=2.0,
        track=track,
    )
    frames = [
        sio.LabeledFrame(video=v1, frame_idx=7, instances=[user, pred]),
        sio.LabeledFrame(video=v1, frame_idx=3, instances=[sio.Instance.from_numpy(np.ones((3, 2)), skeleton=sk)]),
        sio.LabeledFrame(video=v2, frame_idx=0, instances=[sio.Instance.from_numpy(np.zeros((3, 2)), skeleton=sk)]),
    ]
    path = folder / "made_up.slp"
    sio.save_slp(sio.Labels(frames, videos=[v1, v2], skeletons=[sk], tracks=[track]), str(path))
    return path


def test_several_videos_load_the_first_with_a_warning(made_up):
    with pytest.warns(UserWarning, match=r"made_up.slp lists 2 videos; loading the labels of the first"):
        labels = load_slp(made_up)
    assert labels.n_videos == 2 and labels.video_index == 0
    assert labels.video_path is None and labels.video_stored_path == "/nowhere/one.mp4"
    assert labels.video_shape is None
    assert list(labels.frame_indices) == [3, 7]  # sorted
    assert labels.xy.shape == (2, 2, 3, 2)
    assert list(labels.instance_kind[0]) == ["user", ""] and list(labels.instance_kind[1]) == ["user", "predicted"]
    assert labels.xy[1, 0, :2].tolist() == [[1.0, 2.0], [3.0, 4.0]] and np.isnan(labels.xy[1, 0, 2]).all()
    assert labels.scores[1, 0].tolist()[:2] == [1.0, 1.0] and np.isnan(labels.scores[1, 0, 2])
    assert np.allclose(labels.scores[1, 1], [0.5, 0.6, 0.7]) and labels.instance_score[1, 1] == 2.0
    assert labels.instance_track.tolist() == [[-1, -1], [-1, 0]]
    assert labels.individual_names().tolist() == [["instance_0", ""], ["instance_0", "t0"]]
    table = labels.to_dataframe()
    assert len(table) == 3 + 2 + 3
    assert table[table.kind == "predicted"]["individual"].eq("t0").all()


def test_video_index_and_windows_path_fallback(made_up):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # choosing a video explicitly: no warning
        labels = load_slp(made_up, video_index=1)
    assert labels.video_index == 1 and list(labels.frame_indices) == [0]
    assert labels.video_stored_path.endswith("two.mp4")
    assert labels.video_path == (made_up.parent / "two.mp4").resolve()
    assert labels.video_shape is None  # the file beside is no real video
    with pytest.raises(SleapLoadError, match="made_up.slp: video_index 2 out of range"):
        load_slp(made_up, video_index=2)


def test_embedded_frames_resolve_to_their_source_video(tmp_path):
    """A .pkg.slp carries its labeled frames; the video shown is the recorded source video."""
    import sleap_io as sio

    clip = require_shared("sleap_fly_clip", "clip.slp")
    full = sio.load_slp(str(clip))
    package = sio.Labels(full.labeled_frames[:2], videos=full.videos, skeletons=full.skeletons, tracks=full.tracks)
    path = tmp_path / "clip.pkg.slp"
    sio.save_slp(package, str(path), embed="user")
    labels = load_slp(path)
    assert labels.video_path == require_shared("sleap_fly_clip", "clip.mp4").resolve()
    assert labels.video_shape == (1500, 1024, 1024)
    assert list(labels.frame_indices) == [0, 1] and labels.xy.shape == (2, 2, 13, 2)


# -- bad input ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nothing\.slp: file not found"):
        load_slp(tmp_path / "nothing.slp")


def test_text_file_named_slp(tmp_path):
    fake = tmp_path / "notes.slp"
    fake.write_text("frame,x,y\n0,1,2\n")
    with pytest.raises(ValueError, match=r"notes\.slp: not a SLEAP labels file \(not an HDF5 file\)"):
        load_slp(fake)


def test_folder_and_foreign_hdf5(tmp_path):
    import h5py

    with pytest.raises(ValueError, match="is a folder"):
        load_slp(tmp_path)
    other = tmp_path / "other.slp"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(5)
    with pytest.raises(SleapLoadError, match=r"other\.slp: not a SLEAP labels file") as info:
        load_slp(other)
    assert isinstance(info.value, ValueError) and info.value.path == str(other)


def test_loading_imports_no_napari_or_qt(made_up):
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from napari_posekit.core.sleap import load_slp\n"
        f"load_slp({str(made_up)!r})\n"
        "bad = ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'superqt', 'vispy')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in bad)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"loading a .slp imported: {result.stdout.strip()}"
