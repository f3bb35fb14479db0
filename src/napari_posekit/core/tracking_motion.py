"""The motion model of :mod:`napari_posekit.core.tracking`: prediction, and how far animals stray from it.

A pose moves on at the velocity of its last two observations, the velocity
decaying by ``VELOCITY_DECAY`` per frame (an animal unseen for long is not
assumed to walk on for ever).  How far the true pose lands from that
prediction after a gap of g frames is measured on the tracklets themselves
(:class:`MotionScale`): at lags 1, 2, 3, 5, 8, ... frames, the median
prediction error inside tracklets.  Animals that mostly sit still get a scale
that grows slowly with the gap, animals that walk one that grows with it.  The
scale is never less than a random walk of the one-frame scale (growing with
the square root of the gap: the median hides the rare long walks), and beyond
the longest lag measured it grows with the square root of the gap.  Stitching
scores a gap of g frames and a prediction error d as the negative
log-likelihood of d under a heavy-tailed (Student t) distribution of that
scale: animals do turn, stop and run.
"""

from __future__ import annotations

import numpy as np

from napari_posekit.core.tracking_metrics import pose_distance

VELOCITY_DECAY = 0.8  # per frame without an observation: how much of the velocity carries on
MIN_PAIRS = 20  # a lag needs this many pairs inside tracklets to be measured
MAX_PAIRS = 2000  # pairs sampled per lag
FLOOR_FRACTION = 0.01  # the scale is at least this fraction of the animals' size
FALLBACK_FRACTION = 0.05  # with nothing measured: this fraction of the size per frame, growing as sqrt(gap)
_MEDIAN_TO_SIGMA = 1 / np.sqrt(2 * np.log(2))  # median distance of a 2D Gaussian = 1.18 sigma


def velocity(p_last: np.ndarray, p_prev: np.ndarray, frames: float) -> np.ndarray:
    """(2,) mean displacement per frame of the parts visible in both poses (0 when none)."""
    step = (p_last[:, :2] - p_prev[:, :2]) / max(frames, 1.0)
    ok = np.isfinite(step).all(-1)
    return step[ok].mean(0) if ok.any() else np.zeros(2)


def travel(frames) -> np.ndarray:
    """Frames' worth of velocity travelled in ``frames`` frames, the velocity decaying."""
    return (1 - VELOCITY_DECAY ** np.asarray(frames, dtype=float)) / (1 - VELOCITY_DECAY)


def predict(pose: np.ndarray, vel: np.ndarray, frames: int) -> np.ndarray:
    """(K, 2) where a pose will be ``frames`` later."""
    return pose[:, :2] + vel * travel(frames)


def walk_cost(z: float) -> float:
    """Negative log-likelihood (up to a constant) of an error of z scales: a 2D Student t with 2 degrees of freedom.

    Gaussian-like near the prediction, with a heavy tail: a jump of 20 scales is unlikely, not impossible.
    """
    return 2 * np.log1p(z * z / 2)


class MotionScale:
    """How far (pixels) a pose strays from its prediction after a gap, measured on tracklets."""

    def __init__(self, tracklets: np.ndarray, size: float, seed: int = 0):
        self.size = float(size)
        lags, scales = [], []
        rng = np.random.default_rng(seed)
        lag, step = 1, 1
        seen = (np.isfinite(tracklets[..., 0]) & np.isfinite(tracklets[..., 1])).any(-1)  # (T, M)
        while lag < len(tracklets) - 1:
            scale = self._measure(tracklets, seen, lag, rng)
            if scale is None:
                break
            lags.append(lag)
            scales.append(max(scale, FLOOR_FRACTION * self.size))
            lag, step = lag + step, lag  # 1, 2, 3, 5, 8, ...
        self.lags = np.array(lags, dtype=float)
        self.scales = np.maximum.accumulate(np.array(scales, dtype=float)) if scales else np.array([])

    @staticmethod
    def _measure(tracklets: np.ndarray, seen: np.ndarray, lag: int, rng) -> float | None:
        """Median prediction error at ``lag`` inside tracklets, as a Gaussian sigma; None if too few pairs."""
        ok = seen[: -lag - 1] & seen[1:-lag] & seen[lag + 1 :]  # (t-1, t, t+lag) all in one tracklet
        t, m = np.nonzero(ok)
        if len(t) < MIN_PAIRS:
            return None
        if len(t) > MAX_PAIRS:
            pick = rng.choice(len(t), MAX_PAIRS, replace=False)
            t, m = t[pick], m[pick]
        before, now, later = tracklets[t, m, :, :2], tracklets[t + 1, m, :, :2], tracklets[t + 1 + lag, m, :, :2]
        step = now - before
        ok_step = np.isfinite(step).all(-1, keepdims=True)
        count = ok_step.sum(-2)
        vel = np.where(ok_step, step, 0.0).sum(-2) / np.maximum(count, 1)  # (n, 2)
        guess = now + vel[:, None, :] * travel(lag)
        error = pose_distance(guess, later)
        error = error[np.isfinite(error)]
        return float(np.median(error)) * _MEDIAN_TO_SIGMA if len(error) >= MIN_PAIRS else None

    def __call__(self, gap: int) -> float:
        """The scale (pixels) after ``gap`` frames."""
        if not len(self.lags):
            return FALLBACK_FRACTION * self.size * np.sqrt(gap)
        diffusion = self.scales[0] * np.sqrt(gap)  # at least a random walk of the one-frame scale
        if gap <= self.lags[-1]:
            return float(max(np.interp(gap, self.lags, self.scales), diffusion))
        return float(max(self.scales[-1] * np.sqrt(gap / self.lags[-1]), diffusion))

    def cost(self, distance: float, gap: int) -> float:
        """Negative log-likelihood of a prediction error after ``gap`` frames; 0 for a perfect next frame."""
        scale = self(gap)
        return walk_cost(distance / scale) + 2 * np.log(scale / self(1))
