"""A body part has one colour everywhere: labels, predictions and labeled videos."""

from __future__ import annotations

import numpy as np

from napari_posekit._napari.layers import bodypart_colors, colormap_colors, prediction_colors
from napari_posekit.core import labeled_video

PARTS = ["snout", "leftear", "rightear", "tailbase", "tail1", "tail2"]


def test_labels_predictions_and_videos_share_colours():
    video = labeled_video.bodypart_colors(len(PARTS)) / 255.0
    labels = np.array([bodypart_colors(PARTS)[bp][:3] for bp in PARTS])
    assert np.array_equal(labels, video)
    assert np.array_equal(prediction_colors(PARTS)[:, :3], video)
    # a config's colormap (DeepLabCut writes "rainbow" by default) gives the same palette
    assert colormap_colors("rainbow", PARTS) == bodypart_colors(PARTS)
    hsv = np.array([colormap_colors("hsv", PARTS)[bp][:3] for bp in PARTS])
    assert np.array_equal(hsv, labeled_video.bodypart_colors(len(PARTS), "hsv") / 255.0)
    assert len({tuple(c) for c in labels}) == len(PARTS)
