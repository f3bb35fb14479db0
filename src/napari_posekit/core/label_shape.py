"""The animal's shape as the labels show it, for the label checks.

A robust mean shape (generalised Procrustes with medians), similarity fits of
an image's labels onto it (rotation, scale, translation; never a
reflection) and, for every body part, the robust spread of where it lies
against where the other parts put it.  Points are complex numbers ``x + iy``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GEOMETRY_SIGMAS",
    "MIN_IMAGES",
    "ShapeModel",
    "Spread",
    "fit_similarity",
    "mean_shape",
    "own_distances",
    "shape_model",
    "to_complex",
]

MIN_IMAGES = 8
"""Images a statistic needs (a side convention, a body part's usual place, a pair's usual distance)."""

PX_FLOOR = 1.5
"""Click precision in pixels: no body part is expected closer than this to where the others put it."""

GEOMETRY_SIGMAS = 4.0
"""A body part is flagged this many robust standard deviations from where the other parts put it..."""

GEOMETRY_TAIL = 0.95
"""...or further, when its distances have a heavier tail than a normal distribution's at this quantile.

(The limit grows by the ratio of the observed quantile to a normal one: a leg
that really does reach far in many images is judged by how far it reaches.)"""

FLOOR = 0.025
"""Smallest spread of a body part's place, as a share of the animal's size (RMS radius of the mean shape)."""

KEEP = 0.9
"""Share of a body part's places its spread is measured on (the rest may be mistakes; a shape may vary in modes)."""

_KEEP_CONSISTENCY = 2 / (2 * (1 - (1 - np.log(1 - KEEP)) * (1 - KEEP)) / KEEP)
"""Makes the covariance of the closest :data:`KEEP` of 2-D normal points that of all of them."""


def to_complex(xy: np.ndarray) -> np.ndarray:
    return xy[..., 0] + 1j * xy[..., 1]


def fit_similarity(
    ref: np.ndarray, z: np.ndarray, w: np.ndarray, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares similarity ``z ~ a * ref + b`` per image (``a`` complex: rotation and scale).

    ``ref`` (K,), ``z`` (N, K) complex, ``w`` (N, K) weights, zero for points left
    out; ``scale`` (N,) fixes ``|a|`` (only rotation and translation are fitted).
    ``a`` and ``b`` are NaN where fewer than two points are given.
    """
    use = (w > 0) & np.isfinite(z) & np.isfinite(ref)[None, :]
    w = np.where(use, w, 0.0)
    zr = np.where(use, ref[None, :], 0)
    zz = np.where(use, z, 0)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mr = (w * zr).sum(axis=1) / total
        mz = (w * zz).sum(axis=1) / total
        rc = np.where(use, zr - mr[:, None], 0)
        zc = np.where(use, zz - mz[:, None], 0)
        den = (w * np.abs(rc) ** 2).sum(axis=1)
        num = (w * np.conj(rc) * zc).sum(axis=1)
        a = num / den if scale is None else scale * num / np.abs(num)
    ok = (use.sum(axis=1) >= 2) & (den > 1e-12) & (np.abs(num) > 1e-12) & np.isfinite(a)
    a = np.where(ok, a, np.nan)
    return a, np.where(ok, mz - a * mr, np.nan)


def _normalised(ref: np.ndarray) -> np.ndarray:
    good = np.isfinite(ref)
    centred = ref - ref[good].mean()
    return centred / np.sqrt(np.mean(np.abs(centred[good]) ** 2))


def mean_shape(z: np.ndarray, w: np.ndarray, rounds: int = 6) -> np.ndarray | None:
    """A robust mean shape (K,) complex, centred with RMS radius 1; None without an image of two points."""
    counts = (w > 0).sum(axis=1)
    if counts.size == 0 or counts.max() < 2:
        return None
    ref = np.where(w[int(np.argmax(counts))] > 0, z[int(np.argmax(counts))], np.nan)
    ref = _normalised(ref)
    for _ in range(rounds):
        a, b = fit_similarity(ref, z, w)
        with np.errstate(invalid="ignore"):
            aligned = np.where((w > 0) & np.isfinite(a)[:, None], (z - b[:, None]) / a[:, None], np.nan)
        seen = np.isfinite(aligned).any(axis=0)
        new = np.full(z.shape[1], np.nan, dtype=complex)
        new[seen] = np.nanmedian(aligned[:, seen].real, axis=0) + 1j * np.nanmedian(aligned[:, seen].imag, axis=0)
        if np.isfinite(new).sum() < 2:
            break
        ref = _normalised(new)
    return ref


def fits_without(
    ref: np.ndarray, z: np.ndarray, w: np.ndarray, scale: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every image and body part ``k``, the fit of the *other* parts: ``a``, ``b``, leverage (N, K).

    The leverage is the variance of the fit's prediction of ``k`` in units of
    a weight-1 part's variance: large when the other parts are few, close
    together or far from ``k``.
    """
    n, k = z.shape
    a = np.full((n, k), np.nan, dtype=complex)
    b = np.full((n, k), np.nan, dtype=complex)
    lever = np.full((n, k), np.nan)
    for part in range(k):
        others = np.where(np.isfinite(z) & np.isfinite(ref)[None, :], w, 0.0)
        others[:, part] = 0
        a[:, part], b[:, part] = fit_similarity(ref, z, others, scale)
        total = others.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (others * np.nan_to_num(ref)[None, :]).sum(axis=1) / total
            spread = (others * np.abs(np.nan_to_num(ref)[None, :] - mean[:, None]) ** 2).sum(axis=1)
            lever[:, part] = 1 / total + np.abs(ref[part] - mean) ** 2 / spread
    return a, b, lever


def folder_scale(images: tuple[str, ...], a: np.ndarray) -> np.ndarray:
    """Median animal size of each image's folder (one video, one camera distance), per image."""
    folders = np.array([key.replace("\\", "/").rpartition("/")[0] for key in images])
    size = np.abs(a)
    out = np.full(len(images), np.nan)
    for folder in np.unique(folders):
        mine = (folders == folder) & np.isfinite(size)
        if mine.any():
            out[folders == folder] = np.median(size[mine])
    return out


@dataclass
class Spread:
    """How far each body part usually lies from its place: centre (complex), 2x2 covariance, flag limit.

    ``leverage`` is each part's typical leverage when its spread was measured
    and ``unit`` the variance of a weight-1 part: a fit with a worse leverage
    (fewer or closer other parts) is allowed the difference.
    """

    centre: np.ndarray
    inverse: np.ndarray
    sigma: np.ndarray
    usable: np.ndarray
    limit: np.ndarray
    leverage: np.ndarray | None = None
    unit: float = 0.0

    @classmethod
    def empty(cls, k: int) -> Spread:
        eye = np.tile(np.eye(2), (k, 1, 1))
        return cls(np.zeros(k, dtype=complex), eye, np.full(k, np.nan), np.zeros(k, bool), np.full(k, np.inf))

    def ratio(self, residual: np.ndarray, a: np.ndarray | None = None, lever: np.ndarray | None = None) -> np.ndarray:
        """Distances as a share of the flag limit (1 at the limit), allowing for click noise and a weak fit."""
        extra = np.zeros(residual.shape)
        if a is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                extra = extra + (PX_FLOOR / np.abs(a)) ** 2
        if lever is not None and self.leverage is not None:
            extra = extra + self.unit * np.maximum(0.0, lever - self.leverage)
        return self.distance(residual, np.nan_to_num(extra)) / self.limit

    def distance(self, residual: np.ndarray, extra: np.ndarray | float = 0.0) -> np.ndarray:
        """Mahalanobis distance of residuals (..., K) from their part's usual place, ``extra`` variance added."""
        cov = np.linalg.inv(self.inverse)
        d = residual - self.centre
        x, y = d.real, d.imag
        cxx, cxy, cyy = cov[:, 0, 0] + extra, cov[:, 0, 1], cov[:, 1, 1] + extra
        d2 = (cyy * x * x - 2 * cxy * x * y + cxx * y * y) / (cxx * cyy - cxy**2)
        return np.sqrt(np.maximum(d2, 0))


def robust_spread(residual: np.ndarray, floor: float = FLOOR) -> Spread:
    """Robust centre and covariance of every body part's residuals (MAD start, then trimmed covariance)."""
    k = residual.shape[1]
    centre = np.zeros(k, dtype=complex)
    inverse = np.tile(np.eye(2), (k, 1, 1))
    sigma = np.full(k, np.nan)
    usable = np.zeros(k, dtype=bool)
    limit = np.full(k, np.inf)
    normal_tail = np.sqrt(-2 * np.log(1 - GEOMETRY_TAIL))
    for part in range(k):
        e = residual[:, part]
        e = e[np.isfinite(e)]
        if e.size < MIN_IMAGES:
            continue
        pts = np.stack([e.real, e.imag], axis=1)
        mu = np.median(pts, axis=0)
        mad = 1.4826 * np.median(np.abs(pts - mu), axis=0)
        cov = np.diag(np.maximum(mad, floor) ** 2)
        for _ in range(5):
            d = pts - mu
            d2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
            inliers = pts[d2 <= np.quantile(d2, KEEP)]
            if len(inliers) < 3:
                break
            mu = inliers.mean(axis=0)
            cov = np.cov(inliers.T) * _KEEP_CONSISTENCY + np.eye(2) * floor**2
        centre[part] = mu[0] + 1j * mu[1]
        inverse[part] = np.linalg.inv(cov)
        sigma[part] = float(np.sqrt(np.trace(cov) / 2))
        usable[part] = True
        d = pts - mu
        tail = np.quantile(np.sqrt(np.einsum("ni,ij,nj->n", d, inverse[part], d)), GEOMETRY_TAIL)
        limit[part] = GEOMETRY_SIGMAS * max(1.0, tail / normal_tail)
    return Spread(centre, inverse, sigma, usable, limit)


@dataclass
class ShapeModel:
    """The mean shape, how much each part is trusted in a fit, its spread, and the fixed size (or None)."""

    ref: np.ndarray
    weights: np.ndarray
    spread: Spread
    scale: np.ndarray | None

    def fits_without(self, z: np.ndarray, w: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return fits_without(self.ref, z, w * self.weights[None, :], None if self.scale is None else self.scale[rows])


def _model(z: np.ndarray, images: tuple[str, ...], fixed_size: bool) -> ShapeModel | None:
    """Fit the shape model twice: the second time trusting steady body parts more."""
    w = np.isfinite(z).astype(float)
    weights = np.ones(z.shape[1])
    model = None
    for _ in range(2):
        ref = mean_shape(z, w * weights[None, :])
        if ref is None:
            return None
        scale = folder_scale(images, fit_similarity(ref, z, w * weights[None, :])[0]) if fixed_size else None
        model = ShapeModel(ref, weights, Spread.empty(z.shape[1]), scale)
        a, b, lever = model.fits_without(z, w, np.arange(len(z)))
        with np.errstate(invalid="ignore", divide="ignore"):
            model.spread = robust_spread((z - (a * ref[None, :] + b)) / a)
        if not model.spread.usable.any():
            return model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model.spread.leverage = np.nan_to_num(np.nanmedian(np.where(w > 0, lever, np.nan), axis=0), nan=np.inf)
        usable_sigma = model.spread.sigma[model.spread.usable]
        model.spread.unit = float(np.min(np.maximum(usable_sigma, FLOOR) ** 2 / weights[model.spread.usable]))
        sigma = np.where(model.spread.usable, model.spread.sigma, np.nanmax(model.spread.sigma))
        weights = 1.0 / np.maximum(sigma, FLOOR) ** 2
        weights = weights / weights.max()
    return model


def shape_model(z: np.ndarray, images: tuple[str, ...]) -> ShapeModel | None:
    """The better of two models: the animal's size fitted per image, or fixed per folder (steadier when it holds)."""
    free = _model(z, images, fixed_size=False)
    if free is None or not free.spread.usable.any():
        return free
    fixed = _model(z, images, fixed_size=True)
    if fixed is None:
        return free
    usable = free.spread.usable & fixed.spread.usable
    if np.log(fixed.spread.sigma[usable]).sum() < np.log(free.spread.sigma[usable]).sum():
        return fixed
    return free


def own_distances(model: ShapeModel, z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each part's distance from where the image's other parts put it (1: flag limit), and those fits."""
    a, b, lever = model.fits_without(z, np.isfinite(z).astype(float), rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = (z - (a * model.ref[None, :] + b)) / a
    ratio = model.spread.ratio(residual, a, lever)
    return np.where(model.spread.usable[None, :], ratio, np.nan), a, b
