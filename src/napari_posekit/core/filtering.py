"""Smoothing predicted trajectories over time, like DeepLabCut's ``filterpredictions``.

:func:`filter_predictions` filters every body part's ``x`` and ``y`` along
time with a median filter (removes single-frame jumps) or a Savitzky-Golay
filter (smooths jitter, keeps the shape of fast movements), both from scipy.

Missing points (NaN coordinates, or likelihood below ``pcutoff``) are not fed
to the filter as values. Gaps of at most ``max_gap`` frames between two points
that are present are bridged by linear interpolation and the filter runs over
the bridged run; the bridged points keep their filtered values in the result.
Longer gaps, and missing points before the first or after the last present
point, are NaN in the result. Each run of points between long gaps is
filtered on its own, so points on one side of a long gap never move points on
the other side. The likelihood is returned unchanged, as in DeepLabCut.

Filtered predictions are written beside the originals as
``<stem>_filtered.h5`` (:func:`filtered_path`), DeepLabCut's name for them.

Everything here is napari-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage, signal

from napari_posekit.core.predictions import read_predictions, write_predictions

__all__ = ["FILTER_METHODS", "filter_prediction_file", "filter_predictions", "filtered_path"]

#: The filters :func:`filter_predictions` knows.
FILTER_METHODS = ("median", "savgol")

FilterMethod = Literal["median", "savgol"]


def filtered_path(h5_path: str | os.PathLike) -> Path:
    """``<stem>_filtered.h5`` beside a prediction file (DeepLabCut's name for filtered predictions)."""
    path = Path(h5_path)
    return path.with_name(f"{path.stem}_filtered.h5")


def _check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_options(method: str, window, polyorder, pcutoff, max_gap) -> tuple[int, int, float, int]:
    if method not in FILTER_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, FILTER_METHODS))}, got {method!r}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd number of frames, at least 3 (3, 5, 7, ...), got {window!r}")
    window = int(window)
    polyorder = _check_int(polyorder, "polyorder")
    if method == "savgol" and not 0 <= polyorder < window:
        raise ValueError(f"polyorder must be at least 0 and smaller than the window ({window}), got {polyorder}")
    try:
        pcutoff = float(pcutoff)
    except (TypeError, ValueError):
        raise ValueError(f"pcutoff must be a number, got {pcutoff!r}") from None
    if not np.isfinite(pcutoff):
        raise ValueError(f"pcutoff must be a finite number, got {pcutoff}")
    max_gap = window if max_gap is None else _check_int(max_gap, "max_gap")
    if max_gap < 0:
        raise ValueError(f"max_gap must not be negative, got {max_gap}")
    return window, polyorder, pcutoff, max_gap


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the runs of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _bridge(valid: np.ndarray, max_gap: int) -> np.ndarray:
    """``valid`` plus the gaps of at most ``max_gap`` frames that lie between two valid frames."""
    usable = valid.copy()
    present = np.flatnonzero(valid)
    if len(present) < 2 or max_gap == 0:
        return usable
    gaps = np.diff(present) - 1
    for start, length in zip(present[:-1][(gaps > 0) & (gaps <= max_gap)], gaps[(gaps > 0) & (gaps <= max_gap)]):
        usable[start + 1 : start + 1 + length] = True
    return usable


def _filter_run(values: np.ndarray, method: str, window: int, polyorder: int) -> np.ndarray:
    """Filter one gap-free run ``(n, 2)``; the window shrinks to the longest odd length that fits."""
    n = len(values)
    w = min(window, n if n % 2 else n - 1)
    if method == "median":
        if w < 3:
            return values
        # edges repeat the end values; scipy.signal.medfilt pads with zeros, which drags the ends towards 0
        return ndimage.median_filter(values, size=(w, 1), mode="nearest")
    if w <= polyorder:
        return values
    return signal.savgol_filter(values, w, polyorder, axis=0, mode="interp")


def filter_predictions(
    xy: np.ndarray,
    likelihood: np.ndarray | None = None,
    *,
    method: FilterMethod = "median",
    window: int = 5,
    polyorder: int = 2,
    pcutoff: float = 0.0,
    max_gap: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Filter trajectories along time; returns ``(xy_filtered, likelihood)``.

    Parameters
    ----------
    xy:
        ``(n_frames, n_bodyparts, 2)`` ``(x, y)``, NaN where missing.
    likelihood:
        ``(n_frames, n_bodyparts)`` or None. Returned unchanged (a copy).
    method:
        ``"median"``: a running median over ``window`` frames (at the ends of
        a run the end value is repeated, where ``scipy.signal.medfilt``, which
        DeepLabCut uses, pads with zeros). ``"savgol"``:
        ``scipy.signal.savgol_filter`` with ``window`` and ``polyorder``
        (``mode="interp"``: a polynomial fit over the first/last window at
        the ends).
    window:
        Odd number of frames, at least 3. A run of points shorter than the
        window is filtered with the longest odd window that fits; a run too
        short for the filter (fewer than 3 frames for the median, not more
        than ``polyorder`` for Savitzky-Golay) is left as it is.
    polyorder:
        Polynomial order of the Savitzky-Golay filter, ``0 <= polyorder < window``.
    pcutoff:
        Points with a likelihood below it (or NaN likelihood when it is
        above 0) count as missing.
    max_gap:
        Longest gap (in frames) between present points that is bridged by
        linear interpolation and filled in the result; default ``window``.
        0 bridges nothing.

    Returns
    -------
    xy_filtered:
        float64, the shape of ``xy``; NaN where a point is missing and not in
        a bridged gap.
    likelihood:
        A copy of ``likelihood`` (None when None was given).

    Raises
    ------
    ValueError
        Bad shapes or options; the message says what is allowed.
    """
    window, polyorder, pcutoff, max_gap = _check_options(method, window, polyorder, pcutoff, max_gap)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise ValueError(f"xy must have shape (n_frames, n_bodyparts, 2), got {xy.shape}")
    valid = np.isfinite(xy).all(axis=2)
    if likelihood is not None:
        likelihood = np.array(likelihood, dtype=np.float64)
        if likelihood.shape != xy.shape[:2]:
            raise ValueError(f"likelihood must have shape {xy.shape[:2]}, got {likelihood.shape}")
        if pcutoff > 0:
            with np.errstate(invalid="ignore"):
                valid &= likelihood >= pcutoff
    out = np.full_like(xy, np.nan)
    frames = np.arange(xy.shape[0])
    for k in range(xy.shape[1]):
        present = np.flatnonzero(valid[:, k])
        if len(present) == 0:
            continue
        usable = _bridge(valid[:, k], max_gap)
        track = np.stack([np.interp(frames, present, xy[present, k, c]) for c in range(2)], axis=1)
        for start, stop in _runs(usable):
            out[start:stop, k] = _filter_run(track[start:stop], method, window, polyorder)
    return out, likelihood


def filter_prediction_file(
    path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    method: FilterMethod = "median",
    window: int = 5,
    polyorder: int = 2,
    pcutoff: float = 0.0,
    max_gap: int | None = None,
    csv: bool = True,
) -> Path:
    """Filter a prediction file and write ``<stem>_filtered.h5`` (and ``.csv``) beside it; returns its path.

    ``output`` replaces the default :func:`filtered_path`. The metadata of
    the original is carried over, with a ``filter`` entry holding the options
    and ``unfiltered`` the original's file name. See :func:`filter_predictions`.
    """
    predictions = read_predictions(path)
    xy, likelihood = filter_predictions(
        predictions.xy,
        predictions.likelihood,
        method=method,
        window=window,
        polyorder=polyorder,
        pcutoff=pcutoff,
        max_gap=max_gap,
    )
    meta: dict = dict(predictions.metadata) if isinstance(predictions.metadata, Mapping) else {}
    meta["filter"] = {
        "method": method,
        "window": int(window),
        "polyorder": int(polyorder) if method == "savgol" else None,
        "pcutoff": float(pcutoff),
        "max_gap": int(window if max_gap is None else max_gap),
    }
    meta["unfiltered"] = Path(path).name
    return write_predictions(
        filtered_path(path) if output is None else output,
        xy,
        likelihood,
        predictions.bodyparts,
        predictions.scorer,
        frames=predictions.frames,
        individual_of=predictions.individual_of,
        csv=csv,
        metadata=meta,
    )
