"""Refining machine labels into human labels without ever losing a human label.

DeepLabCut's refinement loop: outlier frames are extracted with the network's
predictions beside them as *machine labels*
(``labeled-data/<video>/machinelabels-iter<i>.h5``, key ``df_with_missing``,
the network's scorer, coords ``x``, ``y``, ``likelihood``; its CSV copy is
``machinelabels.csv``), a person corrects them, and the corrected frames join
the human labels in ``CollectedData_<scorer>.h5/.csv``.

:func:`load_refinement` reads a ``labeled-data/<video>`` folder into a
:class:`Refinement`: one row per image (every image file in the folder and
every row of either label file), human and machine coordinates side by side.
:func:`save_refinement` (or :meth:`Refinement.save`) merges the person's work
back. The rules:

* Only images the person **accepted** (or edited by deleting a body part) take
  the edited coordinates; they become rows of CollectedData (scorer, index
  style and column order of the existing file) and leave the machine-label
  files, so they are not offered again.
* A body part the person **deleted** is NaN in CollectedData and stays NaN:
  nothing is filled in from machine labels later.
* Every other row and body part of CollectedData is written back exactly as it
  is on disk at the moment of saving (re-read then, so labels saved meanwhile
  by someone else are kept), bit for bit. Machine labels never overwrite or
  complete a human label; this is why :func:`napari_posekit.core.collected_data.merge_collected`,
  which fills human gaps from machine labels, is not used here: a deleted
  body part would come back.
* An image with both human labels and a machine-label row is a **conflict**:
  the human labels win (they are what :attr:`Refinement.xy` shows) unless the
  person accepted the image. Conflicts are listed on load and on save.
* Writes are atomic (:func:`~napari_posekit.core.collected_data.write_collected`):
  CollectedData is replaced first, then the machine-label files. A failure
  while writing CollectedData leaves every file as it was; a failure after it
  leaves the accepted rows in both files, where the human rows win, so nothing
  is lost either way.

The machine-label files themselves are :mod:`napari_posekit.core.machinelabels`
(re-exported here), the merge is :mod:`napari_posekit.core.refine_merge`.
:func:`align_xy` lays out coordinates kept in another order (a viewer layer's)
for the merge, and :func:`retrain_options` reads from a model folder's name how
to fine-tune that model on the merged labels.

Everything here is napari-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .collected_data import collected_to_arrays
from .config import config_bodyparts
from .machinelabels import MACHINE_CSV, find_machinelabels, machinelabels_path, read_machinelabels, write_machinelabels
from .project import IMAGE_EXTENSIONS, ProjectError
from .refine_files import _norm, _project_config, _read_human, _read_machine
from .refine_merge import SavedRefinement, save_refinement

__all__ = [
    "MACHINE_CSV",
    "Refinement",
    "SavedRefinement",
    "align_xy",
    "find_machinelabels",
    "load_refinement",
    "machinelabels_path",
    "read_machinelabels",
    "retrain_options",
    "save_refinement",
    "write_machinelabels",
]


@dataclass
class Refinement:
    """A ``labeled-data/<video>`` folder's human and machine labels, one row per image.

    Attributes
    ----------
    folder:
        The folder.
    scorer:
        The human scorer (``CollectedData_<scorer>``): the existing file's,
        else the project's ``scorer``.
    bodyparts:
        Column order of ``human``/``machine``: the CollectedData file's, else
        the project's, else the machine labels'.
    images:
        Image keys as in CollectedData's index joined with ``/``
        (``labeled-data/<video>/img042.png``), sorted: every image file in the
        folder and every image named by a label file.
    human, machine:
        ``(N, K, 2)`` float64 ``(x, y)``, NaN where there is no label.
    machine_likelihood:
        ``(N, K)``, NaN without a machine label.
    in_human, in_machine:
        ``(N,)`` whether the image has a row in CollectedData / in a machine-label file.
    conflicts:
        Images with human labels (at least one body part) and a machine-label
        row; the human labels are shown and kept unless the image is accepted.
    collected:
        The CollectedData file read (None when the folder has none yet).
    machine_files:
        The machine-label files read.
    """

    folder: Path
    scorer: str
    bodyparts: list[str]
    images: list[str]
    human: np.ndarray
    machine: np.ndarray
    machine_likelihood: np.ndarray
    in_human: np.ndarray
    in_machine: np.ndarray
    conflicts: list[str]
    collected: Path | None
    machine_files: list[Path]

    @property
    def human_labeled(self) -> np.ndarray:
        """``(N,)`` images with at least one human-labeled body part."""
        return np.isfinite(self.human).all(axis=2).any(axis=1) if len(self.images) else np.zeros(0, bool)

    @property
    def source(self) -> np.ndarray:
        """``(N,)`` where :attr:`xy` comes from: ``"human"``, ``"machine"`` or ``"none"``."""
        out = np.full(len(self.images), "none", dtype=object)
        out[self.in_machine & ~self.human_labeled] = "machine"
        out[self.human_labeled] = "human"
        return out

    @property
    def xy(self) -> np.ndarray:
        """``(N, K, 2)`` what to show: the human labels of an image that has any, else its machine labels."""
        return np.where(self.human_labeled[:, None, None], self.human, self.machine)

    def index_of(self, image: str | int) -> int:
        """Row of ``image``: a key, a file name (``img042.png``) or a row number."""
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            if not 0 <= int(image) < len(self.images):
                raise ValueError(f"image row {image} is outside 0..{len(self.images) - 1}")
            return int(image)
        key = _norm(str(image))
        if key in self._rows:
            return self._rows[key]
        matches = [i for i, k in enumerate(self.images) if k.rsplit("/", 1)[-1] == key]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ValueError(f"{image!r} is not an image of {self.folder}")
        raise ValueError(f"{image!r} names several images: {[self.images[i] for i in matches]}")

    @property
    def _rows(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.images)}

    def save(
        self,
        xy: np.ndarray,
        *,
        accepted: Iterable[str | int] = (),
        deleted: Iterable[tuple[str | int, str]] = (),
    ) -> SavedRefinement:
        """See :func:`save_refinement`."""
        return save_refinement(self, xy, accepted=accepted, deleted=deleted)


def load_refinement(folder: str | os.PathLike, *, scorer: str | None = None) -> Refinement:
    """Read a ``labeled-data/<video>`` folder's CollectedData and machine labels.

    ``scorer`` picks ``CollectedData_<scorer>`` when the folder has several
    (default: the only one, else the project's ``scorer`` for a new file).
    Raises :class:`ProjectError` for unreadable or multi-animal files, or when
    no scorer can be found for a folder without CollectedData.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ProjectError("not a folder", folder)
    config = _project_config(folder)
    human_df, human_path = _read_human(folder, scorer)
    machine_files, machine_rows = _read_machine(folder)

    if human_df is not None:
        scorer = str(human_df.columns.get_level_values("scorer")[0])
        keys, bodyparts, human_xy = collected_to_arrays(human_df)
        keys = [_norm(k) for k in keys]
    else:
        scorer = scorer or (str(config["scorer"]) if config is not None and config.get("scorer") else None)
        if not scorer:
            raise ProjectError("no CollectedData file and no project scorer: pass scorer=", folder)
        bodyparts = config_bodyparts(config) if config is not None else []
        if not bodyparts:
            for _, df in machine_files:
                bodyparts = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
        keys, human_xy = [], np.zeros((0, len(bodyparts), 2))

    on_disk = [
        f"labeled-data/{folder.name}/{p.name}"
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    images = sorted(set(keys) | set(machine_rows) | set(on_disk))
    rows = {k: i for i, k in enumerate(images)}
    n, k = len(images), len(bodyparts)
    human = np.full((n, k, 2), np.nan)
    in_human = np.zeros(n, bool)
    for j, key in enumerate(keys):
        human[rows[key]] = human_xy[j]
        in_human[rows[key]] = True
    machine = np.full((n, k, 2), np.nan)
    likelihood = np.full((n, k), np.nan)
    in_machine = np.zeros(n, bool)
    for key, parts in machine_rows.items():
        i = rows[key]
        in_machine[i] = True
        for b, bp in enumerate(bodyparts):
            if bp in parts:
                machine[i, b] = parts[bp][:2]
                likelihood[i, b] = parts[bp][2]
    labeled = np.isfinite(human).all(axis=2).any(axis=1) if n else np.zeros(0, bool)
    conflicts = [images[i] for i in np.flatnonzero(labeled & in_machine)]
    return Refinement(
        folder=folder,
        scorer=scorer,
        bodyparts=list(bodyparts),
        images=images,
        human=human,
        machine=machine,
        machine_likelihood=likelihood,
        in_human=in_human,
        in_machine=in_machine,
        conflicts=conflicts,
        collected=human_path,
        machine_files=[p for p, _ in machine_files],
    )


def align_xy(refinement: Refinement, images: Sequence[str], bodyparts: Sequence[str], xy: np.ndarray) -> np.ndarray:
    """Coordinates kept for other lists of images and body parts, laid out as :func:`save_refinement` takes them.

    Starts from :attr:`Refinement.xy` and replaces the row of every image in
    ``images`` (keys, file names or row numbers, see
    :meth:`Refinement.index_of`) by the matching row of ``xy``
    ``(len(images), len(bodyparts), 2)``, column by column for the body
    parts both lists share: a body part only the refinement has keeps its
    value, one only ``bodyparts`` has is left out.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape != (len(images), len(bodyparts), 2):
        raise ValueError(f"xy must have shape ({len(images)}, {len(bodyparts)}, 2), got {xy.shape}")
    rows = refinement.xy.copy()
    shared = [(b, refinement.bodyparts.index(bp)) for b, bp in enumerate(bodyparts) if bp in refinement.bodyparts]
    for i, image in enumerate(images):
        row = refinement.index_of(image)
        for b, col in shared:
            rows[row, col] = xy[i, b]
    return rows


_MODEL_FOLDER_SHUFFLE = re.compile(r"shuffle(\d+)")


def retrain_options(checkpoint: str | os.PathLike) -> dict[str, int | str]:
    """The training-set options a checkpoint's model was trained with, read from its model folder's name.

    Model folders are named as DeepLabCut names them
    (``<Task><date>-trainset95shuffle1[-block]``, see
    :func:`napari_posekit.core.workflow.model_folder`); the checkpoint sits in
    the folder or in its ``train/`` subfolder. Returns ``{"split": "block"}``
    for a block split and ``{"shuffle": n}`` for shuffle ``n``, each only when
    the name says so, ready to pass to
    :func:`~napari_posekit.core.workflow.train_project` so that retraining
    after refinement keeps the model's training and test images apart as before.
    """
    checkpoint = Path(checkpoint)
    folder = checkpoint.parent.parent if checkpoint.parent.name == "train" else checkpoint.parent
    options: dict[str, int | str] = {}
    if folder.name.endswith("-block"):
        options["split"] = "block"
    shuffle = _MODEL_FOLDER_SHUFFLE.search(folder.name)
    if shuffle:
        options["shuffle"] = int(shuffle.group(1))
    return options
