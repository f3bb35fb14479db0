"""Inference engine: whole-frame and crop (fast) modes, batching, chunked files, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.inference import AnalysisError, Predictor, analyze_video, iter_analyze, output_paths
from napari_posekit.core.model import PoseOutput
from napari_posekit.core.predictions import read_predictions
from napari_posekit.core.video import write_video

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]


class SpotModel(nn.Module):
    """A stand-in network: keypoint k is the bright spot in colour channel k (exact, no training needed)."""

    backbone_stride = 32
    stride = 4

    def __init__(self, n_keypoints: int = 2):
        super().__init__()
        self.n_keypoints = n_keypoints
        self.gain = nn.Parameter(torch.tensor(80.0))
        self.calls: list[tuple[int, ...]] = []

    def normalize(self, x):
        return x

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        pooled = F.avg_pool2d(x[:, : self.n_keypoints], 4, ceil_mode=True)
        heat = pooled * self.gain - 10.0
        locref = torch.zeros(x.shape[0], 2 * self.n_keypoints, *heat.shape[-2:])
        return PoseOutput(heat, locref)


def spot_predictor(n_keypoints: int = 2) -> Predictor:
    meta = {
        "bodyparts": [f"spot{k}" for k in range(n_keypoints)],
        "input_scale": 1.0,
        "step": 7,
        "model_config": {"backbone": "spot_model"},
    }
    return Predictor(SpotModel(n_keypoints), HeatmapCodec((64, 64), stride=4), meta)


def draw_spots(truth: np.ndarray, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Frames with keypoint k drawn as a bright disk in colour channel k, on a noisy blue channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.zeros((len(truth), h, w, 3), np.uint8)
    frames[..., 2] = rng.integers(0, 30, size=(len(truth), h, w))
    for i in range(len(truth)):
        for k in range(truth.shape[1]):
            x, y = truth[i, k]
            frames[i, ..., k] = np.where((xx - x) ** 2 + (yy - y) ** 2 <= 9.0, 255, 0)
    return frames


def spot_path(n: int = 40, h: int = 120, w: int = 160, period: float = 10.0) -> np.ndarray:
    """Two keypoints (red, green spots) moving together along a smooth loop: ``(n, 2, 2)``."""
    t = np.arange(n)
    centre = np.stack([w / 2 + 0.35 * w * np.sin(t / period), h / 2 + 0.3 * h * np.cos(t / (1.2 * period))], axis=1)
    return np.stack([centre + [-6.0, 0.0], centre + [6.0, 3.0]], axis=1)


def spot_frames(n: int = 40, h: int = 120, w: int = 160, period: float = 10.0):
    truth = spot_path(n, h, w, period)
    return draw_spots(truth, h, w), truth


def collect(chunks):
    chunks = list(chunks)
    return (np.concatenate([c.xy for c in chunks]), np.concatenate([c.likelihood for c in chunks]), chunks)


def test_whole_frame_predictions_find_the_spots():
    frames, truth = spot_frames()
    xy, p = spot_predictor().predict(frames)
    assert xy.shape == (40, 2, 2) and p.shape == (40, 2)
    assert np.abs(xy - truth).max() < 2.0
    assert (p > 0.99).all()


@pytest.mark.parametrize("fast", [False, True])
def test_results_do_not_depend_on_batch_size(fast):
    frames, _ = spot_frames()
    results = [collect(iter_analyze(spot_predictor(), frames, batch_size=b, fast=fast, block=8))[:2] for b in (1, 3, 8)]
    for xy, p in results[1:]:
        np.testing.assert_allclose(xy, results[0][0], atol=1e-4)
        np.testing.assert_allclose(p, results[0][1], atol=1e-5)


def test_fast_mode_crops_around_the_animal_and_matches_the_whole_frame():
    frames, truth = spot_frames(n=48, h=240, w=320, period=25.0)  # up to 4 px per frame
    predictor = spot_predictor()
    full_xy, _, _ = collect(iter_analyze(predictor, frames, fast=False))
    predictor.model.calls.clear()
    fast_xy, _fast_p, chunks = collect(iter_analyze(predictor, frames, fast=True, block=8, crop_size=64, margin=24))
    np.testing.assert_allclose(fast_xy, full_xy, atol=0.5)
    assert np.abs(fast_xy - truth).max() < 2.0
    # the network saw crops, not whole frames, for almost every frame
    pixels = [s[0] * s[2] * s[3] for s in predictor.model.calls]
    assert sum(pixels) < 0.3 * 48 * 240 * 320
    assert sum(c.full_frames for c in chunks[1:]) == 0  # only the first block needed whole frames


def test_fast_mode_falls_back_to_the_whole_frame_when_the_animal_jumps():
    truth = spot_path(n=16, h=240, w=320, period=25.0)
    truth[8:] += [-120.0, -80.0]  # teleports out of the tracked crop
    frames = draw_spots(truth, 240, 320)
    xy, _p, chunks = collect(iter_analyze(spot_predictor(), frames, fast=True, block=4, crop_size=64, margin=16))
    assert np.abs(xy - truth).max() < 2.0
    assert sum(c.full_frames for c in chunks) >= 4  # the block after the jump was redone on whole frames


def test_stop_between_blocks_and_close_releases_the_decoder():
    frames, _ = spot_frames()
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 2

    chunks = list(iter_analyze(spot_predictor(), frames, block=8, should_stop=stop))
    assert [c.start for c in chunks] == [0, 8]
    gen = iter_analyze(spot_predictor(), frames, block=8)
    next(gen)
    gen.close()  # must not hang on the decoding thread


def test_frame_range_and_grayscale_arrays():
    frames, truth = spot_frames()
    xy, _, chunks = collect(iter_analyze(spot_predictor(1), frames[..., 0], start=5, stop=23, block=8))
    assert chunks[0].start == 5 and chunks[-1].stop == 23
    assert np.abs(xy[:, 0] - truth[5:23, 0]).max() < 2.0


@pytest.fixture()
def spot_video(tmp_path):
    frames, truth = spot_frames(n=36)
    return write_video(frames, tmp_path / "spots.mp4", fps=30, quality=10), truth


def test_analyze_video_writes_deeplabcut_files(spot_video, tmp_path):
    path, truth = spot_video
    predictor = spot_predictor()
    events = []
    gen = analyze_video(predictor, path, output_dir=tmp_path / "out", batch_size=4)
    try:
        while True:
            events.append(next(gen))
    except StopIteration as done:
        h5 = done.value
    assert h5 == output_paths(path, predictor.scorer, tmp_path / "out")["h5"]
    assert h5.name == "spotsDLC_spotmodel_posekitshuffle1_7.h5"
    assert events[-1]["done"] == events[-1]["total"] == 36
    pred = read_predictions(h5)
    assert pred.bodyparts == ["spot0", "spot1"] and pred.scorer == predictor.scorer
    assert np.abs(pred.xy - truth).max() < 2.5
    import pandas as pd

    df = pd.read_hdf(h5, key="df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(df.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    assert h5.with_suffix(".csv").is_file()
    assert not any(p.name.startswith(".") for p in (tmp_path / "out").iterdir())
    # an existing result is kept
    gen = analyze_video(predictor, path, output_dir=tmp_path / "out")
    with pytest.raises(StopIteration) as again:
        next(gen)
    assert again.value.value == h5


def test_an_interrupted_run_resumes_where_it_stopped(spot_video, tmp_path):
    path, _ = spot_video
    predictor = spot_predictor()
    out = tmp_path / "out"
    gen = analyze_video(predictor, path, output_dir=out, block=8, chunk_frames=8)
    for _ in range(2):
        next(gen)
    gen.close()  # interrupted after 16 frames
    paths = output_paths(path, predictor.scorer, out)
    assert not paths["h5"].exists()
    state = json.loads(paths["partial_state"].read_text())
    assert state["done"] == 16
    events = list(_drain(analyze_video(predictor, path, output_dir=out, block=8, chunk_frames=8)))
    assert events[0]["chunk"].start == 16
    resumed = read_predictions(paths["h5"]).xy
    fresh = _drain_result(analyze_video(predictor, path, output_dir=tmp_path / "fresh", block=8))
    np.testing.assert_allclose(resumed, read_predictions(fresh).xy, atol=1e-4)
    assert not paths["partial"].exists() and not paths["partial_state"].exists()


def _drain(gen):
    try:
        while True:
            yield next(gen)
    except StopIteration:
        return


def _drain_result(gen):
    try:
        while True:
            next(gen)
    except StopIteration as done:
        return done.value


def test_corrupt_frames_come_out_nan_with_zero_likelihood():
    frames, _ = spot_frames(n=20)

    class Flaky:
        shape = frames.shape

        def __getitem__(self, i):
            if i in (3, 11):
                raise OSError(f"corrupt frame {i}")
            return frames[i]

    xy, p, chunks = collect(iter_analyze(spot_predictor(), Flaky(), block=8))
    assert np.isnan(xy[[3, 11]]).all() and (p[[3, 11]] == 0).all()
    assert np.isfinite(np.delete(xy, [3, 11], axis=0)).all()
    failed = {}
    for c in chunks:
        failed.update(c.failed)
    assert sorted(failed) == [3, 11] and "corrupt frame 3" in failed[3]


def test_unwritable_output_folder_is_a_clear_error(spot_video, tmp_path):
    path, _ = spot_video
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AnalysisError, match="cannot write"):
        next(analyze_video(spot_predictor(), path, output_dir=blocker / "out"))


def test_loading_a_model_for_other_bodyparts_or_a_bad_checkpoint(tmp_path):
    from napari_posekit.core.train import CheckpointError

    with pytest.raises(FileNotFoundError):
        Predictor.load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"kind": "napari-posekit-checkpoint", "version": 99}, bad)
    with pytest.raises(CheckpointError, match="newer"):
        Predictor.load(bad)


def test_a_project_model_for_other_bodyparts_is_refused(tiny_project_copy):
    from napari_posekit.core.config import read_config, write_config

    project = tiny_project_copy  # a trained model; its config is changed below
    predictor = Predictor.load(project)
    assert predictor.bodyparts == read_config(project).bodyparts
    assert predictor.scorer.startswith("DLC_resnet18_") and "shuffle1" in predictor.scorer
    config = read_config(project)
    config["bodyparts"] = [*config["bodyparts"], "tail_tip"]
    write_config(project, config)
    with pytest.raises(AnalysisError, match="tail_tip"):
        Predictor.load(project)


def test_evaluation_and_inference_agree():
    """Training's evaluation (torch) and the Predictor (NumPy scaling, padding and decoding) give the same keypoints.

    Up to float rounding at scale 1; at scale 0.5 the Predictor's resized frames
    are rounded to uint8, which moves keypoints by hundredths of a pixel.
    """
    from napari_posekit.core.evaluation import predict_images

    frames, _ = spot_frames(n=6)
    predictor = spot_predictor()
    predictor.freeze = False
    predictor.precision = "float32"
    for scale in (1.0, 0.5):
        predictor.input_scale = scale
        xy, p = predictor.predict(frames, batch_size=4)
        xy_eval, p_eval = predict_images(predictor.model, predictor.codec, frames, input_scale=scale, batch_size=4)
        assert xy.dtype == xy_eval.dtype == np.float64 and p.dtype == np.float64
        np.testing.assert_allclose(xy, xy_eval, atol=0.01 if scale == 1.0 else 0.05)
        np.testing.assert_allclose(p, p_eval, atol=1e-5 if scale == 1.0 else 0.01)
