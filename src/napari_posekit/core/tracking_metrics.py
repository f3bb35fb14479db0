"""Measures on multi-animal tracks: pose distances, animal size, crossings and identity scores.

Used by :mod:`napari_posekit.core.tracking` (which re-exports the public names)
and by the benchmarks.  Poses are ``(..., K, 2 or 3)`` arrays, NaN x/y where a
body part is missing.

* :func:`pose_distance`: the mean distance of the body parts visible in both
  poses; with no part in common, the distance between the centroids.
* :func:`animal_size`: the median diagonal of the bounding box of each pose's
  visible parts (``FALLBACK_SIZE`` pixels when no pose has two parts apart).
* :func:`find_crossings`: frame intervals where two animals come closer than
  ``distance`` (kind ``"close"``) or where one's identity confidence drops
  below ``min_confidence`` next to the other (kind ``"ambiguous"``), merged
  per pair when fewer than ``gap`` frames apart.
* :func:`identity_metrics`: IDF1 (with the one mapping of predicted to true
  animals that matches most frames over the whole video), identity switches
  (a true animal matched to another predicted animal than the last time it
  was matched) and how long the per-frame best assignment of the first frame
  stays the best.  A predicted pose matches a true one within ``threshold``
  pixels of mean body-part distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["Crossing", "animal_size", "find_crossings", "identity_metrics", "pose_distance"]

FALLBACK_SIZE = 100.0  # pixels, when the poses tell nothing of the animals' size
CLOSE_FRACTION = 0.75  # animals closer than this fraction of their size (mean body-part distance) are "close"


def pose_distance(a, b) -> np.ndarray:
    """Distance between poses ``a`` and ``b`` (broadcast over leading axes; ``(..., K, 2+)`` each).

    The mean over the body parts visible in both; the centroid distance where none is;
    NaN where either pose is wholly missing.
    """
    a = np.asarray(a, dtype=np.float64)[..., :2]
    b = np.asarray(b, dtype=np.float64)[..., :2]
    per_part = np.sqrt(((a - b) ** 2).sum(-1))  # (..., K), NaN where either is missing
    both = np.isfinite(per_part)
    n_both = both.sum(-1)
    mean = np.where(both, per_part, 0.0).sum(-1) / np.maximum(n_both, 1)
    if np.all(n_both > 0):
        return mean
    with np.errstate(invalid="ignore"):
        ca = _nanmean(a, axis=-2)
        cb = _nanmean(b, axis=-2)
    centroid = np.sqrt(((ca - cb) ** 2).sum(-1))
    return np.where(n_both > 0, mean, centroid)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(x)
    count = ok.sum(axis)
    total = np.where(ok, x, 0.0).sum(axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def animal_size(poses) -> float:
    """Median bounding-box diagonal of the poses in ``(..., K, 2+)`` (pixels)."""
    xy = np.asarray(poses, dtype=np.float64)[..., :2]
    if xy.size == 0:
        return FALLBACK_SIZE
    xy = xy.reshape(-1, xy.shape[-2], 2)
    ok = np.isfinite(xy).all(-1)
    keep = ok.sum(-1) >= 2
    if not keep.any():
        return FALLBACK_SIZE
    xy, ok = xy[keep], ok[keep]
    lo = np.where(ok[..., None], xy, np.inf).min(1)
    hi = np.where(ok[..., None], xy, -np.inf).max(1)
    diag = np.sqrt(((hi - lo) ** 2).sum(-1))
    diag = diag[diag > 0]
    return float(np.median(diag)) if len(diag) else FALLBACK_SIZE


@dataclass
class Crossing:
    """Frames ``start`` to ``stop`` (exclusive) where two animals may have exchanged identities.

    ``kind`` is ``"close"`` (the animals came close) or ``"ambiguous"`` (the identity
    confidence was low); ``min_distance`` the closest their poses came (NaN if never both
    seen); ``score`` in [0, 1], higher = more likely a swap happened there.
    """

    start: int
    stop: int
    individuals: tuple[int, int]
    kind: str
    min_distance: float
    score: float


def _runs(mask: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """(start, stop) of the True runs of ``mask``, runs fewer than ``gap`` frames apart merged."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def find_crossings(
    poses, confidence=None, *, distance: float | None = None, min_confidence: float = 0.5, gap: int = 5
) -> list[Crossing]:
    """Intervals to review for identity swaps, sorted by start (see the module docstring).

    Args:
        poses: ``(T, n, K, 2 or 3)`` tracks of n animals.
        confidence: Optional ``(T, n)`` identity confidence in [0, 1] (NaN = unknown); where an
            animal has no pose its confidence is not looked at.
        distance: Pixels (mean over body parts) under which two animals count as close;
            default three quarters of the animals' size (:func:`animal_size`).
        min_confidence: Identity confidence under which a frame is ambiguous.
        gap: Runs of the same pair fewer than this many frames apart become one crossing.
    """
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[-1] < 2:
        raise ValueError(f"poses: expected an array (frames, animals, body parts, 3); got shape {arr.shape}")
    n_frames, n = arr.shape[:2]
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        if confidence.shape != (n_frames, n):
            raise ValueError(f"confidence: expected shape (frames, animals) = {(n_frames, n)}, got {confidence.shape}")
    if n < 2 or n_frames == 0:
        return []
    if distance is None:
        distance = CLOSE_FRACTION * animal_size(arr)
    d = pose_distance(arr[:, :, None], arr[:, None, :])  # (T, n, n)
    near = np.where(np.isfinite(d), d, np.inf)
    near[:, np.arange(n), np.arange(n)] = np.inf
    # the partner of a doubtful frame: the nearest animal seen then (with two animals, the other one)
    nearest = np.where(np.isfinite(near).any(-1), near.argmin(-1), -1)
    if n == 2:
        nearest = np.broadcast_to(np.array([1, 0]), (n_frames, 2))
    # the confidence of an animal without a pose says nothing
    low = np.zeros((n_frames, n), bool) if confidence is None else (confidence < min_confidence) & _present(arr)
    found = []
    for a in range(n):
        for b in range(a + 1, n):
            close = near[:, a, b] < distance
            doubt = (low[:, a] & (nearest[:, a] == b)) | (low[:, b] & (nearest[:, b] == a))
            for start, stop in _runs(close | doubt, gap):
                found.append(_crossing(start, stop, a, b, d, doubt, confidence, distance))
    found.sort(key=lambda c: (c.start, c.individuals))
    return found


def _crossing(start, stop, a, b, d, doubt, confidence, distance) -> Crossing:
    span = d[start:stop, a, b]
    min_distance = float(np.nanmin(span)) if np.isfinite(span).any() else float("nan")
    score = 1 - min_distance / distance if np.isfinite(min_distance) else 0.0
    if confidence is not None:
        conf = confidence[start:stop][:, [a, b]]
        if np.isfinite(conf).any():
            score = max(score, 1 - float(np.nanmin(conf)))
    kind = "ambiguous" if doubt[start:stop].any() else "close"
    return Crossing(start, stop, (a, b), kind, min_distance, float(np.clip(score, 0.0, 1.0)))


def _present(poses: np.ndarray) -> np.ndarray:
    return (np.isfinite(poses[..., 0]) & np.isfinite(poses[..., 1])).any(-1)


def identity_metrics(pred, truth, *, threshold: float | None = None) -> dict:
    """How well predicted tracks keep the true identities.

    Args:
        pred: ``(T, n, K, 2+)`` predicted tracks.
        truth: ``(T, n', K, 2+)`` true tracks, same frames and body parts.
        threshold: Pixels (mean over body parts) within which a predicted pose matches a
            true one; default half the true animals' size.

    Returns:
        ``idf1``, ``switches``, ``best_on_first_kept`` (fraction of the frames with a match
        where the per-frame best assignment agrees with the first such frame's),
        ``switch_frames`` (the frame of each switch, once per true animal), and the counts
        behind them: ``idtp``, ``n_pred``, ``n_true``, ``frames``.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(truth, dtype=np.float64)
    if p.ndim != 4 or g.ndim != 4 or p.shape[0] != g.shape[0] or p.shape[2] != g.shape[2]:
        raise ValueError(
            f"pred {p.shape} and truth {g.shape}: expected (frames, animals, body parts, 3) "
            "with the same frames and body parts"
        )
    if threshold is None:
        threshold = 0.5 * animal_size(g)
    d = pose_distance(p[:, :, None], g[:, None, :])  # (T, n_pred, n_true)
    match = np.isfinite(d) & (d < threshold)
    n_pred, n_true = int(_present(p).sum()), int(_present(g).sum())
    if p.shape[1] and g.shape[1]:
        rows, cols = linear_sum_assignment(-match.sum(0))
        idtp = int(match[:, rows, cols].sum())
    else:
        idtp = 0
    total = n_pred + n_true
    switch_frames: list[int] = []
    kept, frames = 0, 0
    last: dict[int, int] = {}
    reference: set[tuple[int, int]] | None = None
    for t in range(p.shape[0]):
        pairs = _best_pairs(d[t], match[t])
        if not pairs:
            continue
        for i, j in pairs:
            if j in last and last[j] != i:
                switch_frames.append(t)
            last[j] = i
        frames += 1
        if reference is None:
            reference = set(pairs)
        ref_pred = {i for i, _ in reference}
        ref_true = {j for _, j in reference}
        kept += all((i, j) in reference or (i not in ref_pred and j not in ref_true) for i, j in pairs)
    return {
        "idf1": 2 * idtp / total if total else float("nan"),
        "switches": len(switch_frames),
        "switch_frames": switch_frames,
        "best_on_first_kept": kept / frames if frames else float("nan"),
        "idtp": idtp,
        "n_pred": n_pred,
        "n_true": n_true,
        "frames": frames,
    }


def _best_pairs(d: np.ndarray, match: np.ndarray) -> list[tuple[int, int]]:
    """The per-frame best (pred, true) pairs within the threshold."""
    if not match.any():
        return []
    cost = np.where(match, d, 1e12)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if match[i, j]]
