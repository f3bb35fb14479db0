"""Mouse clicks delivered to a layer as napari delivers them (for viewer tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks


@dataclass
class MouseEvent:
    type: str
    is_dragging: bool = False
    modifiers: list = field(default_factory=list)
    position: tuple = (0, 0, 0)
    pos: np.ndarray = field(default_factory=lambda: np.zeros(2))
    view_direction: list | None = None
    up_direction: list | None = None
    dims_displayed: list = field(default_factory=lambda: [1, 2])


def click(layer, frame, x, y):
    """A left click in the canvas at (x, y) on ``frame``, as napari delivers it to the layer."""
    for kind, callbacks in (("mouse_press", mouse_press_callbacks), ("mouse_release", mouse_release_callbacks)):
        callbacks(layer, ReadOnlyWrapper(MouseEvent(type=kind, position=(frame, y, x)), exceptions=("handled",)))
