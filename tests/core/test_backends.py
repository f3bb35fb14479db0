"""Backends chosen by measurement: the probe, the cache, fallbacks, and that every backend predicts the same."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import torch_thread_limit
from napari_posekit.core import backends
from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.engines import EngineError, available_runtimes
from napari_posekit.core.predictor import AnalysisError, Predictor, resize_bilinear

pytest.importorskip("onnxruntime")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("POSEKIT_CACHE_DIR", str(folder))
    monkeypatch.delenv("POSEKIT_BACKEND", raising=False)
    return folder


# --------------------------------------------------------------------------- pieces
def test_numpy_decoding_is_the_torch_decoding():
    rng = np.random.default_rng(0)
    heat = rng.random((3, 5, 16, 20)).astype(np.float32)
    heat[0, 0, 0, 0] = 2.0  # a peak on the border: its neighbourhood is cut
    heat[1, 2, 15, 19] = 2.0
    locref = rng.normal(size=(3, 10, 16, 20)).astype(np.float32)
    for radius in (0, 1, 2):
        codec = HeatmapCodec((64, 80), stride=4, refine_radius=radius)
        xy, conf = codec.decode(heat, locref)
        xy_np, conf_np = codec.decode_numpy(heat, locref)
        np.testing.assert_allclose(xy_np, xy, atol=1e-4)
        np.testing.assert_array_equal(conf_np, conf)


@pytest.mark.parametrize("scale", [0.5, 0.37, 1.6])
def test_resizing_matches_the_training_resize(scale):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(2, 48, 70, 3), dtype=np.uint8)
    ours = resize_bilinear(frames, scale)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    theirs = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    assert np.abs(ours - theirs).max() <= 0.5 + 1e-3  # the same up to rounding to uint8


def test_a_truncated_model_file_is_not_read(tmp_path, tiny_trained_project):
    from napari_posekit.core.export import export_model
    from napari_posekit.core.model_file import ModelFileError, read_model_meta

    whole = export_model(tiny_trained_project, tmp_path / "whole.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="not an ONNX model file"):
        read_model_meta(cut)


# --------------------------------------------------------------------------- the probe
class _Fake:
    """A predictor that answers ``truth + shift`` after ``delay`` seconds per call."""

    def __init__(self, truth, shift, delay):
        self.truth, self.shift, self.delay = truth, shift, delay

    def predict(self, images, batch_size=16):
        time.sleep(self.delay)
        n = len(images)
        xy = self.truth[np.arange(n) % len(self.truth)] + self.shift
        return xy, np.ones(xy.shape[:2])


def test_the_probe_ranks_accepted_backends_by_speed_and_says_why_others_are_out():
    truth = np.random.default_rng(2).uniform(0, 60, size=(6, 3, 2))
    images = np.zeros((6, 32, 32, 3), np.uint8)

    def broken():
        raise EngineError("no such runtime here")

    ranking = backends.probe_backends(
        {
            "exact-slow": lambda: _Fake(truth, 0.0, 0.03),
            "close-fast": lambda: _Fake(truth, np.array([0.05, 0.0]), 0.0),
            "far-fastest": lambda: _Fake(truth, np.array([0.0, 0.5]), 0.0),
            "broken": broken,
        },
        "exact-slow",
        images,
        truth,
        repeats=2,
    )
    names = [e["backend"] for e in ranking]
    assert names[:2] == ["close-fast", "exact-slow"]
    verdict = {e["backend"]: e for e in ranking}
    assert not verdict["far-fastest"]["accepted"] and "costs 0.50 px" in verdict["far-fastest"]["reason"]
    assert not verdict["broken"]["accepted"] and "no such runtime" in verdict["broken"]["reason"]
    assert verdict["close-fast"]["error_px"] == pytest.approx(0.05, abs=1e-6)


def test_without_frames_to_check_only_lossless_backends_are_accepted():
    truth = np.zeros((1, 2, 2))
    ranking = backends.probe_backends(
        {"x-float32": lambda: _Fake(truth, 0, 0), "x-int8": lambda: _Fake(truth, 0, 0)}, "x-float32", None
    )
    verdict = {e["backend"]: e["accepted"] for e in ranking}
    assert verdict == {"x-float32": True, "x-int8": False}


# --------------------------------------------------------------------------- loading a project's model
def test_the_choice_is_measured_once_then_read_from_the_cache(tiny_trained_project, cache, monkeypatch):
    with torch_thread_limit():
        first = Predictor.load(tiny_trained_project)
    entry = next(iter(json.loads((cache / "backends.json").read_text()).values()))
    ranking = entry["ranking"]
    assert first.backend == next(e["backend"] for e in ranking if e["accepted"])
    assert {e["backend"] for e in ranking} >= {"torch-frozen-float32", "onnxruntime-float32", "onnxruntime-int8"}
    assert all(e["error_px"] is not None for e in ranking if e["accepted"])  # measured against the labels

    def no_probe(*args, **kwargs):
        raise AssertionError("the cached choice should have been used")

    monkeypatch.setattr(backends, "probe_backends", no_probe)
    with torch_thread_limit():
        again = Predictor.load(tiny_trained_project)
    assert again.backend == first.backend
    assert again.scorer == first.scorer and again.bodyparts == first.bodyparts


def test_a_backend_that_fails_to_load_falls_back_and_says_so(tiny_trained_project, cache, monkeypatch):
    from napari_posekit.core.model_paths import latest_checkpoint

    checkpoint = latest_checkpoint(tiny_trained_project)
    key = backends._cache_key(backends._digest(checkpoint), backends.machine_signature())
    ranking = [
        {"backend": "openvino-float32", "accepted": True, "ms_per_image": 1.0},
        {"backend": "onnxruntime-float32", "accepted": True, "ms_per_image": 2.0},
    ]
    backends._write_cache(key, {"ranking": ranking})

    def cannot(*args, **kwargs):
        raise EngineError("OpenVINO cannot compile it")

    monkeypatch.setattr(backends.OpenVinoEngine, "__init__", cannot)
    lines: list[str] = []
    with torch_thread_limit():
        predictor = Predictor.load(tiny_trained_project, report=lines.append)
    assert predictor.backend == "onnxruntime-float32"
    assert any("openvino-float32 failed to load" in n for n in predictor.notes)
    assert lines == predictor.notes  # said once, where the run reports


def test_a_forced_backend_is_used_and_a_wrong_one_is_refused(tiny_trained_project, cache, monkeypatch):
    with torch_thread_limit():
        assert Predictor.load(tiny_trained_project, backend="torch-eager-float32").backend == "torch-eager-float32"
        monkeypatch.setenv("POSEKIT_BACKEND", "onnxruntime-float32")
        assert Predictor.load(tiny_trained_project).backend == "onnxruntime-float32"
        with pytest.raises(AnalysisError, match="unknown backend 'tensorflow'"):
            Predictor.load(tiny_trained_project, backend="tensorflow")
    assert not (cache / "backends.json").exists()  # nothing was measured


def test_every_backend_predicts_the_same_keypoints(tiny_trained_project, cache):
    """Float32 backends agree to rounding; the torch frozen graph and every runtime decode alike."""
    from napari_posekit.core.data import load_image, load_project_labels

    paths, _, _ = load_project_labels(tiny_trained_project)
    frames = np.stack([load_image(p) for p in paths[:4]])
    names = ["torch-eager-float32", "torch-frozen-float32", "onnxruntime-float32"]
    names += ["openvino-float32"] if "openvino" in available_runtimes() else []
    with torch_thread_limit():
        results = {n: Predictor.load(tiny_trained_project, backend=n).predict(frames) for n in names}
    ref_xy, ref_p = results["torch-eager-float32"]
    for name, (xy, p) in results.items():
        np.testing.assert_allclose(xy, ref_xy, atol=0.02, err_msg=name)
        np.testing.assert_allclose(p, ref_p, atol=1e-3, err_msg=name)
