"""3D points files (ours and DeepLabCut's _3D layout) and multi-camera views of 2D prediction files."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.views import (
    Points3D,
    Points3DError,
    ViewsError,
    read_points3d,
    read_views,
    write_points3d,
)

PARTS = ["nose", "ear_l", "ear_r"]


def sample_points(frames=6) -> Points3D:
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 100, (frames, 3, 3))
    pts[2, 1] = np.nan
    error = rng.uniform(0, 3, (frames, 3))
    error[2, 1] = np.nan
    cams = np.full((frames, 3), 3)
    cams[2, 1] = 0
    return Points3D(PARTS, np.arange(10, 10 + frames), pts, error, cams, scorer="posekit_3D")


def test_round_trip_in_deeplabcut_layout(tmp_path):
    points = sample_points()
    path = write_points3d(tmp_path / "session_3D.h5", points)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session_3D.csv", "session_3D.h5", "session_3D_quality.csv"]
    main = pd.read_hdf(path, "df_with_missing")
    assert list(main.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(main.columns[:3]) == [
        ("posekit_3D", "nose", "x"),
        ("posekit_3D", "nose", "y"),
        ("posekit_3D", "nose", "z"),
    ]
    assert list(main.index) == list(range(10, 16))
    quality = pd.read_hdf(path, "quality")
    assert sorted(set(quality.columns.get_level_values("coords"))) == ["cameras", "error"]
    from_csv = pd.read_csv(tmp_path / "session_3D.csv", header=[0, 1, 2], index_col=0)
    np.testing.assert_allclose(from_csv.to_numpy(), main.to_numpy())
    for source in (path, tmp_path / "session_3D.csv"):
        back = read_points3d(source)
        assert back.bodyparts == PARTS and back.scorer == "posekit_3D"
        np.testing.assert_array_equal(back.frames, points.frames)
        np.testing.assert_allclose(back.points, points.points, rtol=1e-12)
        np.testing.assert_allclose(back.error, points.error, rtol=1e-12)
        np.testing.assert_array_equal(back.cameras, points.cameras)


def test_points_without_quality_write_only_the_main_table(tmp_path):
    points = sample_points()
    points.error = points.cameras = None
    path = write_points3d(tmp_path / "p.h5", points)
    assert not (tmp_path / "p_quality.csv").exists()
    with pd.HDFStore(path, "r") as store:
        assert store.keys() == ["/df_with_missing"]
    back = read_points3d(path)
    assert back.error is None and back.cameras is None


def test_deeplabcut_3d_files_built_by_hand_open(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(4, 6))
    columns = pd.MultiIndex.from_product(
        [["DLC_3D"], ["snout", "tail"], ["x", "y", "z"]], names=["scorer", "bodyparts", "coords"]
    )
    df = pd.DataFrame(values, columns=columns, index=range(4))
    df.to_hdf(tmp_path / "video_DLC_3D.h5", key="df_with_missing", format="table", mode="w")
    df.to_csv(tmp_path / "video_DLC_3D.csv")
    for name in ("video_DLC_3D.h5", "video_DLC_3D.csv"):
        points = read_points3d(tmp_path / name)
        assert points.scorer == "DLC_3D" and points.bodyparts == ["snout", "tail"]
        np.testing.assert_allclose(points.points.reshape(4, 6), values)
        assert points.error is None
    multi = pd.MultiIndex.from_product(
        [["DLC_3D"], ["m1", "m2"], ["snout"], ["x", "y", "z"]], names=["scorer", "individuals", "bodyparts", "coords"]
    )
    pd.DataFrame(values, columns=multi).to_hdf(tmp_path / "ma.h5", key="df_with_missing", format="table", mode="w")
    with pytest.warns(UserWarning, match="2 individuals; reading the first, 'm1'"):
        points = read_points3d(tmp_path / "ma.h5")
    np.testing.assert_allclose(points.points[:, 0], values[:, :3])


def test_bad_3d_files_and_writes(tmp_path):
    points = sample_points()
    with pytest.raises(Points3DError, match="ends with .h5"):
        write_points3d(tmp_path / "p.csv", points)
    with pytest.raises(Points3DError, match="does not exist"):
        write_points3d(tmp_path / "missing" / "p.h5", points)
    bad = Points3D(PARTS, np.arange(3), np.zeros((3, 2, 3)))
    with pytest.raises(Points3DError, match=r"\(3, 3, 3\)"):
        write_points3d(tmp_path / "p.h5", bad)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        read_points3d(tmp_path / "nothing.h5")
    columns = pd.MultiIndex.from_product([["s"], ["a"], ["x", "y", "likelihood"]])
    pd.DataFrame(np.zeros((2, 3)), columns=columns).to_hdf(tmp_path / "2d.h5", key="df_with_missing")
    with pytest.raises(Points3DError, match="coords must be x, y, z"):
        read_points3d(tmp_path / "2d.h5")
    (tmp_path / "text.csv").write_text("a,b\n1,2\n")
    with pytest.raises(Points3DError, match="first row must start with 'scorer'"):
        read_points3d(tmp_path / "text.csv")


def write_camera(path, parts, frames, seed, individuals=None):
    rng = np.random.default_rng(seed)
    k = len(parts)
    xy = rng.uniform(0, 500, (len(frames), k, 2))
    like = rng.uniform(0.5, 1.0, (len(frames), k))
    write_predictions(path, xy, like, parts, "DLC_test", frames=np.asarray(frames), individual_of=individuals)
    return xy, like


def test_views_align_body_parts_and_read_the_project_skeleton(tmp_path):
    (tmp_path / "config.yaml").write_text("Task: t\nbodyparts: [nose, ear_l, ear_r]\nskeleton:\n- [nose, ear_l]\n")
    videos = tmp_path / "videos"
    videos.mkdir()
    xy_a, like_a = write_camera(videos / "a.h5", PARTS, range(5), 1)
    xy_b, like_b = write_camera(videos / "b.h5", PARTS[::-1], range(5), 2)
    views = read_views({"left": videos / "a.h5", "right": videos / "b.csv"})
    assert views.cameras == ["left", "right"] and views.bodyparts == PARTS
    assert views.points.shape == (2, 5, 3, 2) and views.likelihood.shape == (2, 5, 3)
    np.testing.assert_allclose(views.points[0], xy_a)
    np.testing.assert_allclose(views.likelihood[0], like_a)
    np.testing.assert_allclose(views.points[1], xy_b[:, ::-1])
    np.testing.assert_allclose(views.likelihood[1], like_b[:, ::-1])
    assert views.skeleton == [("nose", "ear_l")]
    override = read_views({"left": videos / "a.h5", "right": videos / "b.h5"}, skeleton=[("ear_l", "ear_r")])
    assert override.skeleton == [("ear_l", "ear_r")]
    with pytest.raises(ViewsError, match="unknown body parts tail"):
        read_views({"left": videos / "a.h5", "right": videos / "b.h5"}, skeleton=[("nose", "tail")])


def test_views_refuse_different_body_parts_and_frames(tmp_path):
    write_camera(tmp_path / "a.h5", PARTS, range(5), 1)
    write_camera(tmp_path / "b.h5", ["nose", "ear_l", "tail"], range(5), 2)
    write_camera(tmp_path / "c.h5", PARTS, range(2, 9), 3)
    with pytest.raises(
        ViewsError, match=r"body parts differ between cameras: top \(a.h5\).*side \(b.h5\) has nose, ear_l, tail"
    ):
        read_views({"top": tmp_path / "a.h5", "side": tmp_path / "b.h5"})
    with pytest.raises(ViewsError, match=r"top has 5 frames \(0-4\), side has 7 frames \(2-8\); trim to the 3 frames"):
        read_views({"top": tmp_path / "a.h5", "side": tmp_path / "c.h5"})
    trimmed = read_views({"top": tmp_path / "a.h5", "side": tmp_path / "c.h5"}, trim=True)
    np.testing.assert_array_equal(trimmed.frames, [2, 3, 4])
    with pytest.raises(ViewsError, match="no prediction files"):
        read_views({})
    with pytest.raises(FileNotFoundError):
        read_views({"top": tmp_path / "a.h5", "side": tmp_path / "none.h5"})
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ViewsError, match="expected a .h5/.csv prediction file"):
        read_views({"top": tmp_path / "a.h5", "side": tmp_path / "x.txt"})


def test_views_take_the_first_animal(tmp_path):
    parts = ["nose", "tail"] * 2
    write_camera(tmp_path / "a.h5", parts, range(3), 1, individuals=["m1", "m1", "m2", "m2"])
    write_camera(tmp_path / "b.h5", parts, range(3), 2, individuals=["m1", "m1", "m2", "m2"])
    with pytest.warns(UserWarning, match="2 individuals .* the first, 'm1'"):
        views = read_views({"a": tmp_path / "a.h5", "b": tmp_path / "b.h5"})
    assert views.bodyparts == ["nose", "tail"] and views.points.shape == (2, 3, 2, 2)
    tracks = np.random.default_rng(0).uniform(0, 100, (2, 2, 3, 4))  # 2 tracks, xy, 3 nodes, 4 frames
    with h5py.File(tmp_path / "c.analysis.h5", "w") as f:
        f["tracks"] = tracks
        f["node_names"] = [b"nose", b"tail", b"ear"]
        f["point_scores"] = np.full((2, 3, 4), 0.7)
        f["edge_names"] = [[b"nose", b"tail"]]
    with pytest.warns(UserWarning, match="2 tracks; triangulating the first"):
        views = read_views({"c": tmp_path / "c.analysis.h5", "d": tmp_path / "c.analysis.h5"})
    np.testing.assert_allclose(views.points[0], tracks[0].transpose(2, 1, 0))
    assert np.all(views.likelihood == 0.7) and views.skeleton == [("nose", "tail")]


def test_shared_session_slp_and_analysis_files_agree():
    folder = require_shared("sleap_anipose_minimal_session")
    cams = ["back", "mid"]
    slp = read_views({c: folder / c / f"minimal_{c}_proofread.slp" for c in cams})
    analysis = read_views({c: folder / c / f"minimal_{c}_proofread.analysis.h5" for c in cams})
    assert slp.points.shape == (2, 120, 15, 2) and slp.bodyparts == analysis.bodyparts
    np.testing.assert_array_equal(slp.points, analysis.points)
    np.testing.assert_allclose(slp.likelihood, analysis.likelihood, equal_nan=True)
    assert ("TTI", "Head") in slp.skeleton and len(slp.skeleton) == 14
