"""npe2 reader for SLEAP labels (``.slp``): the video, the keypoints and the skeleton.

Opening a ``.slp`` file gives up to three layers, bottom to top:

* the labeled video (lazy, through the plugin's video reader) when it is found
  on disk (see :func:`napari_posekit.core.sleap.resolve_video_path`);
* ``"<name> skeleton"``: a Vectors layer with one line per skeleton edge whose
  two nodes are both placed, per frame and instance, coloured by individual;
* ``"<name>"`` (the file name): a Points layer ``(frame, y, x)`` with features
  ``bodypart`` (categorical in skeleton order), ``individual`` (track name, or
  ``instance_<k>`` without tracks), ``likelihood`` (point score, 1.0 for user
  instances) and ``kind`` (``user``/``predicted``), coloured by individual
  with one symbol per body part.

The keypoints layer is editable in the Labeling widget, one column per
(individual = track, body part). Its save (:func:`save_sleap_labels`) writes
``<name>.edited.slp`` beside the file opened, never over it: the original
labels with every changed animal on every changed frame as a user instance (a
prediction a person corrected stays in the file, linked as the instance's
``from_predicted``, as SLEAP does).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from napari_posekit._napari._reader import video_layer_data
from napari_posekit._napari.layers import Key, individual_colors, label_columns, multi_style, points_kwargs
from napari_posekit.core.filesafety import write_atomically
from napari_posekit.core.labels import journal_path
from napari_posekit.core.project import ProjectError
from napari_posekit.core.sleap import SleapLabels, load_slp
from napari_posekit.core.video import VideoError, VideoReader

#: What the save of an edited SLEAP layer adds to the file's name.
EDITED_SUFFIX = ".edited"


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
    # a person's instance wins over a prediction of the same animal on a frame: it comes last
    table = table.assign(_order=(table["kind"] == "user").astype(int)).sort_values(["frame", "_order"], kind="stable")
    data = table[["frame", "y", "x"]].to_numpy(dtype=float).reshape(-1, 3)
    individuals = _individual_order(labels)
    features = pd.DataFrame(
        {
            "bodypart": pd.Categorical(table["node"].astype(object), categories=labels.node_names),
            "individual": pd.Categorical(table["individual"].astype(str), categories=individuals),
            "likelihood": table["score"].to_numpy(dtype=float),
            "kind": table["kind"].astype(str).to_numpy(),
        }
    ).reset_index(drop=True)
    target = edited_path(labels.path)
    metadata = {
        Key.BODYPARTS: list(labels.node_names),
        Key.SKELETON: [list(e) for e in labels.edges],
        "source": str(labels.path),
        "video_index": labels.video_index,
        Key.INDIVIDUALS: individuals,
        Key.LABELS_FILE: str(target),  # where the Labeling widget saves (never the file opened)
        Key.JOURNAL: str(journal_path(target)),
    }
    kwargs = points_kwargs(name, features, np.zeros((0, 4)), size, metadata)
    columns = label_columns(metadata)
    if len(data) and columns is not None:
        kwargs["face_color"], kwargs["symbol"] = multi_style(features, columns)
    return data, kwargs, "points"


def edited_path(path: str | os.PathLike) -> Path:
    """Where the edits of ``path`` are saved: ``<name>.edited.slp`` beside it (itself when it is such a file)."""
    path = Path(path)
    return path if path.stem.endswith(EDITED_SUFFIX) else path.with_name(f"{path.stem}{EDITED_SUFFIX}.slp")


def skeleton_layer_data(labels: SleapLabels, *, name: str, width: float = 1.5) -> tuple:
    """Vectors layer data tuple: one line per skeleton edge with both nodes placed.

    Each vector is ``[[frame, y0, x0], [0, y1 - y0, x1 - x0]]``; lines are
    coloured by individual, and the features name the edge and the individual.
    """
    xy = labels.xy
    names = labels.individual_names()
    order = {ind: k for k, ind in enumerate(_individual_order(labels))}
    palette = individual_colors(list(order))
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
        colors.append(palette[[order[n] for n in ind]])
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


# --------------------------------------------------------------------------- saving edits
def save_sleap_labels(store, layer) -> Path:
    """Save the labels of an edited SLEAP layer as ``<name>.edited.slp`` beside the file opened; returns it.

    The file opened is read again and left as it is; the copy gets, for every
    (frame, individual) whose points changed, a user instance with the new
    points (none when all were deleted). Everything else (other videos,
    tracks, suggestions, untouched instances) is kept. Written atomically.
    """
    import sleap_io as sio

    meta = layer.metadata
    columns = label_columns(meta)
    if columns is None or not meta.get("source"):
        raise ProjectError("this layer was not opened from a SLEAP file")
    source, target = Path(meta["source"]), Path(meta.get(Key.LABELS_FILE) or edited_path(meta["source"]))
    video_index = int(meta.get("video_index", 0))
    before = dense_labels(load_slp(source, video_index), columns, len(store.images))
    after, _unique = columns.split(np.asarray(store.xy))
    same = (before == after) | (np.isnan(before) & np.isnan(after))
    changed = ~same.all(axis=(2, 3))  # (frames, individuals)
    labels = sio.load_slp(str(source))
    video = labels.videos[video_index]
    nodes = [str(n) for n in columns.bodyparts]
    skeleton = next((sk for sk in labels.skeletons if list(sk.node_names) == nodes), labels.skeletons[0])
    tracks = {track.name: track for track in labels.tracks}
    frames = {lf.frame_idx: lf for lf in labels.labeled_frames if lf.video is video}
    for f in np.flatnonzero(changed.any(axis=1)):
        frame = frames.get(int(f))
        if frame is None:
            frame = frames[int(f)] = sio.LabeledFrame(video=video, frame_idx=int(f), instances=[])
            labels.labeled_frames.append(frame)
        names = {id(inst): _instance_name(inst, k) for k, inst in enumerate(frame.instances)}  # before any change
        for i in np.flatnonzero(changed[f]):
            _replace_instance(frame, columns.individuals[i], after[f, i], (skeleton, tracks, names), sio)
    labels.labeled_frames[:] = [lf for lf in labels.labeled_frames if len(lf.instances)]

    def write(tmp: Path) -> None:
        sio.save_slp(labels, str(tmp), verbose=False)

    write_atomically({target: write}, error=lambda reason: ProjectError(reason, target))
    return target


def _instance_name(instance, position: int) -> str:
    track = getattr(instance, "track", None)
    return track.name if track is not None else f"instance_{position}"


def _replace_instance(frame, individual: str, xy: np.ndarray, context, sio) -> None:
    """``individual``'s user instance on ``frame`` becomes ``xy`` (removed when every point is NaN).

    ``context`` is the skeleton, the tracks by name and each instance's individual
    as the frame was read. The new instance takes the place of the one it
    replaces, so an untracked instance keeps its position (its name).
    """
    skeleton, tracks, names = context
    mine = [inst for inst in frame.instances if names.get(id(inst)) == individual]
    predicted = [inst for inst in mine if isinstance(inst, sio.PredictedInstance)]
    gone = mine if np.isnan(xy).all() else [inst for inst in mine if all(inst is not p for p in predicted)]
    position = next((k for k, inst in enumerate(frame.instances) if any(inst is g for g in gone)), None)
    frame.instances[:] = [inst for inst in frame.instances if all(inst is not g for g in gone)]
    if not np.isnan(xy).all():
        from_predicted = predicted[0] if predicted else None
        instance = sio.Instance.from_numpy(
            xy, skeleton=skeleton, track=tracks.get(individual), from_predicted=from_predicted
        )
        frame.instances.insert(len(frame.instances) if position is None else position, instance)


def dense_labels(labels: SleapLabels, columns, n_frames: int) -> np.ndarray:
    """``(n_frames, I, K, 2)`` points of ``labels`` per video frame and individual (a user instance over a prediction)."""
    out = np.full((n_frames, len(columns.individuals), len(columns.bodyparts), 2), np.nan)
    names = labels.individual_names()
    position = {name: i for i, name in enumerate(columns.individuals)}
    node = [labels.node_names.index(bp) if bp in labels.node_names else -1 for bp in columns.bodyparts]
    for kind in ("predicted", "user"):
        for f, k in zip(*np.nonzero(labels.instance_kind == kind)):
            i, frame = position.get(names[f, k]), int(labels.frame_indices[f])
            if i is not None and frame < n_frames:
                out[frame, i] = np.where(np.array(node)[:, None] >= 0, labels.xy[f, k][node], np.nan)
    return out
