"""Labeled-data folders whose images differ in size (and format): open, label, save.

The images are shown as one stack padded at the bottom/right to the largest
width and height, so every label keeps its own image's pixel coordinates; a
click outside a frame's own image is refused; saving rewrites nothing else.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from mouse import click
from PIL import Image

from conftest import require_shared
from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit._napari._project_reader import napari_get_reader, padding
from napari_posekit.core.collected_data import arrays_to_collected, write_collected
from napari_posekit.core.config import write_config

PARTS = ["snout", "leftear", "rightear", "tailbase"]
SCORER = "me"
CANVAS = (90, 120)  # (height, width): the tallest image is not the widest one
OPENFIELD = "dlc_openfield-Pranav-2018-10-30"


def _pattern(h: int, w: int, seed: int) -> np.ndarray:
    """A bright, recognisable RGB pattern (never the padding's dark greys)."""
    rng = np.random.default_rng(seed)
    return rng.integers(100, 256, (h, w, 3)).astype(np.uint8)


def write_images(folder: Path) -> dict[str, np.ndarray]:
    """Five frames of four sizes and five formats; returns the RGB each should show as."""
    expected = {}
    rgb = _pattern(90, 80, 0)  # tall, narrow RGB
    Image.fromarray(rgb).save(folder / "img000.png")
    expected["img000.png"] = rgb
    gray = _pattern(48, 64, 1)[..., 0]  # 8-bit grayscale
    Image.fromarray(gray, mode="L").save(folder / "img001.png")
    expected["img001.png"] = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.dstack([_pattern(70, 120, 2), np.full((70, 120), 128, np.uint8)])  # wide, with alpha
    Image.fromarray(rgba, mode="RGBA").save(folder / "img002.png")
    expected["img002.png"] = rgba[..., :3]
    deep = np.random.default_rng(3).integers(100 * 256, 65536, (48, 64)).astype(np.uint16)  # 16-bit gray
    Image.fromarray(deep).save(folder / "img003.png")
    assert Image.open(folder / "img003.png").mode.startswith("I")
    expected["img003.png"] = np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, axis=2)
    smooth = np.zeros((40, 100, 3), np.uint8)  # JPEG: smooth, so the lossy decode stays close
    smooth[..., 0] = np.linspace(120, 250, 100).astype(np.uint8)
    smooth[..., 1] = 180
    smooth[..., 2] = np.linspace(250, 120, 40).astype(np.uint8)[:, None]
    Image.fromarray(smooth).save(folder / "img004.jpg", quality=95)
    expected["img004.jpg"] = smooth
    return expected


SIZES = {
    "img000.png": (80, 90),
    "img001.png": (64, 48),
    "img002.png": (120, 70),
    "img003.png": (64, 48),
    "img004.jpg": (100, 40),
}


def labels() -> np.ndarray:
    """(5, 4, 2) labels, each inside its own image, some missing."""
    xy = np.full((5, 4, 2), np.nan)
    xy[0] = [[10.5, 80.25], [20, 70], [30.125, 60], [70.75, 5]]
    xy[1] = [[60.5, 40.25], [5, 5], [33.3, 12.7], [np.nan, np.nan]]
    xy[2] = [[110.5, 60.5], [100, 10], [90, 20], [12, 66]]
    xy[3] = [[1, 1], [2, 2], [62.9, 46.1], [40, 30]]
    xy[4] = [[95.5, 35.5], [np.nan, np.nan], [50, 20], [3, 38]]
    return xy


@pytest.fixture
def mixed(tmp_path) -> Path:
    """A project with one labeled-data folder of mixed sizes and formats; returns the folder."""
    project = tmp_path / "mixed-me-2024-01-01"
    folder = project / "labeled-data" / "cam"
    folder.mkdir(parents=True)
    write_images(folder)
    write_config(
        project / "config.yaml",
        {"Task": "mixed", "scorer": SCORER, "bodyparts": PARTS, "skeleton": [["snout", "leftear"]], "dotsize": 4},
    )
    names = [f"labeled-data/cam/{n}" for n in sorted(SIZES)]
    write_collected(arrays_to_collected(names, PARTS, labels(), SCORER), folder)
    return folder


def layer_xy(points) -> np.ndarray:
    xy = np.full((5, 4, 2), np.nan)
    for (f, y, x), bp in zip(points.data, points.features["bodypart"]):
        xy[int(f), PARTS.index(bp)] = (x, y)
    return xy


@pytest.mark.parametrize("which", ["folder", "h5", "csv", "config"])
def test_every_entry_point_opens_mixed_sizes(make_napari_viewer, mixed, which):
    path = {
        "folder": mixed,
        "h5": mixed / "CollectedData_me.h5",
        "csv": mixed / "CollectedData_me.csv",
        "config": mixed.parents[1] / "config.yaml",
    }[which]
    viewer = make_napari_viewer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, points = viewer.open(str(path), plugin="napari-posekit")
    assert not [str(w.message) for w in caught if str(mixed) in str(w.message)]  # every label is inside its image
    assert isinstance(image.data, da.Array) and image.data.shape == (5, *CANVAS, 3) and image.rgb
    assert points.metadata["image_sizes"] == [list(SIZES[n]) for n in sorted(SIZES)]
    np.testing.assert_array_equal(layer_xy(points), labels())  # coordinates exactly as in the file


def test_frames_show_as_rgb_at_the_top_left_of_the_padding(make_napari_viewer, mixed, tmp_path):
    expected = write_images(tmp_path)  # the same pixels, written again aside
    viewer = make_napari_viewer()
    image, _ = viewer.open(str(mixed), plugin="napari-posekit")
    canvas = padding(*CANVAS)
    for i, name in enumerate(sorted(SIZES)):
        frame = np.asarray(image.data[i])
        w, h = SIZES[name]
        assert frame.dtype == np.uint8 and frame.shape == (*CANVAS, 3)
        tolerance = 6 if name.endswith(".jpg") else 1  # JPEG is lossy; 16-bit may round or truncate
        assert np.abs(frame[:h, :w].astype(int) - expected[name]).max() <= tolerance, name
        pad = np.ones(CANVAS, bool)
        pad[:h, :w] = False
        np.testing.assert_array_equal(frame[pad], canvas[pad])
    assert canvas.max() < 100  # the padding is dark: the test images are all brighter


def test_only_the_frame_shown_is_decoded(make_napari_viewer, mixed, monkeypatch):
    from napari_posekit.core import data

    decoded = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda path: decoded.append(Path(path).name) or real(path))
    viewer = make_napari_viewer()
    viewer.open(str(mixed), plugin="napari-posekit")
    shown = int(viewer.dims.current_step[0])
    # the frame shown, and at most the first one (napari looks at it when the layer is added)
    assert set(decoded) <= {sorted(SIZES)[shown], min(SIZES)}
    decoded.clear()
    viewer.dims.current_step = (3, 0, 0)
    assert set(decoded) == {"img003.png"}


def test_clicks_outside_the_frames_own_image_are_refused(make_napari_viewer, mixed):
    viewer = make_napari_viewer()
    _, points = viewer.open(str(mixed), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    widget.go_to_frame(1)  # img001.png: 64x48 at the top-left of 120x90
    assert "img001.png: 64x48" in widget.frame_label.text() and "of the 120x90 canvas" in widget.frame_label.text()
    widget.set_current(3)  # tailbase is missing on this frame
    before = np.array(widget.store.xy)
    for x, y in [(100, 20), (30, 70), (63.6, 10), (10, 47.6), (-0.2, 10)]:  # padding, edges, left half-pixel
        click(points, 1, x, y)
        np.testing.assert_array_equal(widget.store.xy, before)
        assert len(points.data) == 18 and widget.current == 3
        assert "tailbase not placed" in widget.message.text() and "img001.png, which is 64x48" in widget.message.text()
    assert "img001.png" in viewer.status
    click(points, 1, 63.5, 47.5)  # the centre of the bottom-right pixel is inside
    assert widget.store.xy[1, 3].tolist() == [63.5, 47.5] and widget.message.text() == ""
    # a point dragged into the padding goes back where it was
    moved = points.data.copy()
    row = np.flatnonzero((moved[:, 0] == 1) & (points.features["bodypart"] == "snout").to_numpy())[0]
    moved[row, 1:] = [20, 90]  # y=20, x=90: beyond the 64 px width
    points.data = moved
    assert widget.store.xy[1, 0].tolist() == [60.5, 40.25]
    assert layer_xy(points)[1, 0].tolist() == [60.5, 40.25]
    # the same place is fine on the wide frame
    widget.go_to_frame(2)
    widget.set_current(0)
    click(points, 2, 90, 20)
    assert widget.store.xy[2, 0].tolist() == [90, 20]


def test_copy_previous_skips_labels_outside_the_smaller_image(make_napari_viewer, mixed):
    folder = mixed
    xy = labels()
    xy[3] = np.nan  # img003.png (64x48) unlabeled; img002.png (120x70) is the previous labeled frame
    names = [f"labeled-data/cam/{n}" for n in sorted(SIZES)]
    write_collected(arrays_to_collected(names, PARTS, xy, SCORER), folder)
    viewer = make_napari_viewer()
    _, _points = viewer.open(str(folder), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    widget.go_to_frame(3)
    widget.copy_previous()
    # from img002: snout (110.5, 60.5), leftear (100, 10), rightear (90, 20) are outside 64x48; tailbase (12, 66) too
    assert np.isnan(widget.store.xy[3]).all()
    assert "Not copied" in widget.message.text() and "snout" in widget.message.text()
    widget.store.set(2, "tailbase", (12, 40))
    widget._rebuild_layer()
    widget.copy_previous()
    assert widget.store.xy[3, 3].tolist() == [12, 40] and np.isnan(widget.store.xy[3, :3]).all()


def test_change_one_label_save_keeps_every_other_row_bit_exact(make_napari_viewer, mixed):
    h5, csv = mixed / "CollectedData_me.h5", mixed / "CollectedData_me.csv"
    original = pd.read_hdf(h5)
    original_lines = csv.read_bytes().splitlines(keepends=True)
    viewer = make_napari_viewer()
    _, points = viewer.open(str(mixed), plugin="napari-posekit")
    widget = LabelingWidget(viewer)
    moved = points.data.copy()
    row = np.flatnonzero((moved[:, 0] == 4) & (points.features["bodypart"] == "rightear").to_numpy())[0]
    moved[row, 1:] = [25.125, 75.0625]  # img004.jpg (100x40): y=25.125, x=75.0625
    points.data = moved
    widget.save()

    saved = pd.read_hdf(h5)
    expected = original.copy()
    expected.loc[expected.index[4], (SCORER, "rightear", "x")] = 75.0625
    expected.loc[expected.index[4], (SCORER, "rightear", "y")] = 25.125
    pd.testing.assert_frame_equal(saved, expected, check_exact=True)
    lines = csv.read_bytes().splitlines(keepends=True)
    assert len(lines) == len(original_lines)
    changed = [i for i, (a, b) in enumerate(zip(original_lines, lines)) if a != b]
    assert len(changed) == 1 and lines[changed[0]].startswith(b"labeled-data,cam,img004.jpg,")

    viewer2 = make_napari_viewer()  # reopen: the change is there, nothing else moved
    _, points2 = viewer2.open(str(mixed), plugin="napari-posekit")
    again = layer_xy(points2)
    want = labels()
    want[4, 2] = (75.0625, 25.125)
    np.testing.assert_array_equal(again, want)


def test_reader_warns_about_missing_images_and_labels_outside_their_image(mixed):
    xy = np.concatenate([labels(), np.full((1, 4, 2), 5.0)])
    xy[1, 3] = (100, 20)  # inside the 120x90 canvas, outside img001.png's own 64x48
    names = [f"labeled-data/cam/{n}" for n in sorted(SIZES)] + ["labeled-data/cam/img999.png"]
    write_collected(arrays_to_collected(names, PARTS, xy, SCORER), mixed)
    before = {p.name: p.read_bytes() for p in mixed.iterdir()}
    reader = napari_get_reader(str(mixed))
    with pytest.warns(UserWarning) as caught:
        _image, points = reader(str(mixed))
    messages = " | ".join(str(w.message) for w in caught)
    assert "img999.png" in messages and "img001.png (64x48)" in messages
    assert {p.name: p.read_bytes() for p in mixed.iterdir()} == before  # nothing written
    assert points[0].shape == (18 + 1, 3)  # the outside label is shown (and kept), the missing image is not


def test_reader_never_raises_on_a_broken_folder(mixed):
    (mixed / "img005.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # a header that cannot be read
    reader = napari_get_reader(str(mixed))
    assert reader is not None
    with pytest.warns(UserWarning, match="cannot"):
        assert reader(str(mixed)) is None
    assert napari_get_reader(str(mixed / "nothing-here")) is None


@pytest.mark.shared_data(OPENFIELD)
def test_openfield_with_a_third_of_the_frames_cropped_or_rescaled(request, tmp_path):
    source = require_shared(OPENFIELD)  # before any viewer exists (a skip after it breaks napari's teardown)
    folder = tmp_path / "openfield" / "labeled-data" / "m4s1"
    shutil.copytree(source / "labeled-data" / "m4s1", folder)
    shutil.copy(source / "config.yaml", tmp_path / "openfield" / "config.yaml")
    original = pd.read_hdf(folder / "CollectedData_Pranav.h5")
    df = original.copy()
    x_cols = [c for c in df.columns if c[2] == "x"]
    y_cols = [c for c in df.columns if c[2] == "y"]
    sizes = {}
    for i, key in enumerate(df.index):
        path = folder / key.split("/")[-1]
        im = Image.open(path)
        if i % 6 == 1:  # cropped 400x300 around the animal: the labels move with the crop's corner
            x0 = int(np.clip(np.nanmin(df.loc[key, x_cols]) - 60, 0, 240))
            y0 = int(np.clip(np.nanmin(df.loc[key, y_cols]) - 60, 0, 180))
            im = im.crop((x0, y0, x0 + 400, y0 + 300))
            df.loc[key, x_cols] -= x0
            df.loc[key, y_cols] -= y0
        elif i % 6 == 4:  # rescaled to 75 %: pixel centres scale about the image corner
            im = im.resize((480, 360), Image.BILINEAR)
            df.loc[key, x_cols] = (df.loc[key, x_cols] + 0.5) * 0.75 - 0.5
            df.loc[key, y_cols] = (df.loc[key, y_cols] + 0.5) * 0.75 - 0.5
        im.save(path)
        sizes[path.name] = im.size
    x, y = df[x_cols].to_numpy(), df[y_cols].to_numpy()
    assert ((x >= 0) & (y >= 0) & (x <= 399.5) & (y <= 299.5))[np.arange(len(df)) % 6 == 1].all()
    write_collected(df, folder)
    written_csv = (folder / "CollectedData_Pranav.csv").read_bytes().splitlines(keepends=True)
    assert len({s for s in sizes.values()}) == 3

    viewer = request.getfixturevalue("make_napari_viewer")()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, points = viewer.open(str(folder), plugin="napari-posekit")
    assert not [str(w.message) for w in caught if str(folder) in str(w.message)]  # no label outside its image
    assert image.data.shape == (116, 480, 640, 3)
    widget = LabelingWidget(viewer)
    xy = np.asarray(widget.store.xy)
    np.testing.assert_array_equal(xy.reshape(116, -1), df.to_numpy())
    cropped = sorted(sizes).index(next(n for n, s in sizes.items() if s == (400, 300)))
    np.testing.assert_array_equal(
        np.asarray(image.data[cropped])[:300, :400],
        np.asarray(Image.open(folder / sorted(sizes)[cropped]).convert("RGB")),
    )
    widget.go_to_frame(cropped)
    widget.set_current(0)
    click(points, cropped, 500, 100)  # in the padding right of the 400x300 crop: refused
    np.testing.assert_array_equal(widget.store.xy, xy)
    assert "outside" in widget.message.text()
    click(points, cropped, 200.25, 100.5)  # moves the snout inside the crop
    assert widget.store.xy[cropped, 0].tolist() == [200.25, 100.5]
    widget.save()

    expected = df.copy()
    expected.iloc[cropped, :2] = [200.25, 100.5]
    pd.testing.assert_frame_equal(pd.read_hdf(folder / "CollectedData_Pranav.h5"), expected, check_exact=True)
    lines = (folder / "CollectedData_Pranav.csv").read_bytes().splitlines(keepends=True)
    assert [i for i, (a, b) in enumerate(zip(written_csv, lines)) if a != b] == [3 + cropped]
