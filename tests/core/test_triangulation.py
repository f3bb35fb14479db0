"""Triangulation on synthetic rigs (exactness, robustness, weighting, NaN, chunks) and on the shared 3-camera session."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import drain, require_shared
from napari_posekit.core.cameras import CalibrationError, Camera, Rig, read_calibration, rotation_vector
from napari_posekit.core.triangulation import (
    TriangulationError,
    iter_triangulate,
    reprojection_errors,
    triangulate,
)


def look_at(center, target=(0.0, 0.0, 0.0)):
    """Rodrigues rotation and translation of a camera at ``center`` looking at ``target`` (z up)."""
    center = np.asarray(center, dtype=float)
    z = np.asarray(target, dtype=float) - center
    z /= np.linalg.norm(z)
    x = np.cross(z, (0.0, 0.0, 1.0))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])
    return rotation_vector(rot), -rot @ center


def make_rig(n=4, radius=1000.0, distortion=(-0.2, 0.05, 0.001, -0.001, 0.0), names=None):
    """``n`` cameras on a ring around the origin, 1280x1024, with some distortion (millimetres)."""
    cameras = []
    for i in range(n):
        angle = 2 * np.pi * i / n
        center = (radius * np.cos(angle), radius * np.sin(angle), 400.0 + 150.0 * (i % 2))
        rvec, tvec = look_at(center)
        f = 1400.0 + 100.0 * i
        matrix = [[f, 0, 640 + 5 * i], [0, f, 512 - 3 * i], [0, 0, 1]]
        name = names[i] if names else f"cam{i}"
        cameras.append(Camera(name, (1280, 1024), matrix, distortion, rvec, tvec))
    return Rig(cameras)


def random_points(n, seed=0, half=150.0):
    return np.random.default_rng(seed).uniform(-half, half, (n, 3))


def test_noise_free_points_come_back_exactly():
    rig = make_rig(5)
    truth = random_points(300).reshape(20, 15, 3)
    pixels = rig.project(truth)
    for robust in (True, False):
        tri = triangulate(rig, pixels, robust=robust)
        assert tri.points3d.shape == (20, 15, 3)
        assert tri.error.shape == tri.cameras.shape == (20, 15)
        assert tri.used.shape == (5, 20, 15)
        np.testing.assert_allclose(tri.points3d, truth, atol=1e-6)
        assert np.all(tri.cameras == 5) and tri.used.all()
        assert np.nanmax(tri.error) < 1e-6
    errors = reprojection_errors(rig, truth, pixels)
    assert errors.shape == (5, 20, 15) and errors.max() < 1e-6


def test_a_swapped_camera_is_rejected():
    rig = make_rig(4)
    truth = random_points(2, seed=3)  # two body parts, left and right
    pixels = rig.project(truth)
    pixels[2] = pixels[2][::-1]  # camera 2 swaps them, confidently
    robust = triangulate(rig, pixels, np.ones((4, 2)))
    np.testing.assert_allclose(robust.points3d, truth, atol=1e-6)
    np.testing.assert_array_equal(robust.used[:, 0], [True, True, False, True])
    np.testing.assert_array_equal(robust.cameras, [3, 3])
    plain = triangulate(rig, pixels, robust=False)
    assert np.linalg.norm(plain.points3d - truth, axis=-1).min() > 10.0  # millimetres
    assert plain.used.all()


def test_outliers_in_two_of_six_cameras_do_not_move_the_points():
    rig = make_rig(6)
    rng = np.random.default_rng(1)
    truth = random_points(1000, seed=1)
    pixels = rig.project(truth) + rng.normal(0, 2.0, (6, 1000, 2))
    clean = np.linalg.norm(triangulate(rig, pixels).points3d - truth, axis=-1)
    bad = rng.permutation(1000)[:100]
    for cam in (1, 4):
        pixels[cam, bad] = rng.uniform((0, 0), (1280, 1024), (100, 2))
    tri = triangulate(rig, pixels, np.full((6, 1000), 0.99))
    err = np.linalg.norm(tri.points3d - truth, axis=-1)
    assert np.percentile(err, 90) < 1.3 * np.percentile(clean, 90)
    assert not tri.used[1, bad].any() and not tri.used[4, bad].any()
    plain = np.linalg.norm(triangulate(rig, pixels, robust=False).points3d - truth, axis=-1)
    assert np.median(plain[bad]) > 20 * np.median(err[bad])


def test_likelihood_weights_pull_towards_the_confident_camera():
    rig = make_rig(2, distortion=(0, 0, 0, 0, 0))
    truth = np.zeros((1, 3))
    pixels = rig.project(truth)
    pixels[0, 0, 0] += 8.0  # camera 0 is off by 8 px horizontally
    trusted0 = triangulate(rig, pixels, np.array([[1.0], [0.05]]), robust=False)
    trusted1 = triangulate(rig, pixels, np.array([[0.05], [1.0]]), robust=False)
    err0 = reprojection_errors(rig, trusted0.points3d, pixels)[:, 0]
    err1 = reprojection_errors(rig, trusted1.points3d, pixels)[:, 0]
    assert err0[0] < 1.0 < err0[1]  # the trusted camera keeps its pixel
    assert err1[1] < 1.0 < err1[0]


def test_unseen_and_unlikely_points():
    rig = make_rig(3)
    truth = random_points(4, seed=2)
    pixels = rig.project(truth)
    like = np.ones((3, 4))
    pixels[0, 0] = np.nan  # point 0: seen by cameras 1, 2
    pixels[0, 1] = np.nan
    like[1, 1] = 0.1  # point 1: camera 1 below pcutoff -> one camera left
    like[:, 2] = np.nan  # point 2: no likelihood anywhere
    tri = triangulate(rig, pixels, like, pcutoff=0.5)
    np.testing.assert_allclose(tri.points3d[[0, 3]], truth[[0, 3]], atol=1e-6)
    assert np.isnan(tri.points3d[1]).all() and np.isnan(tri.points3d[2]).all()
    np.testing.assert_array_equal(tri.cameras, [2, 0, 0, 3])
    np.testing.assert_array_equal(tri.used[:, 0], [False, True, True])
    assert np.isnan(tri.error[1]) and tri.error[0] < 1e-6
    strict = triangulate(rig, pixels, like, pcutoff=0.5, min_cameras=3)
    assert np.isnan(strict.points3d[0]).all() and np.isfinite(strict.points3d[3]).all()


def test_chunks_give_the_one_shot_result_and_report_progress():
    rig = make_rig(4)
    rng = np.random.default_rng(5)
    truth = random_points(50 * 7, seed=5).reshape(50, 7, 3)
    pixels = rig.project(truth) + rng.normal(0, 1.0, (4, 50, 7, 2))
    like = rng.uniform(0.2, 1.0, (4, 50, 7))
    whole = triangulate(rig, pixels, like)
    fractions, chunked = drain(iter_triangulate(rig, pixels, like, chunk=8))
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) == 1 + 7
    assert np.all(np.diff(fractions) > 0)
    np.testing.assert_array_equal(chunked.points3d, whole.points3d)
    np.testing.assert_array_equal(chunked.used, whole.used)


def test_closing_the_generator_stops_it():
    rig = make_rig(3)
    pixels = rig.project(random_points(100).reshape(100, 1, 3))
    gen = iter_triangulate(rig, pixels, chunk=10)
    next(gen), next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_bad_inputs_are_refused_with_reasons():
    rig = make_rig(3)
    pixels = rig.project(random_points(5))
    with pytest.raises(TriangulationError, match="2 cameras but the rig has 3"):
        triangulate(rig, pixels[:2])
    with pytest.raises(TriangulationError, match=r"shape \(cameras, ..., 2\)"):
        triangulate(rig, pixels[..., :1])
    with pytest.raises(TriangulationError, match="likelihood has shape"):
        triangulate(rig, pixels, np.ones((3, 4)))
    with pytest.raises(TriangulationError, match="min_cameras"):
        triangulate(rig, pixels, min_cameras=1)
    with pytest.raises(CalibrationError, match="at least 2 cameras"):
        triangulate(Rig(rig.cameras[:1]), pixels[:1])
    same = [Camera(f"c{i}", (1280, 1024), rig.cameras[0].matrix, rotation=rig.cameras[i].rotation) for i in range(2)]
    with pytest.raises(CalibrationError, match="degenerate rig"):
        triangulate(Rig(same), pixels[:2])


def test_shared_session_three_good_cameras():
    folder = require_shared("sleap_anipose_minimal_session")
    import h5py

    from napari_posekit.core.views import read_views

    cams = ["back", "mid", "top"]
    views = read_views({c: folder / c / f"minimal_{c}_proofread.analysis.h5" for c in cams})
    rig = read_calibration(folder / "calibration.toml").subset(cams)
    tri = triangulate(rig, views.points, views.likelihood)
    assert np.isfinite(tri.points3d).all(axis=-1).mean() > 0.99
    errors = reprojection_errors(rig, tri.points3d, views.points)
    medians = [np.median(errors[c][tri.used[c]]) for c in range(3)]
    # measured: back 3.9, mid 0.94, top 1.2 px (back's tail labels disagree with the other views by 20-40 px)
    assert medians[0] < 5.0 and medians[1] < 1.5 and medians[2] < 2.0
    with h5py.File(folder / "points3d.h5", "r") as f:
        reference = np.asarray(f["tracks"])[:, 0]
    # the session's own points used the broken 'side' camera too; measured median 4.6 mm
    assert np.nanmedian(np.linalg.norm(reference - tri.points3d, axis=-1)) < 7.0
