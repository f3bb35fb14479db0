"""The human labels of a DeepLabCut multi-animal project, as arrays.

A multi-animal project's ``config.yaml`` says ``multianimalproject: true`` and
lists the ``individuals``, the ``multianimalbodyparts`` every individual has
and the ``uniquebodyparts`` that belong to none. Each ``labeled-data/<video>``
folder holds ``CollectedData_<scorer>.h5`` (and ``.csv``) whose columns are
``scorer/individuals/bodyparts/coords`` with coords ``x`` and ``y``; the
unique parts are under the individual ``single``. An individual or a body
part without a column, or a NaN, is a point not labeled: an animal absent from
a frame is normal.

:func:`read_multianimal_labels` reads every folder into one
:class:`MultiAnimalLabels`; :func:`write_multianimal_labels` writes it back,
one CollectedData per folder, each file replaced atomically.

Everything here is napari-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .collected_data import COLUMN_NAMES_MULTIANIMAL, read_collected, to_string_index, write_collected
from .config import read_config
from .multianimal import SINGLE, check_individuals
from .project import ProjectError

__all__ = ["MultiAnimalLabels", "read_multianimal_labels", "write_multianimal_labels"]


@dataclass
class MultiAnimalLabels:
    """A multi-animal project's human labels.

    Attributes:
        images: DeepLabCut image keys ``labeled-data/<video>/imgNNNN.png``, one per row.
        individuals: The project's individuals.
        bodyparts: The ``multianimalbodyparts``.
        uniquebodyparts: The ``uniquebodyparts``.
        xy: ``(N, I, K, 2)`` float64, NaN where not labeled.
        unique_xy: ``(N, U, 2)`` float64.
        scorer: The scorer of the CollectedData files.
    """

    images: list[str]
    individuals: list[str]
    bodyparts: list[str]
    uniquebodyparts: list[str]
    xy: np.ndarray
    unique_xy: np.ndarray
    scorer: str

    def __post_init__(self) -> None:
        self.images = [str(i).replace("\\", "/") for i in self.images]
        self.individuals = check_individuals(self.individuals)
        self.bodyparts = [str(b) for b in self.bodyparts]
        self.uniquebodyparts = [str(b) for b in self.uniquebodyparts]
        n, i, k, u = len(self.images), len(self.individuals), len(self.bodyparts), len(self.uniquebodyparts)
        self.xy = np.asarray(self.xy, dtype=np.float64)
        if self.xy.shape != (n, i, k, 2):
            raise ValueError(
                f"xy must have shape (images, individuals, bodyparts, 2) = {(n, i, k, 2)}, got {self.xy.shape}"
            )
        self.unique_xy = np.asarray(self.unique_xy, dtype=np.float64)
        if self.unique_xy.size == 0 and self.unique_xy.shape != (n, u, 2):
            self.unique_xy = np.full((n, u, 2), np.nan)
        if self.unique_xy.shape != (n, u, 2):
            raise ValueError(
                f"unique_xy must have shape (images, uniquebodyparts, 2) = {(n, u, 2)}, got {self.unique_xy.shape}"
            )
        if len(set(self.images)) != n:
            twice = sorted({p for p in self.images if self.images.count(p) > 1})
            raise ValueError(f"images listed twice: {twice[:5]}")


def _project_lists(project: Path):
    """``(config, individuals, bodyparts, uniquebodyparts)`` of a multi-animal project, checked."""
    config = read_config(project)
    path = config.path
    if not config.multianimal:
        raise ProjectError("not a multi-animal project (multianimalproject is not true)", path)
    try:
        individuals = check_individuals(config.get("individuals") or [])
    except ValueError as err:
        raise ProjectError(f"individuals: {err}", path) from err
    if not individuals:
        raise ProjectError("a multi-animal project needs a list of individuals", path)
    if SINGLE in individuals:
        raise ProjectError(f"{SINGLE!r} cannot name an individual: DeepLabCut keeps unique body parts under it", path)
    bodyparts = [str(b) for b in config.get("multianimalbodyparts") or []]
    unique = [str(b) for b in config.get("uniquebodyparts") or []]
    both = bodyparts + unique
    if len(set(both)) != len(both):
        raise ProjectError(f"body parts listed twice in multianimalbodyparts and uniquebodyparts: {both}", path)
    return config, individuals, bodyparts, unique


def _collected_file(folder: Path, scorer: str) -> Path | None:
    for suffix in (".h5", ".csv"):
        path = folder / f"CollectedData_{scorer}{suffix}"
        if path.is_file():
            return path
    return None


def _folder_arrays(df: pd.DataFrame, path: Path, individuals, bodyparts, unique):
    """``(image keys, xy, unique_xy)`` of one CollectedData, checked against the config's lists."""
    if df.columns.nlevels != 4:
        raise ProjectError(
            "single-animal labels (scorer/bodyparts/coords) in a multi-animal project; the columns must be "
            f"{'/'.join(COLUMN_NAMES_MULTIANIMAL)}",
            path,
        )
    columns = df.columns.droplevel("scorer")
    found_individuals = list(dict.fromkeys(columns.get_level_values("individuals")))
    strangers = [n for n in found_individuals if n not in individuals and n != SINGLE]
    if strangers:
        raise ProjectError(
            f"individuals {strangers} are not in config.yaml's individuals {individuals}; add them there or "
            "rename them in the file",
            path,
        )
    for name in found_individuals:
        parts = list(dict.fromkeys(columns[columns.get_level_values("individuals") == name].get_level_values(1)))
        allowed = unique if name == SINGLE else bodyparts
        extra = [p for p in parts if p not in allowed]
        if extra:
            where = "uniquebodyparts" if name == SINGLE else "multianimalbodyparts"
            raise ProjectError(
                f"body parts {extra} of {name!r} are not in config.yaml's {where} {allowed}",
                path,
            )
    flat = pd.DataFrame(df.to_numpy(np.float64), index=df.index, columns=columns)
    wanted = pd.MultiIndex.from_tuples(
        [(n, b, c) for n in individuals for b in bodyparts for c in ("x", "y")]
        + [(SINGLE, b, c) for b in unique for c in ("x", "y")]
    )
    values = flat.reindex(columns=wanted).to_numpy(np.float64)
    n, i, k, u = len(df), len(individuals), len(bodyparts), len(unique)
    xy = values[:, : i * k * 2].reshape(n, i, k, 2)
    unique_xy = values[:, i * k * 2 :].reshape(n, u, 2)
    keys = [str(key).replace("\\", "/") for key in to_string_index(df).index]
    return keys, xy, unique_xy


def read_multianimal_labels(project: str | os.PathLike) -> MultiAnimalLabels:
    """Read the labels of every ``labeled-data`` folder of a multi-animal project.

    ``project`` is the project folder or its ``config.yaml``. Each folder's
    ``CollectedData_<scorer>.h5`` is read (its ``.csv`` when there is no
    ``.h5``); folders without one have no labels yet. Rows keep their files'
    order, folders go by name.

    Raises:
        ProjectError: not a multi-animal project, duplicate individual names,
            an individual or body part in a file that config.yaml does not
            list, single-animal labels in the project; the message names the file.
    """
    config, individuals, bodyparts, unique = _project_lists(Path(project))
    root = config.project_folder
    scorer = str(config.get("scorer") or "")
    images: list[str] = []
    blocks, unique_blocks = [], []
    labeled = root / "labeled-data"
    folders = sorted(p for p in labeled.iterdir() if p.is_dir()) if labeled.is_dir() else []
    for folder in folders:
        path = _collected_file(folder, scorer)
        if path is None:
            continue
        df = read_collected(path)
        keys, xy, unique_xy = _folder_arrays(df, path, individuals, bodyparts, unique)
        images += keys
        blocks.append(xy)
        unique_blocks.append(unique_xy)
    i, k, u = len(individuals), len(bodyparts), len(unique)
    try:
        return MultiAnimalLabels(
            images=images,
            individuals=individuals,
            bodyparts=bodyparts,
            uniquebodyparts=unique,
            xy=np.concatenate(blocks) if blocks else np.zeros((0, i, k, 2)),
            unique_xy=np.concatenate(unique_blocks) if unique_blocks else np.zeros((0, u, 2)),
            scorer=scorer,
        )
    except ValueError as err:
        raise ProjectError(str(err), labeled) from err


def _folder_name(image: str) -> str:
    parts = image.split("/")
    if len(parts) != 3 or parts[0] != "labeled-data" or not parts[1] or not parts[2]:
        raise ProjectError(f"image keys look like labeled-data/<video>/<image>, got {image!r}")
    return parts[1]


def write_multianimal_labels(project: str | os.PathLike, labels: MultiAnimalLabels) -> list[Path]:
    """Write ``labels`` as one ``CollectedData_<scorer>.h5`` and ``.csv`` per ``labeled-data`` folder.

    The files have DeepLabCut's multi-animal layout (unique parts under
    ``single``, a row MultiIndex as DeepLabCut 2.2 and later write) and are each
    replaced atomically. The individuals and body parts must be config.yaml's.
    Returns the paths written.
    """
    config, individuals, bodyparts, unique = _project_lists(Path(project))
    root = config.project_folder
    strangers = [n for n in labels.individuals if n not in individuals]
    if strangers or labels.bodyparts != bodyparts or labels.uniquebodyparts != unique:
        raise ProjectError(
            f"the labels (individuals {labels.individuals}, body parts {labels.bodyparts}, unique "
            f"{labels.uniquebodyparts}) do not fit config.yaml (individuals {individuals}, multianimalbodyparts "
            f"{bodyparts}, uniquebodyparts {unique})",
            config.path,
        )
    if not labels.scorer:
        raise ProjectError("the labels need a scorer to name the CollectedData files", config.path)
    rows: dict[str, list[int]] = {}
    for r, image in enumerate(labels.images):
        rows.setdefault(_folder_name(image), []).append(r)
    columns = pd.MultiIndex.from_tuples(
        [(labels.scorer, n, b, c) for n in labels.individuals for b in bodyparts for c in ("x", "y")]
        + [(labels.scorer, SINGLE, b, c) for b in unique for c in ("x", "y")],
        names=COLUMN_NAMES_MULTIANIMAL,
    )
    written: list[Path] = []
    for name, picked in rows.items():
        folder = root / "labeled-data" / name
        if not folder.is_dir():
            raise ProjectError("no such labeled-data folder; extract the frames first", folder)
        n = len(picked)
        values = np.concatenate([labels.xy[picked].reshape(n, -1), labels.unique_xy[picked].reshape(n, -1)], axis=1)
        index = pd.MultiIndex.from_tuples([tuple(labels.images[r].split("/")) for r in picked])
        written += write_collected(pd.DataFrame(values, index=index, columns=columns), folder, labels.scorer)
    return written
