"""Tracking several animals: link detections into tracklets, stitch tracklets into identities.

Arrays only; poses are ``(T, N, K, 3)`` float arrays of x, y and likelihood per
frame, pose slot and body part, NaN x/y where a part (or a whole pose) is
missing.  The two steps::

    tracklets = link(detections)              # (T, M, K, 3): short, reliable pieces
    result = stitch(tracklets, n_animals=2)   # (T, 2, K, 3) + which tracklet went where + confidence
    result = track(detections, 2)             # both at once

How poses are compared.  The distance between two poses is the mean distance of
the body parts visible in both; with no part in common, the distance between
their centroids.  Sizes default to the animals' own size: the median diagonal
of the bounding box of each pose's visible parts.

``link`` (frame to frame).  Each open tracklet predicts where it will be with a
constant-velocity model: the velocity of its last two observations, decaying by
``VELOCITY_DECAY`` per frame when it was not seen for a while; parts missing
from its last detection move along with the parts seen.  First, a detection
closer than ``DUPLICATE_FRACTION`` of the animals' size (mean body-part
distance) to a better one of the same frame (more parts, then likelier) is a
duplicate and is left out: two animals never share every body part.  Then,
each frame, detections are matched to open tracklets by global (Hungarian)
assignments of the pose distances to the predictions; a pair further apart
than ``max_distance`` (default: half the animals' size) never matches.  As in
DeepSORT and ByteTrack, the matching runs in rounds: the full detections go
first to the confirmed tracklets (seen ``CONFIRMED`` times or more) seen in
the previous frame, then to those unseen for one frame, and so on (a fresh
tracklet is the better predictor), then likewise to the newer tracklets;
last, the weak detections (fewer visible parts than ``WEAK_FRACTION`` of the
usual count: fragments and ghosts) to the tracklets left over.  An unmatched
full detection starts a new tracklet, an unmatched weak one is left out; a
tracklet unmatched for more than ``max_gap`` frames is closed.

``stitch`` (tracklets into ``n_animals`` tracks that never overlap in time).
A greedy pass in time order with a global assignment at each decision point,
rather than DeepLabCut's min-cost flow over the whole tracklet graph: simple,
fast, and it keeps the state of every animal at hand for the costs.  All costs
are negative log-likelihoods (nats), so motion and identity evidence add up.

* Decision points: the pending tracklets that start within ``window`` frames
  of the earliest, plus, while more animals are free than tracklets in hand,
  the next long tracklets (``MIN_RIVAL`` frames, within ``LOOKAHEAD``) that
  overlap all of them: those must go to other animals, so deciding together
  lets the tracklet that fits an animal better take it.  One Hungarian
  assignment of tracklets to animals (or to dropping) per decision point.
* Joining tracklet j to animal a costs the gap: the distance between a's
  predicted pose (constant, decaying velocity from the end of its track) and
  j's first pose, scored by the motion model of
  :mod:`~napari_posekit.core.tracking_motion` (a heavy-tailed distribution
  whose scale is measured on the tracklets themselves and grows with the gap),
  plus ``SHORT_COST / length`` (the longer of two rivals wins a tie).
* An animal with no track yet takes a tracklet at ``NEW_ANIMAL_COST``, so a
  tracklet continues a nearby track rather than open a new animal.  Dropping a
  tracklet costs ``DROP_COST + 2 * length``: ghosts of a frame or two go,
  long tracklets stay.
* A tracklet whose first frames overlap the end of an animal's track may
  still join it, its overlapping head cut at ``CUT_COST`` per frame (at most
  ``MAX_CUT`` of it); a tracklet left without an animal is cut where the first
  animal becomes free and waits for the next decision; with nothing left it is
  dropped (``assignment`` -1).
* Identity evidence ``identity`` (T, M, n), per frame the probability that
  tracklet m is animal a, makes animal a identity a: the negative
  log-likelihood of the tracklet's frames under each identity joins the cost.

Identity confidence (T, n), in [0, 1], NaN where the animal has no pose: the
lower of two measures.  At a join, how much cheaper the chosen animal was than
the next-best free animal or dropping (``tanh(margin / 2)``, 2 P - 1 for two
options), for the first ``JOIN_FRAMES`` frames of the joined piece.  In every
frame, how much the motion supports the kept identities over a swap with
another animal: the distances from each animal's pose in the previous frame to
both animals' poses now, against half the animals' size; near 1 while animals
are apart, near 0 where they overlap.

:func:`track` takes identity evidence per detection, ``(T, N, n)``;
:func:`identity_from_slots` makes it from a model that orders its poses by
individual with a confidence each.  :func:`find_crossings` turns close
approaches and low confidence into intervals to review;
:func:`identity_metrics` scores a result against true tracks (IDF1, identity
switches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from napari_posekit.core.tracking_metrics import (
    Crossing,
    animal_size,
    find_crossings,
    identity_metrics,
    pose_distance,
)
from napari_posekit.core.tracking_motion import MotionScale, predict
from napari_posekit.core.tracking_motion import velocity as _velocity

__all__ = [
    "Crossing",
    "StitchResult",
    "animal_size",
    "find_crossings",
    "identity_from_slots",
    "identity_metrics",
    "link",
    "pose_distance",
    "stitch",
    "track",
]

# stitching costs are negative log-likelihoods (nats)
NEW_ANIMAL_COST = 8.0  # joining a gap costs more than this -> an animal without a track takes the tracklet
SHORT_COST = 1.0  # added as SHORT_COST / length: of two rivals, the longer tracklet wins a tie
DROP_COST = 1.0  # a tracklet of length L is dropped rather than joined at a cost above DROP_COST + 2 L
CUT_COST = 2.0  # per frame cut from the head of a tracklet that overlaps the end of an animal's track
MAX_CUT = 0.5  # ... at most this fraction of the tracklet
LOOKAHEAD = 100  # frames: how far ahead a decision looks for rival tracklets ...
MIN_RIVAL = 5  # ... of at least this many frames
JOIN_FRAMES = 3  # frames after a join that carry the join's confidence
CONFIRMED = 3  # link: a tracklet seen this many times is matched before newer ones
DUPLICATE_FRACTION = 0.1  # link: a detection this close (fraction of the size) to a better one is a duplicate
WEAK_FRACTION = 0.5  # link: a detection with fewer parts than this fraction of the usual count is weak
_BIG = 1e9


@dataclass
class StitchResult:
    """Tracks of ``n`` animals and how they were made.

    Attributes:
        poses: ``(T, n, K, 3)`` float32, NaN where an animal has no pose.
        assignment: ``(M,)`` int, the animal of each input tracklet; -1 where dropped.  A tracklet
            may have lost its first frames (where they overlapped another): see ``kept``.
        confidence: ``(T, n)`` float32 identity confidence in [0, 1]; NaN where the animal has no pose.
        kept: ``(T, M)`` bool, the frames of each tracklet that are in ``poses`` (None when not known).
    """

    poses: np.ndarray
    assignment: np.ndarray
    confidence: np.ndarray
    kept: np.ndarray | None = None

    @property
    def n_animals(self) -> int:
        return self.poses.shape[1]


def _check_poses(poses, name: str) -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[-1] < 2:
        raise ValueError(
            f"{name}: expected an array (frames, poses, body parts, 3) of x, y, likelihood; got shape {arr.shape}"
        )
    if arr.shape[-1] == 2:  # no likelihood: 1 where visible
        like = np.where(np.isfinite(arr[..., :1]).all(-1, keepdims=True), 1.0, np.nan).astype(np.float32)
        arr = np.concatenate([arr, like], axis=-1)
    return arr[..., :3]


def _visible(poses: np.ndarray) -> np.ndarray:
    """(..., K) bool: x and y known."""
    return np.isfinite(poses[..., 0]) & np.isfinite(poses[..., 1])


# --------------------------------------------------------------------------- link
def link(detections, *, max_distance: float | None = None, max_gap: int = 5) -> np.ndarray:
    """Join detections frame to frame into tracklets.

    Args:
        detections: ``(T, N, K, 3)`` up to N unordered poses per frame; an all-NaN pose is no detection.
        max_distance: Pixels (mean over body parts) beyond which a detection never continues a
            tracklet; default half the animals' size (:func:`animal_size`).
        max_gap: Frames a tracklet may go unseen and still continue.

    Returns:
        ``(T, M, K, 3)`` float32 tracklets, each NaN outside the frames it was seen.
    """
    return _link(_check_poses(detections, "detections"), max_distance, max_gap)[0]


def _link(det: np.ndarray, max_distance, max_gap: int) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """:func:`link`, also returning which (frame, detection slot) pairs each tracklet holds."""
    n_frames, _, n_parts, _ = det.shape
    if max_distance is None:
        max_distance = 0.5 * animal_size(det)
    if not max_distance > 0:
        raise ValueError(f"max_distance must be a positive number of pixels, got {max_distance}")
    det = np.where(_duplicates(det, DUPLICATE_FRACTION * animal_size(det))[..., None, None], np.nan, det)
    parts = _visible(det).sum(-1)  # (T, N)
    typical = np.median(parts[parts > 0]) if (parts > 0).any() else 1
    strong = parts >= max(1.0, WEAK_FRACTION * typical)
    owners: list[list[tuple[int, int]]] = []  # per tracklet: (frame, detection slot)
    open_: list[int] = []
    last: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # tracklet -> (frame, pose, velocity)
    for t in range(n_frames):
        open_ = [m for m in open_ if t - last[m][0] <= max_gap + 1]
        matched: dict[int, int] = {}
        rank = {m: (len(owners[m]) < CONFIRMED, t - last[m][0]) for m in open_}
        for key in sorted(set(rank.values())):  # confirmed tracklets first, the ones seen last first
            slots = np.array([s for s in np.flatnonzero(strong[t]) if s not in matched], dtype=int)
            matched |= _match(det[t], slots, [m for m in open_ if rank[m] == key], last, t, max_distance)
        rest = [m for m in open_ if m not in matched.values()]
        matched |= _match(det[t], np.flatnonzero((parts[t] > 0) & ~strong[t]), rest, last, t, max_distance)
        for s in np.flatnonzero(strong[t]):
            if s not in matched:  # a new tracklet (weak detections only continue tracklets)
                matched[int(s)] = len(owners)
                owners.append([])
                open_.append(matched[int(s)])
        for s, m in matched.items():
            if owners[m]:
                frame, pose, _ = last[m]
                velocity = _velocity(det[t, s], pose, t - frame)
                moved = pose + np.append(velocity * (t - frame), 0.0)  # parts unseen now move with the others
                filled = np.where(_visible(det[t, s])[:, None], det[t, s], moved)
            else:
                velocity, filled = np.zeros(2), det[t, s]
            owners[m].append((t, s))
            last[m] = (t, filled, velocity)
    out = np.full((n_frames, len(owners), n_parts, 3), np.nan, np.float32)
    for m, seen in enumerate(owners):
        frames, slots = np.array(seen).T
        out[frames, m] = det[frames, slots]
    return out, owners


def _duplicates(det: np.ndarray, radius: float, chunk: int = 4096) -> np.ndarray:
    """(T, N) bool: detections within ``radius`` of a better one in the same frame (more parts, then likelier)."""
    n_frames, n = det.shape[:2]
    drop = np.zeros((n_frames, n), bool)
    if n < 2:
        return drop
    seen = _visible(det)
    like = np.where(seen, np.nan_to_num(det[..., 2], nan=0.0), 0.0).sum(-1) / np.maximum(seen.sum(-1), 1)
    quality = seen.sum(-1) + 0.5 * np.tanh(like)  # parts first, likelihood breaks ties
    for lo in range(0, n_frames, chunk):
        hi = min(lo + chunk, n_frames)
        d = pose_distance(det[lo:hi, :, None, :, :2], det[lo:hi, None, :, :, :2])  # (t, i, j)
        q = quality[lo:hi]
        better = (q[:, :, None] > q[:, None, :]) | (
            (q[:, :, None] == q[:, None, :]) & (np.arange(n)[:, None] < np.arange(n)[None, :])
        )
        drop[lo:hi] = ((d < radius) & better).any(1)
    return drop


def _match(poses: np.ndarray, slots: np.ndarray, open_: list[int], last, t: int, max_distance: float) -> dict[int, int]:
    """One frame's detections ``slots`` matched to the open tracklets: slot -> tracklet."""
    if not open_ or not len(slots):
        return {}
    preds = np.stack([predict(last[m][1], last[m][2], t - last[m][0]) for m in open_])
    cost = pose_distance(preds[:, None], poses[slots][None, :, :, :2])
    cost = np.where(np.isfinite(cost) & (cost <= max_distance), cost, _BIG)
    rows, cols = linear_sum_assignment(cost)
    return {int(slots[c]): open_[r] for r, c in zip(rows, cols) if cost[r, c] < _BIG}


# --------------------------------------------------------------------------- stitch
@dataclass(eq=False)
class _Piece:
    """The part of a tracklet still to place: its observed frames from ``frames[0]`` on."""

    index: int
    frames: np.ndarray

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        return int(self.frames[-1])


@dataclass
class _Animal:
    end: int = -1  # last frame of its track; -1 = no track yet
    pose: np.ndarray | None = None
    velocity: np.ndarray | None = None


def _ends(tracklets: np.ndarray, piece: _Piece, at_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """A piece's first (or last) pose and its velocity there (outward for the start)."""
    f = piece.frames
    if at_start:
        a, b = (f[0], f[1]) if len(f) > 1 else (f[0], f[0])
        return tracklets[a, piece.index], _velocity(tracklets[a, piece.index], tracklets[b, piece.index], b - a)
    a, b = (f[-1], f[-2]) if len(f) > 1 else (f[-1], f[-1])
    return tracklets[a, piece.index], _velocity(tracklets[a, piece.index], tracklets[b, piece.index], a - b)


def _identity_costs(identity, tracklets: np.ndarray, n_animals: int) -> np.ndarray | None:
    if identity is None:
        return None
    ident = np.asarray(identity, dtype=np.float64)
    if ident.shape != (tracklets.shape[0], tracklets.shape[1], n_animals):
        raise ValueError(
            f"identity: expected shape (frames, tracklets, animals) = "
            f"{(tracklets.shape[0], tracklets.shape[1], n_animals)}, got {ident.shape}"
        )
    ident = np.where(np.isfinite(ident), np.clip(ident, 0.0, 1.0), np.nan)
    total = np.nansum(ident, axis=-1, keepdims=True)
    ident = np.where(total > 0, ident / np.where(total > 0, total, 1.0), np.nan)
    ident = np.where(np.isfinite(ident), ident, 1.0 / n_animals)
    return -np.log(np.clip(ident, 1e-3, 1.0))  # (T, M, n)


def _join_costs(tracklets, pieces, animals, motion: MotionScale, id_nll) -> np.ndarray:
    """(pieces, animals) cost of each piece continuing each animal (its head cut where they overlap)."""
    cost = np.full((len(pieces), len(animals)), _BIG)
    for i, piece in enumerate(pieces):
        extra = np.full(len(animals), SHORT_COST / len(piece.frames))
        if id_nll is not None:
            nll = id_nll[piece.frames, piece.index].sum(0)
            extra += nll - nll.min()
        for a, animal in enumerate(animals):
            if animal.pose is None:
                cost[i, a] = NEW_ANIMAL_COST + extra[a]
                continue
            rest = _after(piece, animal.end)
            cut = len(piece.frames) - (0 if rest is None else len(rest.frames))
            if rest is None or cut > MAX_CUT * len(piece.frames):
                continue
            first, _ = _ends(tracklets, rest, at_start=True)
            gap = rest.start - animal.end
            d = float(pose_distance(predict(animal.pose, animal.velocity, gap), first[:, :2]))
            join = motion.cost(d, gap) if np.isfinite(d) else NEW_ANIMAL_COST
            cost[i, a] = join + extra[a] + CUT_COST * cut
    return cost


def _after(piece: _Piece, frame: int) -> _Piece | None:
    """The piece from after ``frame`` on (None when nothing is left)."""
    if frame < piece.start:
        return piece
    frames = piece.frames[piece.frames > frame]
    return _Piece(piece.index, frames) if len(frames) else None


def _drop_cost(piece: _Piece) -> float:
    return DROP_COST + 2.0 * len(piece.frames)


def _decide(cost: np.ndarray, pieces, animals) -> tuple[dict[int, int], dict[int, float]]:
    """One assignment of pieces to animals (or to dropping); returns piece -> animal, piece -> join confidence."""
    n_p, n_a = cost.shape
    drop = np.full((n_p, n_p), _BIG)
    np.fill_diagonal(drop, [_drop_cost(p) for p in pieces])
    full = np.concatenate([cost, drop], axis=1)
    rows, cols = linear_sum_assignment(full)
    chosen, confidence = {}, {}
    for r, c in zip(rows, cols):
        if c < n_a and cost[r, c] < _BIG:
            chosen[r] = c
            rivals = [cost[r, b] for b in range(n_a) if b != c and cost[r, b] < _BIG and animals[b].pose is not None]
            if animals[c].pose is None and not rivals:
                confidence[r] = 1.0
            else:
                margin = min([*rivals, _drop_cost(pieces[r])]) - cost[r, c]
                confidence[r] = float(np.tanh(max(margin, 0.0) / 2))  # 2 P(chosen) - 1 for two options
    return chosen, confidence


def stitch(tracklets, n_animals: int, *, identity=None, window: int = 3) -> StitchResult:
    """Join tracklets into ``n_animals`` tracks that never overlap in time (see the module docstring).

    Args:
        tracklets: ``(T, M, K, 3)``, each tracklet NaN outside its frames (as :func:`link` returns).
        n_animals: How many animals there are.
        identity: Optional ``(T, M, n_animals)`` per-frame probability that tracklet m is animal a.
        window: Tracklets starting within this many frames are assigned together.

    Returns:
        A :class:`StitchResult`.
    """
    trk = _check_poses(tracklets, "tracklets")
    if int(n_animals) != n_animals or n_animals < 1:
        raise ValueError(f"n_animals must be a positive whole number, got {n_animals}")
    n_animals = int(n_animals)
    n_frames, n_tracklets, n_parts, _ = trk.shape
    id_nll = _identity_costs(identity, trk, n_animals)
    scale = 0.5 * animal_size(trk)
    motion = MotionScale(trk, 2 * scale)
    seen = _visible(trk).any(-1)  # (T, M)
    pending = [_Piece(m, np.flatnonzero(seen[:, m])) for m in range(n_tracklets) if seen[:, m].any()]
    animals = [_Animal() for _ in range(n_animals)]
    assignment = np.full(n_tracklets, -1, np.int64)
    poses = np.full((n_frames, n_animals, n_parts, 3), np.nan, np.float32)
    confidence = np.full((n_frames, n_animals), np.nan, np.float32)
    kept = np.zeros((n_frames, n_tracklets), bool)
    while pending:
        pending.sort(key=lambda p: (p.start, -len(p.frames)))
        first = pending[0].start
        group = [p for p in pending if p.start < first + max(window, 1)]
        group += _rivals_ahead(pending, group, sum(animal.end < first for animal in animals))
        pending = [p for p in pending if all(p is not g for g in group)]
        chosen, join_conf = _decide(_join_costs(trk, group, animals, motion, id_nll), group, animals)
        for i, a in chosen.items():
            piece = _after(group[i], animals[a].end)
            _place(trk, piece, a, animals, poses, confidence, join_conf[i])
            kept[piece.frames, piece.index] = True
            assignment[group[i].index] = a
        for i, piece in enumerate(group):
            if i in chosen:
                continue
            if piece.start > first:
                pending.append(piece)  # not yet decided: the animals may be free later
            else:
                rest = _after_first_free(piece, animals)
                if rest is not None and rest.start > piece.start:
                    pending.append(rest)
    _motion_confidence(poses, confidence, scale)
    confidence[~_visible(poses).any(-1)] = np.nan
    return StitchResult(poses=poses, assignment=assignment, confidence=confidence, kept=kept)


def _rivals_ahead(pending: list[_Piece], group: list[_Piece], n_free: int) -> list[_Piece]:
    """Later pieces to decide with ``group``: while animals are free, the next long pieces that overlap all of it.

    Such a piece must go to another animal than every piece of the group, so deciding them together
    lets the one that fits an animal better take it.
    """
    ahead: list[_Piece] = []
    horizon = group[0].start + LOOKAHEAD
    for p in pending:
        if len(group) + len(ahead) >= n_free or p.start >= horizon:
            break
        if p in group or len(p.frames) < MIN_RIVAL:
            continue
        if all(p.start <= g.end and g.start <= p.end for g in group + ahead):
            ahead.append(p)
    return ahead


def _after_first_free(piece: _Piece, animals) -> _Piece | None:
    """What is left of a piece from the frame the first animal becomes free, if any."""
    return _after(piece, min(animal.end for animal in animals))


def _place(trk, piece: _Piece, a: int, animals, poses, confidence, join_conf: float) -> None:
    poses[piece.frames, a] = trk[piece.frames, piece.index]
    confidence[piece.frames, a] = 1.0
    confidence[piece.frames[:JOIN_FRAMES], a] = join_conf
    pose, velocity = _ends(trk, piece, at_start=False)
    animals[a] = _Animal(end=piece.end, pose=pose, velocity=velocity)


def _motion_confidence(poses: np.ndarray, confidence: np.ndarray, scale: float, chunk: int = 2048) -> None:
    """Lower ``confidence`` where a swap with another animal would fit the motion almost as well."""
    n_frames, n = poses.shape[:2]
    if n < 2 or n_frames < 2:
        return
    off = ~np.eye(n, dtype=bool)
    for lo in range(1, n_frames, chunk):
        hi = min(lo + chunk, n_frames)
        before, now = poses[lo - 1 : hi - 1, :, None, :, :2], poses[lo:hi, None, :, :, :2]
        d = pose_distance(before, now)  # (t, a, b): a's pose before to b's pose now
        own = np.diagonal(d, axis1=1, axis2=2)  # (t, n)
        gain = d - own[:, :, None]  # a taking b's pose instead of its own
        both = gain + np.swapaxes(gain, 1, 2)  # a and b exchanging
        margin = np.where(np.isfinite(both), both, gain)  # one side only where the other is missing
        margin = np.where(off, margin, np.inf)
        margin = np.where(np.isfinite(margin), margin, np.inf).min(-1)
        motion = np.where(np.isfinite(margin), 1 - np.exp(-np.maximum(margin, 0) / scale), 1.0)
        confidence[lo:hi] = np.fmin(confidence[lo:hi], motion.astype(np.float32))


def track(detections, n_animals: int, *, identity=None, max_distance: float | None = None) -> StitchResult:
    """:func:`link` then :func:`stitch`.

    ``identity`` here is per detection, ``(T, N, n_animals)``; it follows each detection into its tracklet.
    """
    det = _check_poses(detections, "detections")
    tracklets, owners = _link(det, max_distance, 5)
    ident = None
    if identity is not None:
        per_det = np.asarray(identity, dtype=np.float32)
        if per_det.shape != (*det.shape[:2], n_animals):
            raise ValueError(
                f"identity: expected shape (frames, detections, animals) = {(*det.shape[:2], n_animals)}, "
                f"got {per_det.shape}"
            )
        ident = np.full((*tracklets.shape[:2], per_det.shape[-1]), np.nan, np.float32)
        for m, seen in enumerate(owners):
            frames, slots = np.array(seen).T
            ident[frames, m] = per_det[frames, slots]
    return stitch(tracklets, n_animals, identity=ident)


def identity_from_slots(confidence) -> np.ndarray:
    """Identity evidence for :func:`track` from a model that orders its poses by individual.

    Args:
        confidence: ``(T, n)`` the model's confidence that its pose slot i is individual i (NaN = none).

    Returns:
        ``(T, n, n)`` float32: slot i is individual i with that probability, any other equally
        likely; uniform where the confidence is unknown.
    """
    conf = np.asarray(confidence, dtype=np.float32)
    if conf.ndim != 2:
        raise ValueError(f"confidence: expected an array (frames, individuals), got shape {conf.shape}")
    n = conf.shape[1]
    if n == 1:
        return np.ones((*conf.shape, 1), np.float32)
    known = np.isfinite(conf)
    c = np.where(known, np.clip(conf, 0.0, 1.0), 1.0 / n)[..., None]
    eye = np.eye(n, dtype=bool)
    return np.where(eye, c, (1 - c) / (n - 1)).astype(np.float32)
