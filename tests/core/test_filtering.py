"""Filtering trajectories: median and Savitzky-Golay, gaps, low likelihood, bad options."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.core.filtering import filter_prediction_file, filter_predictions, filtered_path
from napari_posekit.core.predictions import read_predictions, write_predictions

SCORER = "DLC_resnet50_openfieldOct30shuffle1_200000"


def walk(n: int = 300, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth ground-truth trajectory and a noisy observation of it."""
    t = np.arange(n)[:, None]
    phase = np.arange(k)[None, :]
    truth = np.stack([200 + 80 * np.sin(t / 40 + phase), 150 + 60 * np.cos(t / 55 + phase)], axis=2)
    rng = np.random.default_rng(seed)
    return truth, truth + rng.normal(0, 2.0, truth.shape)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean((a - b) ** 2)))


@pytest.mark.parametrize("method, window", [("median", 5), ("savgol", 9)])
def test_filtering_brings_a_noisy_trajectory_closer_to_the_truth(method, window):
    truth, noisy = walk()
    likelihood = np.full(noisy.shape[:2], 0.9)
    smooth, lk = filter_predictions(noisy, likelihood, method=method, window=window)
    assert smooth.shape == noisy.shape and smooth.dtype == np.float64
    assert rmse(smooth, truth) < 0.75 * rmse(noisy, truth)
    assert np.isfinite(smooth).all()
    np.testing.assert_array_equal(lk, likelihood)
    assert lk is not likelihood
    # the ends are filtered too, without being dragged towards zero
    assert rmse(smooth[:3], truth[:3]) < 4 and rmse(smooth[-3:], truth[-3:]) < 4


def test_median_removes_a_single_frame_spike():
    xy = np.zeros((40, 1, 2))
    xy[:, 0, 0] = np.linspace(100, 139, 40)
    xy[:, 0, 1] = 50.0
    spiky = xy.copy()
    spiky[20, 0] = [400.0, -300.0]
    smooth, _ = filter_predictions(spiky, method="median", window=3)
    np.testing.assert_allclose(smooth, xy, atol=1.0)  # the spike and its neighbours take a neighbour's value
    np.testing.assert_array_equal(smooth[:19], xy[:19])
    np.testing.assert_array_equal(smooth[22:], xy[22:])


def test_savgol_keeps_a_polynomial():
    t = np.arange(50, dtype=float)
    xy = np.stack([0.02 * t**2 - t + 5, 3 * t + 1], axis=1)[:, None, :]
    smooth, lk = filter_predictions(xy, method="savgol", window=7, polyorder=2)
    np.testing.assert_allclose(smooth, xy, atol=1e-9)
    assert lk is None


def test_gaps_short_ones_bridged_long_ones_and_ends_stay_missing():
    n = 60
    xy = np.zeros((n, 1, 2))
    xy[:, 0, 0] = np.arange(n, dtype=float)
    xy[:, 0, 1] = 10.0
    holes = xy.copy()
    holes[:4] = np.nan  # before the first point: nothing to bridge from
    holes[20:23] = np.nan  # 3 frames: bridged
    holes[30:41] = np.nan  # 11 frames: too long for max_gap=5
    holes[-2:] = np.nan
    smooth, _ = filter_predictions(holes, method="median", window=5)
    missing = np.isnan(smooth[:, 0, 0])
    assert missing[:4].all() and missing[30:41].all() and missing[-2:].all()
    assert np.count_nonzero(missing) == 4 + 11 + 2
    np.testing.assert_allclose(smooth[~missing], xy[~missing])  # a straight line is its own median
    np.testing.assert_array_equal(np.isnan(smooth[:, 0, 1]), missing)
    bridged_nothing, _ = filter_predictions(holes, method="median", window=5, max_gap=0)
    assert np.isnan(bridged_nothing[20:23]).all()
    bridged_all, _ = filter_predictions(holes, method="median", window=5, max_gap=100)
    assert np.isfinite(bridged_all[4:-2]).all() and np.isnan(bridged_all[:4]).all()


def test_low_likelihood_points_are_missing_for_the_filter():
    truth, noisy = walk(n=80, k=1)
    likelihood = np.full((80, 1), 0.95)
    wild = noisy.copy()
    wild[40, 0] = [900.0, 900.0]  # a confident-looking jump the network was unsure about
    likelihood[40, 0] = 0.05
    wild[60:75, 0] = -500.0  # a long stretch of nonsense with low likelihood
    likelihood[60:75, 0] = 0.1
    smooth, lk = filter_predictions(wild, likelihood, method="savgol", window=7, pcutoff=0.6)
    assert abs(smooth[40, 0] - truth[40, 0]).max() < 5  # bridged from its neighbours
    assert np.isnan(smooth[60:75]).all()
    assert rmse(smooth[:60], truth[:60]) < rmse(noisy[:60], truth[:60])
    np.testing.assert_array_equal(lk, likelihood)
    # without a cutoff the jump is part of the trajectory
    unguarded, _ = filter_predictions(wild, likelihood, method="savgol", window=7)
    assert abs(unguarded[40, 0] - truth[40, 0]).max() > 50
    # NaN likelihood counts as missing only when there is a cutoff
    likelihood[10, 0] = np.nan
    assert np.isfinite(filter_predictions(noisy, likelihood, window=3, max_gap=0)[0][10]).all()
    assert np.isnan(filter_predictions(noisy, likelihood, window=3, max_gap=0, pcutoff=0.5)[0][10]).all()


def test_short_trajectories_and_all_missing_parts():
    xy = np.array([[[1.0, 2.0], [np.nan, np.nan]], [[3.0, 4.0], [np.nan, np.nan]], [[5.0, 9.0], [np.nan, np.nan]]])
    smooth, _ = filter_predictions(xy, method="median", window=11)  # window shrinks to 3
    np.testing.assert_allclose(smooth[:, 0], [[1, 2], [3, 4], [5, 9]])
    assert np.isnan(smooth[:, 1]).all()
    smooth, _ = filter_predictions(xy[:2], method="savgol", window=5, polyorder=2)  # too short: unchanged
    np.testing.assert_array_equal(smooth[:, 0], xy[:2, 0])
    empty, _ = filter_predictions(np.zeros((0, 2, 2)), np.zeros((0, 2)))
    assert empty.shape == (0, 2, 2)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"window": 4}, "window must be an odd number of frames, at least 3"),
        ({"window": 1}, "window must be an odd number"),
        ({"window": 5.0}, "window must be an odd number"),
        ({"window": True}, "window must be an odd number"),
        ({"method": "kalman"}, "method must be one of 'median', 'savgol'"),
        ({"method": "savgol", "window": 5, "polyorder": 5}, "polyorder must be at least 0 and smaller than the window"),
        ({"max_gap": -1}, "max_gap must not be negative"),
        ({"pcutoff": float("nan")}, "pcutoff must be a finite number"),
    ],
)
def test_bad_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        filter_predictions(np.zeros((10, 1, 2)), np.ones((10, 1)), **options)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="xy must have shape"):
        filter_predictions(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="likelihood must have shape"):
        filter_predictions(np.zeros((10, 2, 2)), np.zeros((10, 3)))


def test_filtered_file_beside_the_original(tmp_path):
    h5 = tmp_path / f"m3v1mp4{SCORER}.h5"
    assert filtered_path(h5) == tmp_path / f"m3v1mp4{SCORER}_filtered.h5"
    _, noisy = walk(n=50, k=2)
    likelihood = np.full((50, 2), 0.9)
    write_predictions(h5, noisy, likelihood, ["snout", "tail"], SCORER, metadata={"fps": 25.0})
    out = filter_prediction_file(h5, method="savgol", window=7)
    assert out == filtered_path(h5) and out.with_suffix(".csv").exists()
    pred = read_predictions(out)
    expected, _ = filter_predictions(noisy, likelihood, method="savgol", window=7)
    np.testing.assert_array_equal(pred.xy, expected)
    np.testing.assert_array_equal(pred.likelihood, likelihood)
    assert pred.scorer == SCORER and pred.bodyparts == ["snout", "tail"]
    assert pred.metadata["fps"] == 25.0 and pred.metadata["unfiltered"] == h5.name
    assert pred.metadata["filter"] == {"method": "savgol", "window": 7, "polyorder": 2, "pcutoff": 0.0, "max_gap": 7}
