"""Appearance clustering: small grayscale thumbnails of frames and k-means over them.

Frame selection for labeling (:func:`napari_posekit.core.frames.select_kmeans`)
and the diverse pick of outlier frames
(:func:`napari_posekit.core.outlier_selection.select_outliers`) both shrink
frames to thumbnails (DeepLabCut's ``cluster_resizewidth``) and cluster them,
so that the picked frames look different from each other.

Everything here is napari-free.
"""

from __future__ import annotations

import numpy as np


def _thumbnail_shape(height: int, width: int, resize_width: int) -> tuple[int, int]:
    """DeepLabCut's thumbnail size: ``resize_width`` wide (at most the video's), aspect kept."""
    w = min(resize_width, width)
    h = max(1, round(height * w / width))
    return h, w


def _bin_edges(size: int, bins: int) -> np.ndarray:
    return (np.arange(bins) * size) // bins


class _Thumbnailer:
    """Turns ``(H, W, 3)`` frames into small grayscale images by area averaging.

    The frame is cut into ``h x w`` cells of nearly equal size and each
    thumbnail pixel is the mean over its cell and the three colour channels,
    which avoids the aliasing of nearest-neighbour downsampling. For speed the
    mean is taken over a regular grid of pixels, about ``_CELL_SAMPLES`` per
    cell along each axis, rather than over every pixel.
    """

    _CELL_SAMPLES = 6

    def __init__(self, height: int, width: int, resize_width: int):
        self.shape = _thumbnail_shape(height, width, resize_width)
        h, w = self.shape
        self._stride = max(1, min(height // h, width // w) // self._CELL_SAMPLES)
        sub_h, sub_w = -(-height // self._stride), -(-width // self._stride)
        self._rows = _bin_edges(sub_h, h)
        self._cols = _bin_edges(sub_w, w)
        row_sizes = np.diff(np.append(self._rows, sub_h))
        col_sizes = np.diff(np.append(self._cols, sub_w))
        self._scale = 1.0 / (3.0 * np.outer(row_sizes, col_sizes))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The flattened ``h * w`` thumbnail of one frame, float64 in 0..255."""
        grid = frame[:: self._stride, :: self._stride].astype(np.uint32)
        rows = np.add.reduceat(grid, self._rows, axis=0)
        cells = np.add.reduceat(rows, self._cols, axis=1).sum(axis=2)
        return (cells * self._scale).ravel()


def _kmeans_plus_plus(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: indices of ``k`` distinct samples used as initial centres."""
    n = len(data)
    chosen = [int(rng.integers(n))]
    d2 = ((data - data[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total > 0:
            p = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            p = min(p, n - 1)
        else:  # every remaining sample equals a chosen one
            p = int(rng.choice(np.setdiff1d(np.arange(n), chosen)))
        chosen.append(p)
        np.minimum(d2, ((data - data[p]) ** 2).sum(axis=1), out=d2)
    return np.asarray(chosen)


def _fill_empty_clusters(labels: np.ndarray, d2: np.ndarray, k: int) -> None:
    """Give every empty cluster the sample farthest from its centre (in place).

    Only samples whose cluster has other members move, so no cluster is left
    empty; with at least ``k`` samples every cluster ends up non-empty.
    """
    counts = np.bincount(labels, minlength=k)
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return
    own = d2[np.arange(len(labels)), labels]
    for j in empty:
        movable = counts[labels] > 1
        p = int(np.argmax(np.where(movable, own, -1.0)))
        counts[labels[p]] -= 1
        labels[p] = j
        counts[j] = 1


def _kmeans(data: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; every one of the ``k`` clusters is non-empty.

    Returns ``(labels, centres)``: the cluster of each sample and the cluster
    means. Needs ``len(data) >= k``.
    """
    mean = data.mean(axis=0)
    data = data - mean  # centring keeps the distance expansion below accurate
    sq = (data**2).sum(axis=1)
    centres = data[_kmeans_plus_plus(data, k, rng)]
    labels = None
    for _ in range(max_iter):
        d2 = sq[:, None] - 2.0 * (data @ centres.T) + (centres**2).sum(axis=1)[None, :]
        new = d2.argmin(axis=1)
        _fill_empty_clusters(new, d2, k)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        onehot = np.zeros((k, len(data)))
        onehot[labels, np.arange(len(data))] = 1.0
        centres = (onehot @ data) / onehot.sum(axis=1, keepdims=True)
    return labels, centres + mean
