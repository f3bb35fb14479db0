"""npe2 reader for SLEAP labels (``.slp``): the video, the keypoints and the skeleton.

Opening a ``.slp`` file gives up to three layers, bottom to top:

* the labeled video (lazy, through the plugin's video reader) when it is found
  on disk (see :func:`napari_posekit.core.sleap.resolve_video_path`);
* ``"<name> skeleton"``: a Vectors layer with one line per skeleton edge whose
  two nodes are both placed, per frame and instance, coloured by individual;
* ``"<name>"`` (the file name): a Points layer ``(frame, y, x)`` with features
  ``bodypart`` (categorical in skeleton order), ``individual`` (track name, or
  ``instance_<k>`` without tracks), ``likelihood`` (point score, 1.0 for user
  instances) and ``kind`` (``user``/``predicted``), coloured by body part.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from napari_posekit._napari._reader import video_layer_data
from napari_posekit._napari.layers import Key, bodypart_colors, points_kwargs
from napari_posekit.core.sleap import SleapLabels, load_slp
from napari_posekit.core.video import VideoError, VideoReader

#: Colours of the skeletons of successive individuals (tracks), cycled.
INDIVIDUAL_COLORS = (
    (1.0, 1.0, 1.0, 1.0),
    (1.0, 0.85, 0.1, 1.0),
    (0.2, 0.9, 1.0, 1.0),
    (1.0, 0.35, 0.75, 1.0),
    (0.5, 1.0, 0.3, 1.0),
    (1.0, 0.55, 0.2, 1.0),
    (0.65, 0.55, 1.0, 1.0),
)


def napari_get_reader(path):
    """Return a reader for a ``.slp`` path (or a list of them), or None.

    Never raises (napari's contract): a path that is not ``.slp`` gives None;
    a ``.slp`` file that cannot be read gives a warning naming the file and the
    reason (napari shows it as a notification) and None. The labels are read
    here, so the returned function only builds layer data.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(Path(p).suffix.lower() == ".slp" for p in paths):
        return None
    loaded = []
    for p in paths:
        try:
            loaded.append(load_slp(p))
        except ValueError as err:
            warnings.warn(f"PoseKit cannot open the SLEAP file {err}", stacklevel=2)
            return None
        except Exception as err:  # noqa: BLE001 - a reader must never crash the viewer
            warnings.warn(f"PoseKit cannot open the SLEAP file {p}: {type(err).__name__}: {err}", stacklevel=2)
            return None
    return lambda _path: [layer for labels in loaded for layer in sleap_layer_data(labels)]


def sleap_layer_data(labels: SleapLabels, *, open_video: bool = True) -> list[tuple]:
    """Layer data tuples for ``labels``: video (if found and ``open_video``), skeleton, keypoints."""
    layers = []
    if open_video and labels.video_path is not None:
        try:
            reader = VideoReader(labels.video_path, on_error="warn")
        except VideoError as err:
            warnings.warn(f"PoseKit shows the SLEAP labels without their video: {err}", stacklevel=2)
        else:
            reader.prefetch([(len(reader) - 1) // 2])  # napari shows the middle frame first
            layers.append(video_layer_data(reader))
    elif open_video:
        if labels.video_stored_path is None:
            reason = "its frames are embedded in the file or an image sequence, which PoseKit does not open"
        else:
            reason = f"{labels.video_stored_path} was not found (nor a file of that name beside the labels)"
        warnings.warn(f"PoseKit shows the SLEAP labels of {labels.path} without their video: {reason}", stacklevel=2)
    name = labels.path.name
    size = _point_size(labels)
    layers.append(skeleton_layer_data(labels, name=f"{name} skeleton", width=max(size / 4, 1.0)))
    layers.append(keypoints_layer_data(labels, name=name, size=size))
    return layers


def keypoints_layer_data(labels: SleapLabels, *, name: str, size: float = 8.0) -> tuple:
    """Points layer data tuple ``(frame, y, x)`` of every placed point of ``labels``."""
    table = labels.to_dataframe()
    data = table[["frame", "y", "x"]].to_numpy(dtype=float).reshape(-1, 3)
    features = pd.DataFrame(
        {
            "bodypart": pd.Categorical(table["node"].astype(object), categories=labels.node_names),
            "individual": table["individual"].astype(str).to_numpy(),
            "likelihood": table["score"].to_numpy(dtype=float),
            "kind": table["kind"].astype(str).to_numpy(),
        }
    )
    colors = bodypart_colors(labels.node_names)
    palette = np.array([colors[n] for n in labels.node_names]).reshape(-1, 4)
    face = palette[table["node"].cat.codes.to_numpy()]
    metadata = {
        Key.BODYPARTS: list(labels.node_names),
        Key.SKELETON: [list(e) for e in labels.edges],
        "source": str(labels.path),
        Key.INDIVIDUALS: _individual_order(labels),
        # one Points layer holds several animals, which the single-animal
        # Labeling widget would merge: it is shown, not edited there
        Key.READONLY: True,
    }
    return data, points_kwargs(name, features, face, size, metadata), "points"


def skeleton_layer_data(labels: SleapLabels, *, name: str, width: float = 1.5) -> tuple:
    """Vectors layer data tuple: one line per skeleton edge with both nodes placed.

    Each vector is ``[[frame, y0, x0], [0, y1 - y0, x1 - x0]]``; lines are
    coloured by individual, and the features name the edge and the individual.
    """
    xy = labels.xy
    names = labels.individual_names()
    order = {ind: k for k, ind in enumerate(_individual_order(labels))}
    parts, colors, feats = [], [], []
    for a, b in labels.edge_indices:
        both = ~(np.isnan(xy[:, :, a]).any(-1) | np.isnan(xy[:, :, b]).any(-1))
        f, i = np.nonzero(both)
        start, end = xy[f, i, a], xy[f, i, b]
        vec = np.zeros((len(f), 2, 3))
        vec[:, 0, 0] = labels.frame_indices[f]
        vec[:, 0, 1:] = start[:, ::-1]
        vec[:, 1, 1:] = (end - start)[:, ::-1]
        parts.append(vec)
        ind = names[f, i]
        colors.append([INDIVIDUAL_COLORS[order[n] % len(INDIVIDUAL_COLORS)] for n in ind])
        feats.append(
            pd.DataFrame({"edge": f"{labels.node_names[a]}-{labels.node_names[b]}", "individual": ind.astype(str)})
        )
    data = np.concatenate(parts) if parts else np.empty((0, 2, 3))
    edge_colors = np.concatenate([np.asarray(c, dtype=float).reshape(-1, 4) for c in colors]) if colors else None
    features = pd.concat(feats, ignore_index=True) if feats else pd.DataFrame({"edge": [], "individual": []})
    kwargs = {
        "name": name,
        "ndim": 3,
        "features": features,
        "edge_width": width,
        "vector_style": "line",
        "opacity": 0.8,
        "metadata": {"skeleton": [list(e) for e in labels.edges], "source": str(labels.path)},
    }
    if edge_colors is not None and len(edge_colors):
        kwargs["edge_color"] = edge_colors
    return data, kwargs, "vectors"


def _individual_order(labels: SleapLabels) -> list[str]:
    """Individuals in a stable order: tracks in file order, then untracked instance slots."""
    present = set(labels.individual_names()[labels.instance_kind != ""])
    tracks = [t for t in labels.track_names if t in present]
    others = sorted(present - set(tracks), key=lambda s: (len(s), s))
    return tracks + others


def _point_size(labels: SleapLabels) -> float:
    """A point size that suits the frame: about 1/128 of its shorter side, at least 4."""
    if labels.video_shape is not None:
        return float(max(4.0, min(labels.video_shape[1:]) / 128))
    return 6.0
