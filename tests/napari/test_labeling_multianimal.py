"""Labeling several animals: colours per individual, multi-animal projects in and out, the widget's tools."""

from __future__ import annotations

import numpy as np

from napari_posekit._napari.layers import individual_colors


def test_individual_colours_are_distinct_and_stable():
    two = individual_colors(["female", "male"])
    many = individual_colors([f"mouse{i}" for i in range(20)])
    assert two.shape == (2, 4) and many.shape == (20, 4)
    assert np.array_equal(many[:2], two)  # stable by position, whatever the names
    assert len({tuple(np.round(c, 3)) for c in many}) == 20
    assert ((many >= 0) & (many <= 1)).all() and (many[:, 3] == 1).all()
    assert individual_colors([]).shape == (0, 4)
