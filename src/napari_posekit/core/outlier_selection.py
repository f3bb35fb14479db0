"""Picking outlier frames worth correcting that do not look alike.

:func:`select_outliers` takes the best-ranked candidates of
:func:`~napari_posekit.core.outlier_scores.outlier_scores` and keeps them
diverse by k-means on their appearance (DeepLabCut's ``kmeans`` extraction over
the outlier frames, with the thumbnails of :mod:`napari_posekit.core.clustering`).

Everything here is napari-free.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any

import numpy as np

from ._generators import drive
from .clustering import _kmeans, _Thumbnailer
from .images import to_rgb_uint8
from .options import OUTLIER_EPSILON
from .outlier_scores import OUTLIER_METHODS, OutlierError, OutlierScores, outlier_scores

__all__ = ["iter_select_outliers", "select_outliers"]


def _candidate_pool(ranking: np.ndarray, exclude: set[int], size: int, min_separation: int) -> list[int]:
    """The best-ranked frames not in ``exclude``, each more than ``min_separation`` frames from better ones."""
    pool: list[int] = []
    for frame in ranking:
        frame = int(frame)
        if frame in exclude:
            continue
        if min_separation > 0 and any(abs(frame - other) <= min_separation for other in pool):
            continue
        pool.append(frame)
        if len(pool) >= size:
            break
    return pool


def iter_select_outliers(
    video: Any,
    xy: np.ndarray | None,
    likelihood: np.ndarray | None,
    n: int,
    *,
    methods: Iterable[str] | str = OUTLIER_METHODS,
    epsilon: float = OUTLIER_EPSILON,
    p_bound: float = 0.01,
    window: int = 9,
    smoother: str = "median",
    scores: OutlierScores | None = None,
    candidates: int | None = None,
    exclude: Iterable[int] = (),
    min_separation: int = 0,
    resize_width: int = 30,
    seed: int | None = 0,
) -> Generator[float, None, list[int]]:
    """Generator form of :func:`select_outliers`: yields progress fractions, returns the frames."""
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if scores is None:
        if xy is None or likelihood is None:
            raise ValueError("give xy and likelihood, or scores")
        scores = outlier_scores(
            xy, likelihood, epsilon=epsilon, p_bound=p_bound, window=window, smoother=smoother, methods=methods
        )
    size = max(n, 5 * n if candidates is None else int(candidates))
    pool = _candidate_pool(scores.ranking, {int(i) for i in exclude}, size, max(0, int(min_separation)))
    yield 0.0
    if len(pool) <= n:
        yield 1.0
        return pool

    from .inference import frame_source
    from .video import FrameDecodeError

    get, n_frames, close = frame_source(video)
    try:
        if n_frames != scores.n_frames:
            raise OutlierError(f"the scores cover {scores.n_frames} frames but the video has {n_frames}")
        features: dict[int, np.ndarray] = {}
        thumbnail = None
        for done, frame in enumerate(sorted(pool), start=1):
            try:
                image = np.asarray(get(frame))
            except FrameDecodeError:
                continue  # a damaged frame cannot be labeled
            image = to_rgb_uint8(image)
            if thumbnail is None:
                thumbnail = _Thumbnailer(image.shape[0], image.shape[1], resize_width)
            features[frame] = thumbnail(image)
            yield 0.95 * done / len(pool)
    finally:
        close()
    pool = [f for f in pool if f in features]
    if len(pool) <= n:
        yield 1.0
        return pool
    data = np.stack([features[f] for f in pool])
    labels, _ = _kmeans(data, n, np.random.default_rng(seed))
    # the pool is in rank order: the first member of a cluster is its best-scored frame
    picked = sorted(int(np.flatnonzero(labels == j)[0]) for j in range(n))
    yield 1.0
    return [pool[i] for i in picked]


def select_outliers(
    video: Any,
    xy: np.ndarray | None,
    likelihood: np.ndarray | None,
    n: int,
    *,
    methods: Iterable[str] | str = OUTLIER_METHODS,
    epsilon: float = OUTLIER_EPSILON,
    p_bound: float = 0.01,
    window: int = 9,
    smoother: str = "median",
    scores: OutlierScores | None = None,
    candidates: int | None = None,
    exclude: Iterable[int] = (),
    min_separation: int = 0,
    resize_width: int = 30,
    seed: int | None = 0,
    progress: Callable[[float], None] | None = None,
) -> list[int]:
    """Up to ``n`` outlier frames worth correcting, best first, that do not look alike.

    The frames flagged by :func:`outlier_scores` are ranked by their combined
    score; frames in ``exclude`` (already extracted or labeled) are skipped,
    and so, with ``min_separation`` > 0, is every frame within that many
    frames of a better-ranked one. The best ``candidates`` (default ``5 * n``)
    form the pool. When the pool holds more than ``n`` frames, their
    grayscale thumbnails (``resize_width`` wide, as :func:`~napari_posekit.core.frames.select_kmeans`
    makes them) are clustered into ``n`` clusters by k-means (k-means++
    seeding with ``numpy.random.default_rng(seed)``, so the same seed gives
    the same frames) and the best-ranked frame of each cluster is taken:
    consecutive, nearly identical frames end up in one cluster and only one
    of them is picked. (DeepLabCut draws a random member of each cluster.)

    Parameters
    ----------
    video
        A video path, a :class:`~napari_posekit.core.video.VideoReader` or an
        ``(N, H, W[, 3])`` array; read only when the pool is larger than ``n``.
    xy, likelihood
        The predictions, ``(N, K, 2)`` and ``(N, K)``; or pass ``scores``.
    n
        How many frames to pick.
    methods, epsilon, p_bound, window, smoother
        See :func:`outlier_scores`.
    scores
        Scores computed before (``xy`` and ``likelihood`` are then not used).
    progress
        Called with the fraction done while thumbnails are read.

    Returns
    -------
    list[int]
        Distinct frame numbers, highest combined score first; fewer than
        ``n`` when fewer frames are flagged (none for a clean video).
        Frames that fail to decode are left out.
    """
    work = iter_select_outliers(
        video,
        xy,
        likelihood,
        n,
        methods=methods,
        epsilon=epsilon,
        p_bound=p_bound,
        window=window,
        smoother=smoother,
        scores=scores,
        candidates=candidates,
        exclude=exclude,
        min_separation=min_separation,
        resize_width=resize_width,
        seed=seed,
    )
    return drive(work, progress)
