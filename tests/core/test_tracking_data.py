"""core.tracking on the real SLEAP files: the fragmented centered-pair predictions and the two-fly clip."""

from __future__ import annotations

import numpy as np

from conftest import require_shared
from napari_posekit.core.multianimal import read_tracks
from napari_posekit.core.sleap import load_slp
from napari_posekit.core.tracking import find_crossings, identity_metrics, pose_distance, stitch, track


def by_track(labels) -> np.ndarray:
    """(T, tracks, K, 3) poses with one slot per SLEAP track (x, y, score)."""
    n_frames, _, n_parts, _ = labels.xy.shape
    out = np.full((n_frames, len(labels.track_names), n_parts, 3), np.nan, np.float32)
    frames, slots = np.nonzero(labels.instance_track >= 0)
    tracks = labels.instance_track[frames, slots]
    out[frames, tracks, :, :2] = labels.xy[frames, slots]
    out[frames, tracks, :, 2] = labels.scores[frames, slots]
    return out


def test_the_27_fragments_of_the_centered_pair_become_two_tracks():
    folder = require_shared("sleap_centered_pair_predictions")
    labels = load_slp(folder / "centered_pair_predictions.slp")
    tracklets = by_track(labels)
    assert tracklets.shape[1] == 27
    result = stitch(tracklets, 2)
    assert result.poses.shape == (1100, 2, 24, 3)
    seen = np.isfinite(tracklets[..., 0]).any(-1)  # (T, 27)
    # the tracklets given to one animal never share a frame
    for a in range(2):
        assert seen[:, result.assignment == a].sum(1).max() <= 1
    # every frame a tracklet covered keeps as many animals as it can
    kept = np.isfinite(result.poses[..., 0]).any(-1).sum(1)
    assert (kept >= np.minimum(seen.sum(1), 2)).all()
    n_dropped = int(seen[:, result.assignment < 0].sum())
    assert n_dropped == int(seen.sum()) - int(kept.sum()) == 2274 - 2200
    assert int(result.kept.sum()) == 2200 and not (result.kept & ~seen).any()
    assert np.nanmin(result.confidence) >= 0 and np.nanmax(result.confidence) <= 1

    # linking the untracked instances from scratch finds the same two animals
    relinked = track(labels_as_detections(labels), 2)
    scores = identity_metrics(relinked.poses, result.poses)
    assert scores["switches"] == 0 and scores["idf1"] == 1.0


def labels_as_detections(labels) -> np.ndarray:
    """(T, instances, K, 3): every frame's instances in the file's order, their tracks forgotten."""
    return np.concatenate([labels.xy, labels.scores[..., None]], axis=-1).astype(np.float32)


def test_fly_clip_identities_survive_shuffling_and_the_closest_approach_is_a_crossing():
    folder = require_shared("sleap_fly_clip")
    labels = load_slp(folder / "clip.slp")
    truth = by_track(labels)
    assert labels.track_names == ["female", "male"]

    thorax = labels.node_names.index("thorax")
    apart = np.linalg.norm(truth[:, 0, thorax, :2] - truth[:, 1, thorax, :2], axis=-1)
    closest = int(np.nanargmin(apart))
    assert round(float(apart[closest])) == 73
    crossings = find_crossings(truth)
    assert any(c.start <= closest < c.stop for c in crossings)
    assert all(c.kind == "close" and c.individuals == (0, 1) for c in crossings)
    assert len(crossings) < 10 and sum(c.stop - c.start for c in crossings) < 150
    assert min(c.min_distance for c in crossings) == float(np.nanmin(pose_distance(truth[:, 0], truth[:, 1])))

    rng = np.random.default_rng(0)
    shuffled = np.stack([truth[t, rng.permutation(2)] for t in range(len(truth))])
    result = track(shuffled, 2)
    scores = identity_metrics(result.poses, truth)
    assert scores["idf1"] == 1.0 and scores["switches"] == 0 and scores["best_on_first_kept"] == 1.0


def test_tracks_read_from_the_file_stitch_the_same_way():
    folder = require_shared("sleap_centered_pair_predictions")
    tracks = read_tracks(folder / "centered_pair_predictions.slp")
    result = stitch(tracks.poses, 2)
    assert list(result.assignment[:2]) in ([0, 1], [1, 0]) and (result.assignment[2:] == -1).all()
    assert np.isfinite(result.poses[..., 0]).any(-1).all()
