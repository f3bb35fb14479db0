"""Camera calibration: synthetic rigs with known truth, bad input, files, and the shared minimal session."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from napari_posekit.core.boards import Board
from napari_posekit.core.calibration import (
    CalibrationError,
    calibrate,
    calibration_frames,
    iter_calibrate,
    read_calibration_result,
    write_calibration_result,
)
from napari_posekit.core.cameras import Camera, read_calibration, rodrigues

SIZE = (640, 480)
K = np.array([[600.0, 0.0, 322.0], [0.0, 603.0, 236.0], [0.0, 0.0, 1.0]])
TARGET = np.array([0.0, 0.0, 520.0])  # where the cameras look, in camera 0's frame (mm)
PX_PER_UNIT = 2.0  # board image resolution used for warping


def charuco_board() -> Board:
    return Board("charuco", 5, 7, 30.0, 22.0, 4, 50)


def checker_board() -> Board:
    return Board("checkerboard", 6, 5, 30.0)


def board_image(board: Board) -> tuple[np.ndarray, float]:
    """The board drawn at PX_PER_UNIT, and the image x of board x = 0 (first inner corner), centre convention."""
    sq = int(board.square_length * PX_PER_UNIT)
    margin = sq
    width, height = board.board_x * sq + 2 * margin, board.board_y * sq + 2 * margin
    if board.kind == "charuco":
        dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
        cb = cv2.aruco.CharucoBoard(
            (board.board_x, board.board_y), board.square_length, board.marker_length, dictionary
        )
        image = cb.generateImage((width, height), marginSize=margin)
    else:
        image = np.full((height, width), 255, np.uint8)
        for r in range(board.board_y):
            for c in range(board.board_x):
                if (r + c) % 2 == 0:
                    image[margin + r * sq : margin + (r + 1) * sq, margin + c * sq : margin + (c + 1) * sq] = 0
    return image, margin + sq - 0.5


def yaw_camera(degrees: float) -> np.ndarray:
    """World-to-camera 4x4 of a camera turned by ``degrees`` about the vertical axis around TARGET."""
    a = math.radians(degrees)
    turn = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    centre = TARGET - turn @ np.array([0.0, 0.0, TARGET[2]])
    pose = np.eye(4)
    pose[:3, :3] = turn.T
    pose[:3, 3] = -turn.T @ centre
    return pose


def board_poses(board: Board, n: int, seed: int = 0, spread=(30, 30, 30)) -> list[np.ndarray]:
    """Board-to-world poses: the board within ``spread`` (mm) of TARGET, tilted differently each frame."""
    rng = np.random.default_rng(seed)
    middle = board.object_points().mean(axis=0)
    poses = []
    for _ in range(n):
        rot = rodrigues(np.radians(rng.uniform([-30, -30, -20], [30, 30, 20])))
        pose = np.eye(4)
        pose[:3, :3] = rot
        pose[:3, 3] = TARGET + rng.uniform(-1, 1, 3) * spread - rot @ middle
        poses.append(pose)
    return poses


def render(board: Board, image: np.ndarray, origin: float, cam: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """What a camera (world-to-camera ``cam``, matrix K) sees of the board at ``pose``."""
    to_board = np.array(
        [[1 / PX_PER_UNIT, 0, -origin / PX_PER_UNIT], [0, 1 / PX_PER_UNIT, -origin / PX_PER_UNIT], [0, 0, 1]]
    )
    m = cam @ pose
    h = K @ np.column_stack([m[:3, 0], m[:3, 1], m[:3, 3]]) @ to_board
    return cv2.warpPerspective(image, h, SIZE, flags=cv2.INTER_LINEAR, borderValue=200)


def render_distorted(board, image, origin, cam, pose, dist) -> np.ndarray:
    """As :func:`render`, through a lens with OpenCV distortion ``dist`` (each pixel traced back to the board)."""
    lens = Camera("lens", SIZE, K, dist)
    u, v = np.meshgrid(np.arange(SIZE[0], dtype=np.float64), np.arange(SIZE[1], dtype=np.float64))
    rays = lens.undistort(np.stack([u, v], axis=-1))  # normalised coordinates of every pixel
    m = cam @ pose
    plane = np.column_stack([m[:3, 0], m[:3, 1], m[:3, 3]])  # board (x, y, 1) -> camera
    back = np.linalg.inv(plane) @ np.stack([rays[..., 0], rays[..., 1], np.ones_like(u)]).reshape(3, -1)
    xy = back[:2] / back[2]
    src = (xy * PX_PER_UNIT + origin).reshape(2, *u.shape).astype(np.float32)
    return cv2.remap(image, src[0], src[1], cv2.INTER_LINEAR, borderValue=200)


def write_rig(tmp_path, board: Board, yaws=(0.0, 25.0, -25.0), frames: int = 7, blank=None, seed: int = 0):
    """Image folders of synthetic cameras; returns (sources, world-to-camera truths, board poses)."""
    image, origin = board_image(board)
    cams = [yaw_camera(y) for y in yaws]
    poses = board_poses(board, frames, seed)
    sources = {}
    for c, cam in enumerate(cams):
        folder = tmp_path / f"cam{c}"
        folder.mkdir()
        for f, pose in enumerate(poses):
            view = render(board, image, origin, cam, pose)
            if blank and (c, f) in blank:
                view = np.full_like(view, 200)
            cv2.imwrite(str(folder / f"img-{f}.png"), view)
        sources[f"cam{c}"] = folder
    return sources, cams, poses


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))


def check_truth(result, cams, poses, focal_tol=0.015, angle_tol=0.75, shift_tol=0.03) -> None:
    """Intrinsics, extrinsics and board poses near the truth (small images and few views: about 1%)."""
    for camera, truth in zip(result.rig.cameras, cams, strict=True):
        assert abs(camera.matrix[0, 0] / K[0, 0] - 1) < focal_tol
        assert abs(camera.matrix[1, 1] / K[1, 1] - 1) < focal_tol
        assert np.linalg.norm(camera.matrix[:2, 2] - K[:2, 2]) < 8.0
        assert _angle(camera.rotation_matrix(), truth[:3, :3]) < angle_tol
        assert np.linalg.norm(camera.center() + truth[:3, :3].T @ truth[:3, 3]) < shift_tol * TARGET[2]
    for frame, pose in result.board_poses.items():
        assert _angle(pose[:3, :3], poses[frame][:3, :3]) < 2 * angle_tol
        assert np.linalg.norm(pose[:3, 3] - poses[frame][:3, 3]) < shift_tol * TARGET[2]


@pytest.fixture(scope="module")
def charuco_rig(tmp_path_factory):
    """Three synthetic cameras, seven frames, calibrated once: (board, sources, truths, poses, progress, result)."""
    board = charuco_board()
    sources, cams, poses = write_rig(tmp_path_factory.mktemp("rig"), board)
    items = []
    work = iter_calibrate(board, sources)
    while True:
        try:
            items.append(next(work))
        except StopIteration as done:
            return board, sources, cams, poses, items, done.value


def test_synthetic_charuco_rig_matches_truth(charuco_rig):
    _, _, cams, poses, items, result = charuco_rig
    assert items == sorted(items) and items[-1] == 1.0 and 0 < items[0] < 1
    check_truth(result, cams, poses)
    assert result.rig.names == ["cam0", "cam1", "cam2"]
    assert np.allclose(result.rig.cameras[0].rotation, 0) and np.allclose(result.rig.cameras[0].translation, 0)
    for report in result.reports:
        assert report.images == 7 and report.used == report.detected and report.error_median < 0.3
    used = [d for d in result.detections if d.used]
    assert used and all(d.reason == "" and d.error < 0.5 for d in used)


def test_synthetic_checkerboard_rig_matches_truth(tmp_path):
    board = checker_board()
    sources, cams, poses = write_rig(tmp_path, board, yaws=(0.0, 20.0), frames=6, seed=3)
    result = calibrate(board, sources)
    check_truth(result, cams, poses)
    assert all(len(d.ids) == board.n_corners for d in result.detections if d.used)


def test_distorted_lenses_are_recovered(tmp_path):
    board = charuco_board()
    dist = np.array([-0.25, 0.08, 0.001, -0.0005, 0.0])
    image, origin = board_image(board)
    # boards spread over the whole field of view: the lens is only known where boards were seen
    cams, poses = [yaw_camera(0.0), yaw_camera(15.0)], board_poses(board, 12, seed=5, spread=(170, 110, 40))
    sources = {}
    for c, cam in enumerate(cams):
        sources[f"cam{c}"] = folder = tmp_path / f"cam{c}"
        folder.mkdir()
        for f, pose in enumerate(poses):
            cv2.imwrite(str(folder / f"img-{f}.png"), render_distorted(board, image, origin, cam, pose, dist))
    result = calibrate(board, sources)
    check_truth(result, cams, poses)
    for camera in result.rig.cameras:
        assert np.allclose(camera.distortions[:2], dist[:2], atol=0.02)
        # the lens model as a whole: a point at the image's edge lands where the true lens puts it
        edge = np.array([[0.45, 0.3, 1.0]])
        truth = Camera("t", SIZE, K, dist).distort(edge)
        assert np.linalg.norm(camera.distort(edge) - truth) < 3.0
    assert all(r.error_median < 0.3 for r in result.reports)


def test_rejections_carry_reasons(tmp_path):
    board = charuco_board()
    sources, cams, poses = write_rig(tmp_path, board, frames=8, blank={(1, 2)})
    # camera 2 shows frame 4's board as frame 5 and vice versa: those views disagree with the others
    a, b = sources["cam2"] / "img-4.png", sources["cam2"] / "img-5.png"
    a.rename(tmp_path / "swap.png")
    b.rename(a)
    (tmp_path / "swap.png").rename(b)
    result = calibrate(board, sources)
    reasons = {(d.camera, d.name): d.reason for d in result.detections if not d.used}
    assert reasons[("cam1", "img-2.png")] == "board not found"
    assert "disagrees with the other cameras" in reasons[("cam2", "img-4.png")]
    assert "disagrees with the other cameras" in reasons[("cam2", "img-5.png")]
    assert all(math.isnan(d.error) for d in result.detections if not d.used)
    check_truth(result, cams, poses)
    report = result.reports[2]
    assert (report.detected, report.used, report.rejected) == (8, 6, 2)


def test_too_few_corners_are_rejected(tmp_path, charuco_rig):
    import shutil

    board, sources, _, _, _, _ = charuco_rig
    copies = {name: shutil.copytree(folder, tmp_path / name) for name, folder in sources.items()}
    for name in ("cam0", "cam1"):  # half of the board hidden in frame 0 of two cameras
        image = cv2.imread(str(copies[name] / "img-0.png"), cv2.IMREAD_GRAYSCALE)
        corners, _ = board.detect(image)
        image[:, int(np.median(corners[:, 0])) :] = 200
        cv2.imwrite(str(copies[name] / "img-0.png"), image)
    result = calibrate(board, copies, min_corners=20)
    partial = [d for d in result.detections if d.name == "img-0.png" and d.camera != "cam2"]
    for d in partial:
        assert 0 < len(d.ids) < 20 and not d.used
        assert d.reason == f"too few corners ({len(d.ids)}, at least 20 needed)"
    assert all(d.used for d in result.detections if d not in partial)


def test_result_files_round_trip(tmp_path, charuco_rig):
    board, _, _, _, _, result = charuco_rig
    out = tmp_path / "out" / "calibration.toml"
    out.parent.mkdir()
    write_calibration_result(out, result)
    assert sorted(p.name for p in out.parent.iterdir()) == ["calibration.report.json", "calibration.toml"]
    rig = read_calibration(out)
    assert rig.names == ["cam0", "cam1", "cam2"]
    assert rig.metadata["board"]["board_x"] == 5 and rig.metadata["adjusted"] is True
    assert set(rig.metadata["errors"]) == {"cam0", "cam1", "cam2"} and "date" in rig.metadata
    back = read_calibration_result(out)
    assert back.board == board
    assert np.allclose(back.rig.cameras[1].matrix, result.rig.cameras[1].matrix)
    assert [d.name for d in back.detections] == [d.name for d in result.detections]
    assert np.allclose(back.detections[0].corners, result.detections[0].corners, atol=1e-3)
    assert back.board_poses.keys() == result.board_poses.keys()
    assert back.sources == result.sources and back.sources["cam1"].endswith("cam1")
    assert back.options["min_corners"] == 8 and back.options["every"] == 1
    assert back.reports[0].error_median == pytest.approx(result.reports[0].error_median)
    sidecar = json.loads((out.parent / "calibration.report.json").read_text())
    assert sidecar["cameras"] == ["cam0", "cam1", "cam2"]

    (out.parent / "calibration.report.json").unlink()
    with pytest.raises(CalibrationError, match="no calibration report"):
        read_calibration_result(out)


def test_failed_write_leaves_nothing(tmp_path, charuco_rig):
    import copy

    result = copy.deepcopy(charuco_rig[-1])
    with pytest.raises(CalibrationError, match="does not exist"):
        write_calibration_result(tmp_path / "missing" / "calibration.toml", result)
    out = tmp_path / "calibration.toml"
    write_calibration_result(out, result)
    before = out.read_bytes(), (tmp_path / "calibration.report.json").read_bytes()
    result.rig.cameras[1].matrix[0, 0] += 1.0
    result.detections[0].reason = object()  # the report cannot be written: neither file may change
    with pytest.raises(CalibrationError, match="calibration.report.json"):
        write_calibration_result(out, result)
    assert (out.read_bytes(), (tmp_path / "calibration.report.json").read_bytes()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_single_camera_gets_intrinsics_only(tmp_path):
    board = charuco_board()
    sources, _, _ = write_rig(tmp_path, board, yaws=(0.0,), frames=6)
    result = calibrate(board, sources)
    assert len(result.rig) == 1
    assert abs(result.rig.cameras[0].matrix[0, 0] / K[0, 0] - 1) < 0.01
    write_calibration_result(tmp_path / "one.toml", result)
    assert read_calibration(tmp_path / "one.toml").metadata["extrinsics"].startswith("none")
    with pytest.raises(CalibrationError, match="at least 2 cameras"):
        result.rig.check_geometry()


def test_board_never_found_names_camera_and_images(tmp_path):
    board = charuco_board()
    sources, _, _ = write_rig(tmp_path, board, yaws=(0.0, 25.0), frames=3, blank={(1, 0), (1, 1), (1, 2)})
    with pytest.raises(
        CalibrationError, match=r"camera 'cam1': the board was not found in any of its 3 images \(img-0"
    ):
        calibrate(board, sources)


def test_cameras_without_common_frames(tmp_path):
    board = charuco_board()
    blank = {(0, f) for f in (4, 5, 6, 7)} | {(1, f) for f in (0, 1, 2, 3)}
    sources, _, _ = write_rig(tmp_path, board, yaws=(0.0, 25.0), frames=8, blank=blank)
    with pytest.raises(CalibrationError, match="not connected: cam1 share"):
        calibrate(board, sources)


def test_same_images_for_two_cameras_is_degenerate(tmp_path):
    board = charuco_board()
    sources, _, _ = write_rig(tmp_path, board, yaws=(0.0,), frames=6)
    with pytest.raises(CalibrationError, match="degenerate rig"):
        calibrate(board, {"a": sources["cam0"], "b": sources["cam0"]})


def test_bad_sources(tmp_path):
    board = charuco_board()
    with pytest.raises(CalibrationError, match="camera 'a': .*nowhere: no such video or image folder"):
        calibrate(board, {"a": tmp_path / "nowhere"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no images in this folder"):
        calibrate(board, {"a": tmp_path / "empty"})
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(CalibrationError, match="cannot read the video"):
        calibrate(board, {"a": tmp_path / "broken.mp4"})
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a-1.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(mixed / "a-2.png"), np.zeros((40, 64), np.uint8))
    with pytest.raises(
        CalibrationError, match="camera 'a': images of different sizes: a-1.png is 64x48, a-2.png is 64x40"
    ):
        calibrate(board, {"a": mixed})
    with pytest.raises(CalibrationError, match="no cameras"):
        calibrate(board, {})


def test_calibration_frames_natural_order_and_videos(tmp_path):
    from napari_posekit.core.video import write_video

    for n in (10, 9, 0, 20, 1):
        (tmp_path / f"x-{n}.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert calibration_frames(tmp_path) == [
        (0, "x-0.jpg"),
        (1, "x-1.jpg"),
        (2, "x-9.jpg"),
        (3, "x-10.jpg"),
        (4, "x-20.jpg"),
    ]
    video = write_video([np.zeros((32, 48, 3), np.uint8)] * 4, tmp_path / "v.mp4")
    assert calibration_frames(video) == [(i, f"frame {i}") for i in range(4)]


def test_video_and_folder_sources_agree(tmp_path):
    from napari_posekit.core.video import write_video

    board = charuco_board()
    sources, cams, poses = write_rig(tmp_path, board, yaws=(0.0, 25.0), frames=6)
    frames = [cv2.cvtColor(cv2.imread(str(sources["cam1"] / f"img-{f}.png")), cv2.COLOR_BGR2RGB) for f in range(6)]
    video = write_video(frames, tmp_path / "cam1.mp4", quality=8)
    result = calibrate(board, {"cam0": sources["cam0"], "cam1": video})
    assert [d.name for d in result.detections if d.camera == "cam1"] == [f"frame {i}" for i in range(6)]
    check_truth(result, cams, poses)
