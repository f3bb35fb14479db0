"""Tracks of several animals: DeepLabCut multi-animal tables and SLEAP files, both ways."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from napari_posekit.core.multianimal import (
    Tracks,
    TracksFileError,
    check_individuals,
    read_tracks,
    write_tracks,
)
from napari_posekit.core.predictions import write_predictions


def _tracks(t=6, individuals=("female", "male"), parts=("head", "thorax", "tail"), unique=(), identity=True, seed=0):
    rng = np.random.default_rng(seed)
    poses = np.empty((t, len(individuals), len(parts), 3), np.float32)
    poses[..., :2] = rng.uniform(0, 500, poses[..., :2].shape)
    poses[..., 2] = rng.uniform(0.1, 1.0, poses[..., 2].shape)
    poses[1, 0] = np.nan  # the first animal is absent from frame 1
    poses[2, 1, 1] = np.nan  # one part of the second animal not found
    unique_poses = None
    if unique:
        unique_poses = rng.uniform(0, 500, (t, len(unique), 3)).astype(np.float32)
    return Tracks(
        poses=poses,
        individuals=list(individuals),
        bodyparts=list(parts),
        frames=np.arange(t) * 2 + 10,
        scorer="DLC_resnet50_fliesOct30shuffle1_1000",
        identity=rng.uniform(0, 1, (t, len(individuals))).round(3) if identity else None,
        uniquebodyparts=list(unique),
        unique=unique_poses,
        skeleton=[(parts[0], parts[1])],
        video="/videos/flies.mp4",
    )


def _assert_same(a: Tracks, b: Tracks, *, identity=True):
    assert a.individuals == b.individuals
    assert a.bodyparts == b.bodyparts
    assert a.uniquebodyparts == b.uniquebodyparts
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_allclose(a.poses, b.poses, rtol=1e-6, equal_nan=True)
    if a.unique is not None or b.unique is not None:
        np.testing.assert_allclose(a.unique, b.unique, rtol=1e-6, equal_nan=True)
    if identity:
        np.testing.assert_allclose(a.identity, b.identity, atol=1e-4, equal_nan=True)


def test_check_individuals():
    assert check_individuals(["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="duplicate individual names: 'a'"):
        check_individuals(["a", "b", "a"])
    with pytest.raises(ValueError, match="must not be empty"):
        check_individuals(["a", " "])
    with pytest.raises(ValueError, match="duplicate"):
        Tracks(np.zeros((1, 2, 1, 3)), ["x", "x"], ["head"], [0])


def test_copy_is_deep():
    tracks = _tracks()
    other = tracks.copy()
    other.poses[0, 0, 0, 0] = -1
    other.identity[0, 0] = -1
    other.individuals[0] = "changed"
    assert tracks.poses[0, 0, 0, 0] != -1 and tracks.identity[0, 0] != -1 and tracks.individuals[0] == "female"
    assert other.n_frames == 6 and other.n_individuals == 2


def test_h5_round_trip_in_deeplabcut_layout(tmp_path):
    tracks = _tracks(unique=("arena_corner",))
    h5 = tmp_path / "fliesDLC_resnet50_fliesOct30shuffle1_1000_el.h5"
    written = write_tracks(h5, tracks)
    assert written[0] == h5 and all(p.is_file() for p in written)
    assert h5.with_suffix(".csv") in written

    df = pd.read_hdf(h5, key="df_with_missing")
    assert list(df.columns.names) == ["scorer", "individuals", "bodyparts", "coords"]
    assert list(dict.fromkeys(df.columns.get_level_values("individuals"))) == ["female", "male", "single"]
    assert list(dict.fromkeys(df.columns.get_level_values("coords"))) == ["x", "y", "likelihood"]
    assert ("DLC_resnet50_fliesOct30shuffle1_1000", "single", "arena_corner", "x") in df.columns
    assert df.columns[:3].tolist() == [
        ("DLC_resnet50_fliesOct30shuffle1_1000", "female", "head", c) for c in ("x", "y", "likelihood")
    ]
    assert df.index.tolist() == tracks.frames.tolist()

    back = read_tracks(h5)
    _assert_same(tracks, back)
    assert back.scorer == tracks.scorer
    assert back.skeleton == tracks.skeleton
    assert back.video == tracks.video
    _assert_same(tracks, read_tracks(h5.with_suffix(".csv")))


def test_movement_reads_what_is_written(tmp_path):
    load = pytest.importorskip("movement.io.load_poses")
    tracks = _tracks(identity=False)
    h5 = tmp_path / "fliesDLC_resnet50_fliesOct30shuffle1_1000_tr.h5"
    write_tracks(h5, tracks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load.from_dlc_file(h5)
        from_csv = load.from_dlc_file(h5.with_suffix(".csv"))
        write_tracks(tmp_path / "flies.slp", tracks)
        from_slp = load.from_sleap_file(tmp_path / "flies.slp")
    assert list(ds.individuals.values) == ["female", "male"]
    assert list(ds.keypoints.values) == ["head", "thorax", "tail"]
    for data in (ds, from_csv):
        position = data.position.transpose("time", "individuals", "keypoints", "space").values
        np.testing.assert_allclose(position, tracks.poses[..., :2], rtol=1e-6, equal_nan=True)
    assert list(from_slp.individuals.values) == ["female", "male"]
    position = from_slp.position.transpose("time", "individuals", "keypoints", "space").values
    np.testing.assert_allclose(position[tracks.frames], tracks.poses[..., :2], rtol=1e-6, equal_nan=True)


def test_single_animal_table_gives_one_individual(tmp_path):
    xy = np.arange(24, dtype=float).reshape(4, 3, 2)
    h5 = write_predictions(tmp_path / "mouseDLC_net.h5", xy, np.full((4, 3), 0.9), ["a", "b", "c"], "DLC_net")
    tracks = read_tracks(h5)
    assert tracks.individuals == ["individual1"]
    assert tracks.poses.shape == (4, 1, 3, 3)
    np.testing.assert_allclose(tracks.poses[:, 0, :, :2], xy)
    assert tracks.identity is None


def test_bad_tables(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(TracksFileError, match="broken.h5"):
        read_tracks(bad)
    with pytest.raises(FileNotFoundError):
        read_tracks(tmp_path / "missing.h5")
    differing = tmp_path / "differDLC_net.h5"
    write_predictions(
        differing, np.zeros((2, 3, 2)), np.ones((2, 3)), ["a", "b", "a"], "DLC_net", individual_of=["x", "x", "y"]
    )
    with pytest.raises(TracksFileError, match="same body parts"):
        read_tracks(differing)
    with pytest.raises(TracksFileError, match="single"):
        write_tracks(tmp_path / "outDLC_net.h5", _tracks(individuals=("single", "male")))


def test_identity_sidecar_is_json(tmp_path):
    tracks = _tracks()
    h5 = tmp_path / "fliesDLC_net.h5"
    write_tracks(h5, tracks)
    meta = json.loads((tmp_path / "fliesDLC_net_meta.json").read_text())
    assert meta["identity_confidence"]["individuals"] == ["female", "male"]
    assert len(meta["identity_confidence"]["values"]) == tracks.n_frames


def test_slp_round_trip(tmp_path):
    import sleap_io as sio

    tracks = _tracks(identity=False)
    slp = tmp_path / "flies.slp"
    assert write_tracks(slp, tracks) == [slp]
    back = read_tracks(slp)
    assert back.individuals == tracks.individuals
    assert back.skeleton == tracks.skeleton
    np.testing.assert_array_equal(back.frames, tracks.frames)
    np.testing.assert_allclose(back.poses, tracks.poses, rtol=1e-6, equal_nan=True)

    labels = sio.load_slp(str(slp), open_videos=False)
    assert [t.name for t in labels.tracks] == ["female", "male"]
    assert labels.skeletons[0].node_names == ["head", "thorax", "tail"]
    assert len(labels.skeletons[0].edges) == 1
    lf = labels.labeled_frames[1]
    assert len(lf.instances) == 1 and lf.instances[0].track.name == "male"  # the absent female has no instance
    inst = labels.labeled_frames[0].instances[0]
    assert isinstance(inst, sio.PredictedInstance)
    np.testing.assert_allclose(inst.points["score"], tracks.poses[0, 0, :, 2], rtol=1e-6)
    assert inst.score == pytest.approx(float(np.mean(tracks.poses[0, 0, :, 2])), rel=1e-5)


def test_slp_keeps_the_identity_confidence(tmp_path):
    tracks = _tracks()
    write_tracks(tmp_path / "flies.slp", tracks)
    back = read_tracks(tmp_path / "flies.slp")
    expected = np.where(np.isnan(tracks.poses[..., 0]).all(axis=2), np.nan, tracks.identity)  # absent: unknown
    np.testing.assert_allclose(back.identity, expected, rtol=1e-6, equal_nan=True)


def test_slp_needs_the_video(tmp_path):
    tracks = _tracks()
    tracks.video = None
    with pytest.raises(TracksFileError, match="needs the video"):
        write_tracks(tmp_path / "flies.slp", tracks)
    assert not (tmp_path / "flies.slp").exists()
    write_tracks(tmp_path / "flies.slp", tracks, video="/videos/other.mp4")
    assert read_tracks(tmp_path / "flies.slp").video.endswith("other.mp4")


def test_untracked_slp_by_instance_order(tmp_path):
    import sleap_io as sio

    skeleton = sio.Skeleton(nodes=["head", "tail"], edges=[["head", "tail"]])
    video = sio.Video(filename=str(tmp_path / "v.mp4"), open_backend=False)
    frames = []
    for f in range(3):
        instances = [
            sio.Instance.from_numpy(np.array([[10.0 + f, 20.0], [30.0, 40.0]]) + 100 * k, skeleton=skeleton)
            for k in range(2 if f != 1 else 1)
        ]
        frames.append(sio.LabeledFrame(video=video, frame_idx=f * 5, instances=instances))
    sio.save_slp(sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton]), str(tmp_path / "u.slp"))
    with pytest.warns(UserWarning, match="no tracks"):
        tracks = read_tracks(tmp_path / "u.slp")
    assert tracks.individuals == ["individual1", "individual2"]
    assert tracks.poses.shape == (3, 2, 2, 3)
    np.testing.assert_array_equal(tracks.frames, [0, 5, 10])
    assert tracks.poses[2, 1, 0, 0] == 112.0
    assert np.isnan(tracks.poses[1, 1]).all()
    assert (tracks.poses[0, :, :, 2] == 1.0).all()


def test_centered_pair_predictions_27_tracks():
    folder = require_shared("sleap_centered_pair_predictions")
    tracks = read_tracks(folder / "centered_pair_predictions.slp")
    assert tracks.poses.shape == (1100, 27, 24, 3)
    assert tracks.identity is None  # SLEAP's tracking scores are not an identity confidence
    assert len(tracks.individuals) == 27
    assert tracks.video is not None and tracks.video.endswith("centered_pair_low_quality.mp4")
    present = np.isfinite(tracks.poses[..., 0]).any(axis=2)
    counts = np.bincount(present.sum(axis=1), minlength=6)
    assert counts[2] == 1034 and counts[:2].sum() == 0  # two flies, and a few false detections on 66 frames
    assert np.nanmax(tracks.poses[..., 2]) <= 1.5


def test_fly_clip():
    folder = require_shared("sleap_fly_clip")
    tracks = read_tracks(folder / "clip.slp")
    assert tracks.poses.shape == (1500, 2, 13, 3)
    assert tracks.individuals == ["female", "male"]
    assert tracks.bodyparts[:3] == ["head", "thorax", "abdomen"]
    assert len(tracks.skeleton) > 0
    np.testing.assert_array_equal(tracks.frames, np.arange(1500))
    assert np.isfinite(tracks.poses[:, :, 1, 0]).all()  # every thorax labeled


# --------------------------------------------------------------------------------------
# Labels of multi-animal projects
# --------------------------------------------------------------------------------------


def _ma_project(tmp_path, individuals=("mouse1", "mouse2"), parts=("nose", "tail"), unique=("corner",)):
    from napari_posekit.core.config import multianimal_config, write_config

    root = tmp_path / "proj"
    for video in ("v1", "v2"):
        (root / "labeled-data" / video).mkdir(parents=True)
    config = {"Task": "t", "scorer": "anna", "date": "Dec2", "multianimalproject": False, "project_path": str(root)}
    config = multianimal_config(config, list(individuals), list(parts), list(unique))
    write_config(root / "config.yaml", config)
    return root


def _ma_labels(individuals=("mouse1", "mouse2"), parts=("nose", "tail"), unique=("corner",)):
    from napari_posekit.core.multianimal import MultiAnimalLabels

    images = ["labeled-data/v1/img000.png", "labeled-data/v1/img010.png", "labeled-data/v2/img005.png"]
    xy = np.arange(len(images) * len(individuals) * len(parts) * 2, dtype=float).reshape(3, len(individuals), -1, 2)
    xy[1, 1] = np.nan  # mouse2 absent from the second image
    unique_xy = np.full((3, len(unique), 2), 7.5)
    return MultiAnimalLabels(images, list(individuals), list(parts), list(unique), xy, unique_xy, "anna")


def test_fresh_multianimal_config_has_deeplabcut_keys(tmp_path):
    from napari_posekit.core.config import read_config

    root = _ma_project(tmp_path)
    text = (root / "config.yaml").read_text()
    config = read_config(root)
    assert config["multianimalproject"] is True and config["identity"] is False
    assert config["individuals"] == ["mouse1", "mouse2"]
    assert config["multianimalbodyparts"] == ["nose", "tail"] and config["uniquebodyparts"] == ["corner"]
    assert config["bodyparts"] == "MULTI!" and config.bodyparts == ["nose", "tail", "corner"]
    keys = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert keys.index("individuals") < keys.index("uniquebodyparts") < keys.index("multianimalbodyparts")
    assert keys.index("multianimalbodyparts") < keys.index("bodyparts")


def test_multianimal_labels_round_trip(tmp_path):
    from napari_posekit.core.multianimal import read_multianimal_labels, write_multianimal_labels

    root = _ma_project(tmp_path)
    labels = _ma_labels()
    written = write_multianimal_labels(root, labels)
    assert {p.name for p in written} == {"CollectedData_anna.h5", "CollectedData_anna.csv"}
    assert len(written) == 4
    df = pd.read_hdf(root / "labeled-data" / "v1" / "CollectedData_anna.h5", key="df_with_missing")
    assert list(df.columns.names) == ["scorer", "individuals", "bodyparts", "coords"]
    assert list(dict.fromkeys(df.columns.get_level_values("individuals"))) == ["mouse1", "mouse2", "single"]
    assert df.index.tolist() == [("labeled-data", "v1", "img000.png"), ("labeled-data", "v1", "img010.png")]
    back = read_multianimal_labels(root / "config.yaml")
    assert back.images == labels.images and back.individuals == labels.individuals
    np.testing.assert_array_equal(back.xy, labels.xy)
    np.testing.assert_array_equal(back.unique_xy, labels.unique_xy)
    assert back.scorer == "anna"


def test_multianimal_labels_missing_columns_are_unlabeled(tmp_path):
    from napari_posekit.core.multianimal import read_multianimal_labels

    root = _ma_project(tmp_path, individuals=("mouse1", "mouse2", "mouse3"))
    cols = pd.MultiIndex.from_product(
        [["anna"], ["mouse1"], ["nose", "tail"], ["x", "y"]], names=["scorer", "individuals", "bodyparts", "coords"]
    )
    df = pd.DataFrame([[1.0, 2, 3, 4]], index=["labeled-data/v1/img001.png"], columns=cols)
    df.to_csv(root / "labeled-data" / "v1" / "CollectedData_anna.csv")
    labels = read_multianimal_labels(root)
    assert labels.xy.shape == (1, 3, 2, 2) and labels.unique_xy.shape == (1, 1, 2)
    np.testing.assert_array_equal(labels.xy[0, 0], [[1, 2], [3, 4]])
    assert np.isnan(labels.xy[0, 1:]).all() and np.isnan(labels.unique_xy).all()


def test_multianimal_labels_bad_input(tmp_path):
    from napari_posekit.core.config import read_config, write_config
    from napari_posekit.core.multianimal import read_multianimal_labels, write_multianimal_labels
    from napari_posekit.core.project import ProjectError

    root = _ma_project(tmp_path)
    write_multianimal_labels(root, _ma_labels())
    h5 = root / "labeled-data" / "v2" / "CollectedData_anna.h5"
    df = pd.read_hdf(h5)
    df.columns = df.columns.set_levels(["mouse1", "rat", "single"], level="individuals")
    df.to_hdf(h5, key="df_with_missing", mode="w")
    with pytest.raises(ProjectError, match=r"CollectedData_anna.h5.*\['rat'\] are not in config.yaml"):
        read_multianimal_labels(root)
    df.columns = df.columns.set_levels(["mouse1", "mouse2", "single"], level="individuals")
    df.columns = df.columns.set_levels(["corner", "nose", "paw"], level="bodyparts")
    df.to_hdf(h5, key="df_with_missing", mode="w")
    with pytest.raises(ProjectError, match="not in config.yaml's multianimalbodyparts"):
        read_multianimal_labels(root)

    config = read_config(root)
    config["individuals"] = ["mouse1", "mouse1"]
    write_config(root, config)
    with pytest.raises(ProjectError, match="config.yaml: individuals: duplicate individual names: 'mouse1'"):
        read_multianimal_labels(root)
    with pytest.raises(ValueError, match="duplicate individual names"):
        _ma_labels(individuals=("a", "a"))
    config["individuals"] = ["mouse1", "mouse2"]
    config["multianimalproject"] = False
    write_config(root, config)
    with pytest.raises(ProjectError, match="not a multi-animal project"):
        read_multianimal_labels(root)


def test_write_multianimal_labels_refuses_other_individuals(tmp_path):
    from napari_posekit.core.multianimal import write_multianimal_labels
    from napari_posekit.core.project import ProjectError

    root = _ma_project(tmp_path)
    with pytest.raises(ProjectError, match="do not fit config.yaml"):
        write_multianimal_labels(root, _ma_labels(individuals=("mouse1", "cat")))
    assert not any((root / "labeled-data").rglob("CollectedData*"))
