"""The Calibration widget's controller: the form, the report rows and the geometry of the 2D and 3D layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_posekit.controllers import calibration as ctl
from napari_posekit.core.boards import Board
from napari_posekit.core.calibration import CalibrationResult, CameraReport, ImageDetection
from napari_posekit.core.cameras import CalibrationError, Camera, Rig, rotation_vector

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _camera(name: str, centre, rot: np.ndarray, dist=(0, 0, 0, 0, 0)) -> Camera:
    centre = np.asarray(centre, dtype=float)
    return Camera(name, (640, 480), K, dist, rotation_vector(rot), -rot @ centre)


def _pose(shift, deg: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = _rot_y(deg)
    pose[:3, 3] = shift
    return pose


@pytest.fixture
def result() -> CalibrationResult:
    """Two cameras 200 apart looking at a 5x4 checkerboard 400 away; camera b's frame 2 is rejected."""
    board = Board("checkerboard", 5, 4, 20.0)
    rig = Rig([_camera("a", (0, 0, 0), np.eye(3)), _camera("b", (200, 0, 0), _rot_y(-25))])
    poses = {0: _pose((-40, -30, 400)), 1: _pose((-20, -30, 420), 15), 2: _pose((0, -20, 380), -10)}
    objects = board.object_points()
    detections = []
    for cam in rig.cameras:
        for frame, pose in poses.items():
            ids = np.arange(board.n_corners) if frame != 1 else np.arange(0, board.n_corners, 2)
            corners = cam.project(ctl.board_world_points(objects[ids], pose))
            rejected = cam.name == "b" and frame == 2
            detections.append(
                ImageDetection(
                    cam.name,
                    f"{cam.name}-{frame}.png",
                    frame,
                    corners,
                    ids,
                    not rejected,
                    "too few corners" if rejected else "",
                    math.nan if rejected else 0.1,
                )
            )
    detections.append(
        ImageDetection("a", "a-3.png", 3, np.zeros((0, 2)), np.zeros(0, int), False, "no board found", math.nan)
    )
    reports = [
        CameraReport("a", (640, 480), 4, 3, 3, 0, 0.12, 0.3),
        CameraReport("b", (640, 480), 3, 3, 2, 1, 0.25, math.nan),
    ]
    return CalibrationResult(rig, board, detections, poses, reports)


# --------------------------------------------------------------------------- the form
def _session(tmp_path):
    (tmp_path / "board.toml").write_text("board_x = 5\nboard_y = 4\nsquare_length = 20.0\n")
    (tmp_path / "bad.toml").write_text("board_x = 2\nboard_y = 4\nsquare_length = 20.0\n")
    for cam in ("left", "right"):
        (tmp_path / cam / "calibration_images").mkdir(parents=True)
        (tmp_path / cam / "calibration_images" / f"{cam}-0.png").write_bytes(b"")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "top-calibration.mp4").write_bytes(b"")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("")
    return tmp_path


def test_a_good_form_becomes_a_plan_with_the_default_output(tmp_path):
    s = _session(tmp_path)
    rows = [
        ("left", str(s / "left" / "calibration_images")),
        ("", ""),
        (" right ", str(s / "right/calibration_images")),
    ]
    plan = ctl.check_form(str(s / "board.toml"), rows, "")
    assert plan.board == s / "board.toml"
    assert list(plan.sources) == ["left", "right"] and plan.sources["right"] == s / "right" / "calibration_images"
    assert plan.output == s / "calibration.toml"
    assert ctl.check_form(str(s / "board.toml"), rows, str(s / "left")).output == s / "left" / "calibration.toml"


@pytest.mark.parametrize(
    ("board", "rows", "output", "message"),
    [
        ("", [], "", "choose the board file"),
        ("missing.toml", [], "", "no such file"),
        ("bad.toml", [], "", "must be at least 3"),
        ("board.toml", [("left", "left/calibration_images")], "", "at least two cameras; the table has 1"),
        ("board.toml", [("left", "left/calibration_images"), ("left", "top")], "", "'left' is listed twice"),
        ("board.toml", [("left", "left/calibration_images"), ("", "top")], "", "camera row 2: give the camera a name"),
        ("board.toml", [("left", "left/calibration_images"), ("top", "")], "", "'top': choose its calibration"),
        ("board.toml", [("left", "left/calibration_images"), ("top", "nowhere")], "", "no such video or folder"),
        ("board.toml", [("left", "left/calibration_images"), ("n", "notes")], "", "holds no images"),
        ("board.toml", [("left", "left/calibration_images"), ("b", "board.toml")], "", "neither a video nor"),
        ("board.toml", [("left", "left/calibration_images"), ("t", "top/top-calibration.mp4")], "x.json", ".toml"),
        (
            "board.toml",
            [("left", "left/calibration_images"), ("r", "right/calibration_images")],
            "no/c.toml",
            "not exist",
        ),
    ],
)
def test_a_bad_form_names_its_problem(tmp_path, board, rows, output, message):
    s = _session(tmp_path)
    rows = [(name, str(s / src) if src else "") for name, src in rows]
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(")):
        ctl.check_form(str(s / board) if board else "", rows, str(s / output) if output else "")


def test_session_rows_find_image_folders_and_calibration_videos(tmp_path):
    s = _session(tmp_path)
    assert ctl.session_rows(s) == [
        ("left", str(s / "left" / "calibration_images")),
        ("right", str(s / "right" / "calibration_images")),
        ("top", str(s / "top" / "top-calibration.mp4")),
    ]
    assert ctl.session_rows(s / "left") == [("calibration_images", str(s / "left" / "calibration_images"))]
    with pytest.raises(CalibrationError, match="no camera folders"):
        ctl.session_rows(s / "notes")


def test_a_source_suggests_a_camera_name():
    assert ctl.camera_name_for("/s/back/calibration_images") == "back"
    assert ctl.camera_name_for("/s/top") == "top"
    assert ctl.camera_name_for("/s/top/side-calibration.mp4") == "side-calibration"


# --------------------------------------------------------------------------- the report
def test_report_rows(result):
    assert ctl.camera_rows(result) == [
        ["a", "3 / 4", "1", "0", "0.12", "0.30"],
        ["b", "2 / 3", "0", "1", "0.25", "–"],
    ]
    rows = ctl.rejected_rows(result)
    assert [(r.camera, r.name, r.frame, r.reason) for r in rows] == [
        ("a", "a-3.png", 3, "no board found"),
        ("b", "b-2.png", 2, "too few corners"),
    ]
    assert rows[0].cells() == ["a", "a-3.png", "3", "no board found"]
    assert "2 cameras, 5 of 7 images used, median reprojection error 0.18 px" in ctl.result_text(result, None)


# --------------------------------------------------------------------------- the 2D view
def test_frame_slots_and_tiles():
    assert ctl.frame_slots([(2, "c.png"), (0, "a.png")]) == ["a.png", None, "c.png"]
    assert ctl.frame_slots([]) == []
    assert ctl.tile_offsets([(100, 50), (200, 80), (100, 50)], gap_share=0.1) == [0.0, 120.0, 340.0]


def test_detected_corners_are_frame_y_x_with_their_use(result):
    points, used = ctl.detected_corners(result.detections, "b")
    first = next(d for d in result.detections if d.camera == "b")
    assert points.shape == (12 + 6 + 12, 3) and used.tolist() == [True] * 18 + [False] * 12
    np.testing.assert_array_equal(
        points[:12], np.column_stack([np.zeros(12), first.corners[:, 1], first.corners[:, 0]])
    )
    assert ctl.detected_corners(result.detections, "nobody")[0].shape == (0, 3)


def test_reprojected_corners_land_on_exact_detections(result):
    for cam in ("a", "b"):
        detected, _ = ctl.detected_corners(result.detections, cam)
        np.testing.assert_allclose(ctl.reprojected_corners(result, cam), detected, atol=1e-9)
    result.board_poses.pop(1)  # no pose: no re-projection for that frame
    assert 1 not in set(ctl.reprojected_corners(result, "a")[:, 0])
    assert ctl.reprojected_corners(result, "nobody").shape == (0, 3)


# --------------------------------------------------------------------------- the 3D view
@pytest.mark.parametrize("dist", [(0, 0, 0, 0, 0), (-0.2, 0.05, 0.001, -0.001, 0)])
def test_frustum_rays_go_through_the_image_corners(dist):
    cam = _camera("b", (200, 0, 0), _rot_y(-25), dist)
    centre, corners = ctl.frustum_corners(cam, 50.0)
    np.testing.assert_allclose(centre, [200, 0, 0], atol=1e-9)
    expected = np.array([[0, 0], [640, 0], [640, 480], [0, 480]]) - 0.5
    np.testing.assert_allclose(cam.project(corners), expected, atol=1e-3)
    np.testing.assert_allclose(cam.to_camera(corners)[:, 2], 50.0)  # all at the frustum's depth, in front
    segments = ctl.frustum_segments(cam, 50.0)
    assert segments.shape == (10, 2, 3)
    np.testing.assert_allclose(segments[:4, 0], np.repeat(centre[None], 4, axis=0))
    apex = cam.project(segments[8, 1])
    assert apex[1] < -0.5 and abs(apex[0] - 319.5) < 1  # the roof is above the image's top edge, in the middle


def test_frustum_depth_follows_the_rig_scale(result):
    corners, _ = ctl.board_corner_points(result.board, result.board_poses)
    depth = ctl.frustum_depth(result.rig, corners)
    assert 0.2 * 400 < depth < 0.3 * 430
    big = Rig([_camera(c.name, 10 * c.center(), c.rotation_matrix()) for c in result.rig.cameras])
    assert ctl.frustum_depth(big) == pytest.approx(10 * ctl.frustum_depth(result.rig), rel=1e-9)
    assert ctl.frustum_depth(Rig([_camera("solo", (0, 0, 0), np.eye(3))])) == 1.0


def test_board_outlines_and_corners_follow_the_poses(result):
    segments, frames = ctl.board_outline_segments(result.board, result.board_poses)
    assert segments.shape == (12, 2, 3) and frames.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_allclose(segments[0], [[-40, -30, 400], [20, -30, 400]])  # 4 x 3 inner corners, 20 apart
    np.testing.assert_allclose(segments[:4, 1], np.roll(segments[:4, 0], -1, axis=0))  # a closed outline
    points, frames = ctl.board_corner_points(result.board, result.board_poses)
    assert points.shape == (36, 3) and np.bincount(frames).tolist() == [12, 12, 12]
    assert ctl.board_corner_points(result.board, {})[0].shape == (0, 3)


def test_the_rig_is_seen_from_behind_its_cameras(result):
    forward, up = ctl.rig_view_direction(result.rig)
    assert forward[2] > 0.9 and abs(np.linalg.norm(forward) - 1) < 1e-9
    np.testing.assert_allclose(up, [0, -1, 0], atol=1e-9)
    # with boards: their normal, pointing away from the cameras whichever way each board's z axis points
    flipped = {f: p @ np.diag([1.0, -1.0, -1.0, 1.0]) for f, p in result.board_poses.items()}
    tilted = {f: _pose(p[:3, 3], 60.0) for f, p in result.board_poses.items()}
    normal = np.mean([p[:3, 2] for p in result.board_poses.values()], axis=0)  # tilted 0, 15 and -10 degrees
    for poses in (result.board_poses, flipped):
        forward = ctl.rig_view_direction(result.rig, poses)[0]
        np.testing.assert_allclose(forward, normal / np.linalg.norm(normal), atol=1e-9)
    forward, _ = ctl.rig_view_direction(result.rig, tilted)
    np.testing.assert_allclose(forward, [math.sin(math.radians(60)), 0, math.cos(math.radians(60))], atol=1e-9)


def test_result_sources_prefer_the_recorded_ones(tmp_path, result):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rows = [("a", str(tmp_path / "a")), ("b", str(tmp_path / "nowhere")), ("c", str(tmp_path / "b"))]
    assert ctl.result_sources(result, rows) == {"a": tmp_path / "a"}
    assert ctl.result_sources(result, rows, {"b": str(tmp_path / "b")}) == {"a": tmp_path / "a", "b": tmp_path / "b"}
