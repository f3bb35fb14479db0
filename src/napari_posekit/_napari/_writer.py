"""npe2 writer: a keypoints Points layer saved as DeepLabCut CollectedData (.h5 + .csv).

A layer of several animals (its metadata lists ``individuals``: a multi-animal
project's, a SLEAP file's) is saved in DeepLabCut's multi-animal layout,
columns ``scorer/individuals/bodyparts/coords`` with unique parts under ``single``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_posekit._napari.layers import Key, label_columns, multi_points_to_arrays, points_to_arrays
from napari_posekit.core.collected_data import update_collected


def write_keypoints(path: str, data, attributes: dict) -> list[str]:
    """Write ``CollectedData_<scorer>.h5`` and ``.csv`` for a keypoints layer.

    The scorer comes from the file name (``CollectedData_<scorer>``) or the
    layer's metadata; image names from the layer's metadata (a layer opened
    from a project) or ``img<frame>.png``. The rows are those of the
    Labeling widget's save (:func:`~napari_posekit.core.collected_data.update_collected`):
    every image with a label and every row the file had. Both files are
    written atomically.
    """
    meta = attributes.get("metadata") or {}
    features = attributes.get("features")
    bodyparts = list(meta.get(Key.BODYPARTS) or [])
    if not bodyparts or features is None or "bodypart" not in features:
        raise ValueError("only keypoints layers (with body parts) can be saved as CollectedData")
    target = Path(path)
    stem = target.stem if target.suffix.lower() in (".h5", ".csv") else target.name
    scorer = stem.removeprefix("CollectedData_") if stem.startswith("CollectedData_") else meta.get(Key.SCORER)
    if not scorer:
        raise ValueError("name the file CollectedData_<scorer>.h5 so the labels get a scorer")
    data = np.asarray(data, dtype=float).reshape(-1, 3)
    n = round(data[:, 0].max()) + 1 if len(data) else 0
    images = list(meta.get(Key.IMAGES) or [f"img{i:0{len(str(max(n - 1, 0)))}d}.png" for i in range(n)])
    frames = np.rint(data[:, 0]).astype(int)
    placeable = np.asarray(features["bodypart"].isin(bodyparts)) & (frames >= 0) & (frames < len(images))
    columns = label_columns(meta)
    if columns is not None:
        xy, _unused = multi_points_to_arrays(data, features, columns, len(images))  # the last point wins
        owners = features["individual"].astype(object) if "individual" in features else [""] * len(data)
        pairs = zip(owners, features["bodypart"].astype(object))
        placeable &= [bp in columns.unique or (ind, bp) in columns.pairs for ind, bp in pairs]
    if not placeable.all():
        raise ValueError(
            f"{int((~placeable).sum())} points have a body part or individual the layer does not list, or no image "
            "to be on; nothing was written"
        )
    if columns is not None:
        from napari_posekit._napari._project_reader import save_multianimal

        target = target.with_name(f"CollectedData_{scorer}.h5")
        h5, csv = save_multianimal(target, images, columns, xy, scorer, meta)
        return [str(h5), str(csv)]
    xy, _likelihood, _duplicates = points_to_arrays(data, features, bodyparts, len(images))  # the last point wins
    h5, csv = update_collected(
        target.with_name(f"CollectedData_{scorer}.h5"),
        images,
        bodyparts,
        xy,
        scorer,
        index_style=meta.get(Key.INDEX_STYLE, "multi"),
    )
    return [str(h5), str(csv)]
