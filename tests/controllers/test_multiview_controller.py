"""The multi-view labeling aid without Qt: camera naming rule, epipolar curves, triangulated proposals."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.controllers.multiview import (
    CameraMatchError,
    camera_of,
    epipolar_curve,
    find_calibration,
    frame_geometry,
    match_cameras,
    proposals,
)
from napari_posekit.core.cameras import CalibrationError, Camera, Rig, rotation_vector


def look_at(name: str, center, target=(0.0, 0.0, 0.0), *, size=(320, 240), f=300.0, k1=0.0) -> Camera:
    """A camera at ``center`` looking at ``target`` (world y down in the image)."""
    center = np.asarray(center, float)
    z = np.asarray(target, float) - center
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 0.0, 1.0], z)
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-9 else np.array([1.0, 0.0, 0.0])
    y = np.cross(z, x)
    r = np.stack([x, y, z])
    w, h = size
    matrix = [[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]]
    return Camera(name, size, matrix, [k1, 0, 0, 0, 0], rotation_vector(r), -r @ center)


def synthetic_rig(k1: float = -0.15) -> Rig:
    return Rig(
        [
            look_at("back", (0, -400, 60), k1=k1),
            look_at("mid", (400, 0, 80), k1=k1),
            look_at("top", (-250, 250, 350), k1=k1),
        ]
    )


# --------------------------------------------------------------------------- naming rule
@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("minimal_back", "back"),
        ("minimal_back_proofread", "back"),
        ("Back-2024-01-01", "back"),
        ("minimal_backDLC_resnet50_mouseJan1shuffle1_1000", "back"),
        ("backyard", None),
        ("session", None),
        ("top", "top"),
    ],
)
def test_camera_of_matches_whole_words(stem, expected):
    assert camera_of(stem, ["back", "mid", "top"]) == expected


def test_camera_of_numbers_and_longer_names():
    assert camera_of("run_cam1", ["cam1", "cam10"]) == "cam1"
    assert camera_of("run_cam10", ["cam1", "cam10"]) == "cam10"
    assert camera_of("m_top_left", ["top", "top_left"]) == "top_left"
    with pytest.raises(CameraMatchError, match="fits several cameras"):
        camera_of("back_and_top", ["back", "top"])


def test_match_cameras_refuses_two_files_for_one_camera(tmp_path):
    files = [tmp_path / "a_back.mp4", tmp_path / "a_mid.mp4", tmp_path / "other.mp4"]
    assert match_cameras(files, ["back", "mid"]) == {"back": files[0], "mid": files[1]}
    with pytest.raises(CameraMatchError, match="two files for camera 'back'"):
        match_cameras([*files, tmp_path / "b_back.mp4"], ["back", "mid"])


def test_find_calibration_in_the_project_or_above(tmp_path):
    assert find_calibration(tmp_path) is None
    (tmp_path / "calibration.toml").write_text("")
    folder = tmp_path / "labeled-data" / "minimal_back"
    folder.mkdir(parents=True)
    assert find_calibration(tmp_path) == tmp_path / "calibration.toml"
    assert find_calibration(folder) == tmp_path / "calibration.toml"


# --------------------------------------------------------------------------- epipolar curves
def _distance_to_curve(pieces, point) -> float:
    return min(float(np.min(np.linalg.norm(p - point, axis=1))) for p in pieces)


def test_epipolar_curve_passes_through_every_point_of_the_ray():
    rig = synthetic_rig()
    src, tgt = rig.camera("back"), rig.camera("mid")
    x = np.array([20.0, -30.0, 40.0])
    pixel = src.project(x)
    pieces = epipolar_curve(src, tgt, pixel, samples=2000)
    assert pieces
    # the point itself and two other points along the same ray land on the curve
    for depth in (1.0, 0.8, 1.3):
        on_ray = src.center() + depth * (x - src.center())
        target_px = tgt.project(on_ray)
        assert _distance_to_curve(pieces, target_px) < 0.5
    # a point off the ray does not
    assert _distance_to_curve(pieces, tgt.project(x + [0, 0, 40])) > 5


def test_epipolar_curve_bends_with_the_lens():
    straight = synthetic_rig(k1=0.0)
    curved = synthetic_rig(k1=-0.3)

    def bend(rig):
        src, tgt = rig.camera("back"), rig.camera("top")
        pts = np.concatenate(epipolar_curve(src, tgt, src.project([60.0, 10.0, 0.0])))
        a, b = pts[0], pts[-1]
        u, v = b - a, pts - a
        d = np.abs(u[0] * v[:, 1] - u[1] * v[:, 0]) / np.linalg.norm(u)
        return float(d.max())

    assert bend(straight) < 1e-6
    assert bend(curved) > 1.0


def test_epipolar_curve_does_not_fold_back_at_the_image_border():
    # strong barrel distortion: beyond a radius, points far outside the view would land back inside it
    rig = synthetic_rig(k1=-0.6)
    src, tgt = rig.camera("back"), rig.camera("mid")
    x = np.array([20.0, -30.0, 40.0])
    for piece in epipolar_curve(src, tgt, src.project(x), samples=2000):
        radius = np.linalg.norm(tgt.undistort(piece), axis=1)
        assert radius.max() ** 2 <= 1 / (3 * 0.6) + 1e-3
        steps = np.diff(piece, axis=0)
        assert np.all((steps[1:] * steps[:-1]).sum(axis=1) > 0)  # no hairpin: the curve never turns back


def test_epipolar_curve_stays_inside_the_target_image():
    rig = synthetic_rig()
    src, tgt = rig.camera("mid"), rig.camera("top")
    for piece in epipolar_curve(src, tgt, [10.0, 200.0]):
        assert np.all(piece >= -0.5) and np.all(piece[:, 0] <= 319.5) and np.all(piece[:, 1] <= 239.5)


# --------------------------------------------------------------------------- one frame, proposals
def test_frame_geometry_and_proposals_place_the_missing_labels():
    rig = synthetic_rig()
    bodyparts = ["nose", "ear", "tail"]
    truth = np.array([[0.0, 0.0, 0.0], [30.0, 10.0, 20.0], [-40.0, 20.0, -10.0]])
    px = rig.project(truth)  # (C, J, 2)
    labels = {cam: px[c].copy() for c, cam in enumerate(rig.names)}
    labels["top"][1] = np.nan  # ear missing in top: proposed from back and mid
    labels["mid"][2] = np.nan  # tail only in back and top
    labels["back"][2] = np.nan  # ...and now only in top: no proposal, only curves
    geometry = frame_geometry(rig, labels, bodyparts)
    np.testing.assert_allclose(geometry.points3d[:2], truth[:2], atol=1e-6)
    assert np.isnan(geometry.points3d[2]).all()
    got = proposals(geometry, rig)
    assert [(p.camera, p.bodypart) for p in got] == [("top", "ear")]
    np.testing.assert_allclose([got[0].x, got[0].y], px[2, 1], atol=1e-6)
    # curves: each missing body part, from every view that has it
    tail_curves = [c for c in geometry.curves if c.bodypart == "tail"]
    assert {(c.source, c.target) for c in tail_curves} == {("top", "back"), ("top", "mid")}
    assert {(c.source, c.bodypart) for c in geometry.curves_in("top")} == {("back", "ear"), ("mid", "ear")}
    assert not [c for c in geometry.curves if c.bodypart == "nose"]  # labeled everywhere: nothing to look for


def test_frame_geometry_needs_two_views():
    with pytest.raises(CalibrationError, match="two or more views"):
        frame_geometry(synthetic_rig(), {"back": np.zeros((1, 2))}, ["nose"])
