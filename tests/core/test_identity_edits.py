"""Identity edits: swap from a frame on, swap in a range, merge fragments, and where a swap happened."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.core.identity_edits import merge, present, swap_frame, swap_from, swap_range
from napari_posekit.core.multianimal import Tracks

T, K = 20, 3


def _walk(start: tuple[float, float], step: tuple[float, float]) -> np.ndarray:
    """``(T, K, 3)``: a small three-part animal moving ``step`` per frame from ``start``."""
    t = np.arange(T, dtype=float)[:, None]
    centre = np.asarray(start) + t * np.asarray(step)
    offsets = np.array([[-4.0, 0.0], [0.0, 0.0], [4.0, 0.0]])
    xy = centre[:, None, :] + offsets[None]
    return np.concatenate([xy, np.full((T, K, 1), 0.9)], axis=2)


def _tracks(n: int = 2, identity: bool = True) -> Tracks:
    poses = np.stack([_walk((10.0 + 40 * i, 50.0), (1.0, 0.5 * i)) for i in range(n)], axis=1)
    conf = np.tile(np.linspace(0.5, 1.0, n, dtype=np.float32), (T, 1)) if identity else None
    return Tracks(
        poses=poses,
        individuals=[f"fly{i}" for i in range(n)],
        bodyparts=["head", "thorax", "tail"],
        frames=np.arange(T) + 100,
        identity=conf,
    )


def test_swap_from_exchanges_poses_and_confidence_to_the_end_and_copies():
    tracks = _tracks(3)
    before = tracks.poses.copy()
    out = swap_from(tracks, 12, 0, 2)
    np.testing.assert_array_equal(tracks.poses, before)  # the input is left alone
    np.testing.assert_array_equal(out.poses[:12], before[:12])
    np.testing.assert_array_equal(out.poses[12:, 0], before[12:, 2])
    np.testing.assert_array_equal(out.poses[12:, 2], before[12:, 0])
    np.testing.assert_array_equal(out.poses[:, 1], before[:, 1])
    np.testing.assert_array_equal(out.identity[12:, 0], tracks.identity[12:, 2])
    assert out.individuals == tracks.individuals and out.poses is not tracks.poses
    np.testing.assert_array_equal(swap_from(out, 12, 2, 0).poses, before)  # its own inverse


def test_swap_range_touches_only_the_range_and_works_without_confidence():
    tracks = _tracks(2, identity=False)
    out = swap_range(tracks, 5, 9, 1, 0)
    np.testing.assert_array_equal(out.poses[5:9, 0], tracks.poses[5:9, 1])
    np.testing.assert_array_equal(out.poses[:5], tracks.poses[:5])
    np.testing.assert_array_equal(out.poses[9:], tracks.poses[9:])
    assert out.identity is None


@pytest.mark.parametrize(
    ("args", "words"),
    [((5, 9, 0, 0), "itself"), ((5, 9, 0, 2), "from 0 to 1"), ((9, 5, 0, 1), "start < stop"), ((0, 21, 0, 1), "<= 20")],
)
def test_bad_swaps_are_refused_clearly(args, words):
    with pytest.raises(ValueError, match=words):
        swap_range(_tracks(2), *args)


def test_merge_fills_the_gaps_of_keep_and_empties_other():
    tracks = _tracks(3)
    poses = tracks.poses.copy()
    poses[10:, 0] = np.nan  # fly0 lost at frame 10 ...
    poses[:10, 2] = np.nan  # ... and found again as fly2
    poses[3, 0, 1] = np.nan  # a missing part is not a missing frame
    tracks = Tracks(poses, tracks.individuals, tracks.bodyparts, tracks.frames, identity=tracks.identity)
    out = merge(tracks, 0, 2)
    np.testing.assert_array_equal(out.poses[10:, 0], poses[10:, 2])
    np.testing.assert_array_equal(out.poses[:10, 0], poses[:10, 0])
    assert np.isnan(out.poses[:, 2, :, :2]).all()
    np.testing.assert_array_equal(out.identity[10:, 0], tracks.identity[10:, 2])
    assert (out.identity[:, 2] == 0).all()
    assert present(out).sum(axis=0).tolist() == [T, T, 0]


def test_merge_refuses_overlapping_tracks_naming_the_video_frames():
    tracks = _tracks(2)
    poses = tracks.poses.copy()
    poses[:15, 1] = np.nan  # fly1 from frame index 15, while fly0 is there all along
    tracks = Tracks(poses, tracks.individuals, tracks.bodyparts, tracks.frames)
    with pytest.raises(ValueError, match=r"'fly0' and 'fly1' both have poses on 5 frame\(s\) \(115, 116"):
        merge(tracks, 0, 1)
    with pytest.raises(ValueError, match="itself"):
        merge(tracks, 1, 1)


def test_swap_frame_finds_where_two_crossing_animals_were_swapped():
    # two animals walk towards each other along a line, pass, and the tracker swaps them at index 11
    a = _walk((10.0, 50.0), (3.0, 0.0))
    b = _walk((67.0, 52.0), (-3.0, 0.0))
    poses = np.stack([a, b], axis=1)
    truth = Tracks(poses, ["a", "b"], ["head", "thorax", "tail"], np.arange(T))
    swapped = swap_from(truth, 11, 0, 1)
    frame, gain = swap_frame(swapped, 7, 14, 0, 1)
    assert frame == 11 and gain > 1.0
    frame, gain = swap_frame(truth, 7, 14, 0, 1)  # nothing to fix: the closest frame, no gain
    assert 7 <= frame <= 14 and gain <= 0
    assert swap_frame(swapped, 0, T, 0, 1)[0] == 11  # a range reaching the ends is clipped
