"""Label QA: run the checks, merge and rank what they find, remember what a person judged correct, write the CSV.

:func:`iter_check_labels` runs the fast checks (:mod:`.label_checks`), and on
request the cross-validated model and its checks (:mod:`.label_cv`), merges
the suspects of one mistake (:func:`rank_suspects`) and leaves out those a
person marked as correct (:func:`mark_correct`).

Decisions live beside the labels, one file per ``labeled-data/<folder>``
(``label_checks.json``). A decision names the image, the kind of suspect, its
body parts and where those labels were when it was made; it dismisses the
same suspect only while the labels stay there (within 0.01 px), so a label
edited afterwards is judged again. A decisions file that cannot be read is
never overwritten: marking raises :class:`DecisionsError`, a run of the
checks says so in its notes.

Everything here is napari-free and torch-free at import.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ._generators import drive
from .filesafety import atomic_write_text
from .label_suspects import KINDS, CheckReport, LabelSet, Suspect, project_label_set

__all__ = [
    "CSV_COLUMNS",
    "DECISIONS_FILE",
    "FOLDS",
    "MAX_MINUTES",
    "DecisionsError",
    "check_labels",
    "decisions_path",
    "default_csv_path",
    "dismissed_by",
    "iter_check_labels",
    "mark_correct",
    "rank_suspects",
    "read_decisions",
    "summary",
    "training_warnings",
    "write_suspects_csv",
]

DECISIONS_FILE = "label_checks.json"
"""Name of the decisions file in each ``labeled-data/<folder>``."""

CSV_COLUMNS = ("rank", "image", "bodypart", "kind", "score", "reason", "suggested_x", "suggested_y", "evidence")
"""Columns of the suspects CSV, in order."""

FOLDS = 5
"""Folds of the cross-validation (each image is predicted by a model that did not see it)."""

MAX_MINUTES = 10.0
"""Time budget of the cross-validation, all folds together."""

MOVED_PX = 0.01
"""A label that moved more than this since a decision is judged again."""

STRONG_SWAP = 2.0
"""Score from which training warns about a left/right swap by itself (not only in the count of suspects)."""

MERGED_WEIGHT = 0.5
"""Share of the other kinds' scores added to the strongest suspect's when suspects merge."""

_KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}


class DecisionsError(ValueError):
    """A decisions file cannot be read or written; the message names it and the reason."""


# --------------------------------------------------------------------------- merging and ranking
def _strength_key(s: Suspect) -> tuple:
    """Strongest first; ties in kind order, then body parts, then reason (deterministic)."""
    return (-float(s.score), _KIND_ORDER.get(s.kind, len(_KIND_ORDER)), s.bodyparts, s.reason)


def _overlapping_groups(suspects: list[Suspect]) -> list[list[Suspect]]:
    """Suspects of one image grouped by shared body parts (transitively), each group strongest first."""
    parent = list(range(len(suspects)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, s in enumerate(suspects):
        for part in s.bodyparts:
            if part in owner:
                parent[find(i)] = find(owner[part])
            else:
                owner[part] = i
    groups: dict[int, list[Suspect]] = {}
    for i, s in enumerate(suspects):
        groups.setdefault(find(i), []).append(s)
    return [sorted(group, key=_strength_key) for group in groups.values()]


def _merged_suggestion(group: list[Suspect], parts: tuple[str, ...], labels: LabelSet | None) -> np.ndarray | None:
    """Each part's fix from the strongest suspect that has one; the current label where none does.

    None when the strongest suspect suggests nothing, or when a part has no
    fix and there are no labels to keep it where it is.
    """
    if group[0].suggested is None:
        return None
    rows: dict[str, np.ndarray] = {}
    for s in group:
        if s.suggested is not None:
            for part, xy in zip(s.bodyparts, s.suggested):
                rows.setdefault(part, xy)
    suggestion = np.full((len(parts), 2), np.nan)
    for i, part in enumerate(parts):
        if part in rows:
            suggestion[i] = rows[part]
        elif labels is not None and part in labels.bodyparts and group[0].image in labels.images:
            suggestion[i] = labels.xy[labels.row(group[0].image), labels.bodyparts.index(part)]
        else:
            return None
    return suggestion


def _brief(reason: str, limit: int = 140) -> str:
    reason = reason.strip().rstrip(".")
    return reason if len(reason) <= limit else reason[: limit - 1].rstrip() + "…"


def _merge(group: list[Suspect], labels: LabelSet | None) -> Suspect:
    """One suspect for a group: the strongest's kind, fix and reason, the others as evidence."""
    base = group[0]
    if len(group) == 1:
        return base
    parts = list(base.bodyparts)
    for s in group[1:]:
        parts.extend(p for p in s.bodyparts if p not in parts)
    best_other: dict[str, float] = {}
    for s in group[1:]:
        if s.kind != base.kind:
            best_other[s.kind] = max(best_other.get(s.kind, 0.0), float(s.score))
    score = float(base.score) + MERGED_WEIGHT * sum(best_other[k] for k in sorted(best_other))
    evidence = list(base.evidence)
    for s in group[1:]:
        for kind in (s.kind, *s.evidence):
            if kind != base.kind and kind not in evidence:
                evidence.append(kind)
    others = [_brief(s.reason) for s in group[1:] if s.reason.strip()]
    reason = base.reason.strip()
    if others:
        reason = f"{reason.rstrip('.')}. Also: {'; '.join(others)}."
    return Suspect(
        image=base.image,
        bodyparts=tuple(parts),
        kind=base.kind,
        score=score,
        reason=reason,
        suggested=_merged_suggestion(group, tuple(parts), labels),
        evidence=tuple(evidence),
    )


def rank_suspects(suspects: Iterable[Suspect], labels: LabelSet | None = None) -> list[Suspect]:
    """One suspect per mistake, most suspect first.

    Suspects of one image whose body parts overlap (directly or through
    another suspect) merge into the strongest: its kind, suggestion and
    reason come first, the other kinds go to ``evidence`` and their reasons
    are appended. The merged score is the strongest score plus half the best
    score of each other kind that agrees. Body parts the strongest suspect's
    fix does not cover take the fix of the next strongest that has one, else
    stay where they are (from ``labels``; without labels the merged suspect
    has no fix). Ties are broken by image, kind, body parts and reason, so the
    order does not depend on the order of the input.
    """
    by_image: dict[str, list[Suspect]] = {}
    for s in suspects:
        by_image.setdefault(s.image, []).append(s)
    merged = [
        _merge(group, labels)
        for image in sorted(by_image)
        for group in _overlapping_groups(sorted(by_image[image], key=_strength_key))
    ]
    return sorted(merged, key=lambda s: (-s.score, s.image, *_strength_key(s)[1:]))


# --------------------------------------------------------------------------- decisions
def decisions_path(labels: LabelSet, image: str) -> Path:
    """The decisions file of an image: ``label_checks.json`` in the image's ``labeled-data/<folder>``."""
    return labels.image_path(image).parent / DECISIONS_FILE


def _read_file(path: Path) -> list[dict]:
    """The decisions of one file ([] when there is none); :class:`DecisionsError` when it cannot be read."""
    if not path.is_file():
        return []
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DecisionsError(f"{path}: cannot read the label check decisions ({err}); fix or remove the file") from err
    decisions = content.get("decisions") if isinstance(content, dict) else None
    if not isinstance(decisions, list) or not all(_valid_decision(d) for d in decisions):
        raise DecisionsError(
            f"{path}: not a label check decisions file (a 'decisions' list of image, kind, bodyparts and xy "
            "expected); fix or remove the file"
        )
    return decisions


def _valid_decision(d: Any) -> bool:
    if not isinstance(d, dict) or not isinstance(d.get("image"), str) or not isinstance(d.get("kind"), str):
        return False
    parts, xy = d.get("bodyparts"), d.get("xy")
    return (
        isinstance(parts, list)
        and isinstance(xy, list)
        and len(parts) == len(xy)
        and all(isinstance(p, str) for p in parts)
        and all(isinstance(r, list) and len(r) == 2 and all(_coordinate(v) for v in r) for r in xy)
    )


def _coordinate(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _decision_files(labels: LabelSet) -> list[Path]:
    if labels.root is None:
        return []
    return sorted({decisions_path(labels, image) for image in labels.images})


def read_decisions(labels: LabelSet) -> list[dict]:
    """Every decision in the decisions files of the labels' folders (none without a project folder).

    Raises :class:`DecisionsError` naming a file that cannot be read.
    """
    return [d for path in _decision_files(labels) for d in _read_file(path)]


def _read_decisions_noting(labels: LabelSet) -> tuple[list[dict], list[str]]:
    """The decisions that can be read, and a note for each file that cannot."""
    decisions: list[dict] = []
    notes: list[str] = []
    for path in _decision_files(labels):
        try:
            decisions.extend(_read_file(path))
        except DecisionsError as err:
            notes.append(f"marked as correct: {err}; its decisions are not applied")
    return decisions, notes


def _current_xy(labels: LabelSet, image: str, bodyparts: Sequence[str]) -> np.ndarray | None:
    if image not in labels.images or any(p not in labels.bodyparts for p in bodyparts):
        return None
    return labels.xy[labels.row(image), [labels.bodyparts.index(p) for p in bodyparts]]


def _to_json_xy(xy: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in xy]


def _from_json_xy(rows: list) -> np.ndarray:
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=np.float64)


def _unmoved(then: np.ndarray, now: np.ndarray) -> bool:
    """The same positions within :data:`MOVED_PX` (NaN where NaN was)."""
    if then.shape != now.shape or not np.array_equal(np.isnan(then), np.isnan(now)):
        return False
    known = ~np.isnan(now)
    return bool(np.all(np.abs(then[known] - now[known]) <= MOVED_PX))


def _same_suspect(decision: dict, suspect: Suspect) -> bool:
    return (
        decision["image"] == suspect.image
        and decision["kind"] == suspect.kind
        and sorted(decision["bodyparts"]) == sorted(suspect.bodyparts)
    )


def dismissed_by(labels: LabelSet, suspect: Suspect, decisions: Sequence[dict]) -> bool:
    """Whether a person marked this suspect correct and its labels have not moved since."""
    for decision in decisions:
        if not _same_suspect(decision, suspect):
            continue
        order = [decision["bodyparts"].index(p) for p in suspect.bodyparts]
        now = _current_xy(labels, suspect.image, suspect.bodyparts)
        if now is not None and _unmoved(_from_json_xy(decision["xy"])[order], now):
            return True
    return False


def mark_correct(labels: LabelSet, suspect: Suspect) -> Path:
    """Record that a person judged this suspect's labels correct as they are; returns the decisions file.

    The decision replaces an earlier one for the same image, kind and body
    parts, and keeps every other. Raises :class:`DecisionsError` when the
    existing file cannot be read (it is left as it is) and ValueError for an
    image or body part the labels do not have.
    """
    now = _current_xy(labels, suspect.image, suspect.bodyparts)
    if now is None:
        raise ValueError(f"{suspect.image}: not an image with the body parts {', '.join(suspect.bodyparts)}")
    path = decisions_path(labels, suspect.image)
    decisions = [d for d in _read_file(path) if not _same_suspect(d, suspect)]
    decisions.append(
        {
            "image": suspect.image,
            "kind": suspect.kind,
            "bodyparts": list(suspect.bodyparts),
            "xy": _to_json_xy(now),
            "decision": "correct",
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    text = json.dumps({"version": 1, "decisions": decisions}, indent=1) + "\n"
    return atomic_write_text(path, text, error=DecisionsError)


def _apply_decisions(labels: LabelSet, suspects: list[Suspect]) -> tuple[list[Suspect], int, list[str]]:
    """``(suspects kept, number dismissed, notes about unreadable decision files)``."""
    decisions, notes = _read_decisions_noting(labels)
    if not decisions:
        return suspects, 0, notes
    kept = [s for s in suspects if not dismissed_by(labels, s, decisions)]
    return kept, len(suspects) - len(kept), notes


# --------------------------------------------------------------------------- running the checks
def _image_scores(labels: LabelSet, suspects: Sequence[Suspect]) -> np.ndarray:
    scores = np.zeros(len(labels.images))
    rows = {image: i for i, image in enumerate(labels.images)}
    for s in suspects:
        if s.image in rows:
            scores[rows[s.image]] = max(scores[rows[s.image]], float(s.score))
    return scores


def _cross_validated(
    labels: LabelSet, folds: int, max_minutes: float, stop, device, start: float, span: float
) -> Generator[dict, None, tuple[list[Suspect], list[str]]]:
    """The cross-validated model's suspects and notes, with progress from ``start`` over ``span``."""
    from .label_cv import check_model_disagreement, iter_cross_validate

    work = iter_cross_validate(labels, folds=folds, max_minutes=max_minutes, stop=stop, device=device)
    try:
        while True:
            try:
                item = next(work)
            except StopIteration as done:
                cv = done.value
                break
            fraction = min(max(float(item.get("progress", 0.0)), 0.0), 1.0)
            yield {"progress": start + span * fraction, "message": item.get("message", "cross-validating")}
    finally:
        work.close()
    suspects, notes = check_model_disagreement(labels, cv)
    return suspects, [*cv.notes, *notes]


def iter_check_labels(
    labels: LabelSet,
    *,
    cross_validate: bool = False,
    folds: int = FOLDS,
    max_minutes: float = MAX_MINUTES,
    apply_decisions: bool = True,
    stop: Callable[[], bool] | None = None,
    device=None,
) -> Generator[dict, None, CheckReport]:
    """Check a project's labels; yields ``{"progress": 0..1, "message": ...}`` and returns the report.

    The fast checks always run; ``cross_validate`` adds k-fold cross-validated
    predictions (``folds``, within ``max_minutes``; ``stop`` and ``device`` go
    to the training) and the checks on them. Suspects are merged and ranked
    (:func:`rank_suspects`); with ``apply_decisions`` those a person marked
    correct are left out and counted in ``dismissed``.
    """
    from .label_checks import fast_checks

    started = time.perf_counter()
    fast_span = 0.05 if cross_validate else 0.9
    yield {"progress": 0.0, "message": "checking the labels (swaps, geometry, collapses, duplicates)"}
    suspects, notes, checks = fast_checks(labels)
    suspects, notes, checks = list(suspects), list(notes), list(checks)
    yield {"progress": fast_span, "message": f"fast checks: {len(suspects)} found"}
    if cross_validate:
        found, cv_notes = yield from _cross_validated(
            labels, folds, max_minutes, stop, device, fast_span, 0.95 - fast_span
        )
        suspects.extend(found)
        notes.extend(cv_notes)
        checks.append("cross-validated model")
    ranked = rank_suspects(suspects, labels)
    dismissed = 0
    if apply_decisions:
        ranked, dismissed, decision_notes = _apply_decisions(labels, ranked)
        notes.extend(decision_notes)
    report = CheckReport(
        labels=labels,
        suspects=ranked,
        image_scores=_image_scores(labels, ranked),
        checks=checks,
        notes=notes,
        dismissed=dismissed,
        seconds=time.perf_counter() - started,
    )
    yield {"progress": 1.0, "message": f"{len(ranked)} suspect{'s' * (len(ranked) != 1)}"}
    return report


def check_labels(
    project_or_labels: LabelSet | str | os.PathLike,
    *,
    progress: Callable[[dict], None] | None = None,
    **options: Any,
) -> CheckReport:
    """:func:`iter_check_labels` run to the end on a :class:`LabelSet` or a project (folder or config.yaml)."""
    labels = project_or_labels
    if not isinstance(labels, LabelSet):
        labels = project_label_set(labels)
    return drive(iter_check_labels(labels, **options), progress)


# --------------------------------------------------------------------------- CSV and summary
def default_csv_path(root: str | os.PathLike) -> Path:
    """Where ``posekit check-labels`` writes its CSV by default: ``<project>/label-checks.csv``."""
    return Path(root) / "label-checks.csv"


def _number(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.2f}"


def _csv_reason(s: Suspect) -> str:
    reason = s.reason.strip()
    if s.suggested is not None and "delete" not in reason.lower():
        gone = [p for p, row in zip(s.bodyparts, s.suggested) if np.isnan(row).any()]
        if gone:
            reason = f"{reason.rstrip('.')}. Suggested fix: delete the {', '.join(gone)} label{'s' * (len(gone) > 1)}."
    return reason


def _csv_row(rank: int, s: Suspect) -> list[str]:
    if s.suggested is None:
        xs = ys = ""
    else:
        xs = ",".join(_number(v) for v in s.suggested[:, 0])
        ys = ",".join(_number(v) for v in s.suggested[:, 1])
        if not xs.strip(",") and not ys.strip(","):
            xs = ys = ""
    return [
        str(rank),
        s.image,
        ",".join(s.bodyparts),
        s.kind,
        f"{s.score:.3f}",
        _csv_reason(s),
        xs,
        ys,
        ",".join(s.evidence),
    ]


def write_suspects_csv(report: CheckReport, path: str | os.PathLike) -> Path:
    """Write the report's suspects, most suspect first, as a CSV (:data:`CSV_COLUMNS`); atomic.

    Several body parts of one suspect are comma-separated, in the same order
    in ``bodypart``, ``suggested_x`` and ``suggested_y``; a label the fix
    deletes has an empty coordinate, and a suspect without a fix empty columns.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, s in enumerate(report.suspects, start=1):
        writer.writerow(_csv_row(rank, s))
    return atomic_write_text(Path(path), buffer.getvalue())


def _counts(suspects: Sequence[Suspect]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in suspects:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], _KIND_ORDER.get(kv[0], 99))))


def summary(report: CheckReport, top: int = 5) -> str:
    """A few lines: what ran, counts per kind, the top suspects with reasons, notes, dismissed, time."""
    labels = report.labels
    ran = ", ".join(report.checks) or "none"
    lines = [f"{len(labels.images)} labeled images, {len(labels.bodyparts)} body parts; checks: {ran}"]
    if report.suspects:
        counts = ", ".join(f"{n} {KINDS.get(kind, kind)}" for kind, n in _counts(report.suspects).items())
        n = len(report.suspects)
        lines.append(f"{n} suspect{'s' * (n != 1)}: {counts}")
        for rank, s in enumerate(report.suspects[:top], start=1):
            also = f" (also {', '.join(s.evidence)})" if s.evidence else ""
            lines.append(f"  {rank}. {s.image} [{', '.join(s.bodyparts)}] {s.kind}{also}, score {s.score:.2f}")
            lines.append(f"     {s.reason}")
        if len(report.suspects) > top:
            lines.append(f"  ... and {len(report.suspects) - top} more")
    else:
        lines.append("no suspects")
    if report.dismissed:
        lines.append(f"{report.dismissed} marked as correct earlier (not listed)")
    lines.extend(f"note: {note}" for note in report.notes)
    lines.append(f"took {report.seconds:.1f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- before training
def _count_words(suspects: Sequence[Suspect]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in _counts(suspects).items())


def training_warnings(labels: LabelSet) -> list[str]:
    """Warnings before training from the fast checks (no model): each strong swap, then one count of suspects.

    Suspects marked as correct are not counted. A check that fails becomes a
    warning: training never stops for these checks.
    """
    try:
        from .label_checks import fast_checks

        found, _notes, _checks = fast_checks(labels)
        ranked, _dismissed, messages = _apply_decisions(labels, rank_suspects(found, labels))
    except Exception as err:  # noqa: BLE001 - a check must not stop training
        return [f"the label checks failed ({type(err).__name__}: {err}); training goes on"]
    for s in ranked:
        if s.kind == "swap" and s.score >= STRONG_SWAP:
            reason = s.reason.split(". Also:")[0].strip().rstrip(".")
            messages.append(f"{s.image}: {reason}; swapped? (trained as labeled)")
    if ranked:
        messages.append(
            f"{len(ranked)} label suspects ({_count_words(ranked)}): run 'posekit check-labels' "
            "or the Label QA widget to review them"
        )
    return messages
