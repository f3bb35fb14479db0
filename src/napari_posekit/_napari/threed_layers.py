"""The 3D widget's layers: tiled camera views, reprojections, the 3D scene and the labeling aid's drawings.

No Qt widgets here: these functions fill a napari viewer (the main one) or a
``ViewerModel`` (the 3D canvas the widget embeds) from a
:class:`~napari_posekit.controllers.threed.Scene` or from the labeling aid's
:class:`~napari_posekit.controllers.multiview.FrameGeometry`.

- :class:`SceneLayers`: per camera, ``"<cam> video"`` (the lazy video reader),
  ``"<cam> predictions"`` (discs coloured by body part), ``"<cam> reprojections"``
  (rings: the 3D points projected back into the camera; red and larger above the
  error threshold) and ``"<cam> residuals"`` (a line from each prediction to its
  reprojection, optional); all of a camera's layers share its tile's ``translate``.
- :func:`fill_scene3d`: ``"3D points"`` (frame, z, y, x) coloured by body part, red
  and larger above the threshold, ``"3D skeleton"`` (vectors per frame) and
  ``"cameras"`` (each camera's centre, named).
- :func:`follow_frame`: the 3D canvas shows the main viewer's frame.
- :class:`AidLayers`: the labeling aid's projections and epipolar curves over
  each view's keypoints layer, for the current frame; :func:`apply_proposals`
  places proposed labels through each layer's label session.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext

import numpy as np
import pandas as pd
from napari.layers import Points, Vectors

from napari_posekit._napari._reader import video_layer_data
from napari_posekit._napari.label_session import session_for
from napari_posekit._napari.layers import Key, bodypart_colors, marker_size, points_kwargs, prediction_points
from napari_posekit.controllers.multiview import FrameGeometry, Proposal
from napari_posekit.controllers.threed import Scene, tile_offsets

BAD = (1.0, 0.1, 0.1, 1.0)
"""Colour of the points whose reprojection error is above the threshold."""
BAD_SCALE = 1.8
"""How much larger such points are drawn."""
RING_SCALE = 1.5
"""Reprojection rings are this much larger than the prediction discs they surround."""
RESIDUAL_COLOR = [1.0, 1.0, 0.2, 0.9]
EPIPOLAR_WIDTH = 2.0


def _batched(layers):
    """Layer-list changes with one scene-graph update at the end (each removal alone collects garbage)."""
    return layers.batched_update() if hasattr(layers, "batched_update") else nullcontext()


def _frames_points(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns ``(frame, body part)`` of the finite points of ``xy`` ``(n, J, D)``."""
    return np.nonzero(np.isfinite(xy).all(axis=-1))


def _styles(colors: np.ndarray, cols: np.ndarray, bad: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    face = colors[cols] if len(cols) else np.zeros((0, 4))
    face = np.where(bad[:, None], BAD, face).reshape(-1, 4)
    return face, np.where(bad, size * BAD_SCALE, size)


class SceneLayers:
    """The tiled camera views of a scene in the main viewer, restyled when the threshold changes."""

    def __init__(self, viewer, scene: Scene, threshold: float, residuals: bool = False):
        self.viewer = viewer
        self.scene = scene
        self.layers: dict[str, dict[str, object]] = {}
        self.colors = np.asarray([bodypart_colors(scene.bodyparts)[bp] for bp in scene.bodyparts]).reshape(-1, 4)
        sizes = scene.sizes()
        self.translate = {cam: (0.0, *offset) for cam, offset in zip(scene.cameras, tile_offsets(sizes))}
        self.size = {cam: marker_size(*size) for cam, size in zip(scene.cameras, sizes)}
        for c, cam in enumerate(scene.cameras):
            self.layers[cam] = self._add_camera(c, cam)
        self.update_points3d(threshold, residuals)

    def _add_camera(self, c: int, cam: str) -> dict[str, object]:
        scene, out, translate = self.scene, {}, self.translate[cam]
        video = scene.videos.get(cam)
        if video is not None:
            data, kwargs, _ = video_layer_data(video)
            out["video"] = self.viewer.add_image(data, **{**kwargs, "name": f"{cam} video"}, translate=translate)
        meta = {Key.BODYPARTS: scene.bodyparts, Key.READONLY: True, Key.PREDICTIONS: True}
        if scene.points2d is not None:
            xy = scene.points2d[c]
            like = np.nan_to_num(scene.likelihood[c], nan=0.0)
            data, features, face = prediction_points(xy, like, np.ones(like.shape, bool), scene.bodyparts, self.colors)
            kwargs = points_kwargs(f"{cam} predictions", features, face, self.size[cam], meta)
            out["predictions"] = self.viewer.add_points(data, **kwargs, translate=translate)
        return out

    def update_points3d(self, threshold: float, residuals: bool | None = None) -> None:
        """Show the scene's (new) 3D points projected into every view, and the lines to the predictions."""
        reproj = self.scene.reprojections()
        if reproj is None:
            return
        for c, cam in enumerate(self.scene.cameras):
            parts, size, translate = self.layers[cam], self.size[cam], self.translate[cam]
            rows, cols = _frames_points(reproj[c])
            data = np.column_stack([rows, reproj[c, rows, cols, 1], reproj[c, rows, cols, 0]]).reshape(-1, 3)
            features = pd.DataFrame({"bodypart": pd.Categorical.from_codes(cols, categories=self.scene.bodyparts)})
            parts["index"] = (rows, cols)
            if "reprojections" in parts:
                layer = parts["reprojections"]
                layer.data = data
                layer.features = features
            else:
                parts["reprojections"] = self.viewer.add_points(
                    data,
                    name=f"{cam} reprojections",
                    ndim=3,
                    features=features,
                    symbol="ring",
                    size=size * RING_SCALE,
                    border_width=0,
                    translate=translate,
                    metadata={Key.BODYPARTS: self.scene.bodyparts, Key.READONLY: True},
                )
                if "predictions" in parts:  # the discs inside their rings, not under them
                    layers = self.viewer.layers
                    layers.move(layers.index(parts["predictions"]), len(layers))
            if self.scene.points2d is None:
                continue
            if "residuals" in parts:
                parts["residuals"].data = self._residuals(c)
            else:
                parts["residuals"] = self.viewer.add_vectors(
                    self._residuals(c),
                    name=f"{cam} residuals",
                    edge_color=RESIDUAL_COLOR,
                    edge_width=max(1.0, size / 5),
                    vector_style="line",
                    translate=translate,
                    visible=bool(residuals),
                )
        self.restyle(threshold)

    def _residuals(self, c: int) -> np.ndarray:
        pred, reproj = self.scene.points2d[c], self.scene.reprojections()[c]
        rows, cols = np.nonzero(np.isfinite(pred).all(-1) & np.isfinite(reproj).all(-1))
        start = np.column_stack([rows, pred[rows, cols, 1], pred[rows, cols, 0]])
        delta = np.column_stack([np.zeros(len(rows)), (reproj - pred)[rows, cols, 1], (reproj - pred)[rows, cols, 0]])
        return np.stack([start, delta], axis=1).reshape(-1, 2, 3)

    def restyle(self, threshold: float) -> None:
        """Reprojections above ``threshold`` px from their camera's prediction turn red and grow."""
        _flag3d, flag2d = self.scene.flags(threshold)
        for c, cam in enumerate(self.scene.cameras):
            layer = self.layers[cam].get("reprojections")
            if layer is None:
                continue
            rows, cols = self.layers[cam]["index"]
            bad = flag2d[c, rows, cols] if flag2d is not None else np.zeros(len(rows), bool)
            face, sizes = _styles(self.colors, cols, bad, self.size[cam] * RING_SCALE)
            layer.face_color = face
            layer.size = sizes
            layer.features = layer.features.assign(high_error=bad)

    def show_residuals(self, shown: bool) -> None:
        for parts in self.layers.values():
            if "residuals" in parts:
                parts["residuals"].visible = bool(shown)

    def remove(self) -> None:
        """Take the layers out of the viewer (the videos' readers stay open for a later scene)."""
        with _batched(self.viewer.layers):  # one scene-graph update for all the removals
            for parts in self.layers.values():
                for key, layer in parts.items():
                    if key != "index" and layer in self.viewer.layers:
                        self.viewer.layers.remove(layer)
        self.layers = {}


# --------------------------------------------------------------------------- the 3D canvas
def _zyx(points: np.ndarray) -> np.ndarray:
    """World ``(..., 3)`` x, y, z as napari's z, y, x columns (napari's last axis is x)."""
    return points[..., ::-1]


def scene3d_size(scene: Scene) -> float:
    """A point size in world units: 2% of the extent of the cameras and points."""
    parts = [np.stack([cam.center() for cam in scene.rig.cameras])]
    if scene.points3d is not None:
        parts.append(scene.points3d.reshape(-1, 3))
    every = np.concatenate(parts)
    every = every[np.isfinite(every).all(axis=1)]
    points = scene.points3d.reshape(-1, 3) if scene.points3d is not None else every
    points = points[np.isfinite(points).all(axis=1)]
    span = np.ptp(points, axis=0).max() if len(points) > 1 else np.ptp(every, axis=0).max()
    return float(max(span, 1e-6) * 0.03)


def skeleton3d(points3d: np.ndarray, bodyparts: Sequence[str], skeleton) -> np.ndarray:
    """Vectors ``(m, 2, 4)`` (frame, z, y, x) for every skeleton edge with both ends on a frame."""
    out = []
    for a, b in skeleton:
        if a not in bodyparts or b not in bodyparts:
            continue
        i, j = bodyparts.index(a), bodyparts.index(b)
        f = np.flatnonzero(np.isfinite(points3d[:, i]).all(-1) & np.isfinite(points3d[:, j]).all(-1))
        start = np.column_stack([f, _zyx(points3d[f, i])])
        delta = np.column_stack([np.zeros(len(f)), _zyx(points3d[f, j] - points3d[f, i])])
        out.append(np.stack([start, delta], axis=1))
    return np.concatenate(out) if out else np.empty((0, 2, 4))


def fill_scene3d(model, scene: Scene, threshold: float) -> dict[str, object]:
    """Put a scene's 3D points, skeleton and cameras into ``model`` (a ``ViewerModel`` shown in 3D)."""
    with _batched(model.layers):
        model.layers.clear()
    size = scene3d_size(scene)
    centers = np.stack([cam.center() for cam in scene.rig.cameras])
    out = {
        "cameras": model.add_points(
            _zyx(centers),
            name="cameras",
            symbol="square",
            size=size * 1.5,
            face_color="white",
            text={"string": "{camera}", "color": "white", "translation": [size * 2, 0, 0]},
            features=pd.DataFrame({"camera": scene.cameras}),
        )
    }
    if scene.points3d is not None:
        colors = np.asarray([bodypart_colors(scene.bodyparts)[bp] for bp in scene.bodyparts]).reshape(-1, 4)
        rows, cols = _frames_points(scene.points3d)
        data = np.column_stack([rows, _zyx(scene.points3d[rows, cols])]).reshape(-1, 4)
        features = pd.DataFrame({"bodypart": pd.Categorical.from_codes(cols, categories=scene.bodyparts)})
        edges = skeleton3d(scene.points3d, scene.bodyparts, scene.skeleton)
        if len(edges):
            out["skeleton"] = model.add_vectors(
                edges, name="3D skeleton", edge_color="lightgray", edge_width=size / 3, vector_style="line"
            )
        out["points"] = model.add_points(
            data, name="3D points", ndim=4, features=features, size=size, border_width=0, shading="spherical"
        )
        out["index"] = (rows, cols, colors, size)
        restyle3d(out, scene, threshold)
    model.dims.ndisplay = 3
    frame_view(model, scene)
    return out


def update_scene3d(model, layers: dict, scene: Scene, threshold: float) -> dict[str, object]:
    """Show new 3D points of the same scene in place (the view stays where the user turned it).

    Falls back to :func:`fill_scene3d` when the layers are not the ones that scene had.
    """
    rows, cols = _frames_points(scene.points3d) if scene.points3d is not None else ((), ())
    edges = skeleton3d(scene.points3d, scene.bodyparts, scene.skeleton) if len(rows) else np.empty((0, 2, 4))
    if "points" not in layers or (len(edges) > 0) != ("skeleton" in layers):
        return fill_scene3d(model, scene, threshold)
    _rows, _cols, colors, size = layers["index"]
    points = layers["points"]
    points.data = np.column_stack([rows, _zyx(scene.points3d[rows, cols])]).reshape(-1, 4)
    points.features = pd.DataFrame({"bodypart": pd.Categorical.from_codes(cols, categories=scene.bodyparts)})
    if "skeleton" in layers:
        layers["skeleton"].data = edges
    layers["index"] = (rows, cols, colors, size)
    restyle3d(layers, scene, threshold)
    return layers


def frame_view(model, scene: Scene) -> None:
    """Look at the points as the first camera does (its up is up), close enough that they fill the view."""
    model.reset_view()
    camera = model.scene.camera if hasattr(model, "scene") else model.camera  # napari 0.9 moved it
    r = scene.rig.cameras[0].rotation_matrix()
    view, up = r.T @ [0.0, 0.0, 1.0], -(r.T @ [0.0, 1.0, 0.0])
    camera.set_view_direction(tuple(_zyx(view)), tuple(_zyx(up)))
    if scene.points3d is None:
        return
    points = scene.points3d.reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < 2:
        return
    every = np.concatenate([points, np.stack([cam.center() for cam in scene.rig.cameras])])
    spread = np.ptp(points, axis=0).max()
    if spread > 0:
        camera.center = tuple(_zyx(np.median(points, axis=0)))
        camera.zoom = camera.zoom * 0.5 * np.ptp(every, axis=0).max() / spread


def restyle3d(layers: Mapping[str, object], scene: Scene, threshold: float) -> None:
    """3D points whose error is above ``threshold`` px turn red and grow."""
    if "points" not in layers:
        return
    rows, cols, colors, size = layers["index"]
    flag3d, _ = scene.flags(threshold)
    bad = flag3d[rows, cols]
    face, sizes = _styles(colors, cols, bad, size)
    layer = layers["points"]
    layer.face_color = face
    layer.size = sizes
    layer.features = layer.features.assign(high_error=bad, error=scene.error3d[rows, cols])


def follow_frame(viewer, model) -> Callable[[], None]:
    """Keep ``model``'s frame (its first axis) on ``viewer``'s; returns the function that stops it."""

    ref = weakref.ref(model)  # the main viewer must not keep the 3D canvas's model alive

    def sync(_event=None) -> None:
        target = ref()
        if target is not None and target.dims.ndim and viewer.dims.ndim:
            target.dims.set_current_step(0, int(viewer.dims.current_step[0]))

    viewer.dims.events.current_step.connect(sync)
    sync()
    return lambda: viewer.dims.events.current_step.disconnect(sync)


# --------------------------------------------------------------------------- the labeling aid
class AidLayers:
    """Projections (crosses) and epipolar curves (short line segments) over each view's keypoints layer, on one frame."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.layers: dict[str, tuple[Points, Vectors]] = {}

    def _pair(self, cam: str, target) -> tuple[Points, Vectors]:
        pair = self.layers.get(cam)
        if pair is None or pair[0] not in self.viewer.layers or pair[1] not in self.viewer.layers:
            curves = self.viewer.add_vectors(
                np.empty((0, 2, 3)), name=f"{cam} epipolar", edge_width=EPIPOLAR_WIDTH, vector_style="line"
            )
            points = self.viewer.add_points(
                ndim=3, name=f"{cam} projections", symbol="cross", border_width=0, size=marker_size(None, None) * 2
            )
            pair = self.layers[cam] = (points, curves)
        for layer in pair:
            if not np.array_equal(layer.translate, target.translate) or not np.array_equal(layer.scale, target.scale):
                layer.translate = target.translate
                layer.scale = target.scale
        return pair

    def draw(self, geometry: FrameGeometry, targets: Mapping[str, object], frame: int) -> None:
        """Show ``geometry`` on ``frame`` over each target keypoints layer ``{camera: layer}``."""
        colors = bodypart_colors(geometry.bodyparts)
        for c, cam in enumerate(geometry.cameras):
            if cam not in targets:
                continue
            points, curves = self._pair(cam, targets[cam])
            xy = geometry.projections[c]
            keep = np.flatnonzero(np.isfinite(xy).all(axis=1))
            points.data = np.column_stack([np.full(len(keep), frame), xy[keep, 1], xy[keep, 0]]).reshape(-1, 3)
            if len(keep):
                points.face_color = [colors[geometry.bodyparts[k]] for k in keep]
            segments, edge, names = [], [], []
            for curve in geometry.curves_in(cam):
                for piece in curve.xy:
                    start = np.column_stack([np.full(len(piece) - 1, frame), piece[:-1, 1], piece[:-1, 0]])
                    delta = np.column_stack([np.zeros(len(piece) - 1), np.diff(piece[:, 1]), np.diff(piece[:, 0])])
                    segments.append(np.stack([start, delta], axis=1))
                    edge += [colors[curve.bodypart][:3] + (0.8,)] * (len(piece) - 1)
                    names += [(curve.source, curve.bodypart)] * (len(piece) - 1)
            curves.data = np.concatenate(segments) if segments else np.empty((0, 2, 3))
            curves.features = pd.DataFrame(names, columns=["source", "bodypart"], dtype=object)
            if edge:
                curves.edge_color = np.asarray(edge)

    def remove(self) -> None:
        if not self.layers:
            return
        with _batched(self.viewer.layers):
            for pair in self.layers.values():
                for layer in pair:
                    if layer in self.viewer.layers:
                        self.viewer.layers.remove(layer)
        self.layers = {}


def apply_proposals(
    viewer, targets: Mapping[str, object], frame: int, proposed: Sequence[Proposal], label: str = "propose"
) -> int:
    """Place ``proposed`` labels on ``frame`` of each camera's keypoints layer, one undoable edit per layer.

    The new labels count as machine labels (a yellow ring in the Labeling widget) until someone
    moves or saves them.  Returns how many labels were placed.
    """
    placed = 0
    for cam, layer in targets.items():
        mine = [p for p in proposed if p.camera == cam]
        if not mine:
            continue
        session = session_for(layer, viewer)
        xy = np.array(session.store.xy, dtype=float)
        cells = []
        for p in mine:
            if p.bodypart in session.bodyparts and 0 <= frame < len(xy):
                k = session.bodyparts.index(p.bodypart)
                if np.isnan(xy[frame, k]).any():
                    xy[frame, k] = (p.x, p.y)
                    cells.append((frame, k))
        if cells and session.apply(xy, label) is not None:
            session.machine.update(cells)
            session.mark_reviewed([])  # writes the machine cells to the layer and tells the widgets
            placed += len(cells)
    return placed


def keypoints_views(layers: Sequence, cameras: Sequence[str], camera_of: Callable) -> dict[str, object]:
    """``{camera: keypoints layer}`` of the layers whose folder (or name) names a camera."""
    out = {}
    for layer in layers:
        meta = layer.metadata or {}
        source = str(meta.get(Key.FOLDER) or layer.name).replace("\\", "/").rstrip("/").split("/")[-1]
        cam = camera_of(source, cameras)
        if cam is not None and cam not in out:
            out[cam] = layer
    return out


def tile_views(viewer, targets: Mapping[str, object], sizes: Mapping[str, tuple[int, int]]) -> None:
    """Put each camera's keypoints layer, and the images of its folder, in a tile of their own (side by side).

    ``sizes`` are the cameras' ``(width, height)``; a view's images are the layers whose
    ``folder`` is its keypoints layer's.
    """
    cams = list(targets)
    offsets = dict(zip(cams, tile_offsets([sizes[cam] for cam in cams])))
    for cam, layer in targets.items():
        folder = (layer.metadata or {}).get(Key.FOLDER)
        same = [other for other in viewer.layers if folder and (other.metadata or {}).get(Key.FOLDER) == folder]
        for each in {id(x): x for x in [layer, *same]}.values():
            each.translate = (*np.zeros(each.ndim - 2), *offsets[cam])
