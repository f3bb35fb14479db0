"""Everything about PoseKit's napari layers, in one place.

- :class:`Key` and :class:`LayerMetadata`: the ``layer.metadata`` keys PoseKit
  writes and reads, defined once.
- Which layer is what: :func:`is_keypoints_layer`, :func:`is_predictions_layer`,
  :func:`is_video_layer`, :func:`is_image_stack_layer`, :func:`video_layers`,
  :func:`analysable_layers`, and a layer's project (:func:`project_config`).
- Colours: :func:`bodypart_colors` (the labeled videos' palette, so a body part
  looks the same in labels, predictions and exported videos),
  :func:`colormap_colors`, :func:`prediction_colors`, and
  :func:`individual_colors` (one colour per animal, colour-blind friendly).
- Layer ↔ array: :func:`points_to_arrays` turns Points data back into
  ``(frames, bodyparts, 2)`` arrays; the builders below go the other way.
- Several animals: :func:`label_columns` (a layer's ``(individual, body part)``
  columns), :func:`multianimal_layer_data`, :func:`multi_points`,
  :func:`multi_points_to_arrays`, :func:`multi_style` (colour by individual,
  symbol by body part) and :func:`labels_skeleton`.
- Builders of layer data tuples: :func:`keypoints_layer_data` (labels),
  :func:`predictions_layer_data` and :func:`prediction_points` (predictions),
  :func:`skeleton_vectors` (skeleton edges), :func:`tracks_data` (trajectories),
  :func:`points_kwargs` (what every
  keypoints layer shares).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TypedDict

import numpy as np
import pandas as pd
from napari.layers import Points

from napari_posekit.controllers.labeling_multi import SINGLE, Columns
from napari_posekit.core.options import PCUTOFF


class Key:
    """The ``layer.metadata`` keys PoseKit writes and reads (types in :class:`LayerMetadata`)."""

    BODYPARTS: Final = "bodyparts"
    COLORS: Final = "colors"
    SKELETON: Final = "skeleton"
    SCORER: Final = "scorer"
    INDIVIDUALS: Final = "individuals"
    PATH: Final = "path"
    VIDEO: Final = "video"
    CONFIG: Final = "config"
    FOLDER: Final = "folder"
    IMAGES: Final = "images"
    IMAGE_SIZES: Final = "image_sizes"
    INDEX_STYLE: Final = "index_style"
    KEPT_ROWS: Final = "kept_rows"
    LABELS_FILE: Final = "labels_file"
    JOURNAL: Final = "journal"
    MACHINE_CELLS: Final = "machine_cells"
    CHECKPOINT: Final = "checkpoint"
    PCUTOFF: Final = "pcutoff"
    PREDICTIONS: Final = "posekit_predictions"
    READONLY: Final = "readonly"
    UNIQUE_BODYPARTS: Final = "uniquebodyparts"


class LayerMetadata(TypedDict, total=False):
    """What PoseKit keeps in ``layer.metadata`` (every key optional)."""

    bodyparts: list[str]  # body part names, in the project's order
    colors: dict[str, tuple[float, float, float, float]]  # RGBA per body part
    skeleton: list[list[str]]  # edges as pairs of body part names
    scorer: str  # DeepLabCut's scorer (labeler, or the model's name for predictions)
    individuals: list[str]  # multi-animal predictions
    path: str | None  # the prediction file a layer was read from or saved to
    video: dict[str, Any]  # the video layer's: path, fps, shape, ...
    config: str  # a project's config.yaml
    folder: str  # a labeled-data folder
    images: list[str]  # image names of the folder, one per frame of the stack
    image_sizes: list[list[int]]  # each image's own [width, height]
    index_style: str  # how CollectedData names its rows ("multi" or "string")
    kept_rows: Any  # CollectedData rows kept verbatim (other folders)
    labels_file: str  # the CollectedData .h5 of a folder
    journal: str  # the label journal of a folder
    machine_cells: list[tuple[str, str]]  # (image, bodypart) cells that a model placed
    checkpoint: str | None  # the model that made the predictions
    pcutoff: float  # likelihood below which predictions are hidden
    posekit_predictions: bool  # a predictions layer (not labels)
    readonly: bool  # not editable (ground truth, predictions)
    uniquebodyparts: list[str]  # multi-animal labels: parts of no individual (under "single")


def is_keypoints_layer(layer) -> bool:
    """Points layers with body parts that are meant to be edited (not read-only ground truth or predictions)."""
    meta = getattr(layer, "metadata", None) or {}
    return isinstance(layer, Points) and Key.BODYPARTS in meta and not meta.get(Key.READONLY)


def is_predictions_layer(layer) -> bool:
    """Points layers that hold a model's predictions (the Analysis widget's, or a prediction file's)."""
    return isinstance(layer, Points) and bool((getattr(layer, "metadata", None) or {}).get(Key.PREDICTIONS))


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


# Okabe & Ito's colour-blind-safe set (black left out: it vanishes on dark frames),
# then Paul Tol's "muted" set for larger groups.
_INDIVIDUAL_PALETTE: Final = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#88CCEE", "#CC6677", "#DDCC77", "#117733", "#332288", "#AA4499", "#44AA99", "#999933", "#882255",
)  # fmt: skip


def individual_colors(individuals: Sequence[str]) -> np.ndarray:
    """``(I, 4)`` RGBA floats, one distinct colour per individual, stable by position.

    The first individual is always orange, the second sky blue, and so on
    (Okabe & Ito's colour-blind-safe palette, then Paul Tol's muted one); past
    16 individuals the hues are spread by the golden angle.
    """
    import colorsys

    out = np.ones((len(individuals), 4), dtype=float)
    for i in range(len(individuals)):
        if i < len(_INDIVIDUAL_PALETTE):
            code = _INDIVIDUAL_PALETTE[i]
            out[i, :3] = [int(code[j : j + 2], 16) / 255.0 for j in (1, 3, 5)]
        else:
            out[i, :3] = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
    return out


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
    metadata = {Key.BODYPARTS: list(bodyparts), Key.COLORS: colors, **(metadata or {})}
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


# --------------------------------------------------------------------------- layer -> arrays
def points_to_arrays(
    data: np.ndarray, features: pd.DataFrame, bodyparts: Sequence[str], n_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points ``(frame, y, x)`` with a ``bodypart`` feature as ``(n_frames, K, 2)`` ``(x, y)`` arrays.

    Returns ``xy`` (NaN where no point), ``likelihood`` (the ``likelihood``
    feature, 1 without it; 0 where no point) and the rows that were not used:
    points of unknown body parts or outside ``0 <= frame < n_frames``, and
    duplicates (when one body part has several points on a frame, the last
    one wins).
    """
    codes = _codes(features["bodypart"], bodyparts) if len(data) else np.zeros(0, dtype=int)
    return _cells_to_arrays(data, features, codes, len(bodyparts), n_frames)


def _codes(values: pd.Series, names: Sequence[str]) -> np.ndarray:
    """``(M,)`` position of each value in ``names``, -1 for a value not there (vectorized through categories)."""
    cat = values.astype("category") if not isinstance(values.dtype, pd.CategoricalDtype) else values
    position = {name: k for k, name in enumerate(names)}
    lookup = np.array([position.get(c, -1) for c in cat.cat.categories] + [-1], dtype=int)
    return lookup[cat.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing -1


def _cells_to_arrays(
    data: np.ndarray, features: pd.DataFrame, column_of_row: np.ndarray, n_columns: int, n_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = np.asarray(data, dtype=float).reshape(-1, 3) if len(data) else np.zeros((0, 3))
    xy = np.full((n_frames, n_columns, 2), np.nan)
    likelihood = np.zeros((n_frames, n_columns))
    if not len(data):
        return xy, likelihood, np.zeros(0, dtype=int)
    p = features["likelihood"].to_numpy(dtype=float) if "likelihood" in features else np.ones(len(data))
    f = np.round(data[:, 0]).astype(int)  # halves to even, as round()
    k = np.asarray(column_of_row, dtype=int)
    ok = (k >= 0) & (f >= 0) & (f < n_frames)
    rows = np.flatnonzero(ok)
    key = f[rows] * n_columns + k[rows]
    _, last = np.unique(key[::-1], return_index=True)  # the last point of each cell wins
    kept = np.zeros(len(data), bool)
    kept[rows[len(rows) - 1 - last]] = True
    r = np.flatnonzero(kept)
    xy[f[r], k[r]] = data[r][:, [2, 1]]
    likelihood[f[r], k[r]] = p[r]
    return xy, likelihood, np.flatnonzero(~kept)


# --------------------------------------------------------------------------- several animals
#: Symbols of successive body parts on multi-animal layers (colour tells the individual).
BODYPART_SYMBOLS: Final = (
    "disc", "square", "diamond", "triangle_up", "star", "cross", "x",
    "triangle_down", "ring", "hbar", "vbar", "clobber", "arrow", "tailed_arrow",
)  # fmt: skip


def label_columns(metadata) -> Columns | None:
    """The ``(individual, body part)`` columns of a multi-animal keypoints layer, None for one animal.

    A layer is multi-animal when its metadata lists ``individuals``; its
    ``bodyparts`` are the individuals' parts then the ``uniquebodyparts``.
    """
    meta = metadata or {}
    individuals = [str(i) for i in meta.get(Key.INDIVIDUALS) or []]
    if not individuals:
        return None
    unique = [str(u) for u in meta.get(Key.UNIQUE_BODYPARTS) or []]
    parts = [str(bp) for bp in meta.get(Key.BODYPARTS) or [] if bp not in unique]
    return Columns(tuple(individuals), tuple(parts), tuple(unique))


def individual_names(columns: Columns) -> list[str]:
    """The ``individual`` categories of a multi-animal layer: the individuals, then ``single`` for unique parts."""
    return [*columns.individuals, *([SINGLE] if columns.unique else [])]


def multi_points(xy: np.ndarray, columns: Columns) -> tuple[np.ndarray, pd.DataFrame]:
    """Points data ``(M, 3)`` (frame, y, x) and features of ``(n_frames, C, 2)`` multi-animal labels."""
    xy = np.asarray(xy, dtype=float)
    frame, col = np.nonzero(~np.isnan(xy).any(axis=2))
    data = np.column_stack([frame, xy[frame, col, 1], xy[frame, col, 0]]).astype(float).reshape(-1, 3)
    pairs = np.asarray(columns.pairs, dtype=object).reshape(-1, 2)
    features = pd.DataFrame(
        {
            "bodypart": pd.Categorical(pairs[col, 1], categories=columns.all_bodyparts),
            "individual": pd.Categorical(pairs[col, 0], categories=individual_names(columns)),
            "likelihood": np.ones(len(col)),
        }
    )
    return data, features


def multi_points_to_arrays(
    data: np.ndarray, features: pd.DataFrame, columns: Columns, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_frames, C, 2)`` labels of multi-animal points and the rows not used (see :func:`points_to_arrays`)."""
    codes = pair_codes(features, columns) if len(data) else np.zeros(0, dtype=int)
    xy, _likelihood, unused = _cells_to_arrays(data, features, codes, len(columns), n_frames)
    return xy, unused


def pair_codes(features: pd.DataFrame, columns: Columns) -> np.ndarray:
    """``(M,)`` column of each point's ``(individual, body part)`` (any individual for a unique part), -1 if none."""
    parts = _codes(features["bodypart"], columns.all_bodyparts)
    if "individual" in features:
        owners = _codes(features["individual"], columns.individuals)
    else:
        owners = np.full(len(parts), -1)
    n_ind, n_parts = len(columns.individuals), len(columns.bodyparts)
    code = np.where((owners >= 0) & (parts >= 0) & (parts < n_parts), owners * n_parts + parts, -1)
    return np.where(parts >= n_parts, n_ind * n_parts + parts - n_parts, code)  # unique parts


def multi_style(features: pd.DataFrame, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
    """Face colours ``(M, 4)`` by individual and symbols ``(M,)`` by body part of multi-animal points."""
    palette = np.vstack([individual_colors(columns.individuals), [[1.0, 1.0, 1.0, 1.0]]])  # others: white
    owners = _codes(features["individual"], columns.individuals)
    parts = _codes(features["bodypart"], columns.all_bodyparts)
    shapes = np.array([*BODYPART_SYMBOLS, "disc"], dtype=object)
    symbols = shapes[np.where(parts >= 0, parts % len(BODYPART_SYMBOLS), len(BODYPART_SYMBOLS))]
    return palette[owners].reshape(-1, 4), symbols


def multi_skeleton_vectors(xy: np.ndarray, columns: Columns, skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Skeleton vectors ``(n, 2, 3)`` of every individual of ``(frames, C, 2)`` labels, and each vector's individual."""
    per, _unique = columns.split(xy)
    parts, owners = [], []
    for i in range(len(columns.individuals)):
        vectors = skeleton_vectors(per[:, i], columns.bodyparts, skeleton)
        parts.append(vectors)
        owners.append(np.full(len(vectors), i, dtype=int))
    if not parts:
        return np.empty((0, 2, 3)), np.zeros(0, dtype=int)
    return np.concatenate(parts), np.concatenate(owners)


def labels_skeleton(xy: np.ndarray, bodyparts: Sequence[str], skeleton, columns: Columns | None = None) -> tuple:
    """Skeleton vectors of labels and their colours: white for one animal, each individual's own for several."""
    if columns is None:
        return skeleton_vectors(xy, bodyparts, skeleton), "white"
    vectors, owner = multi_skeleton_vectors(xy, columns, skeleton)
    return vectors, individual_colors(columns.individuals)[owner] if len(vectors) else "white"


def point_defaults(features: pd.DataFrame, values: dict) -> pd.DataFrame:
    """One row of features for the next new point: ``values``, every column of ``features`` with its own dtype.

    Categorical columns keep their categories (a value they lack is added);
    columns ``values`` does not name get ``1.0`` (numbers) or ``"user"``/``""``.
    """
    row = {}
    for name in features.columns:
        column = features[name]
        if name in values:
            value = values[name]
        elif pd.api.types.is_numeric_dtype(column.dtype):
            value = 1.0
        else:
            value = "user" if name == "kind" else ""
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories = list(column.cat.categories)
            row[name] = pd.Categorical([value], categories=categories + ([value] if value not in categories else []))
        else:
            row[name] = [value]
    for name, value in values.items():
        row.setdefault(name, [value])
    return pd.DataFrame(row)


def multianimal_layer_data(xy: np.ndarray, columns: Columns, *, name: str, size: float = 8.0, metadata=None) -> tuple:
    """Points layer data tuple of ``(n_frames, C, 2)`` multi-animal labels: colour by individual, symbol by part."""
    data, features = multi_points(xy, columns)
    face, symbols = multi_style(features, columns)
    meta = {
        Key.BODYPARTS: columns.all_bodyparts,
        Key.INDIVIDUALS: list(columns.individuals),
        Key.UNIQUE_BODYPARTS: list(columns.unique),
        Key.COLORS: bodypart_colors(columns.all_bodyparts),
        **(metadata or {}),
    }
    kwargs = points_kwargs(name, features, face, size, meta)
    if len(symbols):
        kwargs["symbol"] = symbols
    return data, kwargs, "points"


def layer_to_xy(layer: Points, n_frames: int, bodyparts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(n_frames, K, 2)`` labels of a keypoints layer, and the rows to drop (see :func:`points_to_arrays`).

    A multi-animal layer (see :func:`label_columns`) gives ``(n_frames, C, 2)``, one column per
    ``(individual, body part)``; ``bodyparts`` is then not used.
    """
    columns = label_columns(layer.metadata)
    if columns is not None:
        return multi_points_to_arrays(layer.data, layer.features, columns, n_frames)
    xy, _likelihood, unused = points_to_arrays(layer.data, layer.features, bodyparts, n_frames)
    return xy, unused


def skeleton_vectors(xy: np.ndarray, bodyparts: Sequence[str], skeleton, keep: np.ndarray | None = None) -> np.ndarray:
    """Vectors data ``(n, 2, 3)`` (frame, y, x) for every skeleton edge with both ends shown.

    ``keep`` ``(frames, K)`` says which keypoints are shown (default: those placed, not NaN);
    edges naming an unknown body part are left out.
    """
    bodyparts = list(bodyparts)
    keep = ~np.isnan(xy).any(axis=2) if keep is None else np.asarray(keep, dtype=bool)
    out = []
    for a, b in skeleton:
        if a not in bodyparts or b not in bodyparts:
            continue
        i, j = bodyparts.index(a), bodyparts.index(b)
        f = np.flatnonzero(keep[:, i] & keep[:, j])
        start = np.column_stack([f, xy[f, i, 1], xy[f, i, 0]])
        delta = np.column_stack([np.zeros(len(f)), xy[f, j, 1] - xy[f, i, 1], xy[f, j, 0] - xy[f, i, 0]])
        out.append(np.stack([start, delta], axis=1))
    return np.concatenate(out).astype(float) if out else np.empty((0, 2, 3))


def tracks_data(xy: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tracks data ``(M, 4)`` (body part, frame, y, x) sorted by track then time, and each row's body part."""
    parts, frames = np.nonzero(np.asarray(keep).T)
    data = np.column_stack([parts, frames, xy[frames, parts, 1], xy[frames, parts, 0]]).astype(float)
    return data.reshape(-1, 4), parts


# --------------------------------------------------------------------------- predictions
def prediction_colors(bodyparts: Sequence[str]) -> np.ndarray:
    """``(K, 4)`` RGBA floats, one per body part: the colours of the labeled videos."""
    colors = bodypart_colors(list(bodyparts))
    return np.asarray([colors[bp] for bp in bodyparts], dtype=float).reshape(-1, 4)


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


def predictions_layer_data(predictions, *, pcutoff: float = PCUTOFF, name: str | None = None) -> tuple:
    """Points layer data tuple for :class:`~napari_posekit.core.predictions.Predictions`.

    Keypoints below ``pcutoff`` are hidden (``shown``), not dropped.
    """
    bodyparts = list(dict.fromkeys(predictions.bodyparts))
    colors = prediction_colors(bodyparts)
    xy = np.asarray(predictions.xy, dtype=float)
    likelihood = np.nan_to_num(np.asarray(predictions.likelihood, dtype=float), nan=0.0)
    data, features, face = prediction_points(
        xy,
        likelihood,
        np.ones(likelihood.shape, bool),
        predictions.bodyparts,
        colors,
        frames=predictions.frames,
        individual_of=predictions.individual_of,
    )
    meta = dict(predictions.metadata or {})
    width, height = meta.get("width"), meta.get("height")
    if not (width and height) and len(data):
        height, width = np.nanmax(data[:, 1]) + 1, np.nanmax(data[:, 2]) + 1
    path = Path(predictions.path) if predictions.path is not None else None
    metadata: LayerMetadata = {
        Key.BODYPARTS: bodyparts,
        Key.COLORS: {bp: tuple(float(c) for c in colors[k]) for k, bp in enumerate(bodyparts)},
        Key.INDIVIDUALS: predictions.individuals,
        Key.SCORER: predictions.scorer,
        Key.PATH: str(path) if path else None,
        Key.VIDEO: meta.get("video"),
        Key.SKELETON: [list(e) for e in meta.get("skeleton") or [] if len(e) == 2],
        Key.PCUTOFF: float(pcutoff),
        Key.PREDICTIONS: True,
        Key.READONLY: True,
    }
    kwargs = points_kwargs(
        name or (path.stem if path else predictions.scorer), features, face, marker_size(width, height), metadata
    )
    kwargs["shown"] = features["likelihood"].to_numpy() >= pcutoff
    return data, kwargs, "points"


# --------------------------------------------------------------------------- picking layers
def is_video_layer(layer) -> bool:
    """An image layer opened by the plugin's video reader (its metadata holds the video's description).

    Prediction layers name their video by path under the same key; they are not videos.
    """
    return isinstance((getattr(layer, "metadata", None) or {}).get(Key.VIDEO), dict)


def video_layers(viewer) -> list:
    """Image layers opened by the plugin's video reader."""
    return [layer for layer in viewer.layers if is_video_layer(layer)]


def analysable_layers(viewer) -> list:
    """Image layers with a time axis: videos from the plugin's reader and image stacks."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image) and layer.ndim >= 3]


def project_config(layer) -> str | None:
    """The config.yaml of a keypoints layer opened by the project reader (not of a predictions layer)."""
    meta = getattr(layer, "metadata", None) or {}
    if isinstance(layer, Points) and meta.get(Key.CONFIG) and not meta.get(Key.PREDICTIONS):
        return str(meta[Key.CONFIG])
    return None


def is_image_stack_layer(layer) -> bool:
    """A keypoints layer over a folder of labeled images (its metadata lists them), not a predictions layer."""
    meta = getattr(layer, "metadata", None) or {}
    return isinstance(layer, Points) and bool(meta.get(Key.IMAGES)) and not meta.get(Key.PREDICTIONS)
