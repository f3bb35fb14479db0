"""The camera model and the anipose calibration file."""

import numpy as np
import pytest

from napari_posekit.core.cameras import CalibrationError, Camera, Rig, read_calibration, rodrigues, write_calibration

cv2 = pytest.importorskip("cv2")


def _camera(name="a", rvec=(0.1, -0.2, 0.3), tvec=(5.0, -3.0, 400.0), dist=(-0.28, 0.08, 0.001, -0.002, -0.01)):
    matrix = [[800.0, 0.0, 640.0], [0.0, 790.0, 512.0], [0.0, 0.0, 1.0]]
    return Camera(name, (1280, 1024), matrix, dist, rvec, tvec)


def test_projection_matches_opencv_and_undistort_inverts_it():
    cam = _camera()
    rng = np.random.default_rng(0)
    world = rng.uniform(-150, 150, size=(500, 3))
    ours = cam.project(world)
    theirs, _ = cv2.projectPoints(world, cam.rotation, cam.translation, cam.matrix, cam.distortions)
    np.testing.assert_allclose(ours, theirs[:, 0], atol=1e-8)
    in_cam = cam.to_camera(world)
    np.testing.assert_allclose(cam.undistort(ours), in_cam[:, :2] / in_cam[:, 2:], atol=1e-9)
    np.testing.assert_allclose(rodrigues(cam.rotation), cv2.Rodrigues(cam.rotation)[0], atol=1e-12)


def test_calibration_file_round_trip(tmp_path):
    rig = Rig([_camera("left"), _camera("right", tvec=(-100.0, 0.0, 400.0))], {"board": "charuco"})
    path = write_calibration(tmp_path / "calibration.toml", rig)
    text = path.read_text()
    assert "[cam_0]" in text and "[cam_1]" in text and "[metadata]" in text
    back = read_calibration(path)
    assert back.names == ["left", "right"] and back.metadata == {"board": "charuco"}
    for a, b in zip(rig.cameras, back.cameras):
        np.testing.assert_array_equal(a.matrix, b.matrix)
        np.testing.assert_array_equal(a.translation, b.translation)
        assert a.size == b.size


def test_bad_files_and_rigs_say_why(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('[cam_0]\nname = "a"\nsize = [10, 10]\n')
    with pytest.raises(CalibrationError, match="missing matrix, distortions, rotation, translation"):
        read_calibration(broken)
    with pytest.raises(CalibrationError, match="no such calibration file"):
        read_calibration(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[cam_0\n")
    with pytest.raises(CalibrationError, match="not a valid TOML"):
        read_calibration(tmp_path / "bad.toml")
    rig = Rig([_camera("a"), _camera("b")])
    with pytest.raises(CalibrationError, match="degenerate rig"):
        rig.check_geometry()
    with pytest.raises(CalibrationError, match="at least 2 cameras"):
        Rig([_camera("a")]).check_geometry()
    with pytest.raises(CalibrationError, match="'c' not in the calibration; it has a, b"):
        rig.subset(["a", "c"])
    with pytest.raises(CalibrationError, match="unique"):
        Rig([_camera("a"), _camera("a", tvec=(1.0, 2.0, 3.0))])
