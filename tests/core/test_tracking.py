"""core.tracking: linking, stitching, identity confidence and crossings on made-up animals with known paths."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.core.tracking import (
    StitchResult,
    animal_size,
    find_crossings,
    identity_from_slots,
    identity_metrics,
    link,
    pose_distance,
    stitch,
    track,
)
from napari_posekit.core.tracking_motion import MotionScale

# a small body: head, neck, centre, tail base, tail tip (about 40 px long)
BODY = np.array([[20.0, 0.0], [10.0, 0.0], [0.0, 0.0], [-10.0, 0.0], [-20.0, 3.0]])


def poses_on(paths: np.ndarray, headings: np.ndarray | None = None) -> np.ndarray:
    """(T, n, K, 3) poses with their centres on ``paths`` (T, n, 2), facing ``headings`` (T, n) radians."""
    if headings is None:
        step = np.gradient(paths, axis=0)
        headings = np.arctan2(step[..., 1], step[..., 0])
    c, s = np.cos(headings)[..., None], np.sin(headings)[..., None]
    x = paths[..., None, 0] + c * BODY[:, 0] - s * BODY[:, 1]
    y = paths[..., None, 1] + s * BODY[:, 0] + c * BODY[:, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float32)


def shuffled(poses: np.ndarray, seed: int = 0, extra_slots: int = 0) -> np.ndarray:
    """Detections: each frame's poses in a random order (identities destroyed), padded with empty slots."""
    rng = np.random.default_rng(seed)
    n_frames, n, k, _ = poses.shape
    out = np.full((n_frames, n + extra_slots, k, 3), np.nan, np.float32)
    for t in range(n_frames):
        out[t, rng.permutation(n + extra_slots)[:n]] = poses[t]
    return out


def crossing_paths(n_frames: int = 80) -> np.ndarray:
    """Two animals walking sideways towards each other along y = 100 +- 3, passing at frame n_frames / 2."""
    t = np.arange(n_frames, dtype=float)
    a = np.stack([50 + 4 * t, np.full(n_frames, 97.0)], -1)
    b = np.stack([50 + 4 * (n_frames - t), np.full(n_frames, 103.0)], -1)
    return np.stack([a, b], axis=1)


def circling_paths(n_frames: int = 120, n: int = 2) -> np.ndarray:
    """n animals on one circle of radius 150, evenly spaced, 3 px per frame."""
    t = np.arange(n_frames, dtype=float)[:, None]
    angle = 0.02 * t + 2 * np.pi * np.arange(n)[None] / n
    return np.stack([300 + 150 * np.cos(angle), 300 + 150 * np.sin(angle)], -1)


def assert_same_identities(result: StitchResult, truth: np.ndarray, *, idf1: float = 1.0) -> dict:
    scores = identity_metrics(result.poses, truth)
    assert scores["idf1"] >= idf1, scores
    assert scores["switches"] == 0, scores
    return scores


# --------------------------------------------------------------------------- distances and sizes
def test_pose_distance_uses_the_parts_seen_in_both_and_falls_back_to_centroids():
    a = np.array([[0.0, 0.0], [10.0, 0.0], [np.nan, np.nan]])
    b = np.array([[3.0, 4.0], [np.nan, np.nan], [7.0, 7.0]])
    assert pose_distance(a, b) == pytest.approx(5.0)
    c = np.array([[np.nan, np.nan], [14.0, 3.0], [np.nan, np.nan]])
    assert pose_distance(a, np.array([[np.nan, np.nan], [np.nan, np.nan], [5.0, 4.0]])) == pytest.approx(4.0)
    assert pose_distance(a, c) == pytest.approx(5.0)
    assert np.isnan(pose_distance(a, np.full((3, 2), np.nan)))


def test_animal_size_is_the_median_pose_extent():
    poses = poses_on(circling_paths(10))
    assert animal_size(poses) == pytest.approx(np.hypot(40, 3), abs=3)
    assert animal_size(np.full((3, 2, 5, 3), np.nan)) > 0  # a fallback, not NaN


def test_motion_scale_is_measured_on_the_tracklets():
    rng = np.random.default_rng(0)
    walkers = poses_on(circling_paths(200))  # steady turning: the prediction drifts off with the gap
    walkers[..., :2] += rng.normal(0, 0.5, walkers[..., :2].shape)
    walk = MotionScale(walkers, animal_size(walkers))
    assert walk(1) < 2 and walk(30) > 3 * walk(1)
    sitters = poses_on(np.full((200, 2, 2), 100.0) + [[0.0, 0.0], [200.0, 0.0]], np.zeros((200, 2)))
    sitters[..., :2] += rng.normal(0, 0.5, sitters[..., :2].shape)
    sit = MotionScale(sitters, animal_size(sitters))
    assert sit(30) < walk(30)
    assert sit.cost(0.0, 1) == 0 and sit.cost(5.0, 1) > sit.cost(5.0, 20) > sit.cost(1.0, 20)
    blind = MotionScale(np.full((5, 1, 5, 3), np.nan), 40.0)  # nothing to measure: a fallback
    assert blind(4) == pytest.approx(2 * blind(1))


# --------------------------------------------------------------------------- link
def test_link_keeps_each_animal_in_one_tracklet_and_survives_short_gaps():
    truth = poses_on(circling_paths(60))
    det = shuffled(truth, extra_slots=1)
    det[20:23, :] = np.nan  # everyone unseen for 3 frames: within max_gap
    tracklets = link(det)
    assert tracklets.shape == (60, 2, 5, 3)
    assert_same_identities(StitchResult(tracklets, np.arange(2), np.ones((60, 2))), truth, idf1=0.94)


def test_link_starts_a_new_tracklet_when_nothing_matches():
    truth = poses_on(circling_paths(40))
    det = truth.copy()
    det[25:, 1, :, :2] += 300  # animal 1 jumps far away
    tracklets = link(det)
    assert tracklets.shape[1] == 3
    assert np.isfinite(tracklets[:25, 1, 0, 0]).all() and np.isnan(tracklets[25:, 1, 0, 0]).all()
    assert link(det, max_distance=1000).shape[1] == 2


def test_weak_detections_only_continue_tracklets():
    truth = poses_on(circling_paths(40))
    det = np.concatenate([truth, np.full_like(truth, np.nan)], axis=1)
    det[10, 2, :1] = truth[10, 0, :1] + [[2.0, 2.0, 0.0]]  # a fragment (one part) beside animal 0
    det[20:30, 0, 1:] = np.nan  # animal 0 seen by one part only for a while
    det[25, 3, :1] = [[600.0, 600.0, 1.0]]  # a one-part ghost far away
    tracklets = link(det)
    assert tracklets.shape[1] == 2  # the fragment and the ghost start nothing
    assert np.isfinite(tracklets[20:30, 0, 0, 0]).all() and np.isnan(tracklets[20:30, 0, 1:, 0]).all()


def test_duplicate_detections_do_not_become_another_animal():
    truth = poses_on(circling_paths(100))
    det = np.concatenate([truth, np.full_like(truth[:, :1], np.nan)], axis=1)
    det[20:60, 2] = truth[20:60, 0] + [[[1.5, -1.0, 0.0]]]  # the detector sees animal 0 twice
    det[20:60, 2, 0, 2] = 0.5  # a little less sure of the copy
    det[30:50, 1] = np.nan  # while animal 1 is unseen
    result = track(shuffled(det, seed=4), 2)
    expected = truth.copy()
    expected[30:50, 1] = np.nan
    scores = assert_same_identities(result, expected)
    assert scores["n_pred"] == scores["n_true"] == 180


# --------------------------------------------------------------------------- track and stitch
def test_two_crossing_animals_keep_their_identities():
    truth = poses_on(crossing_paths(), np.full((80, 2), np.pi / 2))  # facing the same way: alike where they meet
    result = track(shuffled(truth), 2)
    assert_same_identities(result, truth)
    # the assignment is doubtful where they overlap, sure where they are apart
    assert np.nanmin(result.confidence[38:43]) < 0.5
    assert np.nanmin(result.confidence[:25]) > 0.9 and np.nanmin(result.confidence[-25:]) > 0.9
    crossings = find_crossings(result.poses, result.confidence)
    assert len(crossings) == 1 and crossings[0].start <= 40 < crossings[0].stop
    assert crossings[0].individuals == (0, 1) and crossings[0].kind == "ambiguous"


def test_fragments_with_gaps_are_stitched_into_the_right_animals():
    truth = poses_on(circling_paths(150, n=3))
    det = shuffled(truth, seed=1, extra_slots=2)
    for start in (30, 70, 110):  # long gaps: more than link bridges
        det[start : start + 12] = np.nan
    tracklets = link(det)
    assert tracklets.shape[1] >= 12
    result = stitch(tracklets, 3)
    seen = truth.copy()
    seen[np.isnan(det[:, 0, 0, 0]) & np.isnan(det[:, 1, 0, 0]) & np.isnan(det[:, 2, 0, 0])] = np.nan
    assert_same_identities(result, seen)
    assert (result.assignment >= 0).all()
    overlap = np.isfinite(result.poses[..., 0, 0]).sum(1)
    assert overlap.max() <= 3


def test_an_animal_missing_for_a_while_comes_back_as_itself():
    truth = poses_on(circling_paths(120))
    det = truth.copy()
    det[40:75, 1] = np.nan  # animal 1 away
    det[:10, 0] = np.nan  # animal 0 arrives late
    result = track(shuffled(det, seed=3), 2)
    expected = truth.copy()
    expected[40:75, 1] = np.nan
    expected[:10, 0] = np.nan
    scores = assert_same_identities(result, expected)
    assert scores["idf1"] == 1.0


def test_noise_missing_parts_and_false_detections():
    rng = np.random.default_rng(7)
    truth = poses_on(circling_paths(150))
    det = truth.copy()
    det[..., :2] += rng.normal(0, 1.5, det[..., :2].shape)
    det[rng.random(det.shape[:3]) < 0.15, :2] = np.nan  # parts missed
    det = shuffled(det, seed=2, extra_slots=1)
    for t in rng.choice(150, 12, replace=False):  # one-frame ghosts far from both animals
        det[t, np.flatnonzero(np.isnan(det[t, :, :, 0]).all(-1))[0]] = poses_on(
            np.array([[[700.0, 80.0]]]), np.zeros((1, 1))
        )[0, 0]
    result = track(det, 2)
    assert_same_identities(result, truth, idf1=0.99)
    assert np.nanmax(result.poses[..., 0]) < 600  # ghosts dropped


def test_identity_evidence_decides_what_motion_cannot():
    # both animals vanish together, then reappear where motion says the other one should be
    truth = poses_on(circling_paths(100))
    hidden = truth.copy()
    hidden[45:60] = np.nan
    swapped_paths = circling_paths(100)
    # from frame 60 on, each animal continues along the other's path (a U-turn motion cannot foresee)
    truth[60:] = poses_on(swapped_paths)[60:, ::-1]
    hidden[60:] = truth[60:]
    tracklets = link(hidden)
    assert tracklets.shape[1] == 4
    blind = stitch(tracklets, 2)
    assert identity_metrics(blind.poses, truth)["switches"] > 0
    identity = np.full((*tracklets.shape[:2], 2), np.nan, np.float32)
    rng = np.random.default_rng(0)
    for m in range(4):
        frames = np.flatnonzero(np.isfinite(tracklets[:, m, 0, 0]))
        animal = int(np.argmin(pose_distance(tracklets[frames[0], m], truth[frames[0]])))
        p = np.clip(rng.normal(0.7, 0.1, len(frames)), 0.05, 0.95)  # weak, noisy evidence
        identity[frames, m, animal] = p
        identity[frames, m, 1 - animal] = 1 - p
    informed = stitch(tracklets, 2, identity=identity)
    truth[45:60] = np.nan
    scores = assert_same_identities(informed, truth)
    # with identity evidence, animal a is identity a: no relabelling needed
    assert pose_distance(informed.poses[0, 0], truth[0, 0]) < 1 and scores["best_on_first_kept"] == 1.0

    # the same through track(), the evidence given per detection and the detections shuffled
    order = np.stack([rng.permutation(2) for _ in range(100)])
    detections = np.take_along_axis(hidden, order[:, :, None, None], axis=1)
    per_detection = np.stack([np.eye(2)[order[t]] * 0.4 + 0.3 for t in range(100)]).astype(np.float32)
    tracked = track(detections, 2, identity=per_detection)
    assert_same_identities(tracked, truth)
    assert pose_distance(tracked.poses[0, 1], truth[0, 1]) < 1
    with pytest.raises(ValueError, match=r"identity: expected shape \(frames, detections, animals\)"):
        track(detections, 2, identity=per_detection[:, :, :1])


def test_identity_from_a_model_that_orders_poses_by_individual():
    evidence = identity_from_slots(np.array([[0.9, 0.6, np.nan]]))
    assert evidence.shape == (1, 3, 3)
    assert np.allclose(evidence[0, 0], [0.9, 0.05, 0.05]) and np.allclose(evidence[0, 1], [0.2, 0.6, 0.2])
    assert np.allclose(evidence[0, 2], 1 / 3) and np.allclose(evidence.sum(-1), 1)
    assert identity_from_slots(np.zeros((4, 1))).shape == (4, 1, 1)
    # a model that gets the individuals right 3 times in 4 keeps them right through a crossing
    rng = np.random.default_rng(1)
    truth = poses_on(crossing_paths(), np.full((80, 2), np.pi / 2))
    hidden = truth.copy()
    hidden[36:45] = np.nan  # the meeting itself unseen
    right = rng.random(80) < 0.75
    slots = np.where(right[:, None], [0, 1], [1, 0])
    detections = np.take_along_axis(hidden, slots[:, :, None, None], axis=1)
    result = track(detections, 2, identity=identity_from_slots(np.full((80, 2), 0.75)))
    truth[36:45] = np.nan
    scores = assert_same_identities(result, truth)
    assert pose_distance(result.poses[0, 0], truth[0, 0]) < 1 and scores["best_on_first_kept"] == 1.0


def test_tracklets_overlapping_every_animal_are_dropped_or_cut():
    truth = poses_on(circling_paths(60))
    tracklets = np.full((60, 4, 5, 3), np.nan, np.float32)
    tracklets[:, :2] = truth
    tracklets[10:14, 2] = truth[10:14, 0] + [[[5.0, 5.0, 0.0]]]  # a duplicate while both are seen
    tracklets[50:60, 3] = truth[50:60, 1]  # a duplicate of animal 1...
    tracklets[40:60, 1] = np.nan  # ... that the long one no longer covers from frame 40
    tracklets[45:50, 3] = truth[45:50, 1]
    result = stitch(tracklets, 2)
    assert list(result.assignment[:3]) == [result.assignment[0], 1 - result.assignment[0], -1]
    assert result.assignment[3] == result.assignment[1]
    covered = np.isfinite(result.poses[..., 0, 0]).sum(1)
    assert (covered[:40] == 2).all() and (covered[45:] == 2).all()
    assert result.kept.sum(0).tolist() == [60, 40, 0, 15]
    # the frames kept are those in the tracks, each tracklet in its animal
    for m, a in enumerate(result.assignment):
        frames = np.flatnonzero(result.kept[:, m])
        assert np.array_equal(result.poses[frames, a], tracklets[frames, m])


# --------------------------------------------------------------------------- edge cases
def test_edge_cases_give_empty_or_partial_results():
    empty = stitch(np.zeros((0, 0, 5, 3)), 2)
    assert empty.poses.shape == (0, 2, 5, 3) and empty.assignment.shape == (0,) and empty.confidence.shape == (0, 2)
    assert track(np.zeros((0, 3, 5, 3)), 2).poses.shape == (0, 2, 5, 3)

    nothing = track(np.full((20, 2, 5, 3), np.nan), 2)
    assert np.isnan(nothing.poses).all() and np.isnan(nothing.confidence).all()

    one = poses_on(circling_paths(30, n=1))
    alone = track(shuffled(one, extra_slots=2), 1)
    assert np.allclose(alone.poses[:, 0], one[:, 0]) and (alone.confidence == 1).all()

    more = track(shuffled(poses_on(circling_paths(30))), 4)
    seen = np.isfinite(more.poses[..., 0, 0])
    assert seen.sum(1).tolist() == [2] * 30 and seen.any(0).sum() == 2
    assert find_crossings(more.poses, more.confidence) == []


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="n_animals"):
        stitch(np.zeros((3, 1, 2, 3)), 0)
    with pytest.raises(ValueError, match=r"detections: expected an array \(frames, poses, body parts, 3\)"):
        link(np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="identity: expected shape"):
        stitch(np.zeros((3, 2, 2, 3)), 2, identity=np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="max_distance"):
        link(np.zeros((3, 2, 2, 3)), max_distance=0)
    with pytest.raises(ValueError, match="confidence: expected shape"):
        find_crossings(np.zeros((3, 2, 2, 3)), np.zeros((3, 3)))


# --------------------------------------------------------------------------- metrics and crossings
def test_identity_metrics_count_switches_and_the_first_assignment():
    truth = poses_on(circling_paths(100))
    assert identity_metrics(truth, truth) | {} == {
        "idf1": 1.0,
        "switches": 0,
        "switch_frames": [],
        "best_on_first_kept": 1.0,
        "idtp": 200,
        "n_pred": 200,
        "n_true": 200,
        "frames": 100,
    }
    pred = truth.copy()
    pred[50:] = pred[50:, ::-1]  # swapped half-way
    scores = identity_metrics(pred, truth)
    assert scores["switches"] == 2 and scores["best_on_first_kept"] == 0.5 and scores["idf1"] == 0.5
    assert scores["switch_frames"] == [50, 50]
    pred[70:] = np.nan
    assert identity_metrics(pred, truth)["idf1"] == pytest.approx(2 * 100 / (140 + 200))
    with pytest.raises(ValueError, match="same frames and body parts"):
        identity_metrics(pred[:10], truth)


def test_crossings_are_where_animals_come_close_or_confidence_is_low():
    truth = poses_on(crossing_paths(80), np.full((80, 2), np.pi / 2))
    close = find_crossings(truth)
    assert len(close) == 1 and close[0].kind == "close" and close[0].start < 40 < close[0].stop
    assert close[0].min_distance == pytest.approx(pose_distance(truth[40, 0], truth[40, 1]), abs=1e-3)
    assert 0 < close[0].score <= 1
    confidence = np.ones((80, 2))
    confidence[5:7, 1] = 0.2
    confidence[9, 0] = 0.3  # near the first: merged
    found = find_crossings(truth, confidence)
    assert [(c.start, c.stop, c.kind) for c in found] == [
        (5, 10, "ambiguous"),
        (close[0].start, close[0].stop, "close"),
    ]
    assert found[0].score == pytest.approx(0.8)
    assert find_crossings(truth, distance=1.0) == []
    # an animal without a pose: its confidence (0 or NaN) is no crossing
    gone = truth.copy()
    gone[60:70, 1] = np.nan
    confidence = np.ones((80, 2))
    confidence[60:70, 1] = 0.0
    assert [c.start for c in find_crossings(gone, confidence)] == [close[0].start]
    three = np.concatenate([truth, poses_on(circling_paths(80, n=1))], axis=1)
    confidence = np.ones((80, 3))
    confidence[10:12, 2] = 0.1
    found = find_crossings(three, confidence)
    assert [(c.start, c.individuals, c.kind) for c in found if c.kind == "ambiguous"] == [(10, (1, 2), "ambiguous")]
