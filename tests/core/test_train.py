"""Tests for the training data pipeline and the training generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import drain
from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.data import Augmentation, LabeledImages, split_block, split_random
from napari_posekit.core.options import TRAIN_BATCH_SIZE, TrainOptions
from napari_posekit.core.synthetic import make_behaviour
from napari_posekit.core.train import (
    CheckpointError,
    WeightAverage,
    evaluate,
    iter_train,
    load_checkpoint,
    lr_factor,
)

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]

IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def behaviour():
    return make_behaviour(n_frames=12, height=64, width=64)


# --------------------------------------------------------------------------- splits
def test_split_random_is_deterministic_per_seed():
    a = split_random(100, 0.8, seed=1)
    b = split_random(100, 0.8, seed=1)
    c = split_random(100, 0.8, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert len(a[0]) == 80 and len(a[1]) == 20
    assert sorted(np.concatenate(a)) == list(range(100))


def test_split_block_is_contiguous():
    train, test = split_block(116, 0.8)
    assert np.array_equal(train, np.arange(93))
    assert np.array_equal(test, np.arange(93, 116))


# --------------------------------------------------------------------------- augmentation
def _dot_image(points, size=64):
    img = np.zeros((size, size, 3), np.uint8)
    for x, y in points:
        img[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] = 255
    return img


def test_augmentation_keeps_points_on_their_dots():
    pts = np.array([[20.0, 30.0], [44.0, 36.0]])
    imgs = [_dot_image(pts)] * 8
    xy = np.stack([pts] * 8)
    codec = HeatmapCodec((48, 48), stride=4)
    aug = Augmentation(brightness=0, contrast=0, blur_probability=0, noise_std=0, crop_jitter=0.1)
    ds = LabeledImages(imgs, xy, codec, *IDENTITY, augmentation=aug, seed=3)
    for i in range(len(ds)):
        s = ds[i]
        image = s["image"][0].numpy()
        for x, y in s["xy"].numpy():
            if np.isnan(x):
                continue
            r, c = round(y), round(x)
            assert image[r, c] > 0.5, (i, x, y)


def test_points_leaving_the_crop_are_masked():
    pts = np.array([[5.0, 5.0], [58.0, 58.0]])
    codec = HeatmapCodec((16, 16), stride=4)
    ds = LabeledImages([_dot_image(pts)], pts[None], codec, *IDENTITY)
    s = ds[0]
    assert torch.isnan(s["xy"]).all()
    assert float(s["weights"].sum()) == 0.0
    assert float(s["heatmaps"].sum()) == 0.0


def test_flip_swaps_symmetric_pairs():
    pts = np.array([[32.0, 20.0], [24.0, 30.0], [40.0, 30.0]])  # snout, leftear, rightear
    codec = HeatmapCodec((64, 64), stride=4)
    aug = Augmentation(
        scale=(1.0, 1.0),
        rotation_deg=0,
        crop_jitter=0,
        flip_probability=1.0,
        brightness=0,
        contrast=0,
        blur_probability=0,
        noise_std=0,
    )
    ds = LabeledImages(
        [_dot_image(pts)],
        pts[None],
        codec,
        *IDENTITY,
        augmentation=aug,
        symmetric_pairs=[("leftear", "rightear")],
        bodyparts=["snout", "leftear", "rightear"],
    )
    out = ds[0]["xy"].numpy()
    # mirrored about the snout's vertical line; the swapped left-ear label stays on the image's left
    assert out[1, 0] < out[2, 0]
    np.testing.assert_allclose(out[1, 0] + out[2, 0], 2 * out[0, 0], atol=1e-4)
    # without symmetric pairs there is no flip
    ds2 = LabeledImages([_dot_image(pts)], pts[None], codec, *IDENTITY, augmentation=aug)
    assert ds2.sample_geometry(0, pts, (64, 64))["flip"] is False
    out2 = ds2[0]["xy"].numpy()
    np.testing.assert_allclose(out2 - out2[0], pts - pts[0], atol=1e-4)


def _blob_image(points, shape=(80, 96), sigma=1.6):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.repeat((img * 255).clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.mark.parametrize("input_scale", [1.0, 0.5])
def test_augmented_keypoints_stay_on_their_blobs_to_a_tenth_of_a_pixel(input_scale):
    """Image and keypoints go through the same transforms: blob centroids match the transformed points."""
    pts = np.array([[30.3, 25.7], [61.8, 50.2]])
    img = _blob_image(pts, sigma=1.6 / input_scale)
    codec = HeatmapCodec((48, 56), stride=4)
    aug = Augmentation(
        scale=(0.8, 1.25),
        rotation_deg=40,
        crop_jitter=0.1,
        flip_probability=0.5,
        brightness=0,
        contrast=0,
        blur_probability=0,
        noise_std=0,
    )
    ds = LabeledImages(
        [img] * 24,
        np.stack([pts] * 24),
        codec,
        *IDENTITY,
        augmentation=aug,
        input_scale=input_scale,
        symmetric_pairs=[(0, 1)],
        seed=5,
    )
    checked = flipped = 0
    for i in range(len(ds)):
        s = ds[i]
        image = s["image"][0].numpy().astype(np.float64)
        flipped += ds.sample_geometry(i, pts, img.shape[:2])["flip"]
        for x, y in s["xy"].numpy():
            if np.isnan(x) or not (6 <= x <= 56 - 7 and 6 <= y <= 48 - 7):
                continue
            r0, c0 = round(y), round(x)
            win = image[r0 - 5 : r0 + 6, c0 - 5 : c0 + 6]
            rr, cc = np.mgrid[r0 - 5 : r0 + 6, c0 - 5 : c0 + 6]
            cy, cx = (win * rr).sum() / win.sum(), (win * cc).sum() / win.sum()
            assert abs(cx - x) < 0.1 and abs(cy - y) < 0.1, (i, x, y, cx, cy)
            checked += 1
    assert checked >= 24 and 0 < flipped < 24


# --------------------------------------------------------------------------- training
def test_iter_train_end_to_end(behaviour, tmp_path):
    kwargs = {
        "bodyparts": list(behaviour.bodyparts),
        "backbone": "resnet18",
        "pretrained": False,
        "head_stride": 4,
        "batch_size": 4,
        "lr": 3e-3,
        "train_fraction": 0.75,
        "augmentation": False,
        "device": "cpu",
    }
    gen = iter_train(behaviour.frames, behaviour.keypoints, epochs=4, checkpoint_dir=tmp_path / "a", **kwargs)
    progress, path = drain(gen)
    steps = [p for p in progress if "event" not in p]
    assert len(steps) == 4 * 3 and steps[-1]["step"] == 12 and steps[-1]["progress"] == 1.0
    assert {"epoch", "step", "progress", "loss", "lr", "elapsed_s", "eta_s"} <= set(steps[0])
    lrs = [p["lr"] for p in steps]
    assert max(lrs) == pytest.approx(3e-3, rel=0.2) and lrs[-1] < 0.1 * max(lrs)  # warm-up, then cosine decay
    assert any("test_error_px" in p for p in progress)
    first = np.mean([p["loss"] for p in steps[:3]])
    last = np.mean([p["loss"] for p in steps[-3:]])
    assert last < first

    assert path.is_file()
    model, codec, meta = load_checkpoint(path)
    assert meta["epoch"] == 4 and meta["bodyparts"] == list(behaviour.bodyparts)
    assert codec.stride == 4 and len(meta["split"]["test"]) == 3
    test = meta["split"]["test"]
    result = evaluate(model, codec, behaviour.frames[test], behaviour.keypoints[test], bodyparts=behaviour.bodyparts)
    assert math.isfinite(result["mean_error_px"])
    assert all(math.isfinite(v) for v in result["per_bodypart"].values())
    assert {"pck@2", "pck@5", "pck@10"} <= set(result)

    # resume continues from epoch 4 up to 6
    progress2, path2 = drain(
        iter_train(
            behaviour.frames, behaviour.keypoints, epochs=6, checkpoint_dir=tmp_path / "b", resume=path, **kwargs
        )
    )
    epochs = [p["epoch"] for p in progress2 if "event" not in p]
    assert epochs[0] == 5 and epochs[-1] == 6
    assert load_checkpoint(path2)[2]["epoch"] == 6


def test_options_object_and_keyword_overrides_train_alike(behaviour, tmp_path):
    options = TrainOptions(
        backbone="resnet18",
        pretrained=False,
        batch_size=4,
        epochs=1,
        train_fraction=0.75,
        augmentation=False,
        eval_every=0,
        seed=3,
    )
    _, from_options = drain(
        iter_train(
            behaviour.frames, behaviour.keypoints, options=options, device="cpu", checkpoint_dir=tmp_path / "options"
        )
    )
    keywords = {
        f: getattr(options, f)
        for f in ("backbone", "pretrained", "batch_size", "train_fraction", "augmentation", "eval_every", "seed")
    }
    _, from_keywords = drain(
        iter_train(
            behaviour.frames,
            behaviour.keypoints,
            epochs=1,
            device="cpu",
            checkpoint_dir=tmp_path / "keywords",
            **keywords,
        )
    )
    a, b = (torch.load(p, weights_only=True) for p in (from_options, from_keywords))
    assert a["train_config"] == b["train_config"] and a["train_config"]["seed"] == 3
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # a keyword replaces the option of the same name
    _, overridden = drain(
        iter_train(
            behaviour.frames,
            behaviour.keypoints,
            options=options,
            batch_size=3,
            device="cpu",
            checkpoint_dir=tmp_path / "override",
        )
    )
    assert load_checkpoint(overridden)[2]["train_config"]["batch_size"] == 3 and options.batch_size == 4


def test_unknown_training_options_are_named():
    assert TrainOptions().batch_size == TRAIN_BATCH_SIZE and TrainOptions().merged(epochs=2).epochs == 2
    with pytest.raises(TypeError, match="unknown training option 'epoch'"):
        TrainOptions().merged(epoch=2)
    with pytest.raises(TypeError, match="'epoch'.*the options are backbone"):
        next(iter_train(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 1, 2)), epoch=2))


def test_frozen_bn_keeps_the_backbones_pretrained_statistics_and_trains_the_rest(behaviour, tmp_path):
    import copy

    from napari_posekit.core.model import PoseModel

    initial = PoseModel(
        "resnet18", n_keypoints=len(behaviour.bodyparts), pretrained=False
    )  # BN: mean 0, var 1, scale 1
    gen = iter_train(
        behaviour.frames,
        behaviour.keypoints,
        bodyparts=list(behaviour.bodyparts),
        backbone="resnet18",
        pretrained=False,
        batch_size=4,
        train_fraction=0.75,
        augmentation=False,
        device="cpu",
        epochs=2,
        checkpoint_dir=tmp_path / "run",
        frozen_bn=True,
        ema_decay=None,
    )
    _, path = drain(gen)
    model, _, meta = load_checkpoint(path)
    assert meta["train_config"]["frozen_bn"] is True
    trained, before = model.state_dict(), copy.deepcopy(initial.state_dict())
    stats = [k for k in before if k.startswith("backbone.") and k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(trained[k], before[k]) for k in stats)
    # the backbone's batch-norm scales still train, and the head's batch norms keep batch statistics
    scales = [k for k in stats if k.endswith("running_mean")]
    assert any(
        not torch.equal(trained[k.replace("running_mean", "weight")], before[k.replace("running_mean", "weight")])
        for k in scales
    )
    head_stats = [k for k in trained if not k.startswith("backbone.") and k.endswith("running_mean")]
    assert head_stats and any(not torch.equal(trained[k], before[k]) for k in head_stats)

    # resuming keeps the checkpoint's setting; random weights default to batch statistics
    common = {
        "bodyparts": list(behaviour.bodyparts),
        "backbone": "resnet18",
        "pretrained": False,
        "batch_size": 4,
        "train_fraction": 0.75,
        "augmentation": False,
        "device": "cpu",
        "epochs": 3,
        "ema_decay": None,
    }
    _, resumed = drain(
        iter_train(behaviour.frames, behaviour.keypoints, checkpoint_dir=tmp_path / "resumed", resume=path, **common)
    )
    model, _, meta = load_checkpoint(resumed)
    assert meta["train_config"]["frozen_bn"] is True
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in stats)
    _, fresh = drain(iter_train(behaviour.frames, behaviour.keypoints, checkpoint_dir=tmp_path / "fresh", **common))
    model, _, meta = load_checkpoint(fresh)
    assert meta["train_config"]["frozen_bn"] is False
    assert any(not torch.equal(model.state_dict()[k], before[k]) for k in stats)


def test_fine_tuning_starts_from_a_checkpoints_weights_with_a_fresh_schedule(behaviour, tmp_path):
    kwargs = {
        "backbone": "resnet18",
        "pretrained": False,
        "head_stride": 4,
        "batch_size": 4,
        "lr": 3e-3,
        "augmentation": False,
        "device": "cpu",
        "eval_every": 0,
    }
    frames, keypoints, bodyparts = behaviour.frames[:8], behaviour.keypoints[:8], list(behaviour.bodyparts)
    _, trained = drain(iter_train(frames, keypoints, bodyparts, epochs=2, checkpoint_dir=tmp_path / "a", **kwargs))

    def first_step(**options):
        gen = iter_train(frames, keypoints, bodyparts, epochs=5, **{**kwargs, **options})
        step = next(gen)  # the loss of the first batch, before any update
        gen.close()  # saves a checkpoint
        return step

    scratch = first_step(checkpoint_dir=tmp_path / "b")
    # the architecture comes from the checkpoint, whatever backbone is asked for
    fine = first_step(checkpoint_dir=tmp_path / "c", init_weights=trained, backbone="resnet34")
    assert fine["loss"] < scratch["loss"]  # the same data and seed: only the starting weights differ
    assert fine["epoch"] == 1 and fine["step"] == 1  # a new run, not a continuation
    assert fine["lr"] == pytest.approx(scratch["lr"]) and fine["lr"] < 0.2 * kwargs["lr"]  # a new warm-up
    meta = load_checkpoint(tmp_path / "c" / "checkpoint.pt")[2]
    assert meta["model_config"]["backbone"] == "resnet18" and meta["train_config"]["init_weights"] == str(trained)
    assert meta["history"] == [] and load_checkpoint(trained)[2]["epoch"] == 2

    with pytest.raises(CheckpointError, match="body parts"):
        next(
            iter_train(
                frames,
                keypoints,
                ["snout", "leftear", "rightear", "tail"],
                epochs=1,
                checkpoint_dir=tmp_path / "d",
                init_weights=trained,
                **kwargs,
            )
        )
    with pytest.raises(ValueError, match="not both"):
        next(
            iter_train(
                frames,
                keypoints,
                bodyparts,
                epochs=1,
                checkpoint_dir=tmp_path / "e",
                init_weights=trained,
                resume=trained,
                **kwargs,
            )
        )


def test_weight_average_follows_the_weights_with_a_warmed_up_decay():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    average.update(model)  # first update: decay min(0.9, 2 / 11)
    d = 2 / 11
    assert torch.allclose(average.model[0].weight, d * start + (1 - d) * model[0].weight)
    assert int(average.model[1].num_batches_tracked) == 7  # integer buffers are copied
    for _ in range(200):
        average.update(model)
    assert torch.allclose(average.model[0].weight, model[0].weight, atol=1e-6)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_checkpoints_serve_the_averaged_weights_and_resume_from_the_raw_ones(behaviour, tmp_path):
    kwargs = {
        "bodyparts": list(behaviour.bodyparts),
        "backbone": "resnet18",
        "pretrained": False,
        "head_stride": 4,
        "batch_size": 4,
        "lr": 3e-3,
        "augmentation": False,
        "device": "cpu",
        "eval_every": 0,
    }
    _, path = drain(
        iter_train(
            behaviour.frames, behaviour.keypoints, epochs=2, checkpoint_dir=tmp_path / "a", ema_decay=0.5, **kwargs
        )
    )
    state = torch.load(path, map_location="cpu", weights_only=False)
    name = (
        "head.heatmap.weight"
        if "head.heatmap.weight" in state["state_dict"]
        else next(k for k, v in state["state_dict"].items() if v.is_floating_point() and v.ndim == 4)
    )
    assert not torch.equal(state["state_dict"][name], state["train_state_dict"][name])
    model = load_checkpoint(path)[0]  # prediction gets the average
    assert torch.equal(model.state_dict()[name], state["state_dict"][name])
    # resuming continues the raw weights and the average
    _, resumed = drain(
        iter_train(
            behaviour.frames,
            behaviour.keypoints,
            epochs=3,
            checkpoint_dir=tmp_path / "b",
            resume=path,
            ema_decay=0.5,
            **kwargs,
        )
    )
    assert load_checkpoint(resumed)[2]["epoch"] == 3
    _, plain = drain(
        iter_train(
            behaviour.frames, behaviour.keypoints, epochs=1, checkpoint_dir=tmp_path / "c", ema_decay=None, **kwargs
        )
    )
    assert "train_state_dict" not in torch.load(plain, map_location="cpu", weights_only=False)
    with pytest.raises(ValueError, match="ema_decay"):
        next(
            iter_train(
                behaviour.frames, behaviour.keypoints, epochs=1, checkpoint_dir=tmp_path / "d", ema_decay=1.0, **kwargs
            )
        )


def test_stopping_saves_a_checkpoint(behaviour, tmp_path):
    kwargs = {
        "bodyparts": list(behaviour.bodyparts),
        "backbone": "resnet18",
        "pretrained": False,
        "head_stride": 4,
        "batch_size": 4,
        "epochs": 5,
        "device": "cpu",
        "eval_every": 0,
    }
    gen = iter_train(behaviour.frames, behaviour.keypoints, checkpoint_dir=tmp_path / "close", **kwargs)
    next(gen)
    gen.close()
    assert (tmp_path / "close" / "checkpoint.pt").is_file()
    load_checkpoint(tmp_path / "close" / "checkpoint.pt")

    calls = iter(range(100))
    progress, path = drain(
        iter_train(
            behaviour.frames,
            behaviour.keypoints,
            checkpoint_dir=tmp_path / "flag",
            stop=lambda: next(calls) >= 2,
            **kwargs,
        )
    )
    assert len(progress) == 2 and path.is_file()


def test_time_budget_stops_with_a_decayed_schedule_and_a_checkpoint(behaviour, tmp_path, monkeypatch):
    import time

    import napari_posekit.core.train as train_module

    class Clock:  # training's clock: 0.1 s passes at every reading, however busy the machine is
        now = 0.0

        def monotonic(self):
            self.now += 0.1
            return self.now

        def __getattr__(self, name):
            return getattr(time, name)

    monkeypatch.setattr(train_module, "time", Clock())
    progress, path = drain(
        iter_train(
            behaviour.frames,
            behaviour.keypoints,
            bodyparts=list(behaviour.bodyparts),
            backbone="resnet18",
            pretrained=False,
            head_stride=4,
            batch_size=4,
            epochs=None,
            max_minutes=0.1,
            lr=1e-3,
            checkpoint_dir=tmp_path / "budget",
            device="cpu",
        )
    )
    steps = [p for p in progress if "event" not in p]
    # it trains until the budget (each clock reading is 0.1 s of the 6 s, so the last step is within a few readings)
    assert len(steps) >= 5 and steps[-1]["progress"] == pytest.approx(1.0, abs=0.05)
    # the learning rate follows the time budget: a cosine decay that has nearly ended at the last step
    lrs = [p["lr"] for p in steps]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.1 * lrs[0]
    assert 1e-3 * lr_factor(steps[-1]["progress"]) <= lrs[-1] <= 1e-3 * lr_factor(steps[-2]["progress"])
    assert progress[-1]["event"] == "evaluated"
    meta = load_checkpoint(path)[2]
    assert meta["train_seconds"] >= 6.0 and meta["history"][-1]["test_error_px"] == progress[-1]["test_error_px"]
    with pytest.raises(ValueError, match="epochs, max_minutes"):
        next(iter_train(behaviour.frames, behaviour.keypoints, epochs=None, max_minutes=None))


def test_load_checkpoint_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
