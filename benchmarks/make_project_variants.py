"""Build variants of the openfield project that have the shapes real projects have.

Writes complete DeepLabCut projects (config.yaml + labeled-data) outside the
repository, made from the real openfield project's 116 labeled frames::

    python benchmarks/make_project_variants.py OUTPUT_DIR

* ``openfield-variant``: frames 1, 4, 7, … rescaled (alternately x0.8 and x1.25)
  or cropped to another size, frames 2, 5, 8, … made grayscale, and the tail
  base hidden in 75 % of the frames (every frame but 0, 4, 8, …): the floor is
  painted back over it (the per-pixel median of all frames, which is the empty
  arena) and its label removed, so the part is really not visible there.
* ``openfield-closeup``: every frame cropped to a 160-px square around the
  mouse and upscaled 4x to 640 x 640, so the labeled parts span most of the
  frame, with the tail base hidden in the same 75 % of the frames.

``OUTPUT_DIR/<name>/scales.json`` maps each image (as CollectedData names it) to
the factor from openfield pixels to its own pixels, so errors can be compared
at the openfield scale.  Labels follow the images exactly (pixel centres map as
``(x + 0.5) * f - 0.5`` under a resize by ``f``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from napari_posekit.core.collected_data import (
    arrays_to_collected,
    collected_to_arrays,
    index_style,
    read_collected,
    write_collected,
)
from napari_posekit.core.config import read_config, write_config

HERE = Path(__file__).resolve().parent
OPENFIELD = Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data")) / (
    "dlc_openfield-Pranav-2018-10-30"
)
HIDDEN = "tailbase"
HIDE_RADIUS = 16  # openfield pixels: covers the tail base and the start of the tail


def hidden(index: int) -> bool:
    """The tail base is hidden in every frame but 0, 4, 8, …"""
    return index % 4 != 0


def _resize(image: Image.Image, xy: np.ndarray, f: float) -> tuple[Image.Image, np.ndarray]:
    w, h = image.size
    out = image.resize((round(w * f), round(h * f)), Image.BILINEAR)
    fx, fy = out.size[0] / w, out.size[1] / h
    return out, np.stack([(xy[:, 0] + 0.5) * fx - 0.5, (xy[:, 1] + 0.5) * fy - 0.5], axis=1)


def _crop(image: Image.Image, xy: np.ndarray, box: tuple[int, int, int, int]) -> tuple[Image.Image, np.ndarray]:
    return image.crop(box), xy - np.array(box[:2], dtype=np.float64)


def _hide(image: np.ndarray, floor: np.ndarray, centre: np.ndarray) -> np.ndarray:
    mask = Image.new("L", (image.shape[1], image.shape[0]), 0)
    x, y = centre
    ImageDraw.Draw(mask).ellipse([x - HIDE_RADIUS, y - HIDE_RADIUS, x + HIDE_RADIUS, y + HIDE_RADIUS], fill=255)
    m = np.asarray(mask)[..., None] > 0
    return np.where(m, floor, image)


def _window(xy: np.ndarray, side: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    centre = (np.nanmin(xy, axis=0) + np.nanmax(xy, axis=0)) / 2
    w, h = size
    left = int(np.clip(round(centre[0] - side / 2), 0, w - side))
    top = int(np.clip(round(centre[1] - side / 2), 0, h - side))
    return left, top, left + side, top + side


def build(kind: str, out: Path) -> Path:
    src = OPENFIELD / "labeled-data" / "m4s1"
    collected = read_collected(next(src.glob("CollectedData_*.h5")))
    keys, parts, xy_all = collected_to_arrays(collected)
    frames = [np.asarray(Image.open(OPENFIELD / k).convert("RGB")) for k in keys]
    floor = np.median(np.stack(frames), axis=0).astype(np.uint8)  # the mouse moves: the median is the arena
    k_hidden = parts.index(HIDDEN)
    project = out / f"openfield-{kind}"
    if project.exists():
        shutil.rmtree(project)
    folder = project / "labeled-data" / "m4s1"
    folder.mkdir(parents=True)
    new_xy = xy_all.copy()
    scales = {}
    for i, (key, frame) in enumerate(zip(keys, frames)):
        xy = xy_all[i].copy()
        if hidden(i):
            frame = _hide(frame, floor, xy[k_hidden])
            xy[k_hidden] = np.nan
        image = Image.fromarray(frame)
        f = 1.0
        if kind == "closeup":
            image, xy = _crop(image, xy, _window(xy_all[i], 160, image.size))
            image, xy = _resize(image, xy, 4.0)
            f = 4.0
        elif i % 3 == 1:
            if i % 9 == 7:  # a cropped frame: another size, the same pixels
                image, xy = _crop(image, xy, _window(xy_all[i], 320, image.size))
            else:
                f = 0.8 if i % 2 else 1.25
                image, xy = _resize(image, xy, f)
        elif i % 3 == 2:
            image = image.convert("L")
        image.save(folder / Path(key).name)
        new_xy[i] = xy
        scales[key] = f
    scorer = collected.columns.get_level_values("scorer")[0]
    write_collected(arrays_to_collected(keys, parts, new_xy, scorer, index_style(collected)), folder)
    config = read_config(OPENFIELD)
    config["project_path"] = str(project)
    config["video_sets"] = {}
    write_config(project / "config.yaml", config)
    (project / "scales.json").write_text(json.dumps(scales, indent=1))
    return project


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", type=Path)
    ap.add_argument("--kind", choices=["variant", "closeup"], nargs="+", default=["variant", "closeup"])
    args = ap.parse_args(argv)
    for kind in args.kind:
        print(build(kind, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
