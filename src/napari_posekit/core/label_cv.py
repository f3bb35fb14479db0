"""Cross-validated predictions of a project's labeled images, and the label checks built on them.

:func:`iter_cross_validate` splits the labeled images into folds, trains one
model per fold on the other folds (from ImageNet weights, never from the
project's own model, which has seen every image) and predicts each image with
the model that never saw it.  :func:`check_model_disagreement` compares those
predictions with the labels: a label far from a confident prediction
("disagreement"), a body part the model sees where nobody labeled it
("missing") and a label where the model sees nothing ("extra").

Training writes its checkpoints into a temporary folder that is removed
afterwards; nothing is written into the project.  Torch is imported inside
the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .label_suspects import SUSPECT_SCORE, LabelSet, Suspect
from .options import PCUTOFF, TrainOptions

__all__ = [
    "FLOOR_PX",
    "CrossValidation",
    "check_model_disagreement",
    "cross_validation_options",
    "fold_assignment",
    "iter_cross_validate",
]

FLOOR_PX = 2.0
"""Smallest typical cross-validated error (px) a body part is judged against."""

TYPICAL_FACTOR = 3.0
"""A label is flagged at this many times its body part's typical error (median, at least :data:`FLOOR_PX`)."""

MAD_FACTOR = 4.0
"""...or at the median plus this many robust deviations (1.4826 x MAD), whichever is larger.

For errors of a 2D Gaussian (Rayleigh distributed) both come to about the
same place (one label in 500 beyond it); the second wins for a body part
whose errors have a long tail (a part labelers place inconsistently).
"""

MISSING_CONFIDENCE = 0.8
"""Confidence from which an unlabeled body part counts as visible (at least ``pcutoff``)."""

EXTRA_CONFIDENCE = 0.1
"""Confidence below which a labeled body part counts as not there (at most a quarter of ``pcutoff``)."""

_MARGIN = 0.05
"""Share of the time budget kept back for loading, predicting and cleaning up."""


@dataclass
class CrossValidation:
    """Held-out predictions of every image, in ``labels.images`` order.

    ``fold`` is the fold that held an image out (-1: not predicted: no
    labels, too few images, or stopped before its fold finished); ``xy``
    ``(N, K, 2)`` and ``confidence`` ``(N, K)`` are NaN where not predicted.
    """

    fold: np.ndarray
    xy: np.ndarray
    confidence: np.ndarray
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int, k: int, notes: list[str] | None = None, seconds: float = 0.0) -> CrossValidation:
        """No image predicted."""
        return cls(
            np.full(n, -1, dtype=np.int64),
            np.full((n, k, 2), np.nan),
            np.full((n, k), np.nan),
            seconds,
            list(notes or []),
        )


# --------------------------------------------------------------------------- folds
def fold_assignment(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """Fold (0..folds-1) of each of ``n`` images: a seeded random partition into folds as equal as possible.

    Random folds (rather than contiguous blocks of consecutive frames) give
    every held-out image near neighbours in training, so the model predicts
    it about as well as a labeler would label it and single mistakes stand
    out against a small typical error.
    """
    folds = max(1, min(int(folds), int(n)))
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) % folds
    return out


def cross_validation_options(labels: LabelSet, options: TrainOptions | None, seed: int) -> TrainOptions:
    """The training options of every fold: ``options`` (default: time-bound defaults) with the fold's needs.

    Every image of the training folds trains (``train_fraction`` 1, no
    evaluation), from ImageNet weights, with the labels' left/right pairs
    swapped by flips.
    """
    base = options if options is not None else TrainOptions(epochs=None)
    pairs = base.symmetric_pairs if base.symmetric_pairs is not None else list(labels.pairs)
    pretrained = base.pretrained if base.pretrained is not None else True
    return base.merged(
        train_fraction=1.0, split="random", eval_every=0, seed=seed, symmetric_pairs=pairs, pretrained=pretrained
    )


# --------------------------------------------------------------------------- the run
def _labeled_rows(labels: LabelSet) -> np.ndarray:
    return np.flatnonzero((~np.isnan(labels.xy).any(axis=-1)).any(axis=-1))


def iter_cross_validate(
    labels: LabelSet,
    *,
    folds: int = 5,
    max_minutes: float = 10.0,
    seed: int = 0,
    options: TrainOptions | None = None,
    stop: Callable[[], bool] | None = None,
    device: Any = None,
) -> Generator[dict[str, Any], None, CrossValidation]:
    """Train one model per fold and predict the images it held out; yield progress, return a :class:`CrossValidation`.

    The labeled images (at least one label) are split by :func:`fold_assignment`;
    ``max_minutes`` is the whole run's wall time: it is shared by the folds
    still to train, after a small margin and the time prediction is expected
    to take.  With fewer labeled images than ``folds`` there are fewer folds
    (a note says so); with fewer than two, or labels without a project
    folder, nothing is predicted.

    ``stop()`` returning True ends the run early and returns what finished
    (the images of unfinished folds have fold -1, and a note says so);
    closing the generator stops training too and removes the temporary
    checkpoints (the generator then ends without a result, as closed
    generators do).
    """
    t0 = time.monotonic()
    n, k = len(labels.images), len(labels.bodyparts)
    notes: list[str] = []
    if labels.root is None:
        return CrossValidation.empty(n, k, ["cross-validation: the labels have no project folder, so no images"])
    rows = _labeled_rows(labels)
    absent = [int(i) for i in rows if not labels.image_path(int(i)).is_file()]
    if absent:
        notes.append(
            f"cross-validation: {len(absent)} labeled image(s) have no image file and are not predicted "
            f"(first: {labels.image_path(absent[0])})"
        )
        rows = np.setdiff1d(rows, absent)
    if len(rows) < 2:
        notes.append(f"cross-validation: {len(rows)} labeled image(s); at least 2 are needed to hold one out")
        return CrossValidation.empty(n, k, notes)
    n_folds = min(int(folds), len(rows))
    if n_folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if n_folds < folds:
        notes.append(f"cross-validation: {len(rows)} labeled images, so {n_folds} folds instead of {folds}")
    unlabeled = n - len(rows) - len(absent)
    if unlabeled:
        notes.append(f"cross-validation: {unlabeled} image(s) without any label are not predicted")
    assignment = fold_assignment(len(rows), n_folds, seed)
    fold_options = cross_validation_options(labels, options, seed)
    result = CrossValidation.empty(n, k)
    result.notes = notes  # the notes below go on being added to the result
    clock = _Clock(t0, max_minutes, len(rows), device)
    tmp = Path(tempfile.mkdtemp(prefix="posekit-cv-"))
    try:
        for f in range(n_folds):
            held = rows[assignment == f]
            budget_s = clock.fold_seconds(n_folds - f)
            if budget_s <= 1.0:
                notes.append(f"cross-validation: out of time before fold {f + 1} of {n_folds}")
                break
            started = time.monotonic()
            trained = yield from _train_fold(
                labels, rows[assignment != f], fold_options, budget_s, tmp / f"fold{f}", stop, device, (f, n_folds)
            )
            if trained is None:
                notes.append(f"cross-validation: stopped during fold {f + 1} of {n_folds}; its images are not judged")
                break
            yield {"progress": (f + 0.95) / n_folds, "message": f"fold {f + 1} of {n_folds}: predicting"}
            tp = time.monotonic()
            xy, conf = _predict(trained, [labels.image_path(int(i)) for i in held], device)
            clock.fold_done(budget_s, tp - started, time.monotonic() - tp, len(held))
            result.fold[held], result.xy[held], result.confidence[held] = f, xy, conf
            shutil.rmtree(tmp / f"fold{f}", ignore_errors=True)
            yield {"progress": (f + 1) / n_folds, "message": f"fold {f + 1} of {n_folds}: done"}
            if stop is not None and stop() and f + 1 < n_folds:
                notes.append(f"cross-validation: stopped after fold {f + 1} of {n_folds}")
                break
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.monotonic() - t0
    return result


class _Clock:
    """Shares what is left of the time budget among the folds still to train.

    Each fold also costs time outside its training budget (building the
    model, the last step, saving) and predicting its images; both start as a
    guess and are then measured on the folds done.
    """

    def __init__(self, t0: float, max_minutes: float, n_images: int, device: Any) -> None:
        self.deadline = t0 + 60.0 * float(max_minutes) * (1.0 - _MARGIN)
        on_cpu = str(device if device is not None else _default_device()).startswith("cpu")
        self.predict_s = 0.3 if on_cpu else 0.03  # per image
        self.overhead_s = 5.0 if on_cpu else 3.0  # per fold
        self.to_predict = n_images

    def fold_seconds(self, folds_left: int) -> float:
        """The training budget of the next fold."""
        left = self.deadline - time.monotonic() - self.predict_s * self.to_predict
        return left / folds_left - self.overhead_s

    def fold_done(self, budget_s: float, train_s: float, predict_s: float, n_predicted: int) -> None:
        self.overhead_s = max(train_s - budget_s, 0.0)
        self.predict_s = predict_s / max(n_predicted, 1)
        self.to_predict -= n_predicted


def _train_fold(labels, train_rows, options, budget_s, folder, stop, device, where):
    """Train one fold (a sub-generator yielding progress); its checkpoint, or None when stopped."""
    from .train import iter_train

    f, n_folds = where
    stopped = [False]

    def should_stop() -> bool:
        if stop is not None and stop():
            stopped[0] = True
        return stopped[0]

    images = [labels.image_path(int(i)) for i in train_rows]
    message = f"fold {f + 1} of {n_folds}: training on {len(images)} images"
    yield {"progress": f / n_folds, "message": message}
    work = iter_train(
        images,
        labels.xy[train_rows],
        list(labels.bodyparts),
        options=options.merged(max_minutes=budget_s / 60.0),
        checkpoint_dir=folder,
        stop=should_stop,
        device=device,
    )
    try:
        while True:
            try:
                event = next(work)
            except StopIteration as done:
                checkpoint = done.value
                break
            p = float(event.get("progress", 0.0))
            yield {"progress": (f + 0.95 * p) / n_folds, "message": message}
    finally:
        work.close()
    return None if stopped[0] else checkpoint


def _predict(checkpoint: Path, images: list[Path], device: Any) -> tuple[np.ndarray, np.ndarray]:
    from .checkpoint import load_checkpoint
    from .evaluation import predict_images

    model, codec, meta = load_checkpoint(checkpoint, device=device if device is not None else _default_device())
    return predict_images(model, codec, images, input_scale=float(meta.get("input_scale", 1.0)))


def _default_device():
    from .train import default_device

    return default_device()


# --------------------------------------------------------------------------- the checks
def _robust_thresholds(err: np.ndarray, judged: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per body part: typical error (median), flag threshold (px) and how many labels they rest on."""
    k = err.shape[1]
    typical, threshold, count = np.full(k, FLOOR_PX), np.zeros(k), np.zeros(k, dtype=np.int64)
    for j in range(k):
        e = err[judged[:, j], j]
        count[j] = e.size
        if e.size:
            med = float(np.median(e))
            mad = 1.4826 * float(np.median(np.abs(e - med)))
            typical[j] = max(med, FLOOR_PX)
            threshold[j] = max(TYPICAL_FACTOR * typical[j], med + MAD_FACTOR * mad)
        else:
            threshold[j] = TYPICAL_FACTOR * FLOOR_PX
    return typical, threshold, count


def _wrong_part(labels: LabelSet, cv: CrossValidation, i: int, j: int, confident: np.ndarray, threshold: np.ndarray):
    """The other body part whose confident prediction sits on label ``j`` of image ``i`` (index, distance) or None."""
    best = None
    for m in range(len(labels.bodyparts)):
        if m == j or not confident[i, m]:
            continue
        d = float(np.linalg.norm(labels.xy[i, j] - cv.xy[i, m]))
        if d <= threshold[m] / 2 and (best is None or d < best[1]):
            best = (m, d)
    return best


def check_model_disagreement(
    labels: LabelSet, cv: CrossValidation, *, pcutoff: float = PCUTOFF
) -> tuple[list[Suspect], list[str]]:
    """Labels that a model which never saw their image contradicts: disagreement, missing and extra.

    A label is a "disagreement" when a prediction of confidence at least
    ``pcutoff`` lies more than its body part's threshold away (see
    :data:`TYPICAL_FACTOR` and :data:`MAD_FACTOR`); the score is the
    distance over that threshold.  A label sitting on another part's
    prediction says so (and two labels sitting on each other's predictions
    are one suspect: exchanged).  A left/right pair (``labels.pairs``) whose
    labels fit the predictions at least twice as well exchanged is one
    suspect too, at any typical error and from half ``pcutoff`` on.  "missing": an unlabeled part predicted with
    confidence at least :data:`MISSING_CONFIDENCE`; "extra": a labeled part
    predicted below :data:`EXTRA_CONFIDENCE` while that part is usually
    predicted confidently.  Images with fold -1 are not judged.
    """
    n, k = len(labels.images), len(labels.bodyparts)
    if cv.xy.shape != (n, k, 2) or len(cv.fold) != n:
        raise ValueError(f"cross-validation of shape {cv.xy.shape} does not fit {n} images x {k} body parts")
    notes: list[str] = []
    predicted = np.asarray(cv.fold) >= 0
    if not predicted.any():
        return [], ["model disagreement: no image has a cross-validated prediction"]
    if (~predicted).any():
        notes.append(
            f"model disagreement: {int((~predicted).sum())} image(s) without a held-out prediction are not judged"
        )
    has = ~np.isnan(labels.xy).any(axis=-1) & predicted[:, None]
    conf = np.nan_to_num(np.asarray(cv.confidence, dtype=np.float64), nan=0.0)
    confident = (conf >= pcutoff) & predicted[:, None]
    err = np.linalg.norm(labels.xy - cv.xy, axis=-1)
    typical, threshold, count = _robust_thresholds(err, has & confident)
    for j in np.flatnonzero(count < 5):
        notes.append(
            f"model disagreement: {labels.bodyparts[j]} has {count[j]} confident held-out predictions of a label; "
            f"its typical error is taken as {FLOOR_PX:g} px"
        )
    suspects, done = _exchanges(labels, cv, has & (conf >= pcutoff / 2), err, typical)
    suspects += _disagreements(labels, cv, has & confident, err, typical, threshold, confident, conf, done)
    suspects += _missing_and_extra(labels, cv, has, predicted, conf, pcutoff)
    return suspects, notes


def _exchanges(labels, cv, seen, err, typical) -> tuple[list[Suspect], set[tuple[int, int]]]:
    """Left/right pairs whose labels fit the predictions at least twice as well when exchanged.

    The score is ``own / (2 x exchanged)``: the error sum of the labels as
    they are over the error sum with the two exchanged, halved; a ratio, so it
    finds an exchange even when the models are rough.
    """
    parts, out, done = labels.bodyparts, [], set()
    for a, b in labels.pairs:
        if a not in parts or b not in parts:
            continue
        ja, jb = parts.index(a), parts.index(b)
        both = seen[:, ja] & seen[:, jb]
        own = err[:, ja] + err[:, jb]
        swapped = np.linalg.norm(labels.xy[:, ja] - cv.xy[:, jb], axis=-1) + np.linalg.norm(
            labels.xy[:, jb] - cv.xy[:, ja], axis=-1
        )
        gain_floor = 2 * FLOOR_PX
        for i in np.flatnonzero(both & (own >= 2 * swapped) & (own - swapped >= gain_floor)):
            score = min(SUSPECT_SCORE * own[i] / (2 * max(swapped[i], 1e-6)), 10.0)
            done.update({(int(i), ja), (int(i), jb)})
            out.append(
                Suspect(
                    labels.images[i],
                    (a, b),
                    "disagreement",
                    float(score),
                    f"{a} and {b} look exchanged: a model that never saw this image puts them "
                    f"{err[i, ja]:.1f} and {err[i, jb]:.1f} px from their labels, but only {swapped[i]:.1f} px "
                    f"in all from the labels exchanged (typical {typical[ja]:.1f} and {typical[jb]:.1f} px)",
                    np.stack([labels.xy[i, jb], labels.xy[i, ja]]),
                )
            )
    return out, done


def _disagreements(labels, cv, judged, err, typical, threshold, confident, conf, done) -> list[Suspect]:
    parts = labels.bodyparts
    out: list[Suspect] = []
    flagged = judged & (err > threshold[None, :])
    for i, j in zip(*np.nonzero(flagged)):
        i, j = int(i), int(j)
        if (i, j) in done:
            continue
        image, score = labels.images[i], float(SUSPECT_SCORE * err[i, j] / threshold[j])
        other = _wrong_part(labels, cv, i, j, confident, threshold)
        if other is not None and flagged[i, other[0]]:
            m = other[0]
            back = _wrong_part(labels, cv, i, m, confident, threshold)
            if back is not None and back[0] == j:
                done.add((i, m))
                out.append(
                    Suspect(
                        image,
                        (parts[j], parts[m]),
                        "disagreement",
                        max(score, float(err[i, m] / threshold[m])),
                        f"{parts[j]} and {parts[m]} look exchanged: each label is within "
                        f"{max(other[1], back[1]):.1f} px of where a model that never saw this image puts the other "
                        f"({err[i, j]:.1f} and {err[i, m]:.1f} px from their own predictions; "
                        f"typical {typical[j]:.1f} and {typical[m]:.1f} px)",
                        np.stack([labels.xy[i, m], labels.xy[i, j]]),
                    )
                )
                continue
        reason = (
            f"{parts[j]} is {err[i, j]:.1f} px from where a model that never saw this image puts it "
            f"(confidence {conf[i, j]:.2f}; typical {typical[j]:.1f} px)"
        )
        if other is not None:
            reason += f"; it sits {other[1]:.1f} px from the model's {parts[other[0]]}: placed on the wrong body part?"
        out.append(Suspect(image, (parts[j],), "disagreement", score, reason, cv.xy[i, j][None]))
    return out


def _missing_and_extra(labels, cv, has, predicted, conf, pcutoff) -> list[Suspect]:
    parts = labels.bodyparts
    high = max(float(pcutoff), MISSING_CONFIDENCE)
    low = min(float(pcutoff) / 4, EXTRA_CONFIDENCE)
    any_label = has.any(axis=1)
    out: list[Suspect] = []
    missing = predicted[:, None] & any_label[:, None] & np.isnan(labels.xy).any(axis=-1) & (conf >= high)
    for i, j in zip(*np.nonzero(missing)):
        score = SUSPECT_SCORE * (1.0 + (conf[i, j] - high) / max(1.0 - high, 1e-6))
        out.append(
            Suspect(
                labels.images[i],
                (parts[j],),
                "missing",
                float(score),
                f"{parts[j]} is not labeled, but a model that never saw this image finds it at "
                f"({cv.xy[i, j, 0]:.0f}, {cv.xy[i, j, 1]:.0f}) with confidence {conf[i, j]:.2f}",
                cv.xy[i, j][None],
            )
        )
    for j in range(len(parts)):
        usual = conf[has[:, j], j]
        if usual.size < 3 or float(np.median(usual)) < pcutoff:
            continue
        for i in np.flatnonzero(has[:, j] & (conf[:, j] < low)):
            score = SUSPECT_SCORE * (1.0 + (low - conf[i, j]) / low)
            out.append(
                Suspect(
                    labels.images[i],
                    (parts[j],),
                    "extra",
                    float(score),
                    f"{parts[j]} is labeled, but a model that never saw this image gives it confidence "
                    f"{conf[i, j]:.2f} there (median {float(np.median(usual)):.2f} on the other labels of {parts[j]}): "
                    f"not visible?",
                    np.full((1, 2), np.nan),
                )
            )
    return out
