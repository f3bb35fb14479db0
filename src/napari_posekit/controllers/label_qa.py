"""The Label QA widget's state and decisions, without napari or Qt.

- :func:`label_set` builds the :class:`~napari_posekit.core.label_suspects.LabelSet`
  the checks read from a keypoints layer's labels (the label session's store:
  images, body parts and the current, possibly unsaved, ``xy``) and what the
  project says about the body (skeleton, left/right pairs).
- :func:`swap_fix`, :func:`move_fix`, :func:`delete_fix` and :func:`fix_xy`:
  a suspect's fix as a new full ``xy`` array, for the label session's
  ``apply`` (one undoable, journaled edit); :func:`fixes` says which fixes a
  suspect allows.
- :class:`LabelQAController`: the report of the last run, the kind filter,
  the current suspect, the suspects marked correct in this session; the rows
  of the list and the scores per image for the plot.

A suspect counts as *fixed* as soon as its labels differ from the ones that
were checked, however that happened (a fix here, a drag in the Labeling
widget); an undo makes it open again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_posekit.core.label_suspects import KINDS, CheckReport, LabelSet, Suspect

__all__ = [
    "FIX_NAMES",
    "LabelQAController",
    "SuspectRow",
    "delete_fix",
    "fix_xy",
    "fixes",
    "label_set",
    "move_fix",
    "project_labels",
    "short_name",
    "swap_fix",
]

FIX_NAMES = {"swap": "swap", "move": "move to the suggestion", "delete": "delete"}
"""The fixes a suspect may allow, with words for edit labels."""

FIXED, CORRECT = "fixed", "marked correct"


def short_name(image: str) -> str:
    """``img0102`` for ``labeled-data/m4s1/img0102.png``."""
    name = str(image).replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


# --------------------------------------------------------------------------- the labels checked
def project_labels(root: Path | None) -> LabelSet | None:
    """Every saved label of the project at ``root`` (:func:`project_label_set`), or None when it has none."""
    if root is None or not (Path(root) / "config.yaml").is_file():
        return None
    from napari_posekit.core.label_suspects import project_label_set
    from napari_posekit.core.project import ProjectError

    try:
        return project_label_set(root)
    except (ProjectError, OSError, ValueError, KeyError):
        return None  # no labels saved yet, or files the checks cannot read: this layer's labels alone


def _folder(image: str) -> str:
    return str(image).replace("\\", "/").rsplit("/", 1)[0]


def label_set(
    images: Sequence[str],
    bodyparts: Sequence[str],
    xy: np.ndarray,
    *,
    root: str | Path | None = None,
    skeleton: Sequence[Sequence[str]] = (),
    pairs: Sequence[Sequence[str]] | None = None,
    machine: set[tuple[int, int]] | None = None,
    keep: set[str] | None = None,
    project: LabelSet | None = None,
) -> LabelSet:
    """The labels the checks read: a layer's images with at least one human label (and those named in ``keep``).

    ``machine`` holds ``(image row, body part)`` cells shown from machine labels
    nobody has reviewed: they are not human labels and are left out.
    ``project`` (:func:`project_labels`) adds the saved labels of the
    project's other ``labeled-data`` folders, so the checks learn what is usual
    from every image (its rows of the layer's own folders are replaced by the
    layer's labels), and gives the skeleton and the left/right pairs
    (``config.yaml``'s ``symmetric_pairs``, else the names). ``skeleton`` and
    ``pairs`` replace the project's when given.
    """
    from napari_posekit.core.training_labels import infer_symmetric_pairs

    xy = np.array(xy, dtype=float, copy=True)
    for i, b in machine or ():
        if 0 <= i < len(xy) and 0 <= b < xy.shape[1]:
            xy[i, b] = np.nan
    keep = {short_name(k) for k in keep or ()}
    rows = [i for i, image in enumerate(images) if (~np.isnan(xy[i])).any() or short_name(image) in keep]
    keys = [str(images[i]).replace("\\", "/") for i in rows]
    xy = xy[rows].reshape(len(rows), len(bodyparts), 2)
    known = set(bodyparts)
    project_skeleton, project_pairs = (), tuple(infer_symmetric_pairs(list(bodyparts)))
    if project is not None:
        project_skeleton, project_pairs = project.skeleton, project.pairs
        own = {_folder(image) for image in images}
        other = [i for i, image in enumerate(project.images) if _folder(image) not in own]
        if other:
            extra = np.full((len(other), len(bodyparts), 2), np.nan)
            for b, bp in enumerate(bodyparts):
                if bp in project.bodyparts:
                    extra[:, b] = project.xy[other, project.bodyparts.index(bp)]
            keys += [project.images[i] for i in other]
            xy = np.concatenate([xy, extra])
    chosen = skeleton if len(skeleton) else project_skeleton
    chosen_pairs = project_pairs if pairs is None else pairs
    return LabelSet(
        tuple(keys),
        tuple(bodyparts),
        xy,
        Path(root) if root is not None else (project.root if project is not None else None),
        tuple((str(a), str(b)) for a, b in chosen if a in known and b in known and a != b),
        tuple((str(a), str(b)) for a, b in chosen_pairs if a in known and b in known and a != b),
    )


# --------------------------------------------------------------------------- fixes
def _cells(images: Sequence[str], bodyparts: Sequence[str], suspect: Suspect) -> tuple[int, list[int]]:
    """The row of the suspect's image in ``images`` and its body parts' columns."""
    images = [str(i).replace("\\", "/") for i in images]
    key = suspect.image.replace("\\", "/")
    if key not in images:
        raise ValueError(f"{suspect.image} is not among these labels' images")
    missing = [bp for bp in suspect.bodyparts if bp not in bodyparts]
    if missing:
        raise ValueError(f"body parts {missing} are not among these labels' body parts")
    return images.index(key), [list(bodyparts).index(bp) for bp in suspect.bodyparts]


def swap_fix(xy: np.ndarray, row: int, a: int, b: int) -> np.ndarray:
    """``xy`` with body parts ``a`` and ``b`` of image ``row`` exchanged (a copy)."""
    new = np.array(xy, dtype=float, copy=True)
    new[row, [a, b]] = new[row, [b, a]]
    return new


def move_fix(xy: np.ndarray, row: int, parts: Sequence[int], suggested: np.ndarray) -> np.ndarray:
    """``xy`` with ``parts`` of image ``row`` at ``suggested`` (a NaN row deletes that label; a copy)."""
    new = np.array(xy, dtype=float, copy=True)
    new[row, list(parts)] = np.asarray(suggested, dtype=float).reshape(len(parts), 2)
    return new


def delete_fix(xy: np.ndarray, row: int, parts: Sequence[int]) -> np.ndarray:
    """``xy`` without the labels ``parts`` of image ``row`` (a copy)."""
    new = np.array(xy, dtype=float, copy=True)
    new[row, list(parts)] = np.nan
    return new


def fixes(suspect: Suspect, xy: np.ndarray, images: Sequence[str], bodyparts: Sequence[str]) -> tuple[str, ...]:
    """The fixes ``suspect`` allows on the labels ``xy`` now: a subset of ``("swap", "move", "delete")``.

    Swap: exactly two body parts, at least one labeled, not two labels at one
    point (a collapse or a duplicate image is not fixed by exchanging names).
    Move: a suggestion that changes something. Delete: at least one label there.
    """
    try:
        row, parts = _cells(images, bodyparts, suspect)
    except ValueError:
        return ()
    here = np.asarray(xy, dtype=float)[row, parts]
    labeled = ~np.isnan(here).any(axis=1)
    allowed = []
    if len(parts) == 2 and labeled.any() and suspect.kind not in ("collapse", "duplicate"):
        allowed.append("swap")
    suggested = suspect.suggested
    if suggested is not None and not _same(here, suggested):
        allowed.append("move")
    if labeled.any():
        allowed.append("delete")
    return tuple(allowed)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def fix_xy(
    fix: str, suspect: Suspect, xy: np.ndarray, images: Sequence[str], bodyparts: Sequence[str]
) -> tuple[np.ndarray, str]:
    """The labels after ``fix`` (``"swap"``, ``"move"`` or ``"delete"``) of ``suspect``, and the edit's label.

    Raises :class:`ValueError` when the suspect does not allow that fix.
    """
    row, parts = _cells(images, bodyparts, suspect)
    if fix not in fixes(suspect, xy, images, bodyparts):
        raise ValueError(f"cannot {FIX_NAMES.get(fix, fix)} {'/'.join(suspect.bodyparts)} in {suspect.image}")
    if fix == "swap":
        new = swap_fix(xy, row, parts[0], parts[1])
    elif fix == "move":
        new = move_fix(xy, row, parts, suspect.suggested)
    else:
        new = delete_fix(xy, row, parts)
    return new, f"QA: {FIX_NAMES[fix]} {'/'.join(suspect.bodyparts)} in {short_name(suspect.image)}"


# --------------------------------------------------------------------------- the list
@dataclass(frozen=True)
class SuspectRow:
    """One line of the suspect list."""

    suspect: Suspect
    rank: int  # 1 = most suspect, in the whole report
    status: str  # "", "fixed" or "marked correct"

    def texts(self) -> list[str]:
        s = self.suspect
        return [str(self.rank), short_name(s.image), ", ".join(s.bodyparts), s.kind, f"{s.score:.1f}", self.status]

    @property
    def done(self) -> bool:
        return bool(self.status)


ROW_COLUMNS = (
    ("#", "rank: 1 is the most suspect"),
    ("image", "the labeled image"),
    ("body parts", "the suspect labels"),
    ("kind", "which check found it"),
    ("score", "1 is the check's threshold; higher is stronger evidence"),
    ("", "fixed or marked correct in this session"),
)
"""The list's columns: header and tooltip."""


class LabelQAController:
    """What the Label QA widget shows: a report, a kind filter, the current suspect and what was done."""

    def __init__(self) -> None:
        self.report: CheckReport | None = None
        self.kind: str | None = None  # None: every kind
        self.current: Suspect | None = None
        self.correct: set[Suspect] = set()  # marked correct in this session (hidden from the list)
        self.scope: set[str] | None = None  # the images that can be shown and fixed (None: all)

    # -- the report ------------------------------------------------------------------
    def set_report(self, report: CheckReport | None, scope: Sequence[str] | None = None) -> None:
        """Show a new report (the filter stays when the new report has that kind).

        ``scope``: the images of the layer being checked; suspects of other
        images (the project's other folders, checked for context) are counted, not listed.
        """
        self.report = report
        self.scope = None if scope is None else {str(i).replace("\\", "/") for i in scope}
        self.correct = set()
        self.current = None
        if report is None or not any(s.kind == self.kind for s in self.listed()):
            self.kind = None

    def listed(self) -> list[Suspect]:
        """The report's suspects of the images in scope, not marked correct, in rank order."""
        if self.report is None:
            return []
        scope = self.scope
        return [s for s in self.report.suspects if s not in self.correct and (scope is None or s.image in scope)]

    def elsewhere(self) -> int:
        """How many suspects lie outside the scope (another folder of the project)."""
        if self.report is None or self.scope is None:
            return 0
        return sum(s.image not in self.scope for s in self.report.suspects)

    @property
    def labels(self) -> LabelSet | None:
        return self.report.labels if self.report is not None else None

    def status(self, suspect: Suspect, xy: np.ndarray | None = None, images: Sequence[str] | None = None) -> str:
        """``"marked correct"``, ``"fixed"`` (its labels changed since the check) or ``""``."""
        if suspect in self.correct:
            return CORRECT
        if xy is None or images is None or self.report is None:
            return ""
        labels = self.report.labels
        try:
            row, parts = _cells(images, labels.bodyparts, suspect)
            checked = labels.xy[labels.row(suspect.image), parts]
        except ValueError:
            return ""
        return "" if _same(np.asarray(xy, dtype=float)[row, parts], checked) else FIXED

    # -- the filter ------------------------------------------------------------------
    def kind_choices(self) -> list[tuple[str | None, str]]:
        """``(kind, text)`` for the filter: every kind first, then each kind found, with counts."""
        if self.report is None:
            return [(None, "every kind")]
        shown = self.listed()
        choices = [(None, f"every kind ({len(shown)})")]
        for kind, words in KINDS.items():
            n = sum(s.kind == kind for s in shown)
            if n:
                choices.append((kind, f"{words} ({n})"))
        return choices

    def set_kind(self, kind: str | None) -> None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown suspect kind {kind!r}")
        self.kind = kind

    def visible(self) -> list[Suspect]:
        """The suspects of the chosen kind, in rank order, without those marked correct."""
        return [s for s in self.listed() if self.kind is None or s.kind == self.kind]

    def rows(self, xy: np.ndarray | None = None, images: Sequence[str] | None = None) -> list[SuspectRow]:
        if self.report is None:
            return []
        rank = {s: k + 1 for k, s in enumerate(self.report.suspects)}
        return [SuspectRow(s, rank[s], self.status(s, xy, images)) for s in self.visible()]

    # -- choosing and deciding ---------------------------------------------------------
    def choose(self, suspect: Suspect | None) -> Suspect | None:
        self.current = suspect
        return suspect

    def first_on(self, image: str) -> Suspect | None:
        """The highest-ranked visible suspect of an image."""
        return next((s for s in self.visible() if s.image == image), None)

    def mark_correct(self, suspect: Suspect) -> None:
        """Hide ``suspect``: a person says its labels are right (the decision file is the core's)."""
        self.correct.add(suspect)
        if self.current is suspect:
            self.current = None

    def next_open(self, after: Suspect | None, xy: np.ndarray, images: Sequence[str]) -> Suspect | None:
        """The next visible suspect after ``after`` that is neither fixed nor marked (the first one otherwise)."""
        shown = self.visible()
        start = shown.index(after) + 1 if after in shown else 0
        for s in shown[start:] + shown[:start]:
            if not self.status(s, xy, images):
                return s
        return None

    # -- per image ---------------------------------------------------------------------
    def image_scores(self, images: Sequence[str]) -> np.ndarray:
        """The highest score of a visible suspect per image of ``images`` (0 for none)."""
        index = {str(k).replace("\\", "/"): i for i, k in enumerate(images)}
        scores = np.zeros(len(images))
        for s in self.visible():
            i = index.get(s.image)
            if i is not None:
                scores[i] = max(scores[i], s.score)
        return scores

    def frames(self, images: Sequence[str], xy: np.ndarray) -> tuple[list[int], set[int]]:
        """Rows of ``images`` with open visible suspects, and those whose every suspect is done."""
        index = {str(k).replace("\\", "/"): i for i, k in enumerate(images)}
        open_rows: set[int] = set()
        done_rows: set[int] = set()
        visible = set(self.visible())
        for s in self.report.suspects if self.report is not None else []:
            i = index.get(s.image)
            if i is None:
                continue
            if self.status(s, xy, images):
                done_rows.add(i)
            elif s in visible:
                open_rows.add(i)
        return sorted(open_rows), done_rows - open_rows

    # -- words ---------------------------------------------------------------------------
    def summary(self, xy: np.ndarray | None = None, images: Sequence[str] | None = None) -> str:
        """A short account of the report (what ran, counts per kind, time) and what was done since."""
        report = self.report
        if report is None:
            return "Not checked yet."
        mine = [s for s in report.suspects if self.scope is None or s.image in self.scope]
        n, checked = len(mine), len(report.labels.images)
        text = f"{checked} images checked ({', '.join(report.checks) or 'no checks'}) in {report.seconds:.1f} s: "
        if n:
            counts = {kind: sum(s.kind == kind for s in mine) for kind in KINDS}
            words = ", ".join(f"{c} {KINDS[kind]}" for kind, c in counts.items() if c)
            text += f"{n} suspect{'s' * (n != 1)} ({words})."
        else:
            text += "no suspects."
        if self.elsewhere():
            text += f" {self.elsewhere()} more in the project's other folders (open them to see them)."
        if report.dismissed:
            text += f" {report.dismissed} marked correct earlier (not listed)."
        statuses = [self.status(s, xy, images) for s in mine]
        fixed, marked = statuses.count(FIXED), statuses.count(CORRECT)
        if fixed or marked:
            text += f" In this session: {fixed} fixed, {marked} marked correct."
        return text
