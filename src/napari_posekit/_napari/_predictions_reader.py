"""npe2 reader for DeepLabCut prediction files.

Opening ``<video stem><scorer>.h5`` or ``.csv`` (DeepLabCut's ``analyze_videos``
output, or PoseKit's, filtered ones included) gives a read-only Points layer
``(frame, y, x)`` with ``bodypart`` and ``likelihood`` features (and
``individual`` for multi-animal files), coloured per body part with the
colours of the labeled videos (built by :mod:`napari_posekit._napari.layers`).
Keypoints below the p-cutoff (DeepLabCut's default 0.6) are hidden through the layer's ``shown`` mask. ``CollectedData``
labels files belong to the project reader and are left alone.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from napari_posekit._napari.layers import predictions_layer_data

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
