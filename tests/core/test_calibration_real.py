"""Camera calibration on the shared real data: the sleap-anipose minimal session and DeepLabCut's stereo pair."""

from __future__ import annotations

import numpy as np

from conftest import require_shared
from napari_posekit.core.boards import Board, read_board
from napari_posekit.core.calibration import calibrate


def test_minimal_session_against_stored_corners():
    """Three cameras, every second frame: judged on the corners sleap-anipose stored, not our own."""
    import h5py

    session = require_shared("sleap_anipose_minimal_session")
    board = read_board(session / "board.toml")
    names = ["back", "mid", "top"]
    result = calibrate(board, {c: session / c / "calibration_images" for c in names}, every=2)
    with h5py.File(session / "calibration.metadata.h5", "r") as f:
        assert "['back', 'mid', 'side', 'top']" in f["detected_corners"].attrs["Description"]
        stored = f["detected_corners"][:][[0, 1, 3]]
    # The stored corners are the same frames in plain (not natural) file-name order; match ours by content and
    # measure the offset between their detector and ours (OpenCV's pixel-centre convention).
    offsets = []
    for d in result.detections:
        c = names.index(d.camera)
        gaps = [np.nanmedian(np.linalg.norm(stored[c, f, d.ids] - d.corners, axis=1)) for f in range(21)]
        f = int(np.argmin(gaps))
        assert gaps[f] < 1.0
        offsets.append(np.nanmedian(stored[c, f, d.ids] - d.corners, axis=0))
    offset = np.median(offsets, axis=0)
    assert np.allclose(offset, 0.5, atol=0.1)  # sleap-anipose's corners sit half a pixel right of and below ours
    corners = stored - offset
    errors = {n: [] for n in names}
    spacing = []
    pairs = board.neighbours()
    for f in range(21):
        points = _triangulate(result.rig, corners[:, f])
        projected = result.rig.project(points)
        for c, n in enumerate(names):
            e = np.linalg.norm(projected[c] - corners[c, f], axis=1)
            errors[n] += e[np.isfinite(e)].tolist()
        d = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
        spacing += np.abs(d[np.isfinite(d)] - 24.0).tolist()
    for n in names:
        assert np.median(errors[n]) <= 0.5, (n, np.median(errors[n]))
    assert np.median(spacing) <= 0.15
    assert all(r.error_median < 0.5 for r in result.reports)


def _triangulate(rig, points: np.ndarray) -> np.ndarray:
    """Linear least squares over undistorted points; NaN where fewer than two cameras see."""
    norm = rig.undistort(points)
    ext = rig.extrinsics()
    out = np.full((points.shape[1], 3), np.nan)
    for n in range(points.shape[1]):
        seen = np.flatnonzero(np.all(np.isfinite(norm[:, n]), axis=1))
        if len(seen) >= 2:
            a = np.concatenate(
                [[norm[c, n, 0] * ext[c, 2] - ext[c, 0], norm[c, n, 1] * ext[c, 2] - ext[c, 1]] for c in seen]
            )
            out[n] = np.linalg.lstsq(a[:, :3], -a[:, 3], rcond=None)[0]
    return out


def test_dlc_stereo_intrinsics_match_bouguet():
    """Focal lengths within 1% and principal points within 5 px of the Bouguet toolbox's results."""
    from scipy.io import loadmat

    folder = require_shared("dlc_stereo_example")
    board = Board("checkerboard", board_x=10, board_y=7, square_length=30.0)  # 9 x 6 inner corners
    result = calibrate(board, {side: _only(folder, side) for side in ("left", "right")})
    for camera in result.rig.cameras:
        ref = loadmat(folder / f"Calib_Results_{camera.name}.mat")
        fc, cc = ref["fc"].ravel(), ref["cc"].ravel()
        assert np.all(np.abs(np.diag(camera.matrix)[:2] / fc - 1) < 0.01), (camera.name, camera.matrix, fc)
        assert np.linalg.norm(camera.matrix[:2, 2] - cc) < 5.0, (camera.name, camera.matrix, cc)
    assert all(r.used >= 12 and r.error_median < 0.3 for r in result.reports)
    baseline = np.linalg.norm(result.rig.cameras[1].center())
    assert 50 < baseline < 200  # mm: a desktop stereo pair


_LINKS: dict = {}


def _only(folder, side):
    """A folder of links to one side's images (the example keeps both sides in one folder)."""
    import tempfile
    from pathlib import Path

    if side not in _LINKS:
        _LINKS[side] = tempfile.TemporaryDirectory()
        for image in sorted(folder.glob(f"{side}*.jpg")):
            (Path(_LINKS[side].name) / image.name).symlink_to(image)
    return Path(_LINKS[side].name)
