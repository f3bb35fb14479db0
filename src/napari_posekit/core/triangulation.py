"""3D points from several calibrated cameras' 2D points: weighted, robust, vectorised.

Every point (one body part on one frame) is triangulated from the cameras that see
it: a camera sees a point when both pixel coordinates are finite and its likelihood
is at least ``pcutoff``. Pixels are first undistorted (:meth:`Camera.undistort`),
then the linear (DLT) system of the seeing cameras is solved for all points at once:
its 4x4 normal matrix is built with one matrix product, and the point minimising the
algebraic error is found in closed form (3x3 adjugate, elementwise), with the
homogeneous eigenvector solution (batched ``numpy.linalg.eigh``) for the rare
ill-conditioned points. Each camera's two rows are weighted by its
likelihood and, after a first solve, by ``focal length / depth`` so that the
algebraic residual approximates the reprojection error in pixels (two such
reweighting passes).

With ``robust=True`` (the default) a camera that is confidently wrong (a left/right
swap, a detection on another object) is left out by a small RANSAC over camera
pairs: every pair of seeing cameras is triangulated for all points at once, every
camera whose reprojection error (in pixels, from the undistorted coordinates) is
under ``threshold`` is an inlier of that pair, the pair with the most inliers wins
(ties: the smaller mean inlier error), its inliers are triangulated again with the
weighted DLT, and the inliers are counted once more against that refined point.
A point is kept when at least ``min_cameras`` cameras agree on it, else it is NaN.

The world frame is shifted and scaled to the rig (centre and spread of the camera
centres) while solving, so millimetre and metre calibrations are conditioned alike.

Everything here is napari-free.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from napari_posekit.core.cameras import CalibrationError, Rig

__all__ = [
    "BLOCK_POINTS",
    "THRESHOLD",
    "Triangulation",
    "TriangulationError",
    "iter_triangulate",
    "reprojection_errors",
    "triangulate",
]

#: Default inlier threshold of the robust triangulation, in pixels.
THRESHOLD = 15.0
#: Points solved together; bounds the memory of the batched 4x4 systems (about 1 KiB per point and camera pair).
BLOCK_POINTS = 32768
#: Passes of reweighting each camera's rows by ``focal / depth`` after the first solve.
REWEIGHT_PASSES = 2


class TriangulationError(ValueError):
    """Arrays that cannot be triangulated with a rig (shapes, camera counts), with the reason in words."""


@dataclass
class Triangulation:
    """The result of :func:`triangulate` for points of shape ``(...)``.

    Attributes:
        points3d: ``(..., 3)`` world coordinates (the calibration's units), NaN where
            fewer than ``min_cameras`` cameras agree.
        error: ``(...)`` mean reprojection error in pixels over the cameras used, NaN
            where the point is NaN.
        cameras: ``(...)`` int, how many cameras were used (0 where the point is NaN).
        used: ``(C, ...)`` bool, which cameras were used for each point.
    """

    points3d: np.ndarray
    error: np.ndarray
    cameras: np.ndarray
    used: np.ndarray


def _check_inputs(rig: Rig, points2d, likelihood) -> tuple[np.ndarray, np.ndarray | None]:
    pts = np.asarray(points2d, dtype=np.float64)
    if pts.ndim < 2 or pts.shape[-1] != 2:
        raise TriangulationError(f"points2d must have shape (cameras, ..., 2); got {pts.shape}")
    if pts.shape[0] != len(rig):
        raise TriangulationError(
            f"points2d has {pts.shape[0]} cameras but the rig has {len(rig)} ({', '.join(rig.names)})"
        )
    if likelihood is None:
        return pts, None
    like = np.asarray(likelihood, dtype=np.float64)
    if like.shape != pts.shape[:-1]:
        raise TriangulationError(f"likelihood has shape {like.shape}; expected {pts.shape[:-1]} (points2d without xy)")
    return pts, like


def triangulate(
    rig: Rig,
    points2d: np.ndarray,
    likelihood: np.ndarray | None = None,
    *,
    pcutoff: float = 0.0,
    threshold: float = THRESHOLD,
    min_cameras: int = 2,
    robust: bool = True,
) -> Triangulation:
    """Triangulate points seen by the cameras of ``rig``.

    Args:
        rig: The calibrated cameras, in the order of ``points2d``'s first axis.
        points2d: ``(C, ..., 2)`` pixel coordinates, NaN where a camera has no point.
        likelihood: ``(C, ...)`` confidence of each 2D point (default: 1 for every
            finite point). It weights the camera's rows; NaN means unseen.
        pcutoff: Points with a likelihood below this are unseen.
        threshold: Reprojection error in pixels under which a camera agrees with a
            robust estimate (only with ``robust``).
        min_cameras: Fewest cameras that must see (``robust=False``) or agree on
            (``robust=True``) a point; others are NaN.
        robust: Leave out cameras that disagree (RANSAC over camera pairs); with
            False every seeing camera is used (plain weighted least squares).

    Raises:
        CalibrationError: The rig cannot triangulate (one camera, no baseline).
        TriangulationError: The arrays do not fit the rig.
    """
    return _drive(
        iter_triangulate(
            rig,
            points2d,
            likelihood,
            pcutoff=pcutoff,
            threshold=threshold,
            min_cameras=min_cameras,
            robust=robust,
            chunk=None,
        )
    )


def _drive(gen):
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


def iter_triangulate(
    rig: Rig,
    points2d: np.ndarray,
    likelihood: np.ndarray | None = None,
    *,
    chunk: int | None = 2000,
    pcutoff: float = 0.0,
    threshold: float = THRESHOLD,
    min_cameras: int = 2,
    robust: bool = True,
) -> Generator[float, None, Triangulation]:
    """:func:`triangulate` as a generator: yields the fraction done (0..1) after every chunk.

    ``chunk`` is how many entries of the first axis after the cameras (frames, for
    ``(C, F, J, 2)``) are triangulated per step (None: one step). The result does
    not depend on it. Closing the generator stops the work.
    """
    pts, like = _check_inputs(rig, points2d, likelihood)
    rig.check_geometry()
    if min_cameras < 2:
        raise TriangulationError(f"min_cameras must be at least 2, got {min_cameras}")
    if not threshold > 0:
        raise TriangulationError(f"threshold must be a positive number of pixels, got {threshold}")
    n_cams = pts.shape[0]
    shape = pts.shape[1:-1]
    flat = pts.reshape(n_cams, -1, 2)
    flat_like = None if like is None else like.reshape(n_cams, -1)
    n = flat.shape[1]
    per_row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    step = n if chunk is None or chunk <= 0 else max(1, int(chunk)) * per_row
    solver = _Solver(rig)
    out = Triangulation(
        points3d=np.full((n, 3), np.nan),
        error=np.full(n, np.nan),
        cameras=np.zeros(n, dtype=np.int64),
        used=np.zeros((n_cams, n), dtype=bool),
    )
    yield 0.0
    for start in range(0, max(n, 1), max(step, 1)):
        stop = min(n, start + step)
        for lo in range(start, stop, BLOCK_POINTS):
            hi = min(stop, lo + BLOCK_POINTS)
            part_like = None if flat_like is None else flat_like[:, lo:hi]
            seen = _seen(flat[:, lo:hi], part_like, pcutoff)
            weights = np.where(seen, 1.0 if part_like is None else np.nan_to_num(part_like), 0.0)
            res = solver.solve(flat[:, lo:hi], seen, weights, threshold, min_cameras, robust)
            out.points3d[lo:hi], out.error[lo:hi], out.cameras[lo:hi], out.used[:, lo:hi] = res
        yield stop / n if n else 1.0
    return Triangulation(
        points3d=out.points3d.reshape(shape + (3,)),
        error=out.error.reshape(shape),
        cameras=out.cameras.reshape(shape),
        used=out.used.reshape((n_cams,) + shape),
    )


def _seen(points: np.ndarray, likelihood: np.ndarray | None, pcutoff: float) -> np.ndarray:
    seen = np.isfinite(points).all(axis=-1)
    if likelihood is not None:
        with np.errstate(invalid="ignore"):
            seen &= np.isfinite(likelihood) & (likelihood >= pcutoff)
    return seen


def reprojection_errors(rig: Rig, points3d: np.ndarray, points2d: np.ndarray) -> np.ndarray:
    """``(C, ...)`` distances in pixels between ``points3d`` ``(..., 3)`` projected and ``points2d`` ``(C, ..., 2)``.

    NaN where either point is NaN, and where the 3D point is not in front of the camera.
    """
    pts3 = np.asarray(points3d, dtype=np.float64)
    pts2 = np.asarray(points2d, dtype=np.float64)
    if pts2.shape[0] != len(rig) or pts2.shape[1:-1] != pts3.shape[:-1]:
        raise TriangulationError(
            f"points2d {pts2.shape} does not match points3d {pts3.shape} and the rig's {len(rig)} cameras"
        )
    out = []
    for cam, p in zip(rig.cameras, pts2, strict=True):
        local = cam.to_camera(pts3)
        err = np.linalg.norm(cam.distort(local) - p, axis=-1)
        with np.errstate(invalid="ignore"):
            out.append(np.where(local[..., 2] > 0, err, np.nan))
    return np.stack(out)


class _Solver:
    """The rig's projection matrices in a normalised world frame, and the batched solves."""

    def __init__(self, rig: Rig):
        self.rig = rig
        centers = np.stack([cam.center() for cam in rig.cameras])
        self.origin = centers.mean(axis=0)
        self.scale = float(np.mean(np.linalg.norm(centers - self.origin, axis=1)))
        if not self.scale > 0:
            raise CalibrationError("degenerate rig: every camera is at the same point")
        to_world = np.eye(4)
        to_world[:3, :3] *= self.scale
        to_world[:3, 3] = self.origin
        # Projection of normalised world points; divided by the scale so the rows are O(1).
        self.proj = rig.extrinsics() @ to_world / self.scale  # (C, 3, 4)
        self.focal = np.array([np.sqrt(cam.matrix[0, 0] * cam.matrix[1, 1]) for cam in rig.cameras])
        p0, p1, p2 = self.proj[:, 0], self.proj[:, 1], self.proj[:, 2]

        def outer(u, v):
            return u[:, :, None] * v[:, None, :]

        self.basis = np.stack(  # (C, 4, 16): the constant matrices of :meth:`_normal`
            [
                outer(p2, p2),
                outer(p2, p0) + outer(p0, p2),
                outer(p2, p1) + outer(p1, p2),
                outer(p0, p0) + outer(p1, p1),
            ],
            axis=1,
        ).reshape(len(rig), 4, 16)

    # ------------------------------------------------------------------ linear solves
    def _normal(self, xy: np.ndarray, weights: np.ndarray, *, per_camera: bool = True) -> np.ndarray:
        """The DLT normal matrices of normalised ``xy`` ``(C, N, 2)``: ``(N, C, 4, 4)``, or summed ``(N, 4, 4)``.

        A camera's rows are ``x p2 - p0`` and ``y p2 - p1`` (``p`` its projection rows),
        so its matrix ``w^2 (r1 r1^T + r2 r2^T)`` is a combination of four constant
        matrices with coefficients ``w^2 (x^2 + y^2), -w^2 x, -w^2 y, w^2``: one matrix
        product for all points.
        """
        x = np.nan_to_num(xy[..., 0])
        y = np.nan_to_num(xy[..., 1])
        w2 = weights**2
        coeffs = np.stack([w2 * (x * x + y * y), -w2 * x, -w2 * y, w2], axis=-1)  # (C, N, 4)
        n_cams, n = x.shape
        if per_camera:
            m = np.matmul(coeffs, self.basis)  # (C, N, 16)
            return np.moveaxis(m, 0, 1).reshape(n, n_cams, 4, 4)
        flat = np.moveaxis(coeffs, 0, 1).reshape(n, n_cams * 4)
        return (flat @ self.basis.reshape(n_cams * 4, 16)).reshape(n, 4, 4)

    @staticmethod
    def _smallest(m: np.ndarray) -> np.ndarray:
        """The point ``(..., 3)`` minimising ``[X, 1] m [X, 1]^T`` for ``m`` ``(..., 4, 4)``.

        The 3x3 normal equations ``m[:3, :3] X = -m[:3, 3]`` are solved in closed form
        (adjugate over determinant, elementwise over all points); where they are
        ill-conditioned (a point near the plane at infinity, too few rows) the
        homogeneous solution, the eigenvector of the smallest eigenvalue, is used instead.
        """
        m = np.where(np.isfinite(m), m, 0.0)
        a, b = m[..., :3, :3], -m[..., :3, 3]
        c0 = np.cross(a[..., 1, :], a[..., 2, :])
        c1 = np.cross(a[..., 2, :], a[..., 0, :])
        c2 = np.cross(a[..., 0, :], a[..., 1, :])
        det = np.einsum("...i,...i->...", a[..., 0, :], c0)
        scale = np.einsum("...ii->...", a) ** 3
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (c0 * b[..., :1] + c1 * b[..., 1:2] + c2 * b[..., 2:]) / det[..., None]  # a is symmetric
        poor = ~(np.abs(det) > 1e-10 * scale) | ~np.isfinite(x).all(axis=-1)
        if np.any(poor):
            _, vecs = np.linalg.eigh(m[poor])
            v = vecs[..., :, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                x[poor] = v[..., :3] / v[..., 3:]
        return x

    def _depths(self, xn: np.ndarray) -> np.ndarray:
        """Depth ``(C, ...)`` of normalised world points ``(..., 3)`` in each camera (in normalised units)."""
        h = np.concatenate([xn, np.ones(xn.shape[:-1] + (1,))], axis=-1)
        return np.einsum("ck,...k->c...", self.proj[:, 2], h)

    def weighted(self, xy: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Weighted DLT of every point over the cameras with weight > 0, with depth reweighting; ``(N, 3)``."""
        xn = self._smallest(self._normal(xy, weights, per_camera=False))
        for _ in range(REWEIGHT_PASSES):
            depth = self._depths(xn)
            with np.errstate(divide="ignore", invalid="ignore"):
                w = weights * self.focal[:, None] / np.abs(depth)
            w = np.where(np.isfinite(w), w, weights)
            xn = self._smallest(
                self._normal(xy, w / np.maximum(w.max(axis=0, keepdims=True), 1e-300), per_camera=False)
            )
        return xn

    def pixel_errors(self, xn: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Approximate pixel errors ``(C, ...)`` of normalised world points ``xn`` ``(..., 3)`` (inf behind a camera).

        ``xy`` is ``(C, N, 2)`` and ``xn`` ``(N, 3)`` or ``(N, P, 3)``; errors are
        measured in undistorted coordinates times the focal length.
        """
        h = np.concatenate([xn, np.ones(xn.shape[:-1] + (1,))], axis=-1)
        cam = np.einsum("cij,...j->c...i", self.proj, h)
        extra = (1,) * (xn.ndim - 2)
        target = xy.reshape(xy.shape[:2] + extra + (2,))
        with np.errstate(divide="ignore", invalid="ignore"):
            proj = cam[..., :2] / cam[..., 2:]
            err = np.linalg.norm(proj - target, axis=-1) * self.focal.reshape((-1,) + (1,) * (xn.ndim - 1))
        return np.where((cam[..., 2] > 0) & np.isfinite(err), err, np.inf)

    # ------------------------------------------------------------------ one block
    def solve(self, points, seen, weights, threshold, min_cameras, robust):
        n = seen.shape[1]
        xy = self.rig.undistort(np.where(seen[..., None], points, np.nan))
        if robust:
            used = self._consensus(xy, seen, weights, threshold)
        else:
            used = seen.copy()
        enough = used.sum(axis=0) >= min_cameras
        xn = np.full((n, 3), np.nan)
        if np.any(enough):
            xn[enough] = self.weighted(xy[:, enough], np.where(used[:, enough], weights[:, enough], 0.0))
            if robust:  # the refined point may gain or lose cameras
                err = self.pixel_errors(xn[enough], xy[:, enough])
                again = seen[:, enough] & (err < threshold)
                changed = np.any(again != used[:, enough], axis=0) & (again.sum(axis=0) >= min_cameras)
                if np.any(changed):
                    idx = np.flatnonzero(enough)[changed]
                    used[:, idx] = again[:, changed]
                    xn[idx] = self.weighted(xy[:, idx], np.where(used[:, idx], weights[:, idx], 0.0))
        enough = (used.sum(axis=0) >= min_cameras) & np.isfinite(xn).all(axis=1)
        used &= enough
        world = np.where(enough[:, None], xn * self.scale + self.origin, np.nan)
        err = reprojection_errors(self.rig, world, points)
        with np.errstate(invalid="ignore"):
            mean_err = np.where(
                enough, np.nansum(np.where(used, err, 0.0), axis=0) / np.maximum(used.sum(0), 1), np.nan
            )
        return world, mean_err, used.sum(axis=0), used

    def _consensus(self, xy, seen, weights, threshold) -> np.ndarray:
        """Which cameras agree with the best camera pair of each point, ``(C, N)`` bool."""
        n_cams = seen.shape[0]
        pairs = list(combinations(range(n_cams), 2))
        normal = self._normal(xy, weights)  # (N, C, 4, 4)
        a = np.array([p[0] for p in pairs])
        b = np.array([p[1] for p in pairs])
        cand = self._smallest(normal[:, a] + normal[:, b])  # (N, P, 3)
        err = self.pixel_errors(cand, xy)  # (C, N, P)
        both = seen[a].T & seen[b].T  # (N, P)
        inlier = seen[:, :, None] & (err < threshold) & both[None]
        # a pair only counts when both of its own cameras agree with its point
        inlier &= (inlier[a, :, np.arange(len(pairs))].T & inlier[b, :, np.arange(len(pairs))].T)[None]
        count = inlier.sum(axis=0)  # (N, P)
        mean = np.where(inlier, err, 0.0).sum(axis=0) / np.maximum(count, 1)
        score = count - 0.5 * np.minimum(mean / threshold, 1.0)
        score = np.where(count > 0, score, -1.0)
        best = np.argmax(score, axis=1)
        return np.take_along_axis(inlier, best[None, :, None], axis=2)[..., 0]
