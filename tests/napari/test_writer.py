"""The npe2 writer: keypoints layer data as CollectedData, refusing what it cannot place."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_posekit._napari._writer import write_keypoints
from napari_posekit.core.collected_data import read_collected


def _attributes(parts):
    return {
        "metadata": {"bodyparts": ["snout", "tail"], "images": ["labeled-data/v/img0.png", "labeled-data/v/img1.png"]},
        "features": pd.DataFrame({"bodypart": pd.Categorical(parts)}),
    }


def test_points_become_collected_data_and_the_last_duplicate_wins(tmp_path):
    data = np.array([[0, 10.0, 20.0], [1, 30.0, 40.0], [1, 31.0, 41.0]])
    h5, csv = write_keypoints(str(tmp_path / "CollectedData_me.h5"), data, _attributes(["snout", "tail", "tail"]))
    df = read_collected(h5)
    assert df.shape == (2, 4) and (tmp_path / "CollectedData_me.csv").is_file() and csv.endswith(".csv")
    values = df.to_numpy().reshape(2, 2, 2)
    np.testing.assert_array_equal(values[0, 0], [20.0, 10.0])
    np.testing.assert_array_equal(values[1, 1], [41.0, 31.0])
    assert np.isnan(values[0, 1]).all() and np.isnan(values[1, 0]).all()


@pytest.mark.parametrize(
    ("data", "parts"),
    [
        (np.array([[0, 1.0, 2.0]]), ["nose"]),  # a body part the layer does not list
        (np.array([[5, 1.0, 2.0]]), ["snout"]),  # a frame without an image
    ],
)
def test_points_that_cannot_be_placed_are_refused_and_nothing_is_written(tmp_path, data, parts):
    with pytest.raises(ValueError, match="nothing was written"):
        write_keypoints(str(tmp_path / "CollectedData_me.h5"), data, _attributes(parts))
    assert not list(tmp_path.iterdir())
