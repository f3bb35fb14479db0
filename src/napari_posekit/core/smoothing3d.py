"""Temporal smoothing of triangulated 3D points with constant limb lengths (anipose-style).

The smoothed trajectory ``X`` (frames x body parts x 3) minimises, by robust
non-linear least squares (Gauss-Newton on iteratively reweighted normal equations,
with the sparse Jacobian given analytically, each step a sparse LU solve), the sum of the
robust loss of three kinds of residuals:

- **data**: ``X[f, j] - T[f, j]`` for every triangulated point ``T`` (world units);
- **smoothness**: ``smooth * (X[f-1, j] - 2 X[f, j] + X[f+1, j])``, the acceleration
  per frame (world units);
- **limb length**: ``length * (|X[f, a] - X[f, b]| - L[a, b])`` for every skeleton
  edge ``(a, b)`` seen on the frame, where ``L`` is the median length of the edge over
  the whole recording's triangulated points (world units).

Every residual ``r`` costs ``2 (sqrt(1 + (r / scale)^2) - 1)`` (the soft-L1 loss) times
``scale^2``: residuals much larger than ``scale`` count linearly instead of quadratically, so a triangulation
gone wrong on a few frames does not drag its neighbours. The defaults (``smooth`` 2,
``length`` 1, ``scale`` 5) assume millimetres, like anipose's; give them in
proportion for other units.

Points missing from the triangulation are filled by the smoothness term across gaps
of up to ``max_gap`` frames; longer gaps stay NaN. The recording is solved in chunks
of ``chunk`` frames that overlap by ``overlap`` frames on each side (only the middle
of each solve is kept), so an hour of video needs the memory of one chunk.

Everything here is napari-free.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Sequence

import numpy as np

from napari_posekit.core._generators import drive

__all__ = ["SMOOTH_DEFAULTS", "iter_smooth_points3d", "smooth_points3d"]

#: Defaults of the weights and the robust loss' scale (world units; anipose's millimetres).
SMOOTH_DEFAULTS = {"smooth": 2.0, "length": 1.0, "scale": 5.0}


def smooth_points3d(
    points: np.ndarray,
    bodyparts: Sequence[str],
    skeleton: Sequence[tuple[str, str]] = (),
    *,
    smooth: float | None = None,
    length: float | None = None,
    scale: float | None = None,
    max_gap: int = 10,
    chunk: int = 600,
    overlap: int = 30,
) -> np.ndarray:
    """Smoothed copy of ``points`` ``(F, J, 3)``; see the module's notes for the terms and weights."""
    return drive(
        iter_smooth_points3d(
            points,
            bodyparts,
            skeleton,
            smooth=smooth,
            length=length,
            scale=scale,
            max_gap=max_gap,
            chunk=chunk,
            overlap=overlap,
        )
    )


def iter_smooth_points3d(
    points: np.ndarray,
    bodyparts: Sequence[str],
    skeleton: Sequence[tuple[str, str]] = (),
    *,
    smooth: float | None = None,
    length: float | None = None,
    scale: float | None = None,
    max_gap: int = 10,
    chunk: int = 600,
    overlap: int = 30,
) -> Generator[float, None, np.ndarray]:
    """:func:`smooth_points3d` as a generator yielding the fraction done after every chunk."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[-1] != 3 or pts.shape[1] != len(bodyparts):
        raise ValueError(f"points must be (frames, {len(bodyparts)} body parts, 3); got {pts.shape}")
    smooth = SMOOTH_DEFAULTS["smooth"] if smooth is None else float(smooth)
    length = SMOOTH_DEFAULTS["length"] if length is None else float(length)
    scale = SMOOTH_DEFAULTS["scale"] if scale is None else float(scale)
    if smooth < 0 or length < 0 or not scale > 0:
        raise ValueError("smoothing weights must be >= 0 and the scale > 0")
    index = {bp: j for j, bp in enumerate(bodyparts)}
    unknown = sorted({bp for edge in skeleton for bp in edge if bp not in index})
    if unknown:
        raise ValueError(f"skeleton names unknown body parts: {', '.join(unknown)}")
    edges = np.array([(index[a], index[b]) for a, b in skeleton if a != b], dtype=np.int64).reshape(-1, 2)
    lengths = np.linalg.norm(pts[:, edges[:, 0]] - pts[:, edges[:, 1]], axis=-1) if len(edges) else np.zeros((0, 0))
    with warnings.catch_warnings():  # an edge never seen has no median length
        warnings.simplefilter("ignore", RuntimeWarning)
        limb = np.nanmedian(lengths, axis=0) if len(edges) and np.isfinite(lengths).any() else np.zeros(len(edges))
    keep_edges = np.isfinite(limb)
    edges, limb = edges[keep_edges], limb[keep_edges]
    n = len(pts)
    out = np.full_like(pts, np.nan)
    chunk = max(int(chunk), 10)
    yield 0.0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        lo, hi = max(0, start - overlap), min(n, stop + overlap)
        solved = _solve_chunk(pts[lo:hi], edges, limb, smooth, length, scale)
        out[start:stop] = solved[start - lo : stop - lo]
        yield stop / n
    fillable = _short_gaps(np.isfinite(pts).all(axis=-1), max_gap)
    out[~fillable] = np.nan
    return out


def _short_gaps(seen: np.ndarray, max_gap: int) -> np.ndarray:
    """``(F, J)``: seen, or inside a run of unseen frames no longer than ``max_gap`` with seen frames on both sides."""
    ok = seen.copy()
    n = len(seen)
    for j in range(seen.shape[1]):  # a loop over body parts, not points
        idx = np.flatnonzero(seen[:, j])
        if idx.size < 2:
            continue
        gaps = np.diff(idx) - 1
        for a, g in zip(idx[:-1][(gaps > 0) & (gaps <= max_gap)], gaps[(gaps > 0) & (gaps <= max_gap)], strict=True):
            ok[a + 1 : a + 1 + g, j] = True
    return ok[:n]


def _solve_chunk(target, edges, limb, smooth, length, scale) -> np.ndarray:
    from scipy import sparse

    f, j, _ = target.shape
    seen = np.isfinite(target).all(axis=-1)
    if not seen.any():
        return np.full_like(target, np.nan)
    start = _initial(target, seen)
    nvar = f * j * 3
    var = np.arange(nvar).reshape(f, j, 3)
    data_rows = var[seen]  # (S, 3) variable ids
    data_target = target[seen]
    acc = var[1:-1] if f >= 3 else np.zeros((0, j, 3), dtype=np.int64)
    edge_seen = seen[:, edges[:, 0]] & seen[:, edges[:, 1]] if len(edges) else np.zeros((f, 0), bool)
    ef, ee = np.nonzero(edge_seen)

    def residuals(x):
        pts = x.reshape(f, j, 3)
        parts = [(pts[seen] - data_target).ravel()]
        if f >= 3:
            parts.append(smooth * (pts[:-2] - 2 * pts[1:-1] + pts[2:]).ravel())
        if ef.size:
            d = pts[ef, edges[ee, 0]] - pts[ef, edges[ee, 1]]
            parts.append(length * (np.linalg.norm(d, axis=-1) - limb[ee]))
        return np.concatenate(parts)

    def jacobian(x):
        pts = x.reshape(f, j, 3)
        rows, cols, vals = [], [], []
        n_data = data_rows.size
        rows.append(np.arange(n_data))
        cols.append(data_rows.ravel())
        vals.append(np.ones(n_data))
        offset = n_data
        if f >= 3:
            n_acc = acc.size
            r = offset + np.arange(n_acc)
            for shift, w in ((-1, 1.0), (0, -2.0), (1, 1.0)):
                rows.append(r)
                cols.append((acc + shift * j * 3).ravel())
                vals.append(np.full(n_acc, smooth * w))
            offset += n_acc
        if ef.size:
            d = pts[ef, edges[ee, 0]] - pts[ef, edges[ee, 1]]
            unit = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
            r = np.repeat(offset + np.arange(ef.size), 3)
            rows += [r, r]
            cols += [var[ef, edges[ee, 0]].ravel(), var[ef, edges[ee, 1]].ravel()]
            vals += [(length * unit).ravel(), (-length * unit).ravel()]
            offset += ef.size
        return sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(offset, nvar)
        )

    return _irls(residuals, jacobian, start.ravel(), scale).reshape(f, j, 3)


def _irls(residuals, jacobian, x, scale, iterations: int = 30, tol: float = 1e-3):
    """Minimise ``sum(soft_l1((r / scale)^2))`` by Gauss-Newton steps on reweighted normal equations.

    Each step weights residual ``r`` by ``1 / sqrt(1 + (r / scale)^2)`` (the derivative
    of the ``soft_l1`` loss) and solves the sparse, banded system ``J^T W J dx = -J^T W r``
    by sparse LU, halving a step that raises the cost; it stops when no coordinate
    moves by more than ``tol * scale``.
    """

    def cost(r):
        return float(np.sum(np.sqrt(1.0 + (r / scale) ** 2) - 1.0))

    r = residuals(x)
    for _ in range(iterations):
        jac = jacobian(x)
        w = 1.0 / np.sqrt(1.0 + (r / scale) ** 2)
        jw = jac.T.multiply(w).tocsr()
        step = _solve_sparse((jw @ jac).tocsr(), -(jw @ r))
        if not np.all(np.isfinite(step)):
            break
        before = cost(r)
        for _ in range(8):  # halve a step that makes things worse
            trial = residuals(x + step)
            if cost(trial) <= before:
                break
            step = step / 2
        else:
            break
        x, r = x + step, trial
        if np.max(np.abs(step)) < tol * scale:
            break
    return x


def _solve_sparse(matrix, rhs: np.ndarray) -> np.ndarray:
    """``matrix^-1 rhs`` for a sparse symmetric positive semi-definite matrix (a tiny ridge keeps it definite).

    Sparse LU with a minimum-degree ordering of ``A^T + A``, the fastest of SuperLU's
    orderings on these banded systems.
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    ridge = 1e-9 * max(float(np.abs(matrix.diagonal()).max(initial=0.0)), 1e-12)
    system = (matrix + sparse.identity(matrix.shape[0], format="csr") * ridge).tocsc()
    return spsolve(system, rhs, permc_spec="MMD_AT_PLUS_A")


def _initial(target: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Missing points filled by linear interpolation over time (held at the ends; a body part never seen: the mean)."""
    out = target.copy()
    frames = np.arange(len(target))
    centre = np.nanmean(target[seen], axis=0)
    for j in range(target.shape[1]):  # a loop over body parts, not points
        idx = np.flatnonzero(seen[:, j])
        if idx.size == 0:
            out[:, j] = centre
            continue
        for k in range(3):
            out[:, j, k] = np.interp(frames, idx, target[idx, j, k])
    return out
