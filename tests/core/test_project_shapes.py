"""Single-animal DeepLabCut projects of every shape real ones have, built from the openfield example.

The openfield project (one folder, 116 frames of 640x480, legacy string index)
is copied to ``tmp_path`` and reshaped as real projects are: frames cropped or
rescaled (labels moved with them), saved gray, RGBA, 16-bit or JPEG, spread
over several ``labeled-data`` folders as if from different videos and cameras,
one folder with the legacy string index and others with DeepLabCut >= 2.2's
MultiIndex, and a config.yaml from another machine with DeepLabCut 2.x/3.x keys
and keys never seen before.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_images import write_png16

from conftest import drain, require_shared
from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.collected_data import index_style, read_collected, write_collected
from napari_posekit.core.config import read_config, write_config
from napari_posekit.core.data import load_image, load_project_labels
from napari_posekit.core.images import read_rgb
from napari_posekit.core.labeled_images import image_sizes
from napari_posekit.core.outliers import _find_video, select_outliers
from napari_posekit.core.project import ProjectError
from napari_posekit.core.refine import load_refinement, machinelabels_path, save_refinement, write_machinelabels
from napari_posekit.core.train import evaluate, predict_images
from napari_posekit.core.workflow import MODELS_FOLDER, evaluate_project, project_training_data, train_project

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]

OPENFIELD = "dlc_openfield-Pranav-2018-10-30"
FAST = {"backbone": "resnet18", "pretrained": False, "batch_size": 4, "input_size": (64, 64), "device": "cpu"}
WINDOWS_ROOT = "C:\\Users\\x\\Documents\\openfield-Pranav-2018-10-30"

# frame -> (folder, transform); transforms: "same", ("crop", x0, y0, x1, y1), ("scale", factor) and a format
LAYOUT = {
    0: ("m4s1", "same", "png"),
    1: ("m4s1", "same", "png"),
    2: ("m4s1", ("crop", 0, 200, 400, 480), "png"),  # labels near the left edge
    3: ("m4s1", ("scale", 2.0), "png"),
    4: ("m4s1", "same", "gray"),
    5: ("m4s1", "same", "rgba"),
    6: ("m4s1", "same", "gray16"),
    7: ("m4s1", "same", "jpg"),
    10: ("m4s2", "same", "png"),
    11: ("m4s2", ("scale", 0.5), "png"),
    12: ("m4s2", "same", "rgb48"),
    13: ("m4s2", ("crop", 0, 160, 320, 480), "jpg"),
    14: ("m4s2", "same", "png"),
    15: ("m4s2", ("scale", 0.5), "gray"),
    20: ("cam2", ("scale", 0.75), "png"),
    21: ("cam2", ("scale", 0.75), "png"),
    22: ("cam2", ("scale", 0.75), "rgba"),
    23: ("cam2", ("scale", 0.75), "png"),
    24: ("cam2", ("scale", 0.75), "jpg"),
}
STYLES = {"m4s1": "string", "m4s2": "multi", "cam2": "multi"}


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _save(rgb: np.ndarray, path_stem: Path, fmt: str) -> Path:
    """Save ``rgb`` in one of the frame formats; returns the file written."""
    if fmt == "jpg":
        path = path_stem.with_suffix(".jpg")
        Image.fromarray(rgb).save(path, quality=95)
        return path
    path = path_stem.with_suffix(".png")
    if fmt == "png":
        Image.fromarray(rgb).save(path)
    elif fmt == "gray":
        Image.fromarray(rgb[..., 0]).save(path)
    elif fmt == "rgba":
        alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
        Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(path)
    elif fmt == "gray16":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)  # 8-bit v -> 16-bit v * 257
    elif fmt == "rgb48":
        write_png16(path, rgb.astype(np.uint16) * 257)
    else:
        raise ValueError(fmt)
    return path


def _transform(rgb: np.ndarray, xy: np.ndarray, how) -> tuple[np.ndarray, np.ndarray]:
    """An image cropped or rescaled, and its labels moved with it (pixel centres at integers)."""
    if how == "same":
        return rgb, xy
    if how[0] == "crop":
        x0, y0, x1, y1 = how[1:]
        return rgb[y0:y1, x0:x1], xy - np.array([x0, y0], float)
    factor = how[1]
    h, w = rgb.shape[:2]
    size = (round(w * factor), round(h * factor))
    resized = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    return resized, (xy + 0.5) * factor - 0.5


def _moved_config(text: str) -> str:
    """The openfield config as if written on a Windows machine, with DLC 3 keys and unknown keys."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("project_path:"):
            line = f"project_path: {WINDOWS_ROOT}\n"
        elif line.startswith("multianimalproject:"):
            line = "multianimalproject: false\n"
        elif line.startswith("  WILL BE AUTOMATICALLY UPDATED"):
            line = (
                f"  {WINDOWS_ROOT}\\videos\\m4s1.mp4:\n    crop: 0, 640, 0, 480\n"
                "  /home/other/openfield/videos/m4s2.avi:\n    crop: 0, 640, 0, 480\n"
                "  /home/other/openfield/videos/cam2.mp4:\n"
            )
        elif line.startswith("    crop: 0, 640, 0, 480") and lines and lines[-1].endswith("cam2.mp4:\n"):
            line = "    crop: 0, 480, 0, 360\n"
        lines.append(line)
    return "".join(lines) + (
        "\n# keys a later DeepLabCut (or another tool) may add\n"
        "posekit_future_option: {nested: [1, 2.50, 'three'], flag: yes}\n"
        'another_tool_key:   "kept   as written"   # with a comment\n'
    )


@pytest.fixture(scope="module")
def mixed_template(tmp_path_factory):
    """The reshaped project, built once per module; tests work on copies (:func:`mixed`)."""
    require_shared("dlc_openfield-Pranav-2018-10-30")  # named literally for conftest's shared-data gate
    return _build_mixed(tmp_path_factory.mktemp("template"))


@pytest.fixture()
def mixed(mixed_template, tmp_path):
    """The openfield project reshaped (see :data:`LAYOUT`): ``(root, truth)``.

    ``truth`` maps each image key to ``(width, height, xy)`` with ``xy`` in
    that image's own pixels.
    """
    template, truth = mixed_template
    root = tmp_path / template.name
    shutil.copytree(template, root)
    return root, {key: (w, h, xy.copy()) for key, (w, h, xy) in truth.items()}


def _build_mixed(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int, np.ndarray]]]:
    src = require_shared(OPENFIELD)
    root = tmp_path / "openfield-moved"
    (root / "videos").mkdir(parents=True)
    (root / "config.yaml").write_text(_moved_config((src / "config.yaml").read_text()))
    df = read_collected(src / "labeled-data" / "m4s1" / "CollectedData_Pranav.h5")
    xy_all = df.to_numpy(np.float64).reshape(len(df), -1, 2)
    truth: dict[str, tuple[int, int, np.ndarray]] = {}
    rows: dict[str, list] = {}
    for frame, (video, how, fmt) in LAYOUT.items():
        folder = root / "labeled-data" / video
        folder.mkdir(parents=True, exist_ok=True)
        rgb = read_rgb(src / "labeled-data" / "m4s1" / f"img{frame:04d}.png")
        image, xy = _transform(rgb, xy_all[frame], how)
        if frame == 21:
            xy = xy.copy()
            xy[3] = np.nan  # the tail base not labeled on this frame
        path = _save(np.ascontiguousarray(image), folder / f"img{frame:04d}", fmt)
        key = f"labeled-data/{video}/{path.name}"
        truth[key] = (image.shape[1], image.shape[0], xy)
        rows.setdefault(video, []).append((key, xy.reshape(-1)))
    for video, entries in rows.items():
        out = pd.DataFrame([v for _, v in entries], index=pd.Index([k for k, _ in entries]), columns=df.columns)
        if STYLES[video] == "multi":
            out.index = pd.MultiIndex.from_tuples([tuple(k.split("/")) for k, _ in entries])
        # written as DeepLabCut writes them
        folder = root / "labeled-data" / video
        out.to_hdf(folder / "CollectedData_Pranav.h5", key="df_with_missing", mode="w")
        out.to_csv(folder / "CollectedData_Pranav.csv")
    return root, truth


def _assert_bit_exact(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert type(a.index) is type(b.index)
    assert np.array_equal(a.to_numpy(np.float64).view(np.uint64), b.to_numpy(np.float64).view(np.uint64))


# ---------------------------------------------------------------------------------------------
# Loading: labels, training data, images
# ---------------------------------------------------------------------------------------------


def test_mixed_project_loads_every_image_in_its_own_pixels(mixed):
    root, truth = mixed
    sizes = image_sizes(root / "labeled-data" / "m4s1")
    assert sizes["img0002.png"] == (400, 280) and sizes["img0003.png"] == (1280, 960)
    assert sizes["img0007.jpg"] == (640, 480) and len(set(sizes.values())) == 3

    paths, bodyparts, xy = load_project_labels(root)
    assert bodyparts == ["snout", "leftear", "rightear", "tailbase"]
    keys = [p.relative_to(root).as_posix() for p in paths]
    assert sorted(keys) == sorted(truth)
    for key, row in zip(keys, xy):
        np.testing.assert_array_equal(row, truth[key][2])

    data = project_training_data(root)
    assert data.warnings == [] and data.bodyparts == bodyparts
    assert [p.relative_to(root).as_posix() for p in data.images] == keys
    for path, row in zip(data.images, data.xy):
        w, h, expected = truth[path.relative_to(root).as_posix()]
        np.testing.assert_array_equal(row, expected)
        image = load_image(path)
        assert image.shape == (h, w, 3) and image.dtype == np.uint8

    # the 2x frame's labels are twice the original's (pixel centres: 2x + 0.5)
    original = read_collected(require_shared(OPENFIELD, "labeled-data", "m4s1", "CollectedData_Pranav.h5"))
    twice = data.xy[keys.index("labeled-data/m4s1/img0003.png")]
    np.testing.assert_allclose(twice, original.to_numpy(np.float64)[3].reshape(-1, 2) * 2 + 0.5)
    # formats: gray and 16-bit gray decode to the red channel of the source; RGB48 to the source
    source = read_rgb(require_shared(OPENFIELD, "labeled-data", "m4s1", "img0012.png"))
    assert np.array_equal(load_image(root / "labeled-data" / "m4s2" / "img0012.png"), source)
    gray16 = load_image(root / "labeled-data" / "m4s1" / "img0006.png")  # 16-bit v * 257 -> v
    red = read_rgb(require_shared(OPENFIELD, "labeled-data", "m4s1", "img0006.png"))[..., 0]
    assert all(np.array_equal(gray16[..., c], red) for c in range(3))


def test_collected_data_of_every_shape_round_trips_bit_exactly(mixed, tmp_path):
    root, _ = mixed
    for video, style in STYLES.items():
        folder = root / "labeled-data" / video
        df = read_collected(folder / "CollectedData_Pranav.h5")
        assert index_style(df) == style
        _assert_bit_exact(read_collected(folder / "CollectedData_Pranav.csv"), df)
        out = tmp_path / "saved" / video
        out.mkdir(parents=True)
        h5, csv = write_collected(df, out)
        assert csv.read_bytes() == (folder / "CollectedData_Pranav.csv").read_bytes()
        _assert_bit_exact(read_collected(h5), df)
        _assert_bit_exact(pd.read_hdf(h5, "df_with_missing"), pd.read_hdf(folder / "CollectedData_Pranav.h5"))

    # DeepLabCut's own openfield files, legacy string index
    src = require_shared(OPENFIELD, "labeled-data", "m4s1")
    df = read_collected(src / "CollectedData_Pranav.h5")
    out = tmp_path / "saved" / "openfield"
    out.mkdir()
    h5, csv = write_collected(df, out)
    assert csv.read_bytes() == (src / "CollectedData_Pranav.csv").read_bytes()
    _assert_bit_exact(read_collected(h5), df)


def test_windows_path_keys_of_projects_labeled_on_windows(mixed, tmp_path):
    """DeepLabCut 2.0/2.1 on Windows wrote the string index with backslashes."""
    root, truth = mixed
    folder = root / "labeled-data" / "m4s1"
    df = read_collected(folder / "CollectedData_Pranav.h5")
    df.index = pd.Index([key.replace("/", "\\") for key in df.index])
    df.to_hdf(folder / "CollectedData_Pranav.h5", key="df_with_missing", mode="w")
    df.to_csv(folder / "CollectedData_Pranav.csv")
    data = project_training_data(root)
    keys = [p.relative_to(root).as_posix() for p in data.images]
    assert sorted(keys) == sorted(truth) and data.warnings == []
    for key, row in zip(keys, data.xy):
        np.testing.assert_array_equal(row, truth[key][2])
    assert "labeled-data/m4s1/img0007.jpg" in load_refinement(folder).images
    h5, csv = write_collected(read_collected(folder / "CollectedData_Pranav.h5"), tmp_path / "CollectedData_Pranav.h5")
    assert csv.read_bytes() == (folder / "CollectedData_Pranav.csv").read_bytes()
    _assert_bit_exact(read_collected(h5), df)


def test_config_of_a_moved_project_with_dlc3_and_unknown_keys(mixed):
    root, _ = mixed
    config = read_config(root)
    assert config["project_path"] == WINDOWS_ROOT and config.project_folder is not None
    assert config["multianimalproject"] is False and config["identity"] is None and not config.multianimal
    assert config["engine"] == "pytorch" and config["detector_snapshotindex"] == -1
    assert config["detector_batch_size"] == 1
    assert config["SuperAnimalConversionTables"]["superanimal_topviewmouse"]["snout"] == "nose"
    # read as DeepLabCut (ruamel, YAML 1.2) reads it: "yes" is a string
    assert config["posekit_future_option"] == {"nested": [1, 2.5, "three"], "flag": "yes"}
    assert len(config["video_sets"]) == 3

    # a rewrite changes the changed key only; everything else, unknown keys included, stays verbatim
    before = (root / "config.yaml").read_text()
    config["numframes2pick"] = 25
    write_config(root / "config.yaml", config)
    after = (root / "config.yaml").read_text()
    assert after == before.replace("numframes2pick: 20", "numframes2pick: 25")
    assert "posekit_future_option: {nested: [1, 2.50, 'three'], flag: yes}\n" in after
    assert 'another_tool_key:   "kept   as written"   # with a comment\n' in after

    # the video of a Windows path in video_sets is found where the project is now
    shutil.copy(require_shared(OPENFIELD, "videos", "m3v1mp4.mp4"), root / "videos" / "m4s1.mp4")
    assert _find_video(root, f"{WINDOWS_ROOT}\\videos\\m4s1.mp4") == root / "videos" / "m4s1.mp4"
    assert _find_video(root, "/home/other/openfield/videos/m4s1.mp4") == root / "videos" / "m4s1.mp4"


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_images_and_labels_are_named_and_change_nothing(mixed):
    root, _truth = mixed
    folder = root / "labeled-data" / "m4s1"

    # a label inside the folder's first image (640x480) but outside its own (the 400x280 crop)
    df = read_collected(folder / "CollectedData_Pranav.h5")
    df.loc["labeled-data/m4s1/img0002.png", ("Pranav", "snout", "x")] = 450.0
    write_collected(df, folder)
    before = _digest_tree(root)
    data = project_training_data(root)
    assert len(data.warnings) == 1
    assert data.warnings[0].startswith("labeled-data/m4s1/img0002.png: snout at (450.0, ")
    assert data.warnings[0].endswith("is outside the 400x280 image; left out of training")
    i = [p.name for p in data.images].index("img0002.png")
    assert np.isnan(data.xy[i, 0]).all() and np.isfinite(data.xy[i, 1:]).all()
    assert _digest_tree(root) == before

    # a labeled image missing on disk
    (root / "labeled-data" / "m4s2" / "img0011.png").rename(root / "img0011.png.bak")
    before = _digest_tree(root)
    with pytest.raises(ProjectError, match=r"labeled images missing on disk: labeled-data/m4s2/img0011\.png") as info:
        project_training_data(root)
    assert str(root / "labeled-data" / "m4s2") in str(info.value)
    with pytest.raises(ProjectError, match="img0011.png"):
        next(train_project(root, epochs=1, **FAST))
    assert _digest_tree(root) == before and not (root / MODELS_FOLDER).exists()
    (root / "img0011.png.bak").rename(root / "labeled-data" / "m4s2" / "img0011.png")

    # an image that is not an image any more
    bad = root / "labeled-data" / "cam2" / "img0024.jpg"
    bad.write_bytes(b"no longer a JPEG")
    before = _digest_tree(root)
    with pytest.raises(ProjectError, match="cannot read the labeled image") as info:
        project_training_data(root)
    assert str(bad) in str(info.value)
    assert _digest_tree(root) == before


# ---------------------------------------------------------------------------------------------
# Predictions and errors in each image's own pixels
# ---------------------------------------------------------------------------------------------


class _BrightestPixel(torch.nn.Module):
    """A stand-in network (stride 1): its one keypoint is the brightest pixel of the input."""

    backbone_stride = 1
    n_keypoints = 1

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def normalize(self, x):
        return x

    def forward(self, x):
        heatmaps = (x.mean(dim=1, keepdim=True) - 0.5) * 200.0  # logits: ~1 on the dot, ~0 elsewhere
        return heatmaps, torch.zeros(x.shape[0], 2, *x.shape[-2:])


def test_predictions_come_back_in_each_images_own_pixels(tmp_path):
    """Images of four sizes, interleaved, as arrays and as files of several formats.

    Each holds a bright 2x2 block; at input scale 0.5 it becomes one pixel of
    the network input, whose position mapped back is the block's centre.
    """
    shapes = [(48, 64), (48, 64), (40, 30), (48, 64), (96, 128), (40, 30), (96, 128)]
    formats = ["array", "png", "gray16", "array", "rgba", "jpg-free-gray", "rgb48"]
    images, expected = [], []
    for i, ((h, w), fmt) in enumerate(zip(shapes, formats)):
        rgb = np.zeros((h, w, 3), np.uint8)
        r, c = 2 * ((3 + 5 * i) % (h // 2)), 2 * ((7 + 3 * i) % (w // 2))
        rgb[r : r + 2, c : c + 2] = 255
        expected.append([c + 0.5, r + 0.5])
        if fmt == "array":
            images.append(rgb)
        elif fmt == "jpg-free-gray":
            images.append(_save(rgb, tmp_path / f"im{i}", "gray"))
        else:
            images.append(_save(rgb, tmp_path / f"im{i}", fmt))
    codec = HeatmapCodec(input_size=(64, 64), stride=1)
    xy, conf = predict_images(_BrightestPixel(), codec, images, input_scale=0.5, batch_size=3)
    np.testing.assert_allclose(xy[:, 0], np.array(expected), atol=1e-4)
    assert (conf > 0.99).all()

    # evaluate's errors and PCK are in those pixels too: a label 3 px off the block on the big image only
    labels = np.array(expected)[:, None, :].copy()
    labels[4, 0, 0] += 3.0
    result = evaluate(_BrightestPixel(), codec, images, labels, input_scale=0.5, thresholds=(2.0, 5.0))
    assert result["mean_error_px"] == pytest.approx(3.0 / len(images), abs=1e-4)
    assert result["pck@2"] == pytest.approx(6 / 7) and result["pck@5"] == 1.0


def test_train_and_evaluate_a_mixed_size_mixed_format_project(mixed):
    root, truth = mixed
    scale = 0.25  # small network inputs keep the whole-image evaluation fast
    _, value = drain(train_project(root, epochs=1, input_scale=scale, seed=0, **{**FAST, "batch_size": 8}))
    assert value.is_file()
    ev = evaluate_project(root, pcutoff=0.1)
    per_image = ev.per_image.set_index("image")
    assert sorted(per_image.index) == sorted(truth)
    bodyparts = ["snout", "leftear", "rightear", "tailbase"]
    for key, (w, h, xy) in truth.items():
        row = per_image.loc[key]
        pred = np.array([[row[f"{bp}_x"], row[f"{bp}_y"]] for bp in bodyparts])
        assert np.isfinite(pred).all() and np.isfinite(row["mean_error_px"])
        errors = np.array([row[f"{bp}_error_px"] for bp in bodyparts])
        # errors against the labels in this image's own pixels
        np.testing.assert_allclose(errors, np.linalg.norm(pred - xy, axis=1), rtol=1e-6, equal_nan=True)
        # predictions lie on this image, give or take the network input's padding (to 32 px at that scale)
        margin = 32 / scale
        assert (pred[:, 0] >= -margin).all() and (pred[:, 0] <= w + margin).all()
        assert (pred[:, 1] >= -margin).all() and (pred[:, 1] <= h + margin).all()
    assert np.isnan(per_image.loc["labeled-data/cam2/img0021.png", "tailbase_error_px"])
    for _, row in ev.summary.iterrows():
        assert 0.0 <= row["pck@10px"] <= 1.0 and np.isfinite(row["mean_error_px"])
    assert all(f.is_file() for f in ev.files)


# ---------------------------------------------------------------------------------------------
# The active-learning loop on such a project
# ---------------------------------------------------------------------------------------------


def test_refining_a_folder_of_mixed_sizes_and_formats(mixed):
    root, _truth = mixed
    folder = root / "labeled-data" / "m4s1"
    collected_before = read_collected(folder / "CollectedData_Pranav.h5")
    csv_before = (folder / "CollectedData_Pranav.csv").read_bytes()
    # a new outlier frame of yet another size, with machine labels in the folder's string style
    rgb = read_rgb(require_shared(OPENFIELD, "labeled-data", "m4s1", "img0030.png"))[100:400, 50:500]
    Image.fromarray(rgb).save(folder / "img0030.png")
    machine_xy = np.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0], [440.0, 290.0]])
    columns = pd.MultiIndex.from_tuples(
        [("DLC_net", bp, c) for bp in ("snout", "leftear", "rightear", "tailbase") for c in ("x", "y", "likelihood")],
        names=["scorer", "bodyparts", "coords"],
    )
    values = np.concatenate([machine_xy, np.full((4, 1), 0.8)], axis=1).reshape(1, -1)
    write_machinelabels(
        pd.DataFrame(values, index=["labeled-data/m4s1/img0030.png"], columns=columns), machinelabels_path(folder, 0)
    )

    refinement = load_refinement(folder)
    assert "labeled-data/m4s1/img0007.jpg" in refinement.images
    assert "labeled-data/m4s1/img0030.png" in refinement.images
    xy = refinement.xy.copy()
    saved = save_refinement(refinement, xy, accepted=["img0030.png"])
    assert saved.added == ["labeled-data/m4s1/img0030.png"]
    merged = read_collected(saved.collected)
    assert index_style(merged) == "string"
    np.testing.assert_array_equal(
        merged.loc["labeled-data/m4s1/img0030.png"].to_numpy(np.float64).reshape(-1, 2), machine_xy
    )
    _assert_bit_exact(merged.drop(index="labeled-data/m4s1/img0030.png"), collected_before)
    assert (folder / "CollectedData_Pranav.csv").read_bytes().startswith(csv_before.split(b"labeled-data")[0])

    # the new frame trains in its own pixels: the tail base at x=440 is inside its 450x300 image
    data = project_training_data(root)
    assert data.warnings == []
    i = [p.relative_to(root).as_posix() for p in data.images].index("labeled-data/m4s1/img0030.png")
    np.testing.assert_array_equal(data.xy[i], machine_xy)


def test_outlier_selection_on_16_bit_gray_frames():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 65536, (40, 24, 32), dtype=np.uint16)  # (frames, H, W) 16-bit gray
    xy = np.cumsum(rng.normal(0, 1, (40, 2, 2)), axis=0) + 12
    xy[[5, 17, 29]] += 60  # jumps
    likelihood = np.full((40, 2), 0.95)
    frames = select_outliers(video, xy, likelihood, 3, candidates=10)
    assert len(frames) == 3 and all(0 <= f < 40 for f in frames)
