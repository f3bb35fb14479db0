"""Defaults shared by the core, the command line, the widgets and the benchmarks.

Every default that more than one place shows to a user is defined here once;
callers read it from here instead of repeating the number.
"""

from __future__ import annotations

PCUTOFF = 0.6
"""Likelihood below which a keypoint counts as not visible (DeepLabCut's default ``pcutoff``)."""

OUTLIER_EPSILON = 20.0
"""Pixels: the jump and off-track threshold of outlier frames (DeepLabCut's ``epsilon``)."""

ANALYSIS_BATCH_SIZE = 8
"""Frames per forward pass when analysing videos."""

TRAIN_BATCH_SIZE = 8
"""Images per training step."""

TRAIN_MINUTES = 10.0
"""Training budget of ``posekit train`` and the Training widget when no epoch count is given."""
