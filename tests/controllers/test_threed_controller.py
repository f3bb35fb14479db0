"""The 3D widget's controller without Qt: session files, the scene on one frame axis, flags, triangulation, tiling."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_multiview_controller import synthetic_rig

from conftest import drain
from napari_posekit.controllers.multiview import CameraMatchError
from napari_posekit.controllers.threed import (
    SessionFiles,
    build_scene,
    find_session_files,
    iter_load_scene,
    iter_triangulate_scene,
    points3d_from_triangulation,
    tile_offsets,
)
from napari_posekit.core.cameras import write_calibration
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.views import Points3D, read_points3d, write_points3d

BODYPARTS = ["nose", "ear", "tail"]
SKELETON = [("nose", "ear"), ("ear", "tail")]


def truth(n_frames: int = 10) -> np.ndarray:
    """``(n, J, 3)`` a small body walking along x."""
    t = np.arange(n_frames)[:, None, None]
    base = np.array([[0.0, 0.0, 0.0], [30.0, 10.0, 20.0], [-40.0, 20.0, -10.0]])
    return base[None] + t * np.array([3.0, 0.0, 0.0])


def fake_views(rig, points3d, frames):
    px = rig.project(points3d)
    return SimpleNamespace(
        cameras=rig.names,
        bodyparts=BODYPARTS,
        frames=np.asarray(frames),
        points=px,
        likelihood=np.ones(px.shape[:-1]),
        skeleton=SKELETON,
    )


def test_scene_flags_a_planted_bad_prediction():
    rig = synthetic_rig()
    xyz = truth()
    views = fake_views(rig, xyz, range(10))
    views.points[1, 3, 1] += (40.0, 0.0)  # mid, frame 3, ear
    points = SimpleNamespace(bodyparts=BODYPARTS[::-1], frames=np.arange(10), points=xyz[:, ::-1], error=None)
    scene = build_scene(rig, {}, views, points)
    assert scene.n_frames == 10 and scene.bodyparts == BODYPARTS
    errors = scene.camera_errors()
    assert errors.shape == (3, 10, 3)
    np.testing.assert_allclose(errors[1, 3, 1], 40.0, atol=1e-6)
    flag3d, flag2d = scene.flags(10.0)
    assert np.argwhere(flag2d).tolist() == [[1, 3, 1]]
    assert np.argwhere(flag3d).tolist() == [[3, 1]]  # mean over three cameras: 13.3 px
    assert not scene.flags(15.0)[0].any()
    text = scene.summary(10.0)
    assert text.startswith("1 of 30 3D points above 10 px") and "mid 1" in text and "back 0" in text


def test_scene_on_the_frames_of_a_partial_file():
    rig = synthetic_rig()
    xyz = truth(6)
    views = fake_views(rig, xyz, [4, 5, 6, 7, 8, 9])
    scene = build_scene(rig, {}, views, None)
    assert scene.n_frames == 10 and scene.points3d is None
    assert np.isnan(scene.points2d[:, :4]).all() and np.isfinite(scene.points2d[:, 4:]).all()
    assert scene.summary(5.0).startswith("No 3D points")


def test_3d_file_for_other_body_parts_is_refused():
    rig = synthetic_rig()
    points = SimpleNamespace(bodyparts=["nose"], frames=np.arange(2), points=np.zeros((2, 1, 3)), error=None)
    with pytest.raises(ValueError, match="the 3D file has no body part ear, tail"):
        build_scene(rig, {}, fake_views(rig, truth(2), range(2)), points)


def test_triangulating_a_scene_leaves_out_the_bad_camera(tmp_path):
    rig = synthetic_rig()
    xyz = truth()
    views = fake_views(rig, xyz, range(10))
    views.points[1, 3, 1] += (40.0, 0.0)
    scene = build_scene(rig, {}, views, None)
    _events, result = drain(iter_triangulate_scene(scene, threshold=5.0))
    np.testing.assert_allclose(result.points3d, xyz, atol=1e-6)
    assert result.error.max() < 1e-3 and not result.used[1, 3, 1]
    scene.set_points3d(result.points3d, result.error)
    assert not scene.flags(10.0)[0].any() and scene.flags(10.0)[1][1, 3, 1]
    written = write_points3d(tmp_path / "points3d.h5", points3d_from_triangulation(scene, result))
    back = read_points3d(written)
    np.testing.assert_allclose(back.points, xyz, atol=1e-6)
    assert back.bodyparts == BODYPARTS and back.error is not None


def test_triangulation_stops_when_asked():
    rig = synthetic_rig()
    scene = build_scene(rig, {}, fake_views(rig, truth(), range(10)), None)
    _events, result = drain(iter_triangulate_scene(scene, lambda: True))
    assert result is None
    with pytest.raises(ValueError, match="2D predictions"):
        drain(iter_triangulate_scene(build_scene(rig, {}, None, Points3D(BODYPARTS, np.arange(2), truth(2)))))


def write_session(folder, rig, xyz, *, videos=True) -> None:
    """A session folder: calibration, per camera a tiny video and a DeepLabCut prediction file, a 3D file."""
    from napari_posekit.core.video_write import write_video

    write_calibration(folder / "calibration.toml", rig)
    px = rig.project(xyz)
    for c, cam in enumerate(rig.names):
        (folder / cam).mkdir()
        w, h = rig.cameras[c].size
        if videos:
            frames = [np.full((h, w, 3), 40 * c + 10 * i % 200, np.uint8) for i in range(len(xyz))]
            write_video(frames, folder / cam / f"s_{cam}.mp4", fps=10)
        write_predictions(folder / cam / f"s_{cam}DLC.h5", px[c], np.ones(px.shape[1:3]), BODYPARTS, "DLC")
    write_points3d(folder / "points3d.h5", Points3D(BODYPARTS, np.arange(len(xyz)), xyz))


def test_find_session_files_and_load_the_scene(tmp_path):
    rig = synthetic_rig()
    write_session(tmp_path, rig, truth(5))
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "calib_back.mp4").write_bytes(b"not a session video")
    (tmp_path / "points3d_anipose.h5").write_bytes(b"not readable")
    files = find_session_files(tmp_path / "calibration.toml")
    assert files.cameras == ["back", "mid", "top"]
    assert files.videos["mid"] == tmp_path / "mid" / "s_mid.mp4"
    assert files.predictions["top"] == tmp_path / "top" / "s_topDLC.h5"  # the .h5 before its .csv
    assert files.points3d == tmp_path / "points3d.h5"
    files.cameras = ["back", "top"]
    events, scene = drain(iter_load_scene(files))
    assert events == sorted(events) and 0 < events[-1] <= 1
    assert scene.cameras == ["back", "top"] and scene.n_frames == 5 and scene.skeleton == []
    assert set(scene.videos) == {"back", "top"} and len(scene.videos["top"]) == 5
    np.testing.assert_allclose(scene.camera_errors(), 0.0, atol=1e-4)
    assert scene.sizes() == [(320, 240), (320, 240)]


def test_session_files_with_two_candidates_for_one_camera(tmp_path):
    rig = synthetic_rig()
    write_session(tmp_path, rig, truth(2), videos=False)
    (tmp_path / "back" / "other_back.h5").write_bytes(b"")
    with pytest.raises(CameraMatchError, match="two prediction files for camera 'back'"):
        find_session_files(tmp_path / "calibration.toml")


def test_loading_needs_every_used_camera_or_a_3d_file(tmp_path):
    rig = synthetic_rig()
    write_session(tmp_path, rig, truth(2), videos=False)
    files = find_session_files(tmp_path / "calibration.toml")
    files.predictions["mid"] = None
    with pytest.raises(ValueError, match="no 2D predictions for camera mid"):
        drain(iter_load_scene(files))
    empty = SessionFiles(tmp_path / "calibration.toml", ["back", "mid"])
    with pytest.raises(ValueError, match="nothing to show"):
        drain(iter_load_scene(empty))


def test_tiles_do_not_overlap():
    sizes = [(320, 240), (320, 240), (200, 300), (320, 240)]
    offsets = tile_offsets(sizes)
    assert len(offsets) == 4 and offsets[0] == (0.0, 0.0)
    boxes = [(dy, dx, dy + 300, dx + 320) for dy, dx in offsets]
    for i in range(4):
        for j in range(i + 1, 4):
            a, b = boxes[i], boxes[j]
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    assert {dy for dy, _ in offsets} == {0.0, offsets[2][0]} and offsets[2][1] == 0.0  # two rows of two


def test_a_3d_file_alone_is_shown_and_its_error_unknown(tmp_path):
    rig = synthetic_rig()
    write_session(tmp_path, rig, truth(3), videos=False)
    files = find_session_files(tmp_path / "calibration.toml")
    files.predictions = {}
    _events, scene = drain(iter_load_scene(files))
    assert scene.points2d is None and scene.camera_errors() is None
    np.testing.assert_allclose(scene.points3d, truth(3))
    assert np.isnan(scene.error3d).all() and not scene.flags(0.0)[0].any()
    assert scene.summary(10.0) == "0 of 9 3D points above 10 px"
    np.testing.assert_allclose(scene.reprojections(), rig.project(truth(3)))
