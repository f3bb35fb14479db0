"""npe2 reader for DeepLabCut prediction files, and the layer builders the Analysis widget shares.

Opening ``<video stem><scorer>.h5`` or ``.csv`` (DeepLabCut's ``analyze_videos``
output, or PoseKit's, filtered ones included) gives a read-only Points layer
``(frame, y, x)`` with ``bodypart`` and ``likelihood`` features (and
``individual`` for multi-animal files), coloured per body part with the
colours of the labeled videos. Keypoints below the p-cutoff (0.6, DeepLabCut's
default) are hidden through the layer's ``shown`` mask. ``CollectedData``
labels files belong to the project reader and are left alone.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from napari_posekit._napari._layers import points_kwargs

DEFAULT_PCUTOFF = 0.6
PREDICTION_SUFFIXES = (".h5", ".csv")


def is_predictions_path(path: str | os.PathLike) -> bool:
    """``*DLC*.h5`` / ``*DLC*.csv`` that are not CollectedData labels."""
    path = Path(path)
    name = path.name
    return (
        path.suffix.lower() in PREDICTION_SUFFIXES
        and "DLC" in name
        and not name.lower().startswith(("collecteddata", "machinelabels"))
    )


def napari_get_reader(path):
    """A reader for a prediction file, or None (never raises).

    A file that looks like predictions but cannot be read gets a warning that
    names the file and the reason (napari shows it as a notification) and None.
    """
    if not isinstance(path, (str, os.PathLike)) or not is_predictions_path(path) or not Path(path).is_file():
        return None
    from napari_posekit.core.predictions import read_predictions

    try:
        predictions = read_predictions(path)
    except (ValueError, OSError) as err:
        warnings.warn(f"PoseKit cannot open the predictions: {err}", stacklevel=2)
        return None
    except Exception as err:  # noqa: BLE001 - a reader must never crash the viewer
        warnings.warn(f"PoseKit cannot open the predictions {path}: {type(err).__name__}: {err}", stacklevel=2)
        return None
    return lambda _path: [predictions_layer_data(predictions)]


def prediction_colors(bodyparts: Sequence[str]) -> np.ndarray:
    """``(K, 4)`` RGBA floats, one per body part: the colours of the labeled videos."""
    from napari_posekit.core.labeled_video import bodypart_colors

    rgb = np.asarray(bodypart_colors(len(bodyparts)), dtype=float).reshape(-1, 3)[: len(bodyparts)] / 255.0
    return np.column_stack([rgb, np.ones(len(rgb))])


def marker_size(width: float | None, height: float | None) -> float:
    """A point size that reads well on a ``width x height`` frame (about DeepLabCut's dot size)."""
    if not width or not height:
        return 6.0
    return float(max(3.0, round(0.015 * max(width, height), 1)))


def prediction_points(
    xy: np.ndarray,
    likelihood: np.ndarray,
    keep: np.ndarray,
    bodyparts: Sequence[str],
    colors: np.ndarray,
    *,
    frames: np.ndarray | None = None,
    individual_of: Sequence[str] | None = None,
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Points data ``(M, 3)`` (frame, y, x), features and face colours of ``xy[keep]``.

    ``xy`` is ``(N, K, 2)`` ``(x, y)``; ``keep`` ``(N, K)`` selects the points
    (frame-major order). ``bodyparts`` names the K columns (a name may repeat
    in multi-animal files, with ``individual_of``); ``colors`` has one row per
    distinct body part, in order of first appearance. ``frames`` gives each
    row's frame number (default: the row).
    """
    keep = np.asarray(keep, dtype=bool) & np.isfinite(xy).all(axis=2)
    rows, cols = np.nonzero(keep)
    frame = rows if frames is None else np.asarray(frames)[rows]
    data = np.column_stack([frame, xy[rows, cols, 1], xy[rows, cols, 0]]).astype(float).reshape(-1, 3)
    names = list(dict.fromkeys(bodyparts))
    code = np.array([names.index(bp) for bp in bodyparts], dtype=int)[cols] if len(bodyparts) else cols
    p = np.asarray(likelihood, dtype=float)[rows, cols]
    columns = {"bodypart": pd.Categorical.from_codes(code, categories=names)}
    if individual_of is not None:
        individuals = list(dict.fromkeys(individual_of))
        ind = np.array([individuals.index(i) for i in individual_of], dtype=int)[cols]
        columns["individual"] = pd.Categorical.from_codes(ind, categories=individuals)
    columns["likelihood"] = np.nan_to_num(p, nan=0.0)
    features = pd.DataFrame(columns)
    face = np.asarray(colors, dtype=float).reshape(-1, 4)[code] if len(code) else np.zeros((0, 4))
    return data, features, face


def predictions_layer_data(predictions, *, pcutoff: float = DEFAULT_PCUTOFF, name: str | None = None) -> tuple:
    """Points layer data tuple for :class:`~napari_posekit.core.predictions.Predictions`."""
    bodyparts = list(dict.fromkeys(predictions.bodyparts))
    colors = prediction_colors(bodyparts)
    xy = np.asarray(predictions.xy, dtype=float)
    likelihood = np.nan_to_num(np.asarray(predictions.likelihood, dtype=float), nan=0.0)
    data, features, face = prediction_points(
        xy, likelihood, np.ones(likelihood.shape, bool), predictions.bodyparts, colors,
        frames=predictions.frames, individual_of=predictions.individual_of,
    )
    meta = dict(predictions.metadata or {})
    width, height = meta.get("width"), meta.get("height")
    if not (width and height) and len(data):
        height, width = np.nanmax(data[:, 1]) + 1, np.nanmax(data[:, 2]) + 1
    path = Path(predictions.path) if predictions.path is not None else None
    metadata = {
        "bodyparts": bodyparts,
        "colors": {bp: tuple(float(c) for c in colors[k]) for k, bp in enumerate(bodyparts)},
        "individuals": predictions.individuals,
        "scorer": predictions.scorer,
        "path": str(path) if path else None,
        "video": meta.get("video"),
        "skeleton": [list(e) for e in meta.get("skeleton") or [] if len(e) == 2],
        "pcutoff": float(pcutoff),
        "posekit_predictions": True,
        "readonly": True,
    }
    kwargs = points_kwargs(
        name or (path.stem if path else predictions.scorer), features, face, marker_size(width, height), metadata
    )
    kwargs["shown"] = features["likelihood"].to_numpy() >= pcutoff
    return data, kwargs, "points"
