"""The Label QA widget's layers over a keypoints layer: rings around suspect labels, the suggested fix.

Three layers follow the keypoints layer they check (same scale and
translation, names starting with the keypoints layer's):

- ``<layer> QA suspects``: a ring around every label of a suspect that is
  still open, on its own image; the chosen suspect's rings are larger and
  magenta, the others orange.
- ``<layer> QA suggestions``: a white cross where the chosen suspect's fix puts
  each label (nothing for a label the fix deletes);
- ``<layer> QA moves``: a line from each of those labels to its cross.

None of them is editable, and drawing them never takes the active layer away
from the keypoints (its keys, Ctrl+Z among them, keep working).
:func:`rings` and :func:`suggestion` compute the data without a viewer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from napari.layers import Points, Vectors

from napari_posekit.core.label_suspects import Suspect

__all__ = [
    "CURRENT",
    "OTHER",
    "SUGGESTION",
    "draw",
    "focus",
    "focus_box",
    "layer_names",
    "remove",
    "rings",
    "suggestion",
]

CURRENT = (1.0, 0.15, 0.85, 1.0)  # the chosen suspect: magenta
OTHER = (1.0, 0.6, 0.1, 1.0)  # the other open suspects: orange
SUGGESTION = (1.0, 1.0, 1.0, 1.0)  # where the fix puts a label: white (black-edged)
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)


def layer_names(keypoints: Points) -> tuple[str, str, str]:
    """Names of the rings', the crosses' and the lines' layers of a keypoints layer."""
    return f"{keypoints.name} QA suspects", f"{keypoints.name} QA suggestions", f"{keypoints.name} QA moves"


def _cells(images: Sequence[str], bodyparts: Sequence[str], suspect: Suspect) -> tuple[int, list[int]] | None:
    try:
        row = list(images).index(suspect.image)
        return row, [list(bodyparts).index(bp) for bp in suspect.bodyparts]
    except ValueError:
        return None


def rings(
    xy: np.ndarray,
    images: Sequence[str],
    bodyparts: Sequence[str],
    suspects: Sequence[Suspect],
    current: Suspect | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 3)`` frame, y, x of every labeled body part of ``suspects`` and ``(M,)`` bool: of ``current``.

    The current suspect's labels come last, so they are drawn on top.
    """
    points, chosen = [], []
    for s in sorted(suspects, key=lambda s: s is current):
        cells = _cells(images, bodyparts, s)
        if cells is None:
            continue
        row, parts = cells
        for b in parts:
            x, y = xy[row, b]
            if np.isfinite(x) and np.isfinite(y):
                points.append((row, y, x))
                chosen.append(s is current)
    return np.asarray(points, dtype=float).reshape(-1, 3), np.asarray(chosen, dtype=bool)


def suggestion(
    xy: np.ndarray, images: Sequence[str], bodyparts: Sequence[str], suspect: Suspect | None
) -> tuple[np.ndarray, np.ndarray]:
    """Crosses ``(M, 3)`` where ``suspect``'s fix puts its labels, and lines ``(L, 2, 3)`` to them from the labels.

    A suggested NaN row (delete the label) has neither; a label not placed yet has a cross and no line.
    """
    empty = np.empty((0, 3)), np.empty((0, 2, 3))
    if suspect is None or suspect.suggested is None:
        return empty
    cells = _cells(images, bodyparts, suspect)
    if cells is None:
        return empty
    row, parts = cells
    crosses, lines = [], []
    for b, (sx, sy) in zip(parts, suspect.suggested):
        if not (np.isfinite(sx) and np.isfinite(sy)):
            continue
        crosses.append((row, sy, sx))
        x, y = xy[row, b]
        if np.isfinite(x) and np.isfinite(y) and (x, y) != (sx, sy):
            lines.append([(row, y, x), (0.0, sy - y, sx - x)])
    return np.asarray(crosses, dtype=float).reshape(-1, 3), np.asarray(lines, dtype=float).reshape(-1, 2, 3)


def _layers(viewer, keypoints: Points) -> tuple[Points, Points, Vectors]:
    """The three layers, made on first use (the active layer stays the keypoints)."""
    ring_name, cross_name, line_name = layer_names(keypoints)
    active = viewer.layers.selection.active
    place = {"scale": tuple(keypoints.scale), "translate": tuple(keypoints.translate)}
    size = float(np.max(keypoints.size)) if len(keypoints.data) else float(keypoints.current_size)
    size = max(size, 4.0)
    if line_name not in viewer.layers:
        viewer.add_vectors(
            np.empty((0, 2, 3)),
            name=line_name,
            edge_width=max(size / 5, 1.0),
            edge_color=list(SUGGESTION),
            vector_style="line",
            opacity=0.9,
            **place,
        )
    if ring_name not in viewer.layers:
        viewer.add_points(
            np.empty((0, 3)),
            name=ring_name,
            size=1.9 * size,
            face_color=list(TRANSPARENT),
            border_color=list(OTHER),
            border_width=0.12,
            metadata={"ring_size": 1.9 * size},
            **place,
        )
    if cross_name not in viewer.layers:
        viewer.add_points(
            np.empty((0, 3)),
            name=cross_name,
            size=2.2 * size,
            symbol="cross",
            face_color=list(SUGGESTION),
            border_color="black",
            border_width=0.06,
            **place,
        )
    layers = viewer.layers[ring_name], viewer.layers[cross_name], viewer.layers[line_name]
    for layer in (layers[2], layers[1], layers[0]):  # under the labels, which stay visible and clickable
        layer.editable = False
        here, labels = viewer.layers.index(layer), viewer.layers.index(keypoints)
        if here > labels:
            viewer.layers.move(here, labels)
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return layers


def draw(
    viewer,
    keypoints: Points,
    xy: np.ndarray,
    images: Sequence[str],
    bodyparts: Sequence[str],
    suspects: Sequence[Suspect],
    current: Suspect | None,
) -> tuple[Points, Points, Vectors]:
    """Show rings around ``suspects``' labels (``current``'s larger) and ``current``'s suggested fix."""
    ring_layer, cross_layer, line_layer = _layers(viewer, keypoints)
    data, chosen = rings(xy, images, bodyparts, suspects, current)
    base = float(ring_layer.metadata.get("ring_size", ring_layer.current_size))
    ring_layer.data = data
    if len(data):
        ring_layer.border_color = np.where(chosen[:, None], CURRENT, OTHER)
        ring_layer.size = np.where(chosen, 1.25 * base, base)
        ring_layer.face_color = list(TRANSPARENT)
    crosses, lines = suggestion(xy, images, bodyparts, current)
    cross_layer.data = crosses
    if len(crosses):
        cross_layer.face_color = list(SUGGESTION)
    line_layer.data = lines
    return ring_layer, cross_layer, line_layer


def focus_box(points: np.ndarray, margin: float = 40.0, smallest: float = 120.0) -> tuple[np.ndarray, float] | None:
    """Centre ``(y, x)`` and side of a square around ``(M, 2)`` y, x points (NaN rows ignored), or None."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    if not len(points):
        return None
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (lo + hi) / 2, float(max((hi - lo).max() + 2 * margin, smallest))


def focus(viewer, keypoints: Points, xy: np.ndarray, row: int, suspect: Suspect | None = None) -> bool:
    """Centre the view on the labels of image ``row`` (and ``suspect``'s suggestion) and zoom to them.

    The square shown holds the whole animal with a margin, so the suspect is
    seen in its context. Returns False when there is nothing to show.
    """
    yx = np.asarray(xy, dtype=float)[row][:, ::-1]
    if suspect is not None and suspect.suggested is not None:
        yx = np.concatenate([yx, np.asarray(suspect.suggested, dtype=float)[:, ::-1]])
    box = focus_box(yx)
    if box is None:
        return False
    centre, side = box
    scale, translate = np.asarray(keypoints.scale)[-2:], np.asarray(keypoints.translate)[-2:]
    scene = getattr(viewer, "scene", None)
    camera = scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera  # napari 0.9 moved it
    camera.center = tuple(centre * scale + translate)
    canvas = getattr(getattr(viewer, "canvas", None), "size", None) or getattr(viewer, "_canvas_size", None)
    if canvas is not None and min(canvas) > 0:
        camera.zoom = float(min(canvas)) / (side * float(np.max(np.abs(scale))))
    return True


def remove(viewer, keypoints: Points | None) -> None:
    """Take a keypoints layer's QA layers out of the viewer."""
    if keypoints is None:
        return
    for name in layer_names(keypoints):
        if name in viewer.layers:
            viewer.layers.remove(viewer.layers[name])
