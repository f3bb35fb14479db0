"""Outlier scores: how likely the network is wrong on each frame of an analysed video.

Three criteria score every frame, as in DeepLabCut's ``extract_outlier_frames``:

* ``"jump"``: a body part moved more than ``epsilon`` pixels since the previous
  frame.
* ``"uncertain"``: body parts with a likelihood below ``p_bound`` (or not found).
* ``"fitting"``: a body part is more than ``epsilon`` pixels from its temporally
  smoothed trajectory. DeepLabCut fits a SARIMAX model per body part; here the
  trajectory is smoothed with :func:`napari_posekit.core.filtering.filter_predictions`
  (a running median by default, which follows monotone motion exactly and removes
  excursions shorter than half its window), with points below ``p_bound`` left
  out of the fit.

:func:`outlier_scores` combines them into one ranking (:class:`OutlierScores`).
:class:`OutlierError` is the error of every outlier step, up to the extraction
into a project (:mod:`napari_posekit.core.outliers`).

Everything here is napari-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .options import OUTLIER_EPSILON
from .project import ProjectError

__all__ = ["OUTLIER_METHODS", "OutlierError", "OutlierScores", "outlier_scores"]

#: The criteria :func:`outlier_scores` knows, in DeepLabCut's names.
OUTLIER_METHODS = ("jump", "uncertain", "fitting")


class OutlierError(ProjectError):
    """Outlier extraction cannot go on (no predictions, predictions of another video or model...)."""


@dataclass(frozen=True)
class OutlierScores:
    """Per-frame outlier scores of one video.

    Attributes
    ----------
    jump_px:
        ``(N,)`` the largest displacement of a body part since the previous
        frame, in pixels (0 for the first frame and where a point is missing).
    uncertain:
        ``(N,)`` the fraction of body parts with likelihood below ``p_bound``
        (or not found).
    fitting_px:
        ``(N,)`` the largest distance of a body part from its smoothed
        trajectory, in pixels (0 where either is missing).
    components:
        Per method, ``(N,)`` its normalised score: 0 where the frame is not an
        outlier by that criterion (jump or fitting distance at most
        ``epsilon``, no body part below ``p_bound``), else the excess over the
        threshold (pixels beyond ``epsilon``; the uncertain fraction) divided
        by the median of the criterion's non-zero values over the video. A
        frame at the typical level of a criterion's outliers scores 1, and the
        criteria, measured in different units, become comparable.
    combined:
        ``(N,)`` the sum of the components: a frame flagged by several
        criteria ranks above one flagged by a single criterion at the same level.
    """

    jump_px: np.ndarray
    uncertain: np.ndarray
    fitting_px: np.ndarray
    components: dict[str, np.ndarray]
    combined: np.ndarray
    methods: tuple[str, ...]
    epsilon: float
    p_bound: float

    @property
    def n_frames(self) -> int:
        return len(self.combined)

    @property
    def flagged(self) -> np.ndarray:
        """``(N,)`` frames that are outliers by at least one of the methods."""
        return self.combined > 0

    @property
    def ranking(self) -> np.ndarray:
        """Flagged frames, highest combined score first (ties: earlier frame first)."""
        flagged = np.flatnonzero(self.flagged)
        order = np.lexsort((flagged, -self.combined[flagged]))
        return flagged[order]

    def top(self, n: int) -> list[int]:
        """The ``n`` best-ranked frames (fewer when fewer are flagged)."""
        return [int(i) for i in self.ranking[: max(0, int(n))]]


def _check_methods(methods: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in OUTLIER_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be some of {OUTLIER_METHODS}, got {list(methods)}")
    return methods


def _robust_normalise(values: np.ndarray) -> np.ndarray:
    positive = values[values > 0]
    if positive.size == 0:
        return np.zeros_like(values)
    return values / max(float(np.median(positive)), 1e-12)


def outlier_scores(
    xy: np.ndarray,
    likelihood: np.ndarray,
    *,
    epsilon: float = OUTLIER_EPSILON,
    p_bound: float = 0.01,
    window: int = 9,
    smoother: str = "median",
    methods: Iterable[str] | str = OUTLIER_METHODS,
) -> OutlierScores:
    """Score every frame of a video's predictions as an outlier candidate.

    Parameters
    ----------
    xy
        ``(N, K, 2)`` predicted ``(x, y)`` per frame and body part, NaN where missing.
    likelihood
        ``(N, K)``; NaN counts as below ``p_bound``.
    epsilon
        Pixels: a larger displacement between consecutive frames is a jump,
        a larger distance from the smoothed trajectory a fitting error
        (DeepLabCut's ``epsilon``, default 20).
    p_bound
        Likelihood below which a body part is uncertain (DeepLabCut's
        ``p_bound``, default 0.01); such points are also left out of the
        smoothed trajectory.
    window
        Odd number of frames of the smoother.
    smoother
        ``"median"`` or ``"savgol"`` (see :func:`~napari_posekit.core.filtering.filter_predictions`).
    methods
        Which of ``"jump"``, ``"uncertain"`` and ``"fitting"`` make up the combined score.

    Returns
    -------
    OutlierScores
        The raw measures, the normalised components and the combined score.

    Raises
    ------
    ValueError
        Bad shapes or options.
    """
    methods = _check_methods(methods)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise ValueError(f"xy must have shape (n_frames, n_bodyparts, 2), got {xy.shape}")
    likelihood = np.asarray(likelihood, dtype=np.float64)
    if likelihood.shape != xy.shape[:2]:
        raise ValueError(f"likelihood must have shape {xy.shape[:2]}, got {likelihood.shape}")
    epsilon = float(epsilon)
    p_bound = float(p_bound)
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a number of pixels >= 0, got {epsilon}")
    if not np.isfinite(p_bound):
        raise ValueError(f"p_bound must be a finite number, got {p_bound}")
    n, k = likelihood.shape
    present = np.isfinite(xy).all(axis=2)

    from .filtering import filter_predictions  # scipy: imported when scores are computed

    with np.errstate(invalid="ignore"):
        # jump: displacement from the previous frame, per body part
        step = np.zeros((n, k))
        if n > 1:
            d = np.linalg.norm(np.diff(xy, axis=0), axis=2)
            step[1:] = np.where(np.isfinite(d), d, 0.0)
        jump_px = step.max(axis=1) if k else np.zeros(n)

        # uncertain: below p_bound, not found, or NaN likelihood
        low = ~(likelihood >= p_bound) | ~present
        uncertain = low.mean(axis=1) if k else np.zeros(n)

        # fitting: distance from the smoothed trajectory of the confident points
        if n >= 3 and k:
            smooth, _ = filter_predictions(
                xy, likelihood, method=smoother, window=window, pcutoff=max(p_bound, 0.0), max_gap=window
            )
            dev = np.linalg.norm(xy - smooth, axis=2)
            dev = np.where(np.isfinite(dev), dev, 0.0)
            fitting_px = dev.max(axis=1)
            fit_excess = np.clip(dev - epsilon, 0.0, None).max(axis=1)
        else:
            fitting_px = np.zeros(n)
            fit_excess = np.zeros(n)
        jump_excess = np.clip(step - epsilon, 0.0, None).max(axis=1) if k else np.zeros(n)

    raw = {"jump": jump_excess, "uncertain": uncertain, "fitting": fit_excess}
    components = {m: _robust_normalise(raw[m]) for m in methods}
    combined = np.sum([components[m] for m in methods], axis=0) if n else np.zeros(0)
    return OutlierScores(
        jump_px=jump_px,
        uncertain=uncertain,
        fitting_px=fitting_px,
        components=components,
        combined=np.asarray(combined, dtype=np.float64),
        methods=methods,
        epsilon=epsilon,
        p_bound=p_bound,
    )
