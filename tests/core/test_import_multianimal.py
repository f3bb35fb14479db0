"""``posekit import`` of labels of several animals: a DeepLabCut multi-animal project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from napari_posekit.cli import main
from napari_posekit.core.config import read_config
from napari_posekit.core.multianimal import read_multianimal_labels
from napari_posekit.core.sleap import load_slp
from napari_posekit.core.sleap_import import LabelsImportError, import_labels
from napari_posekit.core.video_write import write_video

NODES = ["nose", "head", "tail"]


def _video(path: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    return write_video([rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(n)], path, fps=10)


def _animal(k: int, f: int) -> np.ndarray:
    return np.array([[10.0 + 20 * k, 5.0 + f], [12.0 + 20 * k, 15.0 + f], [14.0 + 20 * k, 25.5 + f]])


def _slp(path: Path, frames: dict, tracks=()) -> Path:
    """``frames``: frame -> list of (animal number, track name or None); user instances."""
    import sleap_io as sio

    skeleton = sio.Skeleton(list(NODES), edges=[("nose", "head"), ("head", "tail")])
    video = sio.Video(filename=str(path.with_suffix(".mp4")), open_backend=False)
    objects = [sio.Track(name) for name in tracks]
    by_name = {}
    for track in objects:
        by_name.setdefault(track.name, track)
    labeled = []
    for f, animals in frames.items():
        made = []
        for k, track in animals:
            made.append(sio.Instance.from_numpy(_animal(k, f), skeleton=skeleton, track=by_name.get(track)))
        labeled.append(sio.LabeledFrame(video=video, frame_idx=f, instances=made))
    if len(objects) > len(by_name):  # duplicate names: give the second track of a name its instances
        second = objects[-1]
        labeled[-1].instances[-1].track = second
    sio.save_slp(sio.Labels(labeled, videos=[video], skeletons=[skeleton], tracks=objects), str(path))
    return path


def test_untracked_instances_by_order_with_a_warning(tmp_path, capsys):
    _video(tmp_path / "v.mp4")
    slp = _slp(tmp_path / "v.slp", {1: [(0, None), (1, None)], 4: [(1, None)], 6: [(0, None), (1, None)]})
    assert main(["import", str(slp), str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "no tracks" in captured.err and "individual1, individual2" in captured.err
    assert "2 individuals (individual1, individual2)" in captured.out
    config = read_config(tmp_path / "p")
    assert config["multianimalproject"] is True
    assert config["individuals"] == ["individual1", "individual2"]
    assert config["multianimalbodyparts"] == NODES and config["uniquebodyparts"] == []
    assert config["skeleton"] == [["nose", "head"], ["head", "tail"]]
    labels = read_multianimal_labels(tmp_path / "p")
    assert labels.images == [f"labeled-data/v/img{f:02d}.png" for f in (1, 4, 6)]
    np.testing.assert_array_equal(labels.xy[0, 1], _animal(1, 1))
    np.testing.assert_array_equal(labels.xy[1, 0], _animal(1, 4))  # one animal on the frame: the first individual
    assert np.isnan(labels.xy[1, 1]).all()


def test_tracks_become_individuals_and_absent_animals_are_fine(tmp_path):
    _video(tmp_path / "v.mp4")
    frames = {0: [(1, "male"), (0, "female")], 3: [(1, "male")], 5: [(0, "female"), (1, "male")]}
    slp = _slp(tmp_path / "v.slp", frames, tracks=("female", "male"))
    result = import_labels([slp], tmp_path / "p", scorer="anna")
    assert result.individuals == ["female", "male"] and result.warnings == []
    labels = read_multianimal_labels(tmp_path / "p")
    np.testing.assert_array_equal(labels.xy[0, 0], _animal(0, 0))  # by track, not by order on the frame
    np.testing.assert_array_equal(labels.xy[0, 1], _animal(1, 0))
    assert np.isnan(labels.xy[1, 0]).all()
    df = pd.read_hdf(tmp_path / "p" / "labeled-data" / "v" / "CollectedData_anna.h5")
    assert list(df.columns.names) == ["scorer", "individuals", "bodyparts", "coords"]


def test_frame_choice(tmp_path):
    _video(tmp_path / "v.mp4")
    frames = {f: [(0, "a"), (1, "b")] for f in range(10)}
    slp = _slp(tmp_path / "v.slp", frames, tracks=("a", "b"))
    result = import_labels([slp], tmp_path / "p", every=4)
    assert result.videos[0].frames.tolist() == [0, 4, 8] and result.videos[0].unselected_frames == 7
    result = import_labels([slp], tmp_path / "q", frames=[2, 3, 11])
    assert result.videos[0].frames.tolist() == [2, 3]
    with pytest.raises(LabelsImportError, match="every must be"):
        import_labels([slp], tmp_path / "r", every=0)


@pytest.mark.parametrize(
    ("frames", "tracks", "message"),
    [
        ({1: [(0, "a"), (1, "a")]}, ("a", "a"), r"v\.slp: several tracks are named 'a'"),
        ({1: [(0, "a")], 2: [(0, "a"), (1, None)]}, ("a",), r"v\.slp: instances without a track on frames 2"),
    ],
)
def test_refused_with_a_reason(tmp_path, frames, tracks, message):
    _video(tmp_path / "v.mp4")
    slp = _slp(tmp_path / "v.slp", frames, tracks=tracks)
    with pytest.raises(LabelsImportError, match=message):
        import_labels([slp], tmp_path / "p")
    assert not (tmp_path / "p").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p.")]


def test_one_track_twice_on_a_frame(tmp_path):
    import sleap_io as sio

    _video(tmp_path / "v.mp4")
    skeleton = sio.Skeleton(list(NODES))
    video = sio.Video(filename=str(tmp_path / "v.mp4"), open_backend=False)
    a, b = sio.Track("a"), sio.Track("b")
    frames = [
        sio.LabeledFrame(video=video, frame_idx=0, instances=[sio.Instance.from_numpy(_animal(0, 0), skeleton, b)]),
        sio.LabeledFrame(
            video=video,
            frame_idx=2,
            instances=[sio.Instance.from_numpy(_animal(k, 2), skeleton, a) for k in range(2)],
        ),
    ]
    sio.save_slp(sio.Labels(frames, videos=[video], skeletons=[skeleton], tracks=[a, b]), str(tmp_path / "v.slp"))
    with pytest.raises(LabelsImportError, match=r"two instances of track 'a' on frames 2"):
        import_labels([tmp_path / "v.slp"], tmp_path / "p")


def test_fly_clip_every_50th_frame(tmp_path, capsys):
    folder = require_shared("sleap_fly_clip")
    assert main(["import", str(folder / "clip.slp"), str(tmp_path / "flies"), "--every", "50"]) == 0
    out = capsys.readouterr().out
    assert "2 individuals (female, male), 13 body parts, 30 frames" in out
    config = read_config(tmp_path / "flies")
    assert config["multianimalproject"] is True and config["individuals"] == ["female", "male"]
    sleap = load_slp(folder / "clip.slp")
    assert config["multianimalbodyparts"] == sleap.node_names
    assert [tuple(e) for e in config["skeleton"]] == sleap.edges
    labels = read_multianimal_labels(tmp_path / "flies")
    assert labels.images[:2] == ["labeled-data/clip/img0000.png", "labeled-data/clip/img0050.png"]
    assert all((tmp_path / "flies" / image).is_file() for image in labels.images)
    expected = np.full((30, 2, 13, 2), np.nan)
    rows = np.arange(0, 1500, 50)
    for i, name in enumerate(["female", "male"]):
        track = sleap.track_names.index(name)
        f, slot = np.nonzero(sleap.instance_track[rows] == track)
        expected[f, i] = sleap.xy[rows][f, slot]
    np.testing.assert_array_equal(labels.xy, expected)
