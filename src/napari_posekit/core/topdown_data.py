"""The training data of the top-down multi-animal model: anchors, crop sizes and centred crops.

A multi-animal model (:mod:`~napari_posekit.core.topdown`) is two
single-animal networks.  The *finder* sees whole frames, downscaled, and
predicts one keypoint per individual: the individual's *anchor* body part
(chosen here from the labels).  The *pose* network sees full-resolution
square crops centred on one animal's anchor and predicts that animal's body
parts.  This module turns multi-animal labels ``(N, I, K, 2)`` into the
arrays both are trained on, and holds the crop geometry that training and
prediction share.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "anchor_points",
    "animal_extents",
    "choose_anchor",
    "crop_at",
    "crop_size_for",
    "finder_scale_for",
    "finder_targets",
    "pose_crops",
]

FINDER_ANIMAL_PX = 24.0
"""The finder sees animals about this many pixels long (the 90th percentile of the labeled extents)."""
FINDER_MIN_SIDE = 256
"""...but never a frame smaller than this many pixels on its longer side."""


def _check_xy(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 4 or xy.shape[-1] != 2:
        raise ValueError(f"multi-animal keypoints must have shape (N, I, K, 2), got {xy.shape}")
    return xy


def choose_anchor(xy: np.ndarray, bodyparts: Sequence[str] | None = None) -> int:
    """The body part that stands for a whole animal: labeled most often, then closest to the animal's centre.

    Parts labeled in at least 90 % as many animals as the most labeled part
    compete; of these, the one with the smallest median distance to the
    centroid of the animal's labeled parts wins (the thorax for flies).
    """
    xy = _check_xy(xy)
    k = xy.shape[2]
    if bodyparts is not None and len(bodyparts) != k:
        raise ValueError(f"{len(bodyparts)} body parts but the keypoints have {k}")
    present = np.isfinite(xy).all(axis=-1)  # (N, I, K)
    counts = present.sum(axis=(0, 1))
    if counts.max() == 0:
        raise ValueError("no labeled body part to anchor the animals on")
    with np.errstate(invalid="ignore"), _quiet():
        centre = np.nanmean(xy, axis=2, keepdims=True)  # (N, I, 1, 2)
        distance = np.linalg.norm(xy - centre, axis=-1)  # (N, I, K)
        median = np.array([np.nanmedian(distance[..., j]) if counts[j] else np.inf for j in range(k)])
    candidates = np.flatnonzero(counts >= 0.9 * counts.max())
    return int(candidates[np.argmin(median[candidates])])


@contextlib.contextmanager
def _quiet():
    """Silence NumPy's warnings about all-NaN slices (absent animals are normal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def anchor_points(xy: np.ndarray, anchor: int) -> np.ndarray:
    """``(N, I, 2)``: each animal's anchor part, or the centre of its labeled parts where the anchor is missing.

    NaN where an animal has no labeled part (it is absent from the frame).
    """
    xy = _check_xy(xy)
    out = xy[:, :, anchor].copy()
    missing = ~np.isfinite(out).all(axis=-1)
    if missing.any():
        with _quiet():
            centre = np.nanmean(xy, axis=2)
        out[missing] = centre[missing]
    return out


def animal_extents(xy: np.ndarray) -> np.ndarray:
    """The larger side of each labeled animal's bounding box (animals with two labeled parts or more)."""
    xy = _check_xy(xy).reshape(-1, xy.shape[2], 2)
    present = np.isfinite(xy).all(axis=-1)
    spans = [float((pts[ok].max(axis=0) - pts[ok].min(axis=0)).max()) for pts, ok in zip(xy, present) if ok.sum() >= 2]
    return np.asarray(spans, dtype=np.float64)


def crop_size_for(xy: np.ndarray, *, multiple: int = 32, margin: float = 1.2, pad: int = 16) -> int:
    """Side of the pose network's square crops: the largest labeled animal with room to spare.

    ``margin`` times the largest extent plus ``pad`` pixels, rounded up to
    ``multiple`` (192 for flies at most 135 pixels long).
    """
    extents = animal_extents(xy)
    if not len(extents):
        raise ValueError("no animal with two labeled body parts or more: the crop size cannot be measured")
    side = float(extents.max()) * margin + pad
    return int(max(multiple, math.ceil(side / multiple) * multiple))


def finder_scale_for(xy: np.ndarray, frame_shape: tuple[int, int]) -> float:
    """Downscaling of whole frames for the finder: animals about :data:`FINDER_ANIMAL_PX` long.

    Never below what keeps the frame's longer side at :data:`FINDER_MIN_SIDE`
    pixels, never above 1; rounded to a multiple of 1/64 (0.25 for flies in
    1024-pixel frames).
    """
    extents = animal_extents(xy)
    extent = float(np.percentile(extents, 90)) if len(extents) else float(max(frame_shape))
    scale = FINDER_ANIMAL_PX / max(extent, 1.0)
    scale = max(scale, FINDER_MIN_SIDE / float(max(frame_shape)))
    return float(min(1.0, max(1 / 64, round(scale * 64) / 64)))


def finder_targets(xy: np.ndarray, anchor: int) -> np.ndarray:
    """``(N, I, 2)`` finder keypoints: one per individual, its anchor (NaN where it is absent)."""
    return anchor_points(xy, anchor)


def crop_at(image: np.ndarray, centre: Sequence[float], side: int) -> tuple[np.ndarray, int, int]:
    """``(crop, x0, y0)``: the ``side``-pixel square of ``image`` centred on ``centre``, zero outside the image.

    ``x0, y0`` is the crop's top-left corner in image pixels (it may be
    negative); a point ``p`` of the image is at ``p - (x0, y0)`` in the crop.
    Training and prediction crop with this one function.
    """
    h, w = image.shape[:2]
    x0 = math.floor(float(centre[0]) - side / 2 + 0.5)
    y0 = math.floor(float(centre[1]) - side / 2 + 0.5)
    crop = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop, x0, y0


def pose_crops(
    images: Sequence[np.ndarray], xy: np.ndarray, anchor: int, side: int, *, context: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pose network's training samples: one crop per labeled animal, centred on its anchor.

    Crops are ``side + 2 * context`` pixels square (``context`` default
    ``side // 4``) so that the random shifts and rotations of training still
    see real pixels; training takes ``side``-pixel windows of them.  Returns
    ``(crops (M, S, S, 3) uint8, keypoints (M, K, 2) in crop pixels, source
    (M, 2) int: image and individual of each crop)``.  Other animals in a crop
    are not labeled in it: the network learns to find the centred one only.
    """
    xy = _check_xy(xy)
    if len(images) != len(xy):
        raise ValueError(f"{len(images)} images but {len(xy)} rows of keypoints")
    context = side // 4 if context is None else int(context)
    big = side + 2 * context
    anchors = anchor_points(xy, anchor)
    crops, points, source = [], [], []
    for n, image in enumerate(images):
        for i in range(xy.shape[1]):
            if not np.isfinite(anchors[n, i]).all():
                continue
            crop, x0, y0 = crop_at(np.asarray(image), anchors[n, i], big)
            crops.append(crop)
            points.append(xy[n, i] - np.array([x0, y0], dtype=np.float64))
            source.append((n, i))
    if not crops:
        raise ValueError("no labeled animal to train the pose network on")
    return np.stack(crops), np.stack(points), np.asarray(source, dtype=np.int64)
