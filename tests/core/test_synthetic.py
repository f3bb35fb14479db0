"""Tests for the synthetic behaviour video (napari-free)."""

import numpy as np
import pytest

from napari_posekit.core import synthetic
from napari_posekit.core.synthetic import BODYPARTS, SKELETON, SyntheticBehaviour, make_behaviour

SNOUT, LEFTEAR, RIGHTEAR, TAILBASE = range(4)


@pytest.fixture(scope="module")
def default():
    return make_behaviour()


@pytest.fixture(scope="module")
def several():
    return [make_behaviour(120, 160, 200, seed=seed) for seed in range(4)]


def _cross(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _heading(kp):
    forward = kp[:, SNOUT] - kp[:, TAILBASE]
    return np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))


def test_constants():
    assert BODYPARTS == ("snout", "leftear", "rightear", "tailbase")
    assert len(SKELETON) == 5
    assert all(a in BODYPARTS and b in BODYPARTS for a, b in SKELETON)


def test_shapes_and_dtypes(default):
    assert isinstance(default, SyntheticBehaviour)
    assert default.frames.shape == (200, 240, 320, 3)
    assert default.frames.dtype == np.uint8
    assert default.keypoints.shape == (200, len(BODYPARTS), 2)
    assert default.keypoints.dtype == np.float64
    assert np.isfinite(default.keypoints).all()
    assert default.bodyparts == BODYPARTS
    assert default.skeleton == SKELETON
    assert default.fps == 30.0


@pytest.mark.parametrize("n_frames, height, width", [(1, 64, 64), (7, 64, 200), (5, 150, 90)])
def test_other_sizes(n_frames, height, width):
    b = make_behaviour(n_frames, height, width, fps=25, seed=3)
    assert b.frames.shape == (n_frames, height, width, 3)
    assert b.keypoints.shape == (n_frames, 4, 2)
    assert b.fps == 25.0


def test_deterministic():
    a = make_behaviour(30, 96, 128, seed=5)
    b = make_behaviour(30, 96, 128, seed=5)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_seed_changes_output():
    a = make_behaviour(30, 96, 128, seed=5)
    b = make_behaviour(30, 96, 128, seed=6)
    assert not np.array_equal(a.frames, b.frames)
    assert not np.allclose(a.keypoints, b.keypoints)


def _assert_inside(kp, height, width, margin=10.0):
    x, y = kp[..., 0], kp[..., 1]
    assert x.min() >= margin and y.min() >= margin
    assert x.max() <= width - 1 - margin and y.max() <= height - 1 - margin


@pytest.mark.parametrize("height, width", [(64, 64), (64, 160), (200, 100)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keypoints_stay_inside_with_margin(height, width, seed):
    _assert_inside(make_behaviour(150, height, width, seed=seed).keypoints, height, width)


def test_keypoints_stay_inside_default_size(default, several):
    _assert_inside(default.keypoints, 240, 320)
    for b in several:
        _assert_inside(b.keypoints, 160, 200)


def test_left_right_handedness(default, several):
    # x right, y down: cross(snout - tailbase, rightear - leftear) > 0 always,
    # i.e. the left ear is on the animal's own left seen from above.
    for b in [default, *several]:
        kp = b.keypoints
        cross = _cross(kp[:, SNOUT] - kp[:, TAILBASE], kp[:, RIGHTEAR] - kp[:, LEFTEAR])
        assert (cross > 0).all()


def test_body_length_is_about_a_quarter_of_the_frame(default):
    kp = default.keypoints
    length = np.linalg.norm(kp[:, SNOUT] - kp[:, TAILBASE], axis=1)
    assert 0.2 * 240 < length.mean() < 0.3 * 240


def test_animal_moves_and_turns(default, several):
    for b in [default, *several]:
        kp = b.keypoints
        centre = kp.mean(axis=1)
        steps = np.linalg.norm(np.diff(centre, axis=0), axis=1)
        body = np.linalg.norm(kp[:, SNOUT] - kp[:, TAILBASE], axis=1).mean()
        assert steps.sum() > 3 * body
        assert steps.std() > 0.15 * steps.mean()  # speed varies
        assert np.abs(np.diff(_heading(kp))).sum() > np.pi
        # The path is smooth: no teleporting between frames.
        assert steps.max() < 0.25 * body


def test_heading_follows_motion(default):
    kp = default.keypoints
    head = 0.5 * (kp[:, LEFTEAR] + kp[:, RIGHTEAR])
    step = np.diff(head, axis=0)
    moving = np.linalg.norm(step, axis=1) > 1.0
    assert moving.sum() > 50
    motion = np.arctan2(step[:, 1], step[:, 0])
    error = np.angle(np.exp(1j * (motion - _heading(kp)[:-1])))[moving]
    assert np.mean(np.abs(error) < 0.5) > 0.8


def test_body_parts_are_visible(default):
    frames = default.frames.astype(np.float64)
    kp = default.keypoints
    t = np.arange(len(frames))[:, None]
    rows, cols = np.rint(kp[..., 1]).astype(int), np.rint(kp[..., 0]).astype(int)
    at = frames[t, rows, cols]  # (T, 4, 3) colour at each keypoint
    floor = np.median(frames[:, ::4, ::4].reshape(len(frames), -1, 3), axis=1)[:, None]  # animal is small
    redness = lambda rgb: rgb[..., 0] - rgb[..., 1]
    lightness = lambda rgb: rgb.mean(axis=-1)
    # Pink nose and ears, dark fur and tail root.
    for part in (SNOUT, LEFTEAR, RIGHTEAR):
        assert (redness(at[:, part]) - redness(floor[:, 0]) > 30).all()
    assert (lightness(floor[:, 0]) - lightness(at[:, TAILBASE]) > 30).all()


def test_floor_is_textured_and_noisy(default):
    frames = default.frames.astype(np.float64)
    kp = default.keypoints
    rows, cols = np.mgrid[: frames.shape[1], : frames.shape[2]]
    # Pixels far from the animal in frames 0 and 1.
    far = np.ones(rows.shape, bool)
    for t in (0, 1):
        for x, y in kp[t]:
            far &= np.hypot(cols - x, rows - y) > 80
    assert far.sum() > 1000
    floor = frames[0][far]
    assert floor.std(axis=0).min() > 3  # not flat
    noise = (frames[1] - frames[0])[far]
    assert 1.0 < noise.std() < 6.0  # mild per-frame sensor noise


def _render_disc(centre, radius=3.0):
    canvas = np.zeros((20, 24, 3), np.float32)
    synthetic._disc(canvas, np.asarray(centre), radius, np.ones(3, np.float32))
    return canvas[..., 0]


def test_rendering_is_anti_aliased_and_centred():
    # Pixel (r, c) has its centre at x = c, y = r; edges are soft.
    x, y = 10.3, 7.6
    alpha = _render_disc((x, y))
    rows, cols = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    assert np.sum(alpha * cols) / alpha.sum() == pytest.approx(x, abs=0.02)
    assert np.sum(alpha * rows) / alpha.sum() == pytest.approx(y, abs=0.02)
    assert alpha.sum() == pytest.approx(np.pi * 3.0**2, rel=0.02)
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() >= 8
    # A quarter-pixel shift changes pixel values.
    assert np.abs(_render_disc((x + 0.25, y)) - alpha).max() > 0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_frames": 0},
        {"n_frames": -3},
        {"n_frames": 2.5},
        {"height": 63},
        {"width": 10},
        {"height": 0, "width": 0},
        {"fps": 0.0},
        {"fps": float("nan")},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_behaviour(**kwargs)
