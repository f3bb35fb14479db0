"""Label checks that need no model: left/right swaps, shapes, collapses and images labeled twice.

:func:`fast_checks` also runs :func:`.label_appearance.check_appearance`
(labels on pixels unlike their body part elsewhere), which lives in its own module.

Each ``check_*`` reads a :class:`~.label_suspects.LabelSet` and returns
``(suspects, notes)``: the suspects it flags (score at least
:data:`~.label_suspects.SUSPECT_SCORE`, unranked) and a sentence for each
thing it could not judge.  :func:`fast_checks` runs them all.

The shape of the animal is learned from the labels themselves
(:mod:`.label_shape`): a robust mean shape and, for every body part, how far
it usually lies from where a similarity transform (rotation, scale,
translation; never a reflection) of the other parts onto that mean shape
puts it.  Animals seen at another scale, turned or moved are therefore
judged like any other; only the shape counts.  The shape checks share one
:class:`_Analysis` per label set, so :func:`fast_checks` fits it once.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .label_appearance import judge_appearance
from .label_shape import (
    MIN_IMAGES,
    ShapeModel,
    fit_similarity,
    mean_shape,
    own_distances,
    shape_model,
    to_complex,
)
from .label_suspects import SUSPECT_SCORE, LabelSet, Suspect

__all__ = ["check_collapses", "check_duplicates", "check_geometry", "check_swaps", "fast_checks"]

SWAP_MAJORITY = 0.8
"""Share of the judged images that must agree on a pair's sides before the others are called swapped."""

COLLAPSE_SHARE = 0.12
"""Two body parts collapse when they are closer than this share of their usual distance..."""

COLLAPSE_RARE = 0.02
"""...and at most this share of the images has them that close (else they simply overlap at times)."""


# --------------------------------------------------------------------------- swaps
@dataclass
class _PairSides:
    left: int
    right: int
    side: np.ndarray  # (N,) signed lateral offset of left from right, in mean-shape units, NaN: not judged
    judged: np.ndarray
    majority: int
    agree_sign: float


def _pair_sides(labels: LabelSet) -> tuple[list[_PairSides], list[str]]:
    """Which side of the body each pair's left part is on in every image, against swap-proof anchors."""
    names = {bp: k for k, bp in enumerate(labels.bodyparts)}
    pairs = [(names[a], names[b]) for a, b in labels.pairs if a in names and b in names and a != b]
    if not pairs:
        return [], ["left/right swaps: no left/right pairs among the body parts"]
    z = to_complex(labels.xy)
    paired = {k for pair in pairs for k in pair}
    anchors = [z[:, k] for k in range(z.shape[1]) if k not in paired]
    anchors += [(z[:, a] + z[:, b]) / 2 for a, b in pairs]  # a pair's midpoint does not care about a swap
    anchors = np.stack(anchors, axis=1)
    present = np.isfinite(anchors).astype(float)
    ref = mean_shape(anchors, present)
    if ref is None or len(anchors[0]) < 2:
        return [], ["left/right swaps: need at least one other body part besides a pair to tell the sides"]
    a, _b = fit_similarity(ref, anchors, present)
    out: list[_PairSides] = []
    notes: list[str] = []
    for left, right in pairs:
        name = f"{labels.bodyparts[left]}/{labels.bodyparts[right]}"
        with np.errstate(invalid="ignore"):
            v = (z[:, left] - z[:, right]) / a  # left minus right in the mean shape's frame
        good = np.isfinite(v)
        if good.sum() < MIN_IMAGES:
            notes.append(f"left/right swaps: {name} labeled with a body frame in {good.sum()} images, too few to judge")
            continue
        # the pair's axis from directions only (doubled angles: the sign of left-right does not matter),
        # so a few labels dragged far away cannot turn it
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = v[good] / np.abs(v[good])
        axis = np.exp(0.5j * np.angle(np.nanmean(unit[np.isfinite(unit)] ** 2)))
        lateral = np.full(len(v), np.nan)
        lateral[good] = (v[good] * np.conj(axis)).real
        typical = np.median(np.abs(lateral[good]))
        with np.errstate(invalid="ignore", divide="ignore"):
            judged = good & (np.abs(lateral) >= 0.25 * typical) & (np.abs(lateral) >= 0.5 * np.abs(v))
        n = int(judged.sum())
        positive = int((lateral[judged] > 0).sum())
        majority = max(positive, n - positive)
        sign = 1.0 if positive >= n - positive else -1.0
        if n < MIN_IMAGES:
            notes.append(f"left/right swaps: {name} sides are clear in only {n} images, too few to judge")
            continue
        if majority < SWAP_MAJORITY * n:
            notes.append(
                f"left/right swaps: {name} are labeled either way round ({majority} of {n} images agree), not judged"
            )
            continue
        out.append(_PairSides(left, right, lateral / typical, judged, majority, sign))
    return out, notes


def _swap_score(pair: _PairSides, image: int) -> float:
    n = int(pair.judged.sum())
    evidence = np.log((n + 2) / (n - pair.majority + 1))  # how rarely the other side is seen (Laplace)
    clarity = min(1.0, abs(pair.side[image]) / 0.6)
    return float(evidence * clarity)


@dataclass
class _Swap:
    image: int
    pair: _PairSides
    score: float


@dataclass
class _Outlier:
    image: int
    part: int
    score: float
    moved_px: float
    typical_px: float
    suggested: complex


class _Analysis:
    """What the shape checks share, each piece computed once for one label set."""

    def __init__(self, labels: LabelSet):
        self.labels = labels
        self.z = to_complex(labels.xy)

    @cached_property
    def sides(self) -> tuple[list[_PairSides], list[str]]:
        return _pair_sides(self.labels)

    @cached_property
    def candidates(self) -> list[_Swap]:
        """Images whose pair is on the uncommon side, clearly enough to flag."""
        found = []
        for pair in self.sides[0]:
            for image in np.flatnonzero(pair.judged & (np.sign(pair.side) == -pair.agree_sign)):
                score = _swap_score(pair, int(image))
                if score >= SUSPECT_SCORE:
                    found.append(_Swap(int(image), pair, score))
        return found

    def exchanged(self, swaps: list[_Swap]) -> np.ndarray:
        z = self.z.copy()
        for swap in swaps:
            z[swap.image, [swap.pair.left, swap.pair.right]] = z[swap.image, [swap.pair.right, swap.pair.left]]
        return z

    @cached_property
    def model(self) -> ShapeModel | None:
        """The shape model, learned with the candidate swaps undone."""
        if len(self.labels.bodyparts) < 3 or len(self.labels.images) < MIN_IMAGES:
            return None
        return shape_model(self.exchanged(self.candidates), self.labels.images)

    @cached_property
    def swaps(self) -> list[_Swap]:
        """Candidates whose exchanged pair fits the shape (a part dragged across the body is no swap)."""
        if self.model is None or not self.candidates:
            return list(self.candidates)
        rows = np.array([c.image for c in self.candidates])
        labeled = own_distances(self.model, self.z[rows], rows)[0]
        exchanged = own_distances(self.model, self.exchanged(self.candidates)[rows], rows)[0]
        kept = []
        for j, swap in enumerate(self.candidates):
            parts = [swap.pair.left, swap.pair.right]
            before, after = labeled[j, parts], exchanged[j, parts]
            if not np.isfinite(after).all() or (after.max() < SUSPECT_SCORE and after.max() < before.max()):
                kept.append(swap)
        return kept

    @cached_property
    def geometry(self) -> tuple[list[_Outlier], list[str]]:
        if self.model is None:
            return [], ["geometry: no image has two body parts labeled"]
        return _geometry_outliers(self.labels, self.exchanged(self.swaps), self.model)

    @cached_property
    def sizes(self) -> np.ndarray | None:
        """The animal's size in every image, px per mean-shape unit (NaN where unknown); None without a model."""
        if self.model is None:
            return None
        z = self.exchanged(self.swaps)
        w = np.isfinite(z) * self.model.weights[None, :]
        return np.abs(fit_similarity(self.model.ref, z, w)[0]) if self.model.scale is None else self.model.scale.copy()


def check_swaps(labels: LabelSet, _analysis: _Analysis | None = None) -> tuple[list[Suspect], list[str]]:
    """Images whose left/right pair sits the other way round from the project's convention.

    The side of a pair's left part is read in the frame of a similarity fit
    of swap-proof anchors (unpaired parts and every pair's midpoint) onto
    their mean shape; only images where the side is clear are judged.  The
    score grows with how lopsided the convention is and how clearly the image
    is on the other side.  A candidate whose exchanged positions would still
    not fit the animal's shape is left to :func:`check_geometry` (one part
    dragged across the body is no swap).  The suggested fix exchanges the two
    positions.
    """
    analysis = _analysis or _Analysis(labels)
    suspects = []
    for swap in analysis.swaps:
        pair = swap.pair
        left, right = labels.bodyparts[pair.left], labels.bodyparts[pair.right]
        n = int(pair.judged.sum())
        reason = f"{left} and {right} look swapped: {pair.majority} of {n} images have {left} on the other side"
        suggested = labels.xy[swap.image, [pair.right, pair.left]]
        suspects.append(Suspect(labels.images[swap.image], (left, right), "swap", swap.score, reason, suggested))
    return suspects, list(analysis.sides[1])


# --------------------------------------------------------------------------- geometry
def _geometry_outliers(labels: LabelSet, z: np.ndarray, model: ShapeModel) -> tuple[list[_Outlier], list[str]]:
    """Body parts far from where the other parts put them; in each round an image's culprit is left out.

    The culprit is the flagged part whose removal leaves the others most
    consistent, so a part is not blamed for a neighbour that dragged the fit.
    """
    spread, ref = model.spread, model.ref
    notes = [
        f"geometry: {labels.bodyparts[k]} labeled in fewer than {MIN_IMAGES} images, too few to learn its place"
        for k in range(z.shape[1])
        if not spread.usable[k] and np.isfinite(z[:, k]).any()
    ]
    present = np.isfinite(z) & spread.usable[None, :]
    excluded = np.zeros_like(present)
    active = present.sum(axis=1) >= 3
    outliers: list[_Outlier] = []
    for _ in range(max(1, z.shape[1] // 3)):
        rows = np.flatnonzero(active)
        if not rows.size:
            break
        live = (present & ~excluded)[rows]
        a, b, lever = model.fits_without(z[rows], live.astype(float), rows)
        with np.errstate(invalid="ignore", divide="ignore"):  # [image, part left out, part judged]
            residual = (z[rows, None, :] - (a[:, :, None] * ref[None, None, :] + b[:, :, None])) / a[:, :, None]
        ratio = spread.ratio(residual, a[:, :, None], lever[:, :, None] * np.eye(len(ref), dtype=bool))
        ratio = np.nan_to_num(ratio, nan=0.0, posinf=0.0)
        ratio *= live[:, None, :] & live[:, :, None]
        own = np.einsum("nkk->nk", ratio)
        capped = np.minimum(ratio, 2 * SUSPECT_SCORE) ** 2
        rest = capped.sum(axis=2) - np.einsum("nkk->nk", capped)
        worst = np.argmin(np.where(own >= SUSPECT_SCORE, rest, np.inf), axis=1)
        found = (own >= SUSPECT_SCORE).any(axis=1)
        for j in np.flatnonzero(found):
            row, part = int(rows[j]), int(worst[j])
            place = a[j, part] * (ref[part] + spread.centre[part]) + b[j, part]
            typical = 1.18 * abs(a[j, part]) * spread.sigma[part]  # median distance of a 2-D normal: 1.18 sigma
            score = float(own[j, part])
            outliers.append(_Outlier(row, part, score, float(abs(z[row, part] - place)), float(typical), place))
            excluded[row, part] = True
        active[rows[~found]] = False
        active &= (present & ~excluded).sum(axis=1) >= 3
    return outliers, notes


def check_geometry(labels: LabelSet, _analysis: _Analysis | None = None) -> tuple[list[Suspect], list[str]]:
    """Body parts far from where a similarity fit of the image's other parts onto the mean shape puts them.

    Distances are measured against each part's own robust spread (the
    trimmed covariance of its offsets, so a tail that swings sideways may
    swing sideways), in units that follow the animal's size: fitted per image,
    or fixed per video folder when that describes the labels better.  An
    image's culprit is left out before the rest are judged again, so a
    misplaced part does not drag its neighbours in.  Flagged left/right swaps
    are undone first (:func:`check_swaps` reports them).  The suggested fix is
    where the other parts put the body part.  Needs three body parts.
    """
    if len(labels.bodyparts) < 3:
        return [], ["geometry: needs at least 3 body parts"]
    if len(labels.images) < MIN_IMAGES:
        return [], [f"geometry: needs at least {MIN_IMAGES} labeled images to learn the shape"]
    outliers, notes = (_analysis or _Analysis(labels)).geometry
    suspects = []
    for o in outliers:
        part = labels.bodyparts[o.part]
        reason = (
            f"{part} is {o.moved_px:.0f} px from where the other body parts put it "
            f"(typically {o.typical_px:.1f} px off)"
        )
        suggested = np.array([[o.suggested.real, o.suggested.imag]])
        suspects.append(Suspect(labels.images[o.image], (part,), "geometry", o.score, reason, suggested))
    return suspects, list(notes)


# --------------------------------------------------------------------------- collapses
def _collapse_culprit(analysis: _Analysis, image: int, j: int, k: int) -> tuple[int | None, complex]:
    """Which of two collapsed parts the shape blames (clearly more than the other), and where it belongs."""
    if analysis.model is None:
        return None, complex(np.nan)
    rows = np.array([image])
    ratio, a, b = own_distances(analysis.model, analysis.exchanged(analysis.swaps)[rows], rows)
    rj, rk = ratio[0, j], ratio[0, k]
    if not (np.isfinite(rj) and np.isfinite(rk)) or max(rj, rk) < 0.5 * SUSPECT_SCORE:
        return None, complex(np.nan)
    if rj < 1.5 * rk and rk < 1.5 * rj:
        return None, complex(np.nan)
    part = j if rj > rk else k
    model = analysis.model
    return part, complex(a[0, part] * (model.ref[part] + model.spread.centre[part]) + b[0, part])


def check_collapses(labels: LabelSet, _analysis: _Analysis | None = None) -> tuple[list[Suspect], list[str]]:
    """Two body parts labeled at (nearly) one point though they are normally apart.

    Distances are taken relative to the animal's size in the image (when the
    shape model applies) and to the pair's median distance; a pair is only
    flagged where such closeness is rare in the project (wings that overlap
    at rest are not a collapse).  The suggested fix moves the part the shape
    blames to where the other parts put it; None when it is unclear which.
    """
    k = len(labels.bodyparts)
    if k < 2:
        return [], ["collapses: needs at least 2 body parts"]
    if len(labels.images) < MIN_IMAGES:
        return [], [f"collapses: needs at least {MIN_IMAGES} labeled images to know the usual distances"]
    analysis = _analysis or _Analysis(labels)
    sizes = analysis.sizes if analysis.sizes is not None else np.ones(len(labels.images))
    suspects = []
    for j in range(k):
        for m in range(j + 1, k):
            px = np.abs(analysis.z[:, j] - analysis.z[:, m])
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = px / sizes
            good = np.isfinite(rel)
            if good.sum() < MIN_IMAGES:
                continue
            usual = np.median(rel[good])
            if usual <= 0:
                continue
            share = rel / usual
            close = int((share[good] < 2 * COLLAPSE_SHARE).sum())
            if close > max(1, COLLAPSE_RARE * good.sum()):
                continue
            for image in np.flatnonzero(good & (share < COLLAPSE_SHARE)):
                suspects.append(_collapse_suspect(labels, analysis, int(image), j, m, share, sizes * usual))
    return suspects, []


def _collapse_suspect(
    labels: LabelSet, analysis: _Analysis, image: int, j: int, m: int, share: np.ndarray, usual_px: np.ndarray
) -> Suspect:
    a, b = labels.bodyparts[j], labels.bodyparts[m]
    score = SUSPECT_SCORE + 2.0 * (1.0 - share[image] / COLLAPSE_SHARE)
    px = float(share[image] * usual_px[image])
    reason = f"{a} and {b} are {px:.1f} px apart, usually {usual_px[image]:.0f} px"
    culprit, place = _collapse_culprit(analysis, image, j, m)
    suggested = None
    if culprit is not None:
        reason += f"; {labels.bodyparts[culprit]} looks misplaced"
        suggested = labels.xy[image, [j, m]].copy()
        suggested[0 if culprit == j else 1] = (place.real, place.imag)
    return Suspect(labels.images[image], (a, b), "collapse", float(score), reason, suggested)


# --------------------------------------------------------------------------- duplicates
def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _pixel_digest(path) -> bytes | None:
    from .images import read_rgb

    try:
        pixels = read_rgb(path)
    except (OSError, ValueError):
        return None
    return _digest(repr(pixels.shape).encode() + pixels.tobytes())


def _label_twins(xy: np.ndarray, rows: list[int]) -> list[tuple[int, int]]:
    """Pairs of images whose labels nearly coincide (median over common parts), as a labeler's repeat would.

    Within 5 % of the animal's size (at least 2 px); a single body part far
    off does not matter.  Centroids prefilter the pairs through a k-d tree.
    """
    from scipy.spatial import cKDTree

    rows = [i for i in rows if np.isfinite(xy[i]).any()]
    if len(rows) < 2:
        return []
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centres = np.nanmean(xy[rows], axis=1)
        extent = np.nanmax(np.linalg.norm(xy[rows] - centres[:, None], axis=2), axis=1)
    size = float(np.nanmedian(extent)) if np.isfinite(extent).any() else 0.0
    limit = max(2.0, 0.05 * size)
    twins = []
    for p, q in sorted(cKDTree(centres).query_pairs(limit + 0.25 * size)):
        i, j = rows[p], rows[q]
        d = np.linalg.norm(xy[i] - xy[j], axis=1)
        d = d[np.isfinite(d)]
        if d.size and float(np.median(d)) <= limit:
            twins.append((min(i, j), max(i, j)))
    return twins


def _duplicate_groups(labels: LabelSet) -> tuple[list[list[int]], list[str]]:
    """Images with the same pixels: identical files, and same-size files whose labels are close, decoded."""
    from .images import image_size

    digests: dict[bytes, list[int]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    missing = []
    for i in range(len(labels.images)):
        path = labels.image_path(i)
        try:
            data = path.read_bytes()
            sizes[i] = image_size(path)
        except OSError:
            missing.append(labels.images[i])
            continue
        digests.setdefault(_digest(data), []).append(i)
    notes = []
    if missing:
        notes.append(f"duplicate images: {len(missing)} image files missing or unreadable, e.g. {missing[0]}")
    groups = [g for g in digests.values() if len(g) > 1]
    pixels: dict[int, bytes | None] = {}
    same: dict[bytes, set[int]] = {}
    for i, j in _label_twins(labels.xy, sorted(g[0] for g in digests.values())):
        if sizes[i] != sizes[j]:
            continue
        for idx in (i, j):
            if idx not in pixels:
                pixels[idx] = _pixel_digest(labels.image_path(idx))
        if pixels[i] is not None and pixels[i] == pixels[j]:
            same.setdefault(pixels[i], set()).update((i, j))
    groups += [sorted(g) for g in same.values()]
    return groups, notes


def check_duplicates(labels: LabelSet) -> tuple[list[Suspect], list[str]]:
    """The same image labeled twice under different keys; one suspect per later copy.

    Identical files are found by hashing their bytes; images whose files
    differ but whose pixels may not (re-encoded copies) are decoded and
    compared when they have the same size and their labels lie close together
    (decoding every image would make the check slow on large projects).
    """
    if labels.root is None:
        return [], ["duplicate images: these labels have no project folder, so no image files to compare"]
    if len(labels.images) < 2:
        return [], ["duplicate images: fewer than 2 labeled images"]
    groups, notes = _duplicate_groups(labels)
    suspects = []
    for group in groups:
        first = group[0]
        for later in group[1:]:
            suspects.append(_duplicate_suspect(labels, first, later))
    return suspects, notes


def _duplicate_suspect(labels: LabelSet, first: int, later: int) -> Suspect:
    d = np.linalg.norm(labels.xy[first] - labels.xy[later], axis=1)
    one_only = np.isfinite(labels.xy[first, :, 0]) != np.isfinite(labels.xy[later, :, 0])
    reason = f"same pixels as {labels.images[first]}"
    worst = 0.0
    if np.isfinite(d).any():
        k = int(np.nanargmax(d))
        worst = float(d[k])
        reason += (
            f"; labels differ by up to {worst:.1f} px ({labels.bodyparts[k]})"
            if worst >= 1
            else f"; labels agree within {worst:.1f} px"
        )
    if one_only.any():
        reason += f"; {', '.join(b for b, o in zip(labels.bodyparts, one_only, strict=True) if o)} labeled in only one"
    score = 1.5 + 2.5 * min(1.0, worst / 20.0 + 0.5 * bool(one_only.any()))
    return Suspect(labels.images[later], tuple(labels.bodyparts), "duplicate", float(score), reason)


# --------------------------------------------------------------------------- all of them
def fast_checks(labels: LabelSet) -> tuple[list[Suspect], list[str], list[str]]:
    """Every check here: ``(suspects, notes, names of the checks that ran)`` (the names are suspect kinds)."""
    analysis = _Analysis(labels)
    suspects: list[Suspect] = []
    notes: list[str] = []
    ran: list[str] = []
    if not len(labels.images) or not np.isfinite(labels.xy).any():
        notes.append("no labeled body parts: nothing to check")
    for name, check in (
        ("swap", lambda: check_swaps(labels, analysis)),
        ("geometry", lambda: check_geometry(labels, analysis)),
        ("collapse", lambda: check_collapses(labels, analysis)),
        ("duplicate", lambda: check_duplicates(labels)),
    ):
        found, said = check()
        suspects += found
        notes += said
        if _applies(name, labels, analysis):
            ran.append(name)
    found, said, judged = judge_appearance(labels)  # the pixels under the labels (label_appearance.py)
    suspects += found
    notes += said
    if judged:
        ran.append("appearance")
    return suspects, notes, ran


def _applies(name: str, labels: LabelSet, analysis: _Analysis) -> bool:
    n, k = len(labels.images), len(labels.bodyparts)
    if name == "swap":
        return bool(analysis.sides[0])
    if name == "geometry":
        return analysis.model is not None and bool(analysis.model.spread.usable.any())
    if name == "collapse":
        return k >= 2 and n >= MIN_IMAGES
    return labels.root is not None and n >= 2
