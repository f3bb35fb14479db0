"""npe2 reader for DeepLabCut projects and the Labeling widget's save.

Opening a ``labeled-data/<video>`` folder, a ``CollectedData_<scorer>.h5/.csv``
or a project's ``config.yaml`` gives the same layers: the folder's images as a
lazy stack and a keypoints Points layer with the labels, body parts, skeleton
and everything the Labeling widget needs to save back (metadata).

A multi-animal project (``multianimalproject: true``, or a CollectedData with
an ``individuals`` level) gives one point per labeled (individual, body part),
with ``individual`` and ``bodypart`` features, coloured by individual with one
symbol per body part; it is saved back in DeepLabCut's multi-animal layout
(:func:`save_multianimal`). A layer read from a SLEAP file is saved by
:func:`~napari_posekit._napari._sleap_reader.save_sleap_labels`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
from dask import delayed

from napari_posekit._napari.layers import (
    Key,
    colormap_colors,
    keypoints_layer_data,
    label_columns,
    multianimal_layer_data,
    outside_image,
)
from napari_posekit.controllers.labeling_multi import SINGLE, Columns
from napari_posekit.core.collected_data import (
    arrays_to_collected,
    collected_to_arrays,
    read_collected,
    to_string_index,
    update_collected,
    write_collected,
)
from napari_posekit.core.collected_data import index_style as collected_index_style
from napari_posekit.core.config import config_bodyparts, read_config, write_config
from napari_posekit.core.labeled_images import image_sizes
from napari_posekit.core.labels import LabelStore, journal_path
from napari_posekit.core.project import ProjectError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _project_of(folder: Path) -> Path | None:
    """The project folder of a ``labeled-data/<video>`` folder (with a config.yaml), if any."""
    project = folder.parent.parent
    return project if folder.parent.name == "labeled-data" and (project / "config.yaml").exists() else None


def _label_folders(path: Path) -> list[Path] | None:
    """The labeled-data folders ``path`` stands for, or None if it is not a project path."""
    if path.is_dir():
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()) or any(path.glob("CollectedData_*")):
            return [path]
        return None
    name = path.name
    if name.startswith("CollectedData_") and path.suffix.lower() in (".h5", ".csv"):
        return [path.parent]
    if name == "config.yaml" and (path.parent / "labeled-data").is_dir():
        return sorted(
            p for p in (path.parent / "labeled-data").iterdir() if p.is_dir() and not p.name.endswith("_labeled")
        )
    return None


def napari_get_reader(path):
    """A reader for DeepLabCut project paths, or None (never raises)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    try:
        folders = _label_folders(Path(path))
    except OSError as err:  # an unreadable folder: napari's contract is None, never an exception
        warnings.warn(f"PoseKit cannot read {path}: {err.strerror or err}", stacklevel=2)
        return None
    if not folders:
        return None

    def read(_path):
        layers = []
        for folder in folders:
            try:
                layers.extend(folder_layers(folder))
            except ProjectError as err:
                warnings.warn(f"PoseKit cannot open {folder}: {err}", stacklevel=2)
            except Exception as err:  # noqa: BLE001 - a reader must never crash the viewer
                warnings.warn(f"PoseKit cannot open {folder}: {type(err).__name__}: {err}", stacklevel=2)
        return layers or None

    return read


def _latest_machine_labels(folder: Path) -> Path | None:
    """The newest ``machinelabels-iter<N>.h5`` of a folder (DeepLabCut's refinement input)."""

    def iteration(p: Path) -> int:
        digits = "".join(ch for ch in p.stem.split("iter")[-1] if ch.isdigit())
        return int(digits or -1)

    found = sorted(folder.glob("machinelabels-iter*.h5"), key=iteration)
    return found[-1] if found else None


# Padding drawn where a frame is smaller than the largest image of its folder:
# dark grey diagonal stripes, which read as "no image here" on bright arenas and
# dark animals alike (a flat black would look like a dark part of the frame).
PAD_DARK, PAD_LIGHT, PAD_STRIPE = 34, 58, 8


def padding(height: int, width: int) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 canvas of dark diagonal stripes (the padding pattern)."""
    rows, cols = np.ogrid[:height, :width]
    stripes = ((rows + cols) // PAD_STRIPE) % 2 == 0
    return np.repeat(np.where(stripes, PAD_LIGHT, PAD_DARK).astype(np.uint8)[..., None], 3, axis=2)


def load_padded(path: str, height: int, width: int) -> np.ndarray:
    """Image ``path`` as ``(height, width, 3)`` uint8 RGB, its pixels at the top-left.

    Pixel ``(row, col)`` of the file stays pixel ``(row, col)`` of the result, so
    the labels of the image need no shift; the rest (bottom and right) is the
    :func:`padding` pattern. Decoding goes through :func:`core.data.load_image`
    (grayscale, RGBA, 16-bit and JPEG frames become RGB). A file that cannot be
    decoded when shown gives a warning naming it and a frame of padding: the
    viewer keeps working.
    """
    from napari_posekit.core.data import load_image  # torch: imported when the first frame is shown

    try:
        image = load_image(path)
    except Exception as err:  # noqa: BLE001 - shown lazily inside napari: a bad file must not crash the view
        warnings.warn(f"PoseKit cannot decode {path}: {err}", stacklevel=2)
        return padding(height, width)
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    out = padding(height, width)
    out[: min(h, height), : min(w, width)] = image[:height, :width]
    return out


def image_stack(paths: list[Path], sizes: list[tuple[int, int]]) -> da.Array:
    """One lazy ``(n, H, W, 3)`` uint8 stack of a folder's images (one decoded when shown).

    Images of different sizes are padded at the bottom and right to the largest
    width and height (:func:`load_padded`). Padding at the top-left corner keeps
    every label coordinate exactly as in CollectedData (DeepLabCut's pixel
    coordinates of that image), so nothing is shifted on reading or saving, the
    core and the other widgets (which find images by their names and index
    labels by their pixels) see the same numbers, and a label can be checked
    against its own image's width and height. Centring or scaling would need
    per-frame offsets that every reader and writer of labels would have to apply.
    """
    height = max(h for _, h in sizes)
    width = max(w for w, _ in sizes)
    frames = [da.from_delayed(delayed(load_padded)(str(p), height, width), (height, width, 3), np.uint8) for p in paths]
    return da.stack(frames)


def _outside_warning(folder: Path, files: list[str], sizes: list[tuple[int, int]], outside: np.ndarray) -> str:
    """Warning text naming the images whose labels lie outside them (with their sizes)."""
    frames = np.flatnonzero(outside.any(axis=1))
    named = ", ".join(f"{files[i]} ({sizes[i][0]}x{sizes[i][1]})" for i in frames[:5])
    more = f" and {len(frames) - 5} more" if len(frames) > 5 else ""
    return (
        f"{folder}: {int(outside.sum())} labels lie outside their own image in {len(frames)} images: "
        f"{named}{more}; they are shown (in the padding or beyond) and kept as they are"
    )


def _multianimal_columns(config, df, labels_file) -> Columns | None:
    """The ``(individual, body part)`` columns of a multi-animal folder, or None for one animal.

    The config's ``individuals``, ``multianimalbodyparts`` and ``uniquebodyparts``
    come first; individuals and parts only the labels file has are added (with a
    warning) so that nothing is lost on saving. A 4-level CollectedData without a
    multi-animal config is read from its own columns.
    """
    multi = bool((config or {}).get("multianimalproject"))
    if not multi and (df is None or df.columns.nlevels != 4):
        return None
    if df is not None and df.columns.nlevels != 4:
        raise ProjectError(
            "single-animal labels (scorer/bodyparts/coords) in a multi-animal project; DeepLabCut's multi-animal "
            "labels have the columns scorer/individuals/bodyparts/coords",
            labels_file,
        )
    individuals, parts, unique = [], [], []
    if multi:
        individuals = [str(i) for i in config.get("individuals") or []]
        parts = [str(b) for b in config.get("multianimalbodyparts") or []]
        unique = [str(u) for u in config.get("uniquebodyparts") or []]
    if df is not None and df.columns.nlevels == 4:
        found = df.columns.droplevel(["scorer", "coords"]).unique()
        extra = [(i, b) for i, b in found if (i == SINGLE and b not in unique) or (i != SINGLE and b not in parts)]
        extra += [(i, b) for i, b in found if i != SINGLE and i not in individuals]
        if multi and extra:
            warnings.warn(
                f"{labels_file}: individuals or body parts {sorted(set(extra))} are not in the config; "
                "they are shown and kept",
                stacklevel=3,
            )
        individuals += [i for i in dict.fromkeys(i for i, _ in found) if i != SINGLE and i not in individuals]
        parts += [b for b in dict.fromkeys(b for i, b in found if i != SINGLE) if b not in parts]
        unique += [b for b in dict.fromkeys(b for i, b in found if i == SINGLE) if b not in unique]
    if not individuals:
        raise ProjectError("a multi-animal project lists no individuals in its config.yaml", labels_file)
    try:
        return Columns(tuple(individuals), tuple(parts), tuple(unique))
    except ValueError as err:
        raise ProjectError(f"{err}; fix the config's individuals and body parts", labels_file) from err


def _multianimal_arrays(df, columns: Columns) -> tuple[list[str], list[str], np.ndarray]:
    """``(image paths, column names, (n, C, 2) xy)`` of a 4-level CollectedData; absent cells are NaN."""
    import pandas as pd

    scorer = df.columns.get_level_values("scorer")[0]
    wanted = [(scorer, ind, bp, c) for ind, bp in columns.pairs for c in ("x", "y")]
    values = df.reindex(columns=pd.MultiIndex.from_tuples(wanted, names=df.columns.names)).to_numpy(np.float64)
    images = [str(i) for i in to_string_index(df).index]
    return images, columns.names, values.reshape(len(df), len(columns), 2)


def folder_layers(folder: Path) -> list[tuple]:
    """Image stack + keypoints layer data for one ``labeled-data/<video>`` folder."""
    folder = Path(folder)
    project = _project_of(folder)
    config = read_config(project / "config.yaml") if project else None
    prefix = f"labeled-data/{folder.name}/"
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    collected = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    labels_file = collected[0] if collected else None
    xy_by_image, file_bodyparts, index_style = {}, [], "multi"
    df = read_collected(labels_file) if labels_file is not None else None
    columns = _multianimal_columns(config, df, labels_file)
    if df is not None:
        index_style = collected_index_style(df)
        if columns is not None:
            names, file_bodyparts, xy = _multianimal_arrays(df, columns)
        else:
            names, file_bodyparts, xy = collected_to_arrays(df)
        xy_by_image = {name.replace("\\", "/").split("/")[-1]: v for name, v in zip(names, xy)}
        missing = sorted(set(xy_by_image) - set(files))
        if missing:
            warnings.warn(
                f"{labels_file}: {len(missing)} labeled images are not in {folder} (e.g. {missing[:3]}); "
                "their labels are kept in the file but not shown",
                stacklevel=2,
            )

    machine_xy, machine_bodyparts, machine_file = {}, [], _latest_machine_labels(folder)
    if columns is not None:  # one column per (individual, body part)
        file_bodyparts = bodyparts = columns.names
        if machine_file is not None:
            warnings.warn(f"{machine_file}: machine labels of several animals are not shown (yet)", stacklevel=2)
        machine_file = None
    if machine_file is not None:
        mnames, machine_bodyparts, mxy = collected_to_arrays(read_collected(machine_file, likelihood=True))
        machine_xy = {name.replace("\\", "/").split("/")[-1]: v for name, v in zip(mnames, mxy)}

    if columns is None:
        bodyparts = config_bodyparts(config) if config else list(file_bodyparts or machine_bodyparts)
    extra = [bp for bp in file_bodyparts if bp not in bodyparts]
    if extra:
        warnings.warn(
            f"{labels_file}: body parts {extra} are not in the config's {bodyparts}; they are shown and kept",
            stacklevel=2,
        )
        bodyparts = bodyparts + extra
    if not files:
        raise ProjectError("holds no images (.png/.jpg) to label", folder)
    known = image_sizes(folder)  # headers only
    sizes = [known[f] for f in files]

    xy = np.full((len(files), len(bodyparts), 2), np.nan)
    for i, name in enumerate(files):
        if name in xy_by_image:
            for b, bp in enumerate(file_bodyparts):
                xy[i, bodyparts.index(bp)] = xy_by_image[name][b]
    # machine labels (DeepLabCut's machinelabels-iter<N>.h5) fill only what no human labeled
    machine_cells = []
    for i, name in enumerate(files):
        for b, bp in enumerate(machine_bodyparts):
            if name in machine_xy and bp in bodyparts:
                k = bodyparts.index(bp)
                if np.isnan(xy[i, k]).any() and not np.isnan(machine_xy[name][b]).any():
                    xy[i, k] = machine_xy[name][b]
                    machine_cells.append([i, k])
    outside = outside_image(xy, sizes)
    if outside.any():
        warnings.warn(_outside_warning(folder, files, sizes, outside), stacklevel=2)

    stack = image_stack([folder / f for f in files], sizes)
    scorer = (config or {}).get("scorer") or (labels_file.stem.removeprefix("CollectedData_") if labels_file else "")
    skeleton = [list(e) for e in (config or {}).get("skeleton") or [] if len(e) == 2]
    target = labels_file.with_suffix(".h5") if labels_file else folder / f"CollectedData_{scorer}.h5"
    metadata = {
        Key.IMAGES: [prefix + f for f in files],
        Key.SKELETON: skeleton,
        Key.SCORER: scorer,
        Key.FOLDER: str(folder),
        Key.LABELS_FILE: str(target),
        Key.JOURNAL: str(journal_path(target)),
        Key.INDEX_STYLE: index_style,
        Key.KEPT_ROWS: sorted(xy_by_image),  # images that had a row in the file stay in it
        Key.CONFIG: str(project / "config.yaml") if project else None,
        Key.MACHINE_CELLS: machine_cells,  # (image, body part) shown from machine labels, not yet reviewed
        Key.IMAGE_SIZES: [[int(w), int(h)] for w, h in sizes],  # each image's own (width, height)
    }
    size = max(4.0, float((config or {}).get("dotsize", 8)))
    if columns is not None:
        points = multianimal_layer_data(xy, columns, name=f"{folder.name} keypoints", size=size, metadata=metadata)
    else:
        colors = colormap_colors(str((config or {}).get("colormap") or "rainbow"), bodyparts)
        points = keypoints_layer_data(
            xy, bodyparts, name=f"{folder.name} keypoints", size=size, metadata=metadata, colors=colors
        )
    image_meta = {Key.FOLDER: str(folder), Key.IMAGE_SIZES: metadata[Key.IMAGE_SIZES]}
    image = (stack, {"name": folder.name, "rgb": True, "metadata": image_meta}, "image")
    return [image, points]


def save_labels(store: LabelStore, layer) -> tuple[Path, Path]:
    """Write the store's labels to the layer's CollectedData (.h5 + .csv), atomically.

    The rows are :func:`~napari_posekit.core.collected_data.update_collected`'s:
    images with at least one label and every row the file had; the index
    style of the existing file is kept.
    """
    meta = layer.metadata
    if str(meta.get("source", "")).lower().endswith(".slp"):  # a SLEAP file's layer: a SLEAP file beside it
        from napari_posekit._napari._sleap_reader import save_sleap_labels

        path = save_sleap_labels(store, layer)
        return path, path
    if not meta.get(Key.LABELS_FILE) or not meta.get(Key.SCORER):
        raise ProjectError("this keypoints layer was not opened from a DeepLabCut project folder")
    xy = np.asarray(store.xy)
    columns = label_columns(meta)
    if columns is not None:
        h5, csv = save_multianimal(meta[Key.LABELS_FILE], store.images, columns, xy, meta[Key.SCORER], meta)
    else:
        h5, csv = update_collected(
            meta[Key.LABELS_FILE],
            store.images,
            store.bodyparts,
            xy,
            meta[Key.SCORER],
            index_style=meta[Key.INDEX_STYLE],
        )
    if meta.get(Key.CONFIG):  # the skeleton is edited in the widget and belongs to the project
        config = read_config(meta[Key.CONFIG])
        skeleton = [list(e) for e in meta.get(Key.SKELETON, [])]
        if [list(e) for e in config.get("skeleton") or []] != skeleton:
            config["skeleton"] = skeleton
            write_config(meta[Key.CONFIG], config)
    labeled = {name.split("/")[-1] for name, placed in zip(store.images, (~np.isnan(xy)).any(axis=(1, 2))) if placed}
    meta[Key.KEPT_ROWS] = sorted(set(meta.get(Key.KEPT_ROWS, [])) | labeled)
    return h5, csv


def save_multianimal(
    target, images: list[str], columns: Columns, xy: np.ndarray, scorer: str, meta
) -> tuple[Path, Path]:
    """Write ``(n, C, 2)`` multi-animal labels as DeepLabCut's 4-level CollectedData (.h5 + .csv), atomically.

    Columns are ``scorer/individuals/bodyparts/coords``, the unique parts
    under ``single``. As for one animal, an image gets a row when it has a
    label or had a row in the file, and rows and columns only the file has
    (images missing from the folder, individuals no longer in the config) are kept.
    """
    import pandas as pd

    from napari_posekit.core.collected_data import _with_rows_of

    target = Path(target)
    old = None
    for path in (target.with_suffix(".h5"), target.with_suffix(".csv")):
        if path.is_file():
            old = read_collected(path)
            break
    if old is not None and old.columns.nlevels != 4:
        raise ProjectError("holds single-animal labels; save the multi-animal labels elsewhere", target)
    had = {str(i).replace("\\", "/").split("/")[-1] for i in to_string_index(old).index} if old is not None else set()
    placed = ~np.isnan(xy).any(axis=2)
    rows = [i for i, image in enumerate(images) if image.split("/")[-1] in had or placed[i].any()]
    style = meta.get(Key.INDEX_STYLE, "multi") if old is None else collected_index_style(old)
    df = arrays_to_collected([images[i] for i in rows], columns.names, xy[rows], scorer, index_style=style)
    df.columns = pd.MultiIndex.from_tuples(
        [(scorer, ind, bp, c) for ind, bp in columns.pairs for c in ("x", "y")],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    if old is not None:
        df = _with_rows_of(df, old)
    return write_collected(df, target, scorer)
