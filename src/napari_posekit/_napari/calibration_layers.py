"""The Calibration widget's layers, built from the controller's plain arrays (no Qt widgets here).

2D, one set per camera, the cameras side by side (``translate`` along x) so that
the frame slider steps through the matched images of every camera at once:

- the calibration images, a lazy stack with one slot per matched frame
  (:func:`image_stack`, :func:`camera_images_data`);
- the detected corners, coloured by whether the image was used
  (:func:`corners_data`), and where the calibrated camera re-projects them
  (:func:`reprojections_data`), a small cyan cross in each green dot.

3D (:func:`rig_layers_data`): the camera frusta and the board at each pose, in
world coordinates.  They make sense only with ``ndisplay = 3`` and their extent
(the rig's size in board units) would stretch the frame slider of the 2D view, so
:class:`RigView` puts them into the viewer only while the rig is shown and hides
the other layers meanwhile; going back to 2D removes them and restores the rest.
A second embedded viewer would keep the two apart too, but needs napari's private
``QtViewer``, a second OpenGL canvas and its own screenshots.

Every layer carries ``metadata[ROLE] = {"role": ..., "camera": ...}`` so the
widget finds and replaces its own layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_posekit.controllers import calibration as ctl
from napari_posekit.core.video import VIDEO_EXTENSIONS

ROLE = "posekit_calibration"
"""``layer.metadata`` key of the Calibration widget's layers: ``{"role": ..., "camera": ...}``."""

USED = (0.15, 0.9, 0.3, 1.0)
REJECTED = (1.0, 0.3, 0.15, 1.0)
REPROJECTED = (0.0, 0.85, 1.0, 1.0)
CAMERA_COLORS = [
    (0.12, 0.47, 0.71, 1.0),
    (1.0, 0.5, 0.05, 1.0),
    (0.17, 0.63, 0.17, 1.0),
    (0.84, 0.15, 0.16, 1.0),
    (0.58, 0.4, 0.74, 1.0),
    (0.55, 0.34, 0.29, 1.0),
    (0.89, 0.47, 0.76, 1.0),
    (0.74, 0.74, 0.13, 1.0),
    (0.09, 0.75, 0.81, 1.0),
]


def camera_color(i: int) -> tuple[float, float, float, float]:
    return CAMERA_COLORS[i % len(CAMERA_COLORS)]


def _meta(role: str, camera: str | None = None) -> dict:
    return {ROLE: {"role": role, "camera": camera}}


def role_of(layer) -> dict | None:
    """The Calibration widget's role of ``layer`` (None for other layers)."""
    return (getattr(layer, "metadata", None) or {}).get(ROLE)


# --------------------------------------------------------------------------- 2D
def _blank(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)


def _read_image(path: str, height: int, width: int) -> np.ndarray:
    from napari_posekit.core.images import read_rgb

    try:
        image = read_rgb(path)
    except OSError as err:  # shown lazily: a bad file must not break the view
        warnings.warn(f"PoseKit cannot read {path}: {err}", stacklevel=2)
        return _blank(height, width)
    out = _blank(height, width)
    h, w = min(height, image.shape[0]), min(width, image.shape[1])
    out[:h, :w] = image[:h, :w]
    return out


def _read_frame(reader, index: int, height: int, width: int) -> np.ndarray:
    try:
        return np.asarray(reader.get(index))
    except Exception as err:  # noqa: BLE001 - shown lazily: a bad frame must not break the view
        warnings.warn(f"PoseKit cannot decode frame {index} of {reader.path}: {err}", stacklevel=2)
        return _blank(height, width)


def image_stack(source: str | Path, frames: Sequence[tuple[int, str]], size: tuple[int, int] | None = None):
    """A lazy ``(slots, H, W, 3)`` uint8 stack: the image of each matched frame (black where there is none).

    ``source`` is an image folder (``frames`` name its files) or a video
    (``frames`` index its frames).  ``size`` (width, height) is read from the
    first image or the video when not given.
    """
    import dask.array as da
    from dask import delayed

    source = Path(source)
    slots = ctl.frame_slots(frames)
    reader = None
    if source.suffix.lower() in VIDEO_EXTENSIONS:
        from napari_posekit.core.video import VideoReader

        reader = VideoReader(source)
        width, height = size or (reader.shape[2], reader.shape[1])
    else:
        from napari_posekit.core.images import image_size

        first = next((name for name in slots if name is not None), None)
        width, height = size or (image_size(source / first) if first else (1, 1))
    parts = []
    for index, name in enumerate(slots):
        if name is None:
            parts.append(da.zeros((height, width, 3), dtype=np.uint8))
        elif reader is not None:
            load = delayed(_read_frame, pure=True)(reader, index, height, width)
            parts.append(da.from_delayed(load, (height, width, 3), np.uint8))
        else:
            load = delayed(_read_image, pure=True)(str(source / name), height, width)
            parts.append(da.from_delayed(load, (height, width, 3), np.uint8))
    if not parts:
        return da.zeros((1, height, width, 3), dtype=np.uint8)
    return da.stack(parts)


def camera_images_data(camera: str, stack, offset: float, source: str | Path | None = None) -> tuple:
    """Image layer data tuple of one camera's calibration images, placed ``offset`` pixels to the right."""
    meta = _meta("images", camera) | {"source": str(source) if source else None}
    return stack, {"name": f"{camera} calibration", "rgb": True, "translate": (0, 0, offset), "metadata": meta}, "image"


def marker_size(size: tuple[int, int], spacing: float | None = None) -> float:
    """Corner marker size (pixels): a third of the corners' spacing, else a share of the image; never below 3."""
    return max(3.0, spacing / 3 if spacing else 0.011 * max(size))


def corners_data(camera: str, points: np.ndarray, used: np.ndarray, offset: float, size: float) -> tuple:
    """Points layer data tuple of the detected corners ``(frame, y, x)``: green where used, red where rejected."""
    used = np.asarray(used, dtype=bool)
    face = np.where(used[:, None], np.array(USED), np.array(REJECTED)).reshape(-1, 4)
    kwargs = {
        "name": f"{camera} corners",
        "ndim": 3,
        "features": {"used": used},
        "face_color": face if len(face) else "white",
        "border_color": "black",
        "border_width": 0.15,
        "size": size,
        "translate": (0, 0, offset),
        "metadata": _meta("corners", camera),
    }
    return np.asarray(points, dtype=float).reshape(-1, 3), kwargs, "points"


def reprojections_data(camera: str, points: np.ndarray, offset: float, size: float) -> tuple:
    """Points layer data tuple of the re-projected corners: small cyan crosses, off the dots' centres by the residual."""
    kwargs = {
        "name": f"{camera} reprojected",
        "ndim": 3,
        "symbol": "cross",
        "face_color": np.array([REPROJECTED]),
        "border_width": 0,
        "size": size * 0.6,
        "translate": (0, 0, offset),
        "metadata": _meta("reprojected", camera),
    }
    return np.asarray(points, dtype=float).reshape(-1, 3), kwargs, "points"


def titles_data(names: Sequence[str], offsets: Sequence[float], size: tuple[int, int]) -> tuple:
    """A 2D Points layer of the camera names over their images (shown at every frame)."""
    points = np.array([[-0.01 * size[1], x] for x in offsets], dtype=float).reshape(-1, 2)
    kwargs = {
        "name": "camera names",
        "features": {"camera": list(names)},
        "text": {"string": "{camera}", "size": 14, "color": "white", "anchor": "upper_left"},
        "size": 0,
        "border_width": 0,
        "metadata": _meta("titles"),
    }
    return points, kwargs, "points"


def calibration_2d_data(result, sources: dict) -> list[tuple]:
    """Layer data tuples of every camera: images (where ``sources`` has them), corners, re-projections, names.

    Cameras are laid side by side in the result's order; each image stack
    has one slot per matched frame.
    """
    names = [r.name for r in result.reports] or result.rig.names
    sizes = {r.name: tuple(r.size) for r in result.reports}
    for cam in result.rig.cameras:
        sizes.setdefault(cam.name, tuple(cam.size))
    offsets = ctl.tile_offsets([sizes[n] for n in names])
    images, points = [], []
    for name, offset in zip(names, offsets, strict=True):
        size = marker_size(sizes[name], ctl.corner_spacing(result.detections, name))
        source = sources.get(name)
        if source is not None:
            frames = ctl.camera_frames(result, name, source)
            images.append(camera_images_data(name, image_stack(source, frames, sizes[name]), offset, source))
        corners, used = ctl.detected_corners(result.detections, name)
        points.append(corners_data(name, corners, used, offset, size))
        if name in result.rig.names:
            points.append(reprojections_data(name, ctl.reprojected_corners(result, name), offset, size))
    biggest = max(sizes.values(), key=lambda s: s[0] * s[1], default=(1, 1))
    return [*images, *points, titles_data(names, offsets, biggest)]


def replace_layers(viewer, data: list[tuple]) -> list:
    """Remove the widget's earlier 2D layers and add these; returns the new layers."""
    from napari.layers import Layer

    new = [Layer.create(*item) for item in data]  # all built before any old one goes
    for layer in [layer for layer in viewer.layers if role_of(layer)]:
        viewer.layers.remove(layer)
    return [viewer.add_layer(layer) for layer in new]


# --------------------------------------------------------------------------- 3D
def _zyx(xyz: np.ndarray) -> np.ndarray:
    """World ``(..., x, y, z)`` in napari's axis order ``(..., z, y, x)``: x to the right, y down, z into depth."""
    return np.asarray(xyz, dtype=float)[..., ::-1]


def _vectors(segments: np.ndarray) -> np.ndarray:
    """Segments ``(n, 2, 3)`` as napari vectors (start, direction) in ``(z, y, x)`` order."""
    seg = _zyx(segments)
    return np.stack([seg[:, 0], seg[:, 1] - seg[:, 0]], axis=1) if len(seg) else np.empty((0, 2, 3))


def rig_layers_data(result) -> list[tuple]:
    """Layer data tuples of the rig in world coordinates: frusta, camera names, board outlines and corners."""
    rig, board, poses = result.rig, result.board, result.board_poses
    corners, corner_frames = ctl.board_corner_points(board, poses)
    depth = ctl.frustum_depth(rig, corners if len(corners) else None)
    segments, colors = [], []
    for i, cam in enumerate(rig.cameras):
        seg = ctl.frustum_segments(cam, depth)
        segments.append(seg)
        colors += [camera_color(i)] * len(seg)
    centres = np.stack([cam.center() for cam in rig.cameras])
    width = depth / 60
    layers = [
        (
            _vectors(np.concatenate(segments)),
            {
                "name": "rig cameras",
                "edge_color": np.asarray(colors),
                "edge_width": width,
                "vector_style": "line",
                "metadata": _meta("frusta"),
            },
            "vectors",
        ),
        (
            _zyx(centres),
            {
                "name": "rig camera names",
                "features": {"camera": rig.names},
                "text": {"string": "{camera}", "size": 12, "color": "white", "anchor": "upper_left"},
                "face_color": np.asarray([camera_color(i) for i in range(len(rig))]),
                "border_width": 0,
                "size": width * 6,
                "metadata": _meta("names"),
            },
            "points",
        ),
    ]
    if len(corners):
        outline, outline_frames = ctl.board_outline_segments(board, poses)
        layers += [
            (
                _vectors(outline),
                {
                    "name": "rig board outlines",
                    "features": {"frame": outline_frames.astype(float)},
                    "edge_color": "frame",
                    "edge_colormap": "viridis",
                    "edge_width": width * 0.7,
                    "vector_style": "line",
                    "metadata": _meta("boards"),
                },
                "vectors",
            ),
            (
                _zyx(corners),
                {
                    "name": "rig board corners",
                    "features": {"frame": corner_frames.astype(float)},
                    "face_color": "frame",
                    "face_colormap": "viridis",
                    "border_width": 0,
                    "size": board.square_length * 0.12,
                    "opacity": 0.7,
                    "metadata": _meta("board corners"),
                },
                "points",
            ),
        ]
    return layers


CAMERA_STATE = ("center", "zoom", "angles", "perspective", "orientation")
"""What of napari's camera the rig view changes and puts back (``orientation`` only where napari has it)."""


class RigView:
    """Shows the rig in napari's 3D view and goes back to the 2D layers as they were."""

    def __init__(self, viewer, on_change=None):
        self.viewer = viewer
        self.on_change = on_change or (lambda: None)
        self.layers: list = []
        self._hidden: list = []
        self._step: tuple | None = None
        self._camera: dict | None = None
        viewer.dims.events.ndisplay.connect(self._on_ndisplay)

    @property
    def shown(self) -> bool:
        return bool(self.layers)

    def show(self, result) -> None:
        """Hide every visible layer, add the rig layers, switch to 3D and look from behind the cameras."""
        if self.shown:
            self.hide()
        viewer = self.viewer
        self._step = tuple(viewer.dims.current_step)
        self._hidden = [layer for layer in viewer.layers if layer.visible]
        for layer in self._hidden:
            layer.visible = False
        from napari.layers import Layer

        self.layers = [viewer.add_layer(Layer.create(*item)) for item in rig_layers_data(result)]
        camera = view_camera(viewer)
        keys = [key for key in CAMERA_STATE if hasattr(camera, key)]
        self._camera = {key: getattr(camera, key) for key in keys}  # the 2D view, to come back to
        viewer.dims.ndisplay = 3
        if "orientation" in keys:  # world axes as the cameras have them (x right, y down, z away): right-handed
            camera.orientation = ("away", "down", "right")
        viewer.reset_view()
        forward, up = ctl.rig_view_direction(result.rig, result.board_poses)
        right = np.cross(up, forward)  # x = y × z for a camera's axes, with y = -up
        oblique = forward - 0.4 * up + 0.3 * right  # tilted: the depth shows
        try:
            camera.set_view_direction(tuple(_zyx(oblique)), tuple(_zyx(up)))
        except ValueError:  # up parallel to the view: keep napari's default
            pass
        _frame(viewer, self.layers)
        self.on_change()

    def hide(self) -> None:
        """Remove the rig layers, show the hidden layers again, back to 2D at the same frame."""
        layers, self.layers = self.layers, []
        for layer in layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
        if self.viewer.dims.ndisplay != 2:
            self.viewer.dims.ndisplay = 2
        if self._camera is not None:
            view_camera(self.viewer).update(self._camera)
            self._camera = None
        if self._step is not None and len(self._step) == self.viewer.dims.ndim:
            self.viewer.dims.current_step = self._step
        self._step = None
        self.on_change()

    def _on_ndisplay(self, event=None) -> None:
        if self.shown and self.viewer.dims.ndisplay == 2:  # the viewer's own 2D button: leave the rig view too
            self.hide()


def _frame(viewer, layers) -> None:
    """Centre and zoom on ``layers`` keeping the camera's angles (napari 0.5 frames every layer, angles reset)."""
    import inspect

    if "reset_camera_angle" in inspect.signature(viewer.reset_view).parameters:
        viewer.reset_view(layers=layers, reset_camera_angle=False)


def view_camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
