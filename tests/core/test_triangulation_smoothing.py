"""Smoothing of 3D trajectories: noise removed, limb lengths held, gaps, chunks and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import drain
from napari_posekit.core.smoothing3d import iter_smooth_points3d, smooth_points3d

PARTS = ["head", "body", "tail"]
SKELETON = [("head", "body"), ("body", "tail")]


def trajectory(frames=120, noise=1.0, seed=0):
    """A body moving on a circle with fixed offsets (limbs 40 and 60 mm), plus Gaussian noise."""
    t = np.linspace(0, 2 * np.pi, frames)[:, None]
    centre = np.concatenate([100 * np.cos(t), 100 * np.sin(t), 10 * np.sin(3 * t)], axis=1)
    truth = centre[:, None] + np.array([[40.0, 0, 0], [0, 0, 0], [-60.0, 0, 0]])[None]
    noisy = truth + np.random.default_rng(seed).normal(0, noise, truth.shape)
    return truth, noisy


def test_smoothing_removes_noise_and_holds_limb_lengths():
    truth, noisy = trajectory()
    smoothed = smooth_points3d(noisy, PARTS, SKELETON)
    before = np.linalg.norm(noisy - truth, axis=-1).mean()
    after = np.linalg.norm(smoothed - truth, axis=-1).mean()
    assert after < 0.6 * before
    limb = np.linalg.norm(smoothed[:, 0] - smoothed[:, 1], axis=-1)
    raw = np.linalg.norm(noisy[:, 0] - noisy[:, 1], axis=-1)
    assert np.std(limb) < 0.5 * np.std(raw) and abs(np.median(limb) - 40.0) < 0.5


def test_a_wrong_frame_does_not_drag_its_neighbours():
    truth, noisy = trajectory(noise=0.3)
    noisy[60, 0] += 80.0  # one confidently wrong head position
    smoothed = smooth_points3d(noisy, PARTS, SKELETON)
    assert np.linalg.norm(smoothed[60, 0] - truth[60, 0]) < 10.0
    assert np.linalg.norm(smoothed[55, 0] - truth[55, 0]) < 2.0


def test_short_gaps_are_filled_and_long_ones_stay_missing():
    truth, noisy = trajectory(noise=0.3)
    noisy[30:35, 1] = np.nan  # 5 frames
    noisy[70:100, 2] = np.nan  # 30 frames
    noisy[:, 0] = np.nan  # never seen
    smoothed = smooth_points3d(noisy, PARTS, SKELETON, max_gap=10)
    assert np.isfinite(smoothed[30:35, 1]).all()
    assert np.linalg.norm(smoothed[30:35, 1] - truth[30:35, 1], axis=-1).max() < 3.0
    assert np.isnan(smoothed[70:100, 2]).all() and np.isfinite(smoothed[69, 2]).all()
    assert np.isnan(smoothed[:, 0]).all()


def test_chunks_agree_with_one_solve_and_report_progress():
    _, noisy = trajectory(frames=200)
    whole = smooth_points3d(noisy, PARTS, SKELETON, chunk=1000)
    fractions, chunked = drain(iter_smooth_points3d(noisy, PARTS, SKELETON, chunk=50, overlap=25))
    assert fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert np.abs(chunked - whole).max() < 0.2


def test_bad_smoothing_input():
    _, noisy = trajectory(frames=20)
    with pytest.raises(ValueError, match=r"\(frames, 2 body parts, 3\)"):
        smooth_points3d(noisy, PARTS[:2])
    with pytest.raises(ValueError, match="unknown body parts: paw"):
        smooth_points3d(noisy, PARTS, [("head", "paw")])
    with pytest.raises(ValueError, match="weights must be >= 0"):
        smooth_points3d(noisy, PARTS, smooth=-1.0)
