"""npe2 reader: videos open as lazy, frame-exact dask arrays."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from napari_posekit.core.video import VIDEO_EXTENSIONS, VideoError, VideoReader, as_dask


def napari_get_reader(path):
    """Return a reader for a video path (or list of them), or None.

    Never raises (napari's contract). A file that claims a video extension but
    cannot be opened gets a warning that names the file and the reason, which
    napari shows as a notification, and None.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(Path(p).suffix.lower() in VIDEO_EXTENSIONS for p in paths):
        return None
    readers = []
    for p in paths:
        try:
            readers.append(VideoReader(p, on_error="warn"))
        except VideoError as err:
            warnings.warn(f"PoseKit cannot open the video {err}", stacklevel=2)
            for r in readers:
                r.close()
            return None
        except Exception as err:  # noqa: BLE001 - a reader must never crash the viewer
            warnings.warn(f"PoseKit cannot open the video {p}: {err}", stacklevel=2)
            for r in readers:
                r.close()
            return None
    # napari shows the middle frame when the first layer arrives: decode it while
    # the layer and its controls are being built.
    for r in readers:
        r.prefetch([(len(r) - 1) // 2])
    return lambda _path: [video_layer_data(r) for r in readers]


def video_layer_data(reader: VideoReader) -> tuple:
    """Layer data tuple of an image layer showing ``reader``'s video lazily."""
    meta = reader.metadata
    return (
        as_dask(reader),
        {
            "name": Path(meta.path).stem,
            "rgb": True,
            "metadata": {"video": meta.to_dict(), "video_reader": reader},
        },
        "image",
    )
