"""Sample data: the synthetic mouse video, written on the fly and opened lazily."""

from __future__ import annotations

import tempfile
from pathlib import Path

from napari_posekit._napari._reader import video_layer_data
from napari_posekit._napari.layers import Key, keypoints_layer_data
from napari_posekit.core.sample import write_sample
from napari_posekit.core.video import VideoReader


def sample_folder() -> Path:
    return Path(tempfile.gettempdir()) / "napari-posekit-sample"


def synthetic_mouse():
    """The synthetic mouse video (lazy, through the plugin's reader) and its ground truth."""
    files = write_sample(sample_folder())
    b = files.behaviour
    video = video_layer_data(VideoReader(files.video, on_error="warn"))
    truth = keypoints_layer_data(
        b.keypoints,
        b.bodyparts,
        name="ground truth",
        metadata={Key.SKELETON: [list(e) for e in b.skeleton], Key.READONLY: True},
    )
    return [video, truth]
