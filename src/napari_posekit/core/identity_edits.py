"""Identity corrections of multi-animal tracks: swap two animals from a frame on or in a range, merge fragments.

Every function takes a :class:`~napari_posekit.core.multianimal.Tracks` and
returns a new one; the input is never changed, so a stack of the returned
objects is an undo history. Frame arguments are indices into the arrays
(``tracks.frames[i]`` is the video frame number of index ``i``); individuals
are indices into ``tracks.individuals``.

- :func:`swap_from`: individuals ``a`` and ``b`` exchange their poses and
  identity confidence from a frame to the end (the tracker swapped them at a
  crossing and kept going);
- :func:`swap_range`: the same within ``[start, stop)`` (a swap that the
  tracker undid itself later);
- :func:`merge`: two fragments of one animal become one track; refused when
  both have poses on a frame, naming those frames;
- :func:`swap_frame`: where inside a crossing a swap most likely happened
  (the frame from which exchanging the two animals makes their motion
  smoothest), so "next crossing" can land on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_posekit.core.multianimal import Tracks

__all__ = ["merge", "present", "swap_frame", "swap_from", "swap_range"]

HISTORY = 50  # frames before a crossing from which :func:`swap_frame` carries a body part's last position


def _check_individual(tracks: Tracks, i: int, role: str) -> int:
    n = tracks.poses.shape[1]
    if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
        raise ValueError(f"{role} must be an individual index from 0 to {n - 1}, not {i!r}")
    return int(i)


def _check_pair(tracks: Tracks, a: int, b: int) -> tuple[int, int]:
    a, b = _check_individual(tracks, a, "a"), _check_individual(tracks, b, "b")
    if a == b:
        raise ValueError(f"cannot swap {tracks.individuals[a]!r} with itself: choose two different individuals")
    return a, b


def present(tracks: Tracks, i: int | None = None) -> np.ndarray:
    """``(T, I)`` (or ``(T,)`` for individual ``i``) True where an individual has at least one placed point."""
    poses = tracks.poses if i is None else tracks.poses[:, [i]]
    found = np.isfinite(poses[..., :2]).all(axis=-1).any(axis=-1)
    return found if i is None else found[:, 0]


def swap_range(tracks: Tracks, start: int, stop: int, a: int, b: int) -> Tracks:
    """Individuals ``a`` and ``b`` exchange poses and identity confidence on frame indices ``start`` to ``stop - 1``."""
    a, b = _check_pair(tracks, a, b)
    n = tracks.poses.shape[0]
    start, stop = int(start), int(stop)
    if not 0 <= start < stop <= n:
        raise ValueError(f"the frames to swap must satisfy 0 <= start < stop <= {n}; got start={start}, stop={stop}")
    out = tracks.copy()
    out.poses[start:stop, [a, b]] = tracks.poses[start:stop, [b, a]]
    if tracks.identity is not None:
        out.identity[start:stop, [a, b]] = tracks.identity[start:stop, [b, a]]
    return out


def swap_from(tracks: Tracks, frame_index: int, a: int, b: int) -> Tracks:
    """Individuals ``a`` and ``b`` exchange poses and identity confidence from ``frame_index`` to the last frame."""
    return swap_range(tracks, frame_index, tracks.poses.shape[0], a, b)


def _frame_list(frames: np.ndarray, at_most: int = 8) -> str:
    shown = ", ".join(str(int(f)) for f in frames[:at_most])
    return shown + (f" and {len(frames) - at_most} more" if len(frames) > at_most else "")


def merge(tracks: Tracks, keep: int, other: int) -> Tracks:
    """``keep`` takes ``other``'s poses (and identity confidence) on the frames where it has none; ``other`` is emptied.

    Two fragments of one animal never share a frame, so a frame where both
    have points is refused (``ValueError`` naming the frames): merging there
    would throw one of the poses away. ``other`` stays in the list of
    individuals, with NaN poses and zero identity confidence.
    """
    keep, other = _check_individual(tracks, keep, "keep"), _check_individual(tracks, other, "other")
    if keep == other:
        raise ValueError(f"cannot merge {tracks.individuals[keep]!r} with itself: choose two different tracks")
    mine, theirs = present(tracks, keep), present(tracks, other)
    both = np.flatnonzero(mine & theirs)
    if len(both):
        names = f"{tracks.individuals[keep]!r} and {tracks.individuals[other]!r}"
        raise ValueError(
            f"{names} both have poses on {len(both)} frame(s) ({_frame_list(np.asarray(tracks.frames)[both])}): "
            "they are not fragments of one animal there. Swap or split them first, or merge other tracks."
        )
    out = tracks.copy()
    fill = ~mine & theirs
    out.poses[fill, keep] = tracks.poses[fill, other]
    out.poses[:, other] = np.nan
    if tracks.identity is not None:
        out.identity[fill, keep] = tracks.identity[fill, other]
        out.identity[:, other] = 0.0
    return out


def _carried(poses: np.ndarray) -> np.ndarray:
    """``(T, K, 2)`` positions with each body part's last seen position carried over the frames it is missing."""
    xy = np.array(poses[..., :2], dtype=float)
    missing = ~np.isfinite(xy).all(axis=-1)
    t = np.arange(len(xy))[:, None]
    last = np.maximum.accumulate(np.where(missing, -1, t), axis=0)
    out = np.take_along_axis(xy, np.clip(last, 0, None)[..., None], axis=0)
    out[last < 0] = np.nan
    return out


def _pose_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Mean distance over the body parts seen in both, per frame (NaN where none is)."""
    d = np.linalg.norm(p - q, axis=-1)
    seen = np.isfinite(d)
    with np.errstate(invalid="ignore"):
        return np.where(seen.any(axis=-1), np.nansum(d, axis=-1) / np.maximum(seen.sum(axis=-1), 1), np.nan)


def swap_frame(tracks: Tracks, start: int, stop: int, a: int, b: int) -> tuple[int, float]:
    """The frame index in ``[start, stop]`` from which exchanging ``a`` and ``b`` best keeps both animals' motion smooth.

    Each animal's pose on frame ``f`` is predicted from frames ``f - 2`` and
    ``f - 1`` at constant velocity (each body part's last seen position stands
    in where it is missing). For each candidate ``f`` the distance between the
    prediction and the pose found is measured as the tracks are (each animal to
    itself) and as they would be after a swap from ``f`` on (each to the
    other). Returns the frame with the largest gain and the gain in pixels: a
    positive gain says the tracks look swapped there; zero or less says no
    swap is visible, and the frame where the two animals are closest is
    returned.
    """
    a, b = _check_pair(tracks, a, b)
    n = tracks.poses.shape[0]
    lo, hi = max(int(start), 2), min(int(stop), n - 1)
    if hi < lo:
        return min(max(int(start), 0), n - 1), 0.0
    first = max(lo - HISTORY, 0)  # a body part unseen for longer than this is not carried into the window
    pa, pb = _carried(tracks.poses[first : hi + 1, a]), _carried(tracks.poses[first : hi + 1, b])
    frames = np.arange(lo, hi + 1) - first

    def ahead(p: np.ndarray) -> np.ndarray:
        step = p[frames - 1] - p[frames - 2]
        return p[frames - 1] + np.where(np.isfinite(step), step, 0.0)

    qa, qb = ahead(pa), ahead(pb)
    kept = _pose_distance(pa[frames], qa) + _pose_distance(pb[frames], qb)
    swapped = _pose_distance(pa[frames], qb) + _pose_distance(pb[frames], qa)
    gain = kept - swapped
    if np.isfinite(gain).any() and np.nanmax(gain) > 0:
        k = int(np.nanargmax(gain))
        return int(frames[k]) + first, float(gain[k])
    apart = _pose_distance(pa[frames], pb[frames])
    k = int(np.nanargmin(apart)) if np.isfinite(apart).any() else len(frames) // 2
    best = float(np.nanmax(gain)) if np.isfinite(gain).any() else 0.0
    return int(frames[k]) + first, min(best, 0.0)
