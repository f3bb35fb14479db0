"""The Refine widget's layers: what it reads from them, what it shows in them, which ones belong together.

- Reading: :func:`predictions_from_layer` (a predictions layer as
  :class:`~napari_posekit.controllers.refine.Predictions`, through
  :func:`~napari_posekit._napari.layers.points_to_arrays`),
  :func:`point_sources` (machine or human label, per point),
  :func:`fingerprint` (tells whether a layer's data changed).
- Finding: :func:`layer_project` (the project a layer belongs to),
  :func:`video_path`, :func:`find_predictions_layer` (the layer with a video's
  predictions), :func:`video_group` (a video and the layers drawn over it),
  :func:`folder_claims` and :func:`unsaved_claim` (the layers that show a
  labeled-data folder, and whether one holds unsaved edits).
- Showing: :func:`read_folder` (in a job: the accepted frames' folder read
  back as layer data), :func:`replace_folder_layers`, :func:`style_labels`
  (machine labels as yellow-ringed diamonds), :func:`show_predictions` (the
  retrained model's predictions over the video).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from napari.layers import Image, Layer, Points

from napari_posekit._napari._project_reader import folder_layers
from napari_posekit._napari.label_session import (
    HUMAN_BORDER,
    HUMAN_BORDER_WIDTH,
    MACHINE_BORDER,
    MACHINE_BORDER_WIDTH,
    LabelSession,
    existing_session,
    point_cells,
)
from napari_posekit._napari.layers import (
    Key,
    marker_size,
    points_kwargs,
    points_to_arrays,
    prediction_colors,
    prediction_points,
    project_config,
)
from napari_posekit.controllers import refine
from napari_posekit.controllers.refine_jobs import same_file
from napari_posekit.core.labels import pending_journals
from napari_posekit.core.options import PCUTOFF

MACHINE_SYMBOL = "diamond"
HUMAN_SYMBOL = "disc"
FILTERED = "filtered"  # the Analysis widget's mark of a predictions layer that shows filtered tracks


def point_sources(layer: Points) -> np.ndarray:
    """``"machine"`` or ``"human"`` for every point of a keypoints layer (from its ``machine_cells``)."""
    meta = layer.metadata
    machine = {tuple(c) for c in meta.get(Key.MACHINE_CELLS, [])}
    cells = point_cells(layer, list(meta.get(Key.BODYPARTS) or []))
    return np.array(["machine" if c in machine else "human" for c in cells], dtype=object)


def predictions_from_layer(layer: Points, n_frames: int, bodyparts: list[str] | None) -> refine.Predictions:
    """The predictions a Points layer holds (the Analysis widget's, or a prediction file opened in napari)."""
    meta = layer.metadata
    names = list(meta.get(Key.BODYPARTS) or [])
    data = np.asarray(layer.data, dtype=float).reshape(-1, 3)
    xy, likelihood, _ = points_to_arrays(data, layer.features, names, n_frames)
    return refine.predictions_from_points(
        xy,
        likelihood,
        names,
        frames=np.round(data[:, 0]).astype(int),
        n_frames=n_frames,
        bodyparts=bodyparts,
        name=layer.name,
        scorer=meta.get(Key.SCORER),
        checkpoint=meta.get(Key.CHECKPOINT),
        path=meta.get(Key.PATH),
    )


def fingerprint(layer: Points) -> tuple[int, int]:
    data = np.ascontiguousarray(np.asarray(layer.data, dtype=float))
    return len(data), hash(data.tobytes())


def read_folder(accepted: refine.Accepted) -> refine.Accepted:
    """The accepted frames' folder read back as layer data (in the job), with the reader's warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            accepted.extra["layers"] = folder_layers(accepted.folder)
        except Exception as err:  # noqa: BLE001 - the frames are written; the widget says why they do not open
            accepted.extra["error"] = err
    accepted.extra["warnings"] = [str(w.message) for w in caught]
    return accepted


def layer_project(layer) -> str | None:
    """The config.yaml a layer belongs to: a project reader's keypoints, or a video in a project's ``videos/``."""
    config = project_config(layer)
    if config is None and isinstance(layer, Image):
        path = (layer.metadata.get(Key.VIDEO) or {}).get("path")
        if path and Path(path).parent.name == "videos" and (Path(path).parent.parent / "config.yaml").is_file():
            config = str(Path(path).parent.parent / "config.yaml")
    return config


def video_path(layer: Image) -> Path | None:
    """The video file an image layer from the plugin's video reader shows, when it exists."""
    path = (layer.metadata.get(Key.VIDEO) or {}).get("path")
    return Path(path) if path and Path(path).is_file() else None


def find_predictions_layer(viewer, video: Image) -> Points | None:
    """The Analysis widget's (or an opened prediction file's) raw predictions layer of ``video``."""
    path = video_path(video)
    by_name = None
    for layer in viewer.layers:
        meta = layer.metadata if isinstance(layer, Points) else {}
        if not meta.get(Key.PREDICTIONS) or meta.get(FILTERED) or meta.get(Key.FOLDER):
            continue
        if path is not None and same_file(meta.get(Key.VIDEO), path):
            return layer
        if layer.name == f"{video.name} predictions":
            by_name = layer
    return by_name


def video_group(viewer, video: Image) -> list:
    """``video`` and the layers the Analysis widget (or a retraining) drew over it."""
    prefix = f"{video.name} "
    analysis = {f"{video.name} skeleton", f"{video.name} tracks", f"{video.name} tracks (filtered)"}
    return [video] + [
        layer
        for layer in viewer.layers
        if layer.name in analysis or (layer.name.startswith(prefix) and layer.metadata.get(Key.PREDICTIONS))
    ]


def folder_group(viewer, points: Points | None, image: Image | None) -> list:
    """A labeled-data folder's keypoints, images and skeleton layers (those still in the viewer)."""
    if points is None:
        return []
    group = [points] + ([image] if image is not None else [])
    name = f"{points.name} skeleton"
    if name in viewer.layers:
        group.append(viewer.layers[name])
    return [layer for layer in group if layer in viewer.layers]


def set_visible(layers, visible: bool) -> None:
    for layer in layers:
        if layer.visible != visible:  # setting it (even unchanged) puts the layer in pan/zoom mode
            layer.visible = visible


def folder_claims(viewer, folder: Path) -> list:
    """Layers showing ``folder`` (the project reader's image stack and keypoints)."""
    return [layer for layer in viewer.layers if same_file(layer.metadata.get(Key.FOLDER), folder)]


def unsaved_claim(viewer, folder: Path) -> str | None:
    """Why ``folder`` cannot be written now: a layer shows it with unsaved edits, or its journal has some."""
    for layer in folder_claims(viewer, folder):
        session = existing_session(layer)
        if session is not None and session.store.unsaved_edits:
            return (
                f"the layer '{layer.name}' shows {folder.name} with {session.store.unsaved_edits} unsaved "
                f"edits; save it (Labeling widget) first"
            )
    pending = pending_journals(folder)
    if pending:
        return (
            f"{folder} has unsaved edits of an earlier session ({pending[0].name}); open the folder, "
            f"recover them in the Labeling widget and save first"
        )
    return None


def replace_folder_layers(viewer, folder: Path, layer_data: list[tuple]) -> tuple[Points | None, Image | None]:
    """Remove the layers showing ``folder`` (and their skeletons), add ``layer_data``; returns the new keypoints and images."""
    for layer in folder_claims(viewer, folder):
        skeleton = f"{layer.name} skeleton"
        if layer in viewer.layers:
            viewer.layers.remove(layer)
        if isinstance(layer, Points) and skeleton in viewer.layers:
            viewer.layers.remove(viewer.layers[skeleton])
    layers = [viewer.add_layer(Layer.create(*data)) for data in layer_data]
    points = next((layer for layer in layers if isinstance(layer, Points)), None)
    image = next((layer for layer in layers if isinstance(layer, Image)), None)
    return points, image


def style_labels(session: LabelSession | None) -> None:
    """Machine labels: yellow-ringed diamonds; human labels: discs with a thin black border."""
    layer = session.layer if session is not None else None
    if layer is None or not len(layer.data):
        return
    machine = session.machine_points()
    with session.syncing():
        layer.symbol = np.where(machine, MACHINE_SYMBOL, HUMAN_SYMBOL)
        layer.border_color = np.where(machine[:, None], MACHINE_BORDER, HUMAN_BORDER)
        layer.border_width = np.where(machine, MACHINE_BORDER_WIDTH, HUMAN_BORDER_WIDTH)


def show_predictions(viewer, video: Image, predictions: refine.Predictions, layer: Points | None) -> Points:
    """A read-only layer with ``predictions`` over the video (``layer`` updated when it is still there)."""
    bodyparts = predictions.bodyparts
    colors = prediction_colors(bodyparts)
    keep = np.isfinite(predictions.xy).all(axis=2)
    data, features, face = prediction_points(predictions.xy, predictions.likelihood, keep, bodyparts, colors)
    path = video_path(video)
    meta = {
        Key.BODYPARTS: list(bodyparts),
        Key.COLORS: {bp: tuple(float(v) for v in colors[k]) for k, bp in enumerate(bodyparts)},
        Key.SCORER: predictions.scorer,
        Key.VIDEO: str(path) if path else None,
        Key.CHECKPOINT: str(predictions.checkpoint) if predictions.checkpoint else None,
        Key.PATH: str(predictions.path) if predictions.path else None,
        Key.PREDICTIONS: True,
        Key.READONLY: True,
    }
    if layer is not None and layer in viewer.layers:
        layer.data = data
        layer.features = features
        if len(face):
            layer.face_color = face
        layer.metadata.update(meta)
    else:
        info = video.metadata.get(Key.VIDEO) or {}
        size = marker_size(info.get("width") or video.data.shape[2], info.get("height") or video.data.shape[1])
        kwargs = points_kwargs(f"{video.name} predictions (retrained)", features, face, size, meta)
        active = viewer.layers.selection.active
        layer = viewer.add_points(data, scale=tuple(video.scale), translate=tuple(video.translate), **kwargs)
        if active is not None and active in viewer.layers:
            viewer.layers.selection.active = active
    layer.shown = features["likelihood"].to_numpy() >= PCUTOFF if len(features) else np.zeros(0, bool)
    layer.editable = False
    return layer
