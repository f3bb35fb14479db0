"""Builders of napari layer data from the core's plain arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def bodypart_colors(
    bodyparts: Sequence[str], colormap: str = "rainbow"
) -> dict[str, tuple[float, float, float, float]]:
    """One RGBA colour per body part, the same as labeled videos draw it.

    The colours come from :func:`napari_posekit.core.labeled_video.bodypart_colors`
    (DeepLabCut's default ``rainbow``, or ``hsv``), so a body part looks the same
    in labels, predictions and exported videos.
    """
    from napari_posekit.core.labeled_video import bodypart_colors as palette

    rgb = np.asarray(palette(len(bodyparts), colormap), dtype=float) / 255.0
    return {bp: (*(float(v) for v in rgb[k]), 1.0) for k, bp in enumerate(bodyparts)}


def colormap_colors(name: str, bodyparts: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """Body-part colours for a config's ``colormap`` (DeepLabCut's key).

    ``rainbow`` and ``hsv`` are the labeled videos' palettes (:func:`bodypart_colors`);
    other names are sampled evenly from the napari colormap of that name, and
    names napari does not know fall back to ``rainbow``.
    """
    from napari.utils.colormaps import ensure_colormap

    from napari_posekit.core.labeled_video import COLORMAPS

    if name in COLORMAPS:
        return bodypart_colors(bodyparts, name)
    try:
        cmap = ensure_colormap(name)
    except (KeyError, ValueError, TypeError):
        return bodypart_colors(bodyparts)
    if getattr(cmap, "name", name) != name:
        return bodypart_colors(bodyparts)
    values = cmap.map(np.linspace(0, 1, max(len(bodyparts), 1)))
    return {bp: tuple(float(v) for v in values[k]) for k, bp in enumerate(bodyparts)}


def keypoints_layer_data(
    xy: np.ndarray,
    bodyparts: Sequence[str],
    *,
    name: str,
    likelihood: np.ndarray | None = None,
    individual: str = "",
    size: float = 8.0,
    metadata: dict | None = None,
    colors: dict | None = None,
) -> tuple:
    """Points layer data tuple from ``(T, K, 2)`` ``(x, y)`` keypoints (NaN = missing).

    Points are ``(frame, y, x)``; features carry ``bodypart``, ``individual``
    and ``likelihood``; face colours follow the body part.
    """
    xy = np.asarray(xy, dtype=float)
    t, k, _ = xy.shape
    frame, part = np.meshgrid(np.arange(t), np.arange(k), indexing="ij")
    present = ~np.isnan(xy).any(axis=2)
    data = np.column_stack([frame[present], xy[..., 1][present], xy[..., 0][present]])
    like = np.ones((t, k)) if likelihood is None else np.asarray(likelihood, dtype=float)
    features = pd.DataFrame(
        {
            "bodypart": pd.Categorical(np.asarray(bodyparts, dtype=object)[part[present]], categories=list(bodyparts)),
            "individual": individual,
            "likelihood": like[present],
        }
    )
    colors = colors or bodypart_colors(bodyparts)
    face = np.array([colors[bp] for bp in features["bodypart"]]).reshape(-1, 4)
    metadata = {"bodyparts": list(bodyparts), "colors": colors, **(metadata or {})}
    return data.reshape(-1, 3), points_kwargs(name, features, face, size, metadata), "points"


def outside_image(xy: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``(n_images, n_bodyparts)`` bool: placed labels that lie outside their own image.

    napari draws an image ``w`` pixels wide over ``-0.5 <= x <= w - 0.5``; the
    training data wants ``0 <= x <= w``.  A label counts as inside only when both
    agree (``0 <= x <= w - 0.5``), so a label kept here is never dropped from
    training and is always drawn on its image.
    """
    from napari_posekit.core.images import outside_image as outside

    return outside(xy, sizes, edge=0.5)


def points_kwargs(name: str, features: pd.DataFrame, face: np.ndarray, size: float, metadata: dict) -> dict:
    """Points layer kwargs shared by every keypoints layer (frame, y, x points)."""
    return {
        "name": name,
        "ndim": 3,
        "features": features,
        **({"face_color": face} if len(face) else {}),
        "border_color": "black",
        "border_width": 0.1,
        "size": size,
        "metadata": metadata,
    }
