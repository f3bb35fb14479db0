"""The numerical steps of a calibration: intrinsics per camera, first extrinsics, bundle adjustment.

Poses are 4x4 matrices that map coordinates of one frame into another:
``board_to_camera`` (what :func:`board_pose` finds in one image), ``world_to_camera``
(a camera's extrinsics; the first camera's are the identity, so the world is the
first camera's frame, as anipose has it) and ``board_to_world``.

Everything here is napari-free; OpenCV and SciPy are imported by the functions that
use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_posekit.core.cameras import CalibrationError, rodrigues, rotation_vector

__all__ = [
    "Observation",
    "board_pose",
    "bundle_adjust",
    "calibrate_intrinsics",
    "chain_extrinsics",
    "pose_matrix",
    "project_points",
]


@dataclass
class Observation:
    """One used image: its camera (index), frame, object points and the corners seen."""

    camera: int
    frame: int
    obj: np.ndarray  # (K, 3)
    uv: np.ndarray  # (K, 2)


def pose_matrix(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rodrigues(np.asarray(rvec, dtype=np.float64).ravel())
    out[:3, 3] = np.asarray(tvec, dtype=np.float64).ravel()
    return out


def _invert(pose: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = pose[:3, :3].T
    out[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return out


def project_points(points: np.ndarray, matrix: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Pixels of camera-frame points ``(..., 3)``; ``matrix`` ``(..., 3, 3)`` and ``dist`` ``(..., 5)`` broadcast."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = points[..., 0] / points[..., 2]
        y = points[..., 1] / points[..., 2]
    k1, k2, p1, p2, k3 = (dist[..., i] for i in range(5))
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    u = matrix[..., 0, 0] * xd + matrix[..., 0, 1] * yd + matrix[..., 0, 2]
    v = matrix[..., 1, 1] * yd + matrix[..., 1, 2]
    return np.stack([u, v], axis=-1)


def view_errors(obs: Observation, pose: np.ndarray, matrix: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Per-corner reprojection errors (px) of one image under a board-to-camera pose."""
    cam = obs.obj @ pose[:3, :3].T + pose[:3, 3]
    return np.linalg.norm(project_points(cam, matrix, dist) - obs.uv, axis=1)


def board_pose(obs: Observation, matrix: np.ndarray, dist: np.ndarray) -> np.ndarray | None:
    """The board-to-camera pose of one image (planar PnP, refined), or None."""
    import cv2

    obj = np.ascontiguousarray(obs.obj, dtype=np.float64)
    uv = np.ascontiguousarray(obs.uv, dtype=np.float64)
    try:
        ok, rvec, tvec = cv2.solvePnP(obj, uv, matrix, dist, flags=cv2.SOLVEPNP_IPPE)
        if ok:
            rvec, tvec = cv2.solvePnPRefineLM(obj, uv, matrix, dist, rvec, tvec)
    except cv2.error:
        return None
    if not ok or not np.all(np.isfinite(rvec)) or not np.all(np.isfinite(tvec)) or tvec.ravel()[2] <= 0:
        return None
    return pose_matrix(rvec, tvec)


def calibrate_intrinsics(
    views: Sequence[Observation], size: tuple[int, int], *, fix_k3: bool = True
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """OpenCV's camera calibration over ``views``: matrix, 5 distortions, and each view's board pose."""
    import cv2

    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    obj = [np.ascontiguousarray(v.obj, dtype=np.float32) for v in views]
    img = [np.ascontiguousarray(v.uv, dtype=np.float32) for v in views]
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-9)
    try:
        _, matrix, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, None, None, flags=flags, criteria=criteria)
    except cv2.error as err:
        raise CalibrationError(f"OpenCV could not calibrate the camera: {err.msg if hasattr(err, 'msg') else err}")
    dist = np.concatenate([np.asarray(dist, dtype=np.float64).ravel()[:5], np.zeros(5)])[:5]
    poses = [pose_matrix(r, t) for r, t in zip(rvecs, tvecs, strict=True)]
    return np.asarray(matrix, dtype=np.float64), dist, poses


def _rotation_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (radians) between two rotation matrices."""
    cos = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def robust_mean_pose(candidates: Sequence[np.ndarray]) -> np.ndarray:
    """A consensus of 4x4 poses: the medoid, then the mean of those that agree with it."""
    from scipy.spatial.transform import Rotation

    cands = list(candidates)
    if len(cands) == 1:
        return cands[0]
    t = np.stack([c[:3, 3] for c in cands])
    scale = max(float(np.median(np.linalg.norm(t, axis=1))), 1e-9)
    n = len(cands)
    cost = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d = _rotation_distance(cands[i][:3, :3], cands[j][:3, :3]) + np.linalg.norm(t[i] - t[j]) / scale
            cost[i, j] = cost[j, i] = d
    medoid = int(np.argmin(np.median(cost, axis=1)))
    agree = [i for i in range(n) if cost[medoid, i] <= max(0.1, 2.0 * np.median(cost[medoid]))]
    out = np.eye(4)
    out[:3, :3] = Rotation.from_matrix(np.stack([cands[i][:3, :3] for i in agree])).mean().as_matrix()
    out[:3, 3] = np.median(t[agree], axis=0)
    return out


def chain_extrinsics(names: Sequence[str], poses: dict[tuple[int, int], np.ndarray]) -> list[np.ndarray]:
    """World-to-camera poses of every camera from the board poses ``(camera, frame) -> board_to_camera``.

    The cameras are joined over a spanning tree that prefers pairs sharing the most
    frames, starting at the first camera (the world). Raises when some camera shares
    no frame with the others.
    """
    n = len(names)
    frames: list[dict[int, np.ndarray]] = [{} for _ in range(n)]
    for (cam, frame), pose in poses.items():
        frames[cam][frame] = pose
    shared = np.zeros((n, n), dtype=int)
    for a in range(n):
        for b in range(n):
            if a != b:
                shared[a, b] = len(frames[a].keys() & frames[b].keys())
    extrinsics: list[np.ndarray | None] = [None] * n
    extrinsics[0] = np.eye(4)
    while any(e is None for e in extrinsics):
        best = None
        for a in (i for i in range(n) if extrinsics[i] is not None):
            for b in (i for i in range(n) if extrinsics[i] is None):
                if shared[a, b] and (best is None or shared[a, b] > shared[best]):
                    best = (a, b)
        if best is None:
            placed = [names[i] for i in range(n) if extrinsics[i] is not None]
            alone = [names[i] for i in range(n) if extrinsics[i] is None]
            raise CalibrationError(
                f"the cameras are not connected: {', '.join(alone)} share no frame with a usable board view "
                f"with {', '.join(placed)} (each camera must see the board together with another camera, "
                "directly or through others)"
            )
        a, b = best
        common = sorted(frames[a].keys() & frames[b].keys())
        # b's camera frame -> a's camera frame, one estimate per shared frame
        relative = robust_mean_pose([frames[a][f] @ _invert(frames[b][f]) for f in common])
        extrinsics[b] = _invert(relative) @ extrinsics[a]
    return [e for e in extrinsics if e is not None]


def board_to_world(views: dict[int, np.ndarray], extrinsics: Sequence[np.ndarray]) -> np.ndarray:
    """One frame's board-to-world pose from the cameras that saw it (``camera -> board_to_camera``)."""
    return robust_mean_pose([_invert(extrinsics[c]) @ pose for c, pose in views.items()])


def _pack(pose: np.ndarray) -> np.ndarray:
    return np.concatenate([rotation_vector(pose[:3, :3]), pose[:3, 3]])


def _intrinsic_vector(matrix: np.ndarray, dist: np.ndarray) -> np.ndarray:
    return np.concatenate([[matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2]], dist[:5]])


@dataclass
class _Layout:
    n_cams: int
    n_frames: int
    n_intr: int  # intrinsic parameters per camera (0 when fixed)

    @property
    def cam_block(self) -> int:
        return 6 + self.n_intr

    def cam_slice(self, c: int) -> slice:
        start = c * self.cam_block
        return slice(start, start + self.cam_block)

    def frame_slice(self, f: int) -> slice:
        start = self.n_cams * self.cam_block + 6 * f
        return slice(start, start + 6)

    @property
    def size(self) -> int:
        return self.n_cams * self.cam_block + 6 * self.n_frames


def _sparsity(layout: _Layout, cam_idx: np.ndarray, frm_idx: np.ndarray):
    """Which parameters each residual depends on: its camera's block and its frame's board pose."""
    from scipy.sparse import coo_matrix

    n = len(cam_idx)
    cam_cols = cam_idx[:, None] * layout.cam_block + np.arange(layout.cam_block)
    frm_cols = layout.n_cams * layout.cam_block + 6 * frm_idx[:, None] + np.arange(6)
    cols = np.hstack([cam_cols, frm_cols])  # (n, cam_block + 6)
    cols = np.repeat(cols, 2, axis=0)  # u and v rows
    rows = np.repeat(np.arange(2 * n), cols.shape[1])
    data = np.ones(rows.size, dtype=np.int8)
    return coo_matrix((data, (rows, cols.ravel())), shape=(2 * n, layout.size)).tocsc()


def bundle_adjust(
    observations: Sequence[Observation],
    matrices: Sequence[np.ndarray],
    dists: Sequence[np.ndarray],
    extrinsics: Sequence[np.ndarray],
    boards: dict[int, np.ndarray],
    *,
    refine_intrinsics: bool = False,
    fix_k3: bool = True,
    loss: str = "soft_l1",
    f_scale: float = 1.0,
    max_nfev: int = 200,
    ftol: float = 1e-6,
):
    """Refine extrinsics (and intrinsics) of all cameras and the board poses together.

    ``observations`` index the cameras and ``boards`` (frame -> board_to_world). The
    first camera stays the world origin. Returns the matrices, distortions,
    world-to-camera extrinsics and board poses after the fit.
    """
    from scipy.optimize import least_squares

    frames = sorted(boards)
    frame_pos = {f: i for i, f in enumerate(frames)}
    n_intr = (8 if fix_k3 else 9) if refine_intrinsics else 0
    layout = _Layout(len(matrices), len(frames), n_intr)
    cam_idx = np.concatenate([np.full(len(o.obj), o.camera) for o in observations])
    frm_idx = np.concatenate([np.full(len(o.obj), frame_pos[o.frame]) for o in observations])
    obj = np.concatenate([o.obj for o in observations])
    uv = np.concatenate([o.uv for o in observations])

    x0 = np.zeros(layout.size)
    for c in range(layout.n_cams):
        block = _pack(extrinsics[c])
        if n_intr:
            block = np.concatenate([block, _intrinsic_vector(matrices[c], dists[c])[:n_intr]])
        x0[layout.cam_slice(c)] = block
    for f, i in frame_pos.items():
        x0[layout.frame_slice(i)] = _pack(boards[f])

    base_k = np.stack([_intrinsic_vector(m, d) for m, d in zip(matrices, dists, strict=True)])

    def unpack(x):
        cams = x[: layout.n_cams * layout.cam_block].reshape(layout.n_cams, layout.cam_block)
        frm = x[layout.n_cams * layout.cam_block :].reshape(layout.n_frames, 6)
        k = base_k.copy()
        if n_intr:
            k[:, :n_intr] = cams[:, 6:]
        return cams[:, :6], k, frm

    def residuals(x):
        cams, k, frm = unpack(x)
        rb, tb = rodrigues(frm[:, :3]), frm[:, 3:]
        rc, tc = rodrigues(cams[:, :3]), cams[:, 3:6]
        world = np.einsum("pij,pj->pi", rb[frm_idx], obj) + tb[frm_idx]
        cam = np.einsum("pij,pj->pi", rc[cam_idx], world) + tc[cam_idx]
        kk = k[cam_idx]
        mat = np.zeros((len(kk), 3, 3))
        mat[:, 0, 0], mat[:, 1, 1], mat[:, 0, 2], mat[:, 1, 2], mat[:, 2, 2] = kk[:, 0], kk[:, 1], kk[:, 2], kk[:, 3], 1
        return (project_points(cam, mat, kk[:, 4:9]) - uv).ravel()

    sparsity = _sparsity(layout, cam_idx, frm_idx)
    # the first camera is the world: its pose is not a parameter
    keep = np.ones(layout.size, dtype=bool)
    keep[:6] = False
    x_fixed = x0.copy()

    def fun(free):
        x = x_fixed.copy()
        x[keep] = free
        return residuals(x)

    fit = least_squares(
        fun,
        x0[keep],
        jac_sparsity=sparsity[:, keep],
        method="trf",
        loss=loss,
        f_scale=f_scale,
        x_scale="jac",
        max_nfev=max_nfev,
        ftol=ftol,
    )
    x = x_fixed.copy()
    x[keep] = fit.x
    cams, k, frm = unpack(x)
    out_m, out_d = [], []
    for row in k:
        m = np.array([[row[0], 0.0, row[2]], [0.0, row[1], row[3]], [0.0, 0.0, 1.0]])
        out_m.append(m)
        out_d.append(row[4:9].copy())
    out_e = [pose_matrix(c[:3], c[3:]) for c in cams]
    out_b = {f: pose_matrix(frm[i, :3], frm[i, 3:]) for f, i in frame_pos.items()}
    return out_m, out_d, out_e, out_b
