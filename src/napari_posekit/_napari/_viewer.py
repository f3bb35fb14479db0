"""The viewer a widget works on."""

from __future__ import annotations


def unwrap_viewer(viewer):
    """The viewer itself rather than napari's public-only proxy of it.

    napari hands plugin widgets a proxy whose every attribute access returns a
    new wrapper: the same layer read twice is two objects.  Widgets keep layers
    as keys and compare them by identity, so they hold the viewer itself.
    """
    return getattr(viewer, "__wrapped__", viewer)
