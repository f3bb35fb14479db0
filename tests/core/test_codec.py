"""HeatmapCodec: targets, round trip, batching, storage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_posekit.core.codec import HeatmapCodec

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]


def _random_keypoints(rng, n, height, width, missing=()):
    xy = np.stack([rng.uniform(-0.5, width - 0.5, n), rng.uniform(-0.5, height - 0.5, n)], axis=1)
    for k in missing:
        xy[k] = np.nan
    return xy


def test_output_size_and_cell_centres():
    codec = HeatmapCodec((64, 100), stride=8)
    assert codec.output_size == (8, 13)
    xs, ys = codec.cell_centres()
    assert xs[0] == 3.5 and xs[1] == 11.5  # cell j covers pixels 8j..8j+7
    assert ys[-1] == 7 * 8 + 3.5


@pytest.mark.parametrize("stride", [4, 8])
def test_round_trip_subpixel(stride):
    rng = np.random.default_rng(stride)
    codec = HeatmapCodec((64, 96), stride=stride)
    for _ in range(20):
        xy = _random_keypoints(rng, 6, 64, 96, missing=(1, 4))
        t = codec.encode(xy)
        h, w = codec.output_size
        assert t["heatmaps"].shape == (6, h, w) and t["heatmaps"].dtype == np.float32
        assert t["locref"].shape == (12, h, w) and t["locref_weights"].shape == (12, h, w)
        np.testing.assert_array_equal(t["weights"], [1, 0, 1, 1, 0, 1])
        for k in (1, 4):
            assert not t["heatmaps"][k].any() and not t["locref"][2 * k : 2 * k + 2].any()
            assert not t["locref_weights"][2 * k : 2 * k + 2].any()

        out_xy, conf = codec.decode(t["heatmaps"][None], t["locref"][None])
        assert out_xy.shape == (1, 6, 2) and conf.shape == (1, 6)
        present = ~np.isnan(xy).any(axis=1)
        err = np.abs(out_xy[0][present] - xy[present])
        assert err.max() < 0.05
        assert (conf[0][present] > 0.9).all()
        assert (conf[0][~present] == 0).all()

        xy_nan, _ = codec.decode(t["heatmaps"][None], t["locref"][None], min_confidence=0.5)
        assert np.isnan(xy_nan[0][~present]).all()
        assert not np.isnan(xy_nan[0][present]).any()


def test_gaussian_and_locref_values():
    codec = HeatmapCodec((32, 32), stride=4, sigma=1.5, locref_std=7.2801, locref_radius=2.0)
    x, y = 10.2, 5.9
    t = codec.encode(np.array([[x, y]]))
    for i, j in [(1, 2), (0, 0), (3, 5)]:
        cx, cy = j * 4 + 1.5, i * 4 + 1.5
        d2 = ((x - cx) / 4) ** 2 + ((y - cy) / 4) ** 2
        assert t["heatmaps"][0, i, j] == pytest.approx(np.exp(-d2 / (2 * 1.5**2)), rel=1e-5)
        inside = d2 <= 4.0
        assert t["locref_weights"][0, i, j] == float(inside)
        expected = ((x - cx) / 7.2801, (y - cy) / 7.2801) if inside else (0.0, 0.0)
        assert t["locref"][0, i, j] == pytest.approx(expected[0], abs=1e-6)
        assert t["locref"][1, i, j] == pytest.approx(expected[1], abs=1e-6)


def test_batched_torch_encode_matches_numpy():
    rng = np.random.default_rng(0)
    codec = HeatmapCodec((64, 64), stride=4)
    batch = np.stack([_random_keypoints(rng, 5, 64, 64, missing=(b,)) for b in range(3)])
    out = codec.encode_batch(torch.from_numpy(batch).float())
    assert out["heatmaps"].shape == (3, 5, 16, 16) and out["heatmaps"].dtype == torch.float32
    assert out["locref"].shape == (3, 10, 16, 16) and out["weights"].shape == (3, 5)
    for b in range(3):
        single = codec.encode(batch[b])
        for key, value in single.items():
            np.testing.assert_allclose(out[key][b].numpy(), value, atol=1e-6)


def test_decode_torch_input_and_logits():
    codec = HeatmapCodec((64, 64), stride=8)
    xy = np.array([[[20.3, 40.7], [5.0, 60.1]]])
    t = codec.encode_batch(torch.tensor(xy, dtype=torch.float32))
    logits = torch.logit(t["heatmaps"].clamp(1e-6, 1 - 1e-6))
    out, conf = codec.decode(logits, t["locref"], from_logits=True)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, 2)
    np.testing.assert_allclose(out.numpy(), xy, atol=0.05)
    assert (conf > 0.9).all()
    with pytest.raises(ValueError):
        codec.decode(t["heatmaps"], t["locref"][:, :2])


def test_dict_round_trip():
    codec = HeatmapCodec((48, 80), stride=4, sigma=1.5, locref_radius=2.5)
    data = json.loads(json.dumps(codec.to_dict()))
    assert HeatmapCodec.from_dict(data) == codec
    with pytest.raises(ValueError):
        HeatmapCodec.from_dict({**data, "type": "Other"})
    with pytest.raises(ValueError):
        HeatmapCodec((64, 64), stride=0)


def test_decode_averages_the_votes_around_the_peak_weighted_by_the_heatmap():
    codec = HeatmapCodec((32, 32), stride=4, refine_radius=1)
    hm = np.zeros((1, 1, 8, 8), np.float32)
    lr = np.zeros((1, 2, 8, 8), np.float32)
    hm[0, 0, 3, 3], hm[0, 0, 3, 4], hm[0, 0, 6, 6] = 0.9, 0.3, 0.2  # (6, 6) is outside the 3x3 window
    lr[0, 0, 3, 3] = 1.0 / codec.locref_std  # peak cell votes x + 1
    lr[0, 0, 3, 4] = -2.0 / codec.locref_std  # its right neighbour votes its own centre - 2
    xy, conf = codec.decode(hm, lr)
    peak_x, right_x = 3 * 4 + 1.5 + 1.0, 4 * 4 + 1.5 - 2.0
    assert xy[0, 0, 0] == pytest.approx((0.9 * peak_x + 0.3 * right_x) / 1.2, abs=1e-5)
    assert xy[0, 0, 1] == pytest.approx(3 * 4 + 1.5, abs=1e-5) and conf[0, 0] == pytest.approx(0.9)
    single = HeatmapCodec((32, 32), stride=4, refine_radius=0).decode(hm, lr)[0]
    assert single[0, 0, 0] == pytest.approx(peak_x, abs=1e-5)
