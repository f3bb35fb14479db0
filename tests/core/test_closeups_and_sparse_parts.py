"""Close-ups get an input scale from their labels; unlabeled parts are trained as not visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import drain
from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.data import auto_input_scale
from napari_posekit.core.train import iter_train, likelihood_separation, load_checkpoint, pose_loss

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]


def _labels(extent: float, n: int = 20, k: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, extent, size=(n, k, 2))
    xy[:, 0] = 0.0
    xy[:, 1] = extent  # every image spans `extent` pixels
    return xy


def test_an_animal_that_fits_a_crop_keeps_full_resolution():
    assert auto_input_scale(_labels(120.0)) == 1.0  # the openfield mouse: ~110-140 px
    assert auto_input_scale(_labels(150.0)) == 1.0  # within the augmentation's scale range: no change


def test_a_close_up_is_scaled_so_the_animal_fills_part_of_the_crop():
    scale = auto_input_scale(_labels(600.0))
    assert scale == pytest.approx(0.6 * 224 / 600, abs=1e-3)
    assert auto_input_scale(_labels(600.0), crop=320) == pytest.approx(0.6 * 320 / 600, abs=1e-3)


def test_input_scale_ignores_images_with_fewer_than_two_labels():
    xy = _labels(100.0)
    xy[:5] = np.nan
    xy[5:10, 1:] = np.nan  # one part only: no extent
    xy[5:10, 0] = [[5000.0, 5000.0]]
    assert auto_input_scale(xy) == 1.0
    assert auto_input_scale(np.full((3, 4, 2), np.nan)) == 1.0


def test_unlabeled_parts_are_trained_towards_a_low_score():
    codec = HeatmapCodec(input_size=(32, 32), stride=4, sigma=2.0)
    xy = np.array([[10.0, 12.0], [np.nan, np.nan]])  # the second part is not visible
    targets = {k: torch.from_numpy(v)[None] for k, v in codec.encode(xy).items()}
    assert targets["weights"].tolist() == [[1.0, 0.0]]
    heatmaps = torch.full((1, 2, 8, 8), -6.0)
    heatmaps[0, 0] = torch.from_numpy(codec.encode(xy)["heatmaps"][0]).logit(eps=1e-3)
    locref = torch.zeros((1, 4, 8, 8))
    confident_absent = heatmaps.clone()
    confident_absent[0, 1, 3, 3] = 6.0  # the model claims the missing part is at one cell
    low, _ = pose_loss((heatmaps, locref), targets)
    high, _ = pose_loss((confident_absent, locref), targets)
    assert float(high) > float(low)
    ignored_low, _ = pose_loss((heatmaps, locref), targets, absent_weight=0.0)
    ignored_high, _ = pose_loss((confident_absent, locref), targets, absent_weight=0.0)
    assert float(ignored_high) == pytest.approx(float(ignored_low))


def test_likelihood_separation_counts_labeled_and_absent_parts():
    likelihood = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.05], [0.95, 0.3]])
    labeled = np.array([[True, False], [True, True], [True, False], [True, False]])
    sep = likelihood_separation(likelihood, labeled, ["nose", "tongue"], pcutoff=0.6)
    assert sep["nose"] == {
        "n_labeled": 4,
        "n_absent": 0,
        "labeled_above": 0.75,
        "absent_below": sep["nose"]["absent_below"],
    }
    assert np.isnan(sep["nose"]["absent_below"])
    assert sep["tongue"] == {"n_labeled": 1, "n_absent": 3, "labeled_above": 1.0, "absent_below": 1.0}


def test_a_close_up_project_trains_at_the_scale_its_labels_need(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(6, 256, 256, 3), dtype=np.uint8)
    xy = np.stack(
        [rng.uniform(10, 40, size=(6, 2)), rng.uniform(200, 240, size=(6, 2)), rng.uniform(100, 150, size=(6, 2))],
        axis=1,
    )
    xy[1::2, 2] = np.nan  # a part labeled in half of the frames
    _, path = drain(
        iter_train(
            images,
            xy,
            ["a", "b", "c"],
            backbone="resnet18",
            pretrained=False,
            epochs=1,
            batch_size=3,
            augmentation=False,
            train_fraction=0.5,
            device="cpu",
            checkpoint_dir=tmp_path,
        )
    )
    _, codec, meta = load_checkpoint(path)
    extent = np.percentile([np.ptp(p[~np.isnan(p).any(1)], axis=0).max() for p in xy], 90)
    assert meta["input_scale"] == pytest.approx(0.6 * 224 / extent, abs=1e-3)
    assert meta["input_scale"] < 0.85
    side = -(-round(256 * meta["input_scale"]) // 32) * 32  # the whole scaled image, rounded up to 32
    assert codec.input_size == (side, side) and side < 224
    assert meta["train_config"]["absent_weight"] == 1.0
