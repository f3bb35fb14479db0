"""Calibration widget: the form, the calibration job, corners over the images, the report tables, the rig in 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import require_shared
from napari_posekit._napari import calibration_layers as cl
from napari_posekit._napari import jobs
from napari_posekit._napari._calibration_widget import CalibrationWidget
from napari_posekit.controllers import calibration as ctl
from napari_posekit.core.boards import Board
from napari_posekit.core.calibration import CalibrationResult, CameraReport, ImageDetection
from napari_posekit.core.cameras import Camera, Rig, rotation_vector

BOARD_TOML = "board_x = 5\nboard_y = 4\nsquare_length = 20.0\nmarker_length = 15.0\nmarker_bits = 4\ndict_size = 50\n"
SIZE = (400, 300)  # width, height of the rendered images
K = np.array([[420.0, 0, 199.5], [0, 420.0, 149.5], [0, 0, 1]])
PX_PER_MM = 6


def _rot(axis: int, deg: float) -> np.ndarray:
    a, (i, j) = math.radians(deg), [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = math.cos(a)
    r[i, j], r[j, i] = -math.sin(a), math.sin(a)
    return r


def _rig() -> Rig:
    cams = []
    for name, x, deg in (("left", -90.0, 15.0), ("mid", 0.0, 0.0), ("right", 90.0, -15.0)):
        rot = _rot(1, deg)
        cams.append(Camera(name, SIZE, K, np.zeros(5), rotation_vector(rot), -rot @ np.array([x, 0.0, 0.0])))
    return Rig(cams)


def _poses(board: Board) -> dict[int, np.ndarray]:
    """Board poses around (0, 0, 260), tilted a different way in each frame."""
    centre = np.array([(board.inner[0] - 1) / 2, (board.inner[1] - 1) / 2, 0]) * board.square_length
    tilts = [(0, 0), (25, 0), (-25, 0), (0, 25), (0, -25), (18, 18), (-18, 18), (15, -20)]
    poses = {}
    for frame, (ax, ay) in enumerate(tilts):
        pose = np.eye(4)
        pose[:3, :3] = _rot(0, ax) @ _rot(1, ay) @ _rot(2, 5 * frame)
        pose[:3, 3] = np.array([8 * (frame % 3 - 1), 6 * (frame % 2), 260 + 10 * frame]) - pose[:3, :3] @ centre
        poses[frame] = pose
    return poses


def _render(board: Board, cam: Camera, pose: np.ndarray) -> np.ndarray:
    """The ChArUco board seen by ``cam`` at ``pose`` (grey background), as an RGB image."""
    import cv2

    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    cv_board = cv2.aruco.CharucoBoard((board.board_x, board.board_y), board.square_length, 15.0, dictionary)
    cv_board.setLegacyPattern(True)
    w, h = board.board_x * board.square_length * PX_PER_MM, board.board_y * board.square_length * PX_PER_MM
    picture = cv_board.generateImage((int(w), int(h)), marginSize=0)
    sq = board.square_length
    to_board = np.array([[1 / PX_PER_MM, 0, -sq], [0, 1 / PX_PER_MM, -sq], [0, 0, 1]])  # first inner corner at 0
    m = cam.rotation_matrix() @ np.column_stack([pose[:3, 0], pose[:3, 1], pose[:3, 3]])
    m[:, 2] += cam.translation
    homography = cam.matrix @ m @ to_board
    grey = cv2.warpPerspective(picture, homography, cam.size, flags=cv2.INTER_AREA, borderValue=150)
    return np.repeat(grey[..., None], 3, axis=2)


@pytest.fixture
def session(tmp_path):
    """Three cameras, eight board poses each as PNGs (``<cam>/calib-<n>.png``) and the board file."""
    from PIL import Image

    (tmp_path / "board.toml").write_text(BOARD_TOML)
    board = Board("charuco", 5, 4, 20.0, 15.0, 4, 50)
    rig, poses = _rig(), _poses(board)
    for cam in rig.cameras:
        folder = tmp_path / cam.name
        folder.mkdir()
        for frame, pose in poses.items():
            Image.fromarray(_render(board, cam, pose)).save(folder / f"calib-{frame}.png")
    Image.fromarray(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)).save(tmp_path / "mid" / "calib-8.png")
    return tmp_path, board, rig, poses


def _exact_result(board: Board, rig: Rig, poses) -> CalibrationResult:
    """A result whose detections are the true corners (frame 3 of 'right' rejected, frame 8 of 'mid' blank)."""
    objects, detections = board.object_points(), []
    for cam in rig.cameras:
        for frame, pose in poses.items():
            corners = cam.project(ctl.board_world_points(objects, pose))
            used = not (cam.name == "right" and frame == 3)
            reason = "" if used else "too few corners"
            ids = np.arange(len(objects))
            detections.append(ImageDetection(cam.name, f"calib-{frame}.png", frame, corners, ids, used, reason, 0.0))
    detections.append(ImageDetection("mid", "calib-8.png", 8, np.zeros((0, 2)), np.zeros(0, int), False, "no board", 0))
    reports = [CameraReport(c.name, SIZE, 8, 8, 8, 0, 0.0, 0.0) for c in rig.cameras]
    return CalibrationResult(rig, board, detections, poses, reports)


def _layers(viewer, role):
    return [layer for layer in viewer.layers if (cl.role_of(layer) or {}).get("role") == role]


def test_a_result_shows_images_corners_tables_and_the_rig(make_napari_viewer, session):
    folder, board, rig, poses = session
    viewer = make_napari_viewer()
    widget = CalibrationWidget(viewer)
    assert not widget.buttons["rig"].isEnabled()  # nothing to show yet
    result = _exact_result(board, rig, poses)
    widget.show_result(result, {name: folder / name for name in rig.names})

    images = _layers(viewer, "images")
    assert [layer.name for layer in images] == ["left calibration", "mid calibration", "right calibration"]
    assert [layer.translate[2] for layer in images] == [0.0, 420.0, 840.0]  # side by side, 5 % apart
    assert images[1].data.shape == (9, 300, 400, 3) and images[0].data.shape == (8, 300, 400, 3)
    np.testing.assert_array_equal(np.asarray(images[1].data[8]), 90)  # the blank frame, read lazily
    corners = {layer.metadata[cl.ROLE]["camera"]: layer for layer in _layers(viewer, "corners")}
    right = corners["right"]
    assert len(right.data) == 8 * board.n_corners and right.translate[2] == 840.0
    rejected = right.data[:, 0] == 3
    np.testing.assert_allclose(right.face_color[rejected][:, :3], np.tile(cl.REJECTED[:3], (rejected.sum(), 1)))
    np.testing.assert_allclose(right.face_color[~rejected][:, :3], np.tile(cl.USED[:3], ((~rejected).sum(), 1)))
    reprojected = {layer.metadata[cl.ROLE]["camera"]: layer for layer in _layers(viewer, "reprojected")}
    np.testing.assert_allclose(reprojected["mid"].data, corners["mid"].data, atol=1e-6)
    # the corners sit on the rendered board: the image is dark or light at checker corners, not the grey border
    frame0 = np.asarray(images[0].data[0])
    y, x = np.round(corners["left"].data[corners["left"].data[:, 0] == 0][:, 1:]).astype(int).T
    assert np.all(frame0[y, x, 0] != 150)

    assert widget.camera_report.rowCount() == 3 and widget.camera_report.item(2, 0).text() == "right"
    assert [widget.image_report.item(r, 3).text() for r in range(2)] == ["no board", "too few corners"]
    widget.jump_to(1)
    assert viewer.dims.current_step[0] == 3
    widget.jump_to(0)
    assert viewer.dims.current_step[0] == 8

    # the rig in 3D: frusta, names, boards; the 2D layers hidden, then back as they were
    assert widget.buttons["rig"].isEnabled()
    cl.view_camera(viewer).zoom, cl.view_camera(viewer).center = 3.0, (0, 100, 500)
    zoom_2d = cl.view_camera(viewer).zoom
    widget.buttons["rig"].setChecked(True)
    assert viewer.dims.ndisplay == 3 and widget.rig_view.shown
    assert widget.buttons["rig"].text() == "Back to the images"
    frusta = _layers(viewer, "frusta")[0]
    assert frusta.data.shape == (30, 2, 3) and frusta.visible
    names = _layers(viewer, "names")[0]
    np.testing.assert_allclose(names.data[:, ::-1], np.stack([c.center() for c in rig.cameras]), atol=1e-9)
    assert list(names.features["camera"]) == ["left", "mid", "right"]
    assert len(_layers(viewer, "boards")[0].data) == 4 * len(poses)
    assert not any(layer.visible for layer in images + list(corners.values()))
    view = np.asarray(
        cl.view_camera(viewer).view_direction
    )  # from behind (along +z, napari's axis 0) and above (+y: down)
    assert view[0] > 0.7 and view[1] > 0.3

    viewer.dims.ndisplay = 2  # napari's own 2D button leaves the rig view too
    assert not widget.rig_view.shown and not widget.buttons["rig"].isChecked()
    assert not _layers(viewer, "frusta") and all(layer.visible for layer in images)
    assert viewer.dims.current_step[0] == 8 and viewer.dims.range[0].stop == 8
    assert cl.view_camera(viewer).zoom == zoom_2d and tuple(cl.view_camera(viewer).center[1:]) == (
        100,
        500,
    )  # the 2D view as it was

    widget.buttons["rig"].setChecked(True)
    widget.jump_to(1)  # a click in the table goes back to the images
    assert viewer.dims.ndisplay == 2 and viewer.dims.current_step[0] == 3 and not _layers(viewer, "frusta")

    # showing a result again replaces the layers instead of adding more
    widget.show_result(result, {})
    assert not _layers(viewer, "images") and len(_layers(viewer, "corners")) == 3


def test_calibrate_a_rendered_rig_then_open_the_result(make_napari_viewer, qtbot, session, monkeypatch):
    folder, board, rig, poses = session
    errors: list[str] = []
    monkeypatch.setattr(jobs, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = CalibrationWidget(viewer)
    assert widget.fill_from_session(str(folder))
    assert widget.board.text() == str(folder / "board.toml")
    assert [name for name, _ in widget.rows()] == ["left", "mid", "right"]

    # Stop: the job ends early, writes nothing and the widget is ready again
    job = widget.calibrate()
    assert job is not None and widget.busy and widget.buttons["stop"].isEnabled()
    assert not widget.buttons["calibrate"].isEnabled() and widget.calibrate() is None
    widget.buttons["stop"].click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.status.text() == "Calibration stopped; nothing was written."
    assert not (folder / "calibration.toml").exists() and widget.result is None

    widget.jobs.synchronous = True
    job = widget.calibrate()
    assert job.finished and not errors and widget.result is not None
    assert widget.output.text() == str(folder / "calibration.toml")
    assert (folder / "calibration.toml").is_file() and (folder / "calibration.report.json").is_file()
    assert "3 cameras, 24 of 25 images used" in widget.status.text()
    result = widget.result
    assert all(r.error_median < 0.5 for r in result.reports) and sorted(result.board_poses) == sorted(poses)
    centres = {cam.name: cam.center() for cam in result.rig.cameras}
    assert np.linalg.norm(centres["left"] - centres["right"]) == pytest.approx(180.0, rel=0.02)  # in board units
    assert widget.image_report.rowCount() == 1
    assert [widget.image_report.item(0, c).text() for c in range(3)] == ["mid", "calib-8.png", "8"]
    widget.image_report.cellClicked.emit(0, 1)
    assert viewer.dims.current_step[0] == 8
    corners = {layer.metadata[cl.ROLE]["camera"]: layer for layer in _layers(viewer, "corners")}
    reprojected = {layer.metadata[cl.ROLE]["camera"]: layer for layer in _layers(viewer, "reprojected")}
    for name in rig.names:
        assert len(corners[name].data) == 8 * board.n_corners and len(reprojected[name].data) == 8 * board.n_corners
        residual = np.linalg.norm(corners[name].data[:, 1:] - reprojected[name].data[:, 1:], axis=1)
        assert np.median(residual) < 0.5
    assert len(_layers(viewer, "images")) == 3

    # a second widget opens the written result: the same tables, images from the sources it recorded
    viewer.layers.clear()
    other = CalibrationWidget(viewer)
    other.every.setValue(3)
    assert other.open_calibration(str(folder / "calibration.toml"))
    assert other.rows() == widget.rows() and other.every.value() == 1  # the form as the calibration was made
    assert [other.camera_report.item(r, 0).text() for r in range(3)] == rig.names
    assert [other.camera_report.item(1, c).text() for c in range(4)] == ["mid", "8 / 9", "1", "0"]
    assert other.image_report.rowCount() == 1
    assert len(_layers(viewer, "images")) == 3 and len(_layers(viewer, "corners")) == 3
    other.buttons["rig"].click()
    assert viewer.dims.ndisplay == 3 and len(_layers(viewer, "boards")[0].data) == 4 * 8


def test_bad_input_is_a_message(make_napari_viewer, session, monkeypatch, tmp_path):
    folder = session[0]
    errors: list[str] = []
    monkeypatch.setattr("napari_posekit._napari._calibration_widget.show_error", errors.append)
    widget = CalibrationWidget(make_napari_viewer())
    widget.buttons["calibrate"].click()
    assert "choose the board file" in widget.status.text() and not widget.busy
    widget.board.setText(str(folder / "board.toml"))
    widget.add_camera("left", str(folder / "left"))
    assert widget.calibrate() is None and "at least two cameras" in widget.status.text()
    widget.add_camera("left", str(folder / "nowhere"))
    assert widget.calibrate() is None and "'left' is listed twice" in widget.status.text()
    assert not widget.fill_from_session(str(folder / "left")) and "no camera folders" in widget.status.text()
    assert not widget.open_calibration(str(tmp_path / "none.toml")) and "Cannot open the calibration" in errors[-1]
    assert len(errors) == 5 and not widget.busy
    (tmp_path / "small.toml").write_text("board_x = 2\nboard_y = 4\nsquare_length = 20.0\n")
    widget.board.setText(str(tmp_path / "small.toml"))
    assert widget.calibrate() is None and "must be at least 3" in widget.status.text()

    # a camera that never saw the board: the job fails with the core's reason, the widget is ready again
    from PIL import Image

    (tmp_path / "blank").mkdir()
    for i in range(2):
        Image.fromarray(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)).save(tmp_path / "blank" / f"b-{i}.png")
    job_errors: list[str] = []
    monkeypatch.setattr(jobs, "show_error", job_errors.append)
    widget.board.setText(str(folder / "board.toml"))
    widget.set_rows([("left", str(folder / "left")), ("blank", str(tmp_path / "blank"))])
    widget.jobs.synchronous = True
    assert widget.calibrate() is not None and not widget.busy and widget.result is None
    assert widget.status.text().startswith("Calibration failed: camera 'blank': the board was not found")
    assert job_errors == [widget.status.text()] and widget.buttons["calibrate"].isEnabled()
    assert not (folder / "calibration.toml").exists()
    widget.cameras.selectRow(1)
    widget.remove_camera()
    assert widget.rows() == [("left", str(folder / "left"))]
    widget.add_camera()  # a new row named by the folder chosen for it; a named row keeps its name
    widget.set_source(str(folder / "mid"))
    widget.cameras.setCurrentCell(0, 1)
    widget.set_source(str(folder / "right"))
    assert widget.rows() == [("left", str(folder / "right")), ("mid", str(folder / "mid"))]


def test_the_real_session_calibrates_and_shows_its_four_cameras(make_napari_viewer, tmp_path):
    session = require_shared("sleap_anipose_minimal_session")
    import h5py

    viewer = make_napari_viewer()
    widget = CalibrationWidget(viewer)
    assert widget.fill_from_session(str(session))
    widget.output.setText(str(tmp_path / "calibration.toml"))
    widget.jobs.synchronous = True
    widget.every.setValue(5)
    assert widget.calibrate().finished  # images 0, 5, 10, 15 and 20 of each camera
    result = widget.result
    assert result is not None and (tmp_path / "calibration.report.json").is_file()
    assert [r.name for r in result.reports] == ["back", "mid", "side", "top"]
    assert all(r.used == 5 and r.error_median < 1.0 for r in result.reports)

    images = _layers(viewer, "images")
    assert [layer.data.shape for layer in images] == [(21, 1024, 1280, 3)] * 4  # every image, lazily
    assert [layer.translate[2] for layer in images] == [0.0, 1344.0, 2688.0, 4032.0]
    assert np.asarray(images[2].data[5]).std() > 10  # a JPEG of the board, decoded when shown
    with h5py.File(session / "calibration.metadata.h5") as f:
        theirs = f["detected_corners"][:]  # (cameras, frames, corners, xy) found by aniposelib, NaN where not
    for c, layer in enumerate(_layers(viewer, "corners")):
        assert set(np.unique(layer.data[:, 0])) == {0, 5, 10, 15, 20}
        mine = layer.data[layer.data[:, 0] == 10][:, [2, 1]]
        # frames here follow the images' natural order (…-9, …-10); aniposelib's file sorted the names as text
        frames = dict(ctl.camera_frames(result, result.reports[c].name, images[c].metadata["source"]))
        other = theirs[c, sorted(frames.values()).index(frames[10])]
        other = other[~np.isnan(other).any(axis=1)]
        nearest = np.linalg.norm(mine[:, None] - other[None], axis=2).min(axis=1)
        assert len(mine) >= 0.8 * len(other) and np.median(nearest) < 1.0  # the same corners as aniposelib's
    widget.buttons["rig"].click()
    assert viewer.dims.ndisplay == 3 and _layers(viewer, "frusta")[0].data.shape == (40, 2, 3)
    assert not any(layer.visible for layer in images)


def test_a_calibration_video_is_a_lazy_stack_of_its_matched_frames(session):
    from napari_posekit.core.calibration import calibration_frames
    from napari_posekit.core.video import VideoReader, write_video

    folder, board, rig, poses = session
    frames = [_render(board, rig.cameras[0], pose) for pose in poses.values()]
    video = write_video(frames, folder / "left.mp4", fps=10)
    listed = calibration_frames(video)
    stack = cl.image_stack(video, listed)
    assert stack.shape == (8, 300, 400, 3) and listed[3] == (3, "frame 3")
    with VideoReader(video) as reader:
        np.testing.assert_array_equal(np.asarray(stack[5]), reader.get(5))
    gappy = cl.image_stack(video, [listed[0], listed[6]])  # frames 1-5 of this camera missing: black slots
    assert gappy.shape == (7, 300, 400, 3) and not np.asarray(gappy[3]).any() and np.asarray(gappy[6]).any()


def test_the_widget_opens_from_the_plugin_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-posekit", "Calibration")
    assert isinstance(widget, CalibrationWidget) and widget.viewer is viewer
    assert not widget.buttons["stop"].isEnabled() and not widget.buttons["rig"].isEnabled()
