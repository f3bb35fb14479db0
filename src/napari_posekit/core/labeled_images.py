"""The images of a ``labeled-data`` folder, and the labels checked against them.

:func:`image_sizes` measures a folder's images from their headers (they may
differ in size: DeepLabCut trains such folders as they are),
:func:`check_image_sizes` insists on one size, :func:`check_labels` lists
labels outside their own image and :func:`missing_images` the labeled images
with no file.

Everything here is napari-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .collected_data import _image_keys, _split_image_path, _validate_collected
from .filesafety import error_reason
from .project import IMAGE_EXTENSIONS, ProjectError

__all__ = ["check_image_sizes", "check_labels", "image_sizes", "missing_images"]


def image_sizes(folder: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """``{file name: (width, height)}`` of the images in a ``labeled-data/<video>`` folder, sorted by name.

    Lists PNG (DeepLabCut's default), JPEG (``.jpg``/``.jpeg``), BMP and TIFF
    files and reads only their headers (:func:`napari_posekit.core.images.image_size`).
    The sizes may differ: DeepLabCut trains such folders as they are.
    """
    from .images import image_size

    folder = Path(folder)
    if not folder.is_dir():
        raise ProjectError("not a folder", folder)
    sizes: dict[str, tuple[int, int]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        try:
            sizes[path.name] = image_size(path)
        except Exception as err:
            raise ProjectError(f"cannot read the image header: {error_reason(err)}", path) from err
    return sizes


def check_image_sizes(folder: str | os.PathLike) -> tuple[int, int] | None:
    """The common ``(width, height)`` of a folder's images; None when it has none.

    Raises :class:`ProjectError` listing every size found (with example files)
    when the images do not all have the same size.  Training and evaluation
    accept such folders; this is for callers that need one size per folder.
    """
    sizes = image_sizes(folder)
    groups: dict[tuple[int, int], list[str]] = {}
    for name, size in sizes.items():
        groups.setdefault(size, []).append(name)
    if len(groups) > 1:
        described = "; ".join(
            f"{w}x{h}: {len(names)} image(s), e.g. {', '.join(names[:3])}"
            for (w, h), names in sorted(groups.items(), key=lambda item: -len(item[1]))
        )
        raise ProjectError(f"images of different sizes in one folder: {described}", folder)
    return next(iter(groups), None)


def check_labels(
    df: pd.DataFrame,
    image_sizes: Mapping[str, tuple[int, int]] | tuple[int, int],
) -> list[str]:
    """Warnings for labels outside their image (``0 <= x <= width``, ``0 <= y <= height``).

    ``image_sizes`` maps image paths (as in the index, joined with ``/``) or
    file names (as :func:`image_sizes` returns) to ``(width, height)``; a single
    ``(width, height)`` applies to every image. Images of unknown size are skipped.
    """
    df = _validate_collected(df, likelihood=True)
    keys = _image_keys(df.index)
    points = list(dict.fromkeys(df.columns.droplevel("coords")))  # (scorer, [individual,] bodypart)
    x = df.loc[:, [(*p, "x") for p in points]].to_numpy(np.float64)
    y = df.loc[:, [(*p, "y") for p in points]].to_numpy(np.float64)
    warnings_: list[str] = []
    for i, key in enumerate(keys):
        size = _size_for(key, image_sizes)
        if size is None:
            continue
        w, h = size
        for j, point in enumerate(points):
            xv, yv = x[i, j], y[i, j]
            if np.isnan(xv) and np.isnan(yv):
                continue
            if not (0 <= xv <= w and 0 <= yv <= h):
                label = "/".join(map(str, point[1:]))
                warnings_.append(f"{key}: {label} at ({xv:.1f}, {yv:.1f}) is outside the {w}x{h} image")
    return warnings_


def _size_for(key: str, sizes) -> tuple[int, int] | None:
    if isinstance(sizes, tuple) and len(sizes) == 2 and all(isinstance(v, (int, np.integer)) for v in sizes):
        return sizes
    if key in sizes:
        return sizes[key]
    name = _split_image_path(key)[-1]
    return sizes.get(name)


def missing_images(df: pd.DataFrame, project_folder: str | os.PathLike) -> list[str]:
    """Image paths of the index (as strings) with no file under ``project_folder``."""
    root = Path(project_folder)
    return [key for key in _image_keys(df.index) if not root.joinpath(*_split_image_path(key)).is_file()]
