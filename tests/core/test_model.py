"""PoseModel: backbones, packaged ImageNet weights, weight errors, a tiny overfit."""

from __future__ import annotations

import time

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from napari_posekit.core import model as model_module
from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.model import (
    PoseModel,
    PretrainedWeightsError,
    UnknownBackboneError,
    create_backbone,
    load_imagenet_weights,
)

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def test_packaged_efficientnet_lite0_classifies_imagenet_images():
    from skimage import data, transform

    classifier = load_imagenet_weights(timm.create_model("efficientnet_lite0", pretrained=False)).eval()
    for image, expected in [(data.chelsea(), 285), (data.coffee(), 967)]:
        x = transform.resize(image, (224, 224), anti_aliasing=True).astype(np.float32)
        x = (x - IMAGENET_MEAN) / IMAGENET_STD
        with torch.no_grad():
            logits = classifier(torch.from_numpy(x).permute(2, 0, 1)[None])
        assert logits.argmax().item() == expected


def test_packaged_weights_reach_the_pose_backbone():
    pose = PoseModel("efficientnet_lite0", n_keypoints=2, pretrained=True)
    classifier = load_imagenet_weights(timm.create_model("efficientnet_lite0", pretrained=False))
    reference = classifier.state_dict()
    for key, value in pose.backbone.state_dict().items():
        torch.testing.assert_close(value, reference[key])
    assert pose.mean == pytest.approx(tuple(IMAGENET_MEAN)) and pose.std == pytest.approx(tuple(IMAGENET_STD))


def test_load_imagenet_weights_rejects_other_models():
    with pytest.raises(PretrainedWeightsError, match="efficientnet_lite0"):
        load_imagenet_weights(timm.create_model("resnet18", pretrained=False))


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
@pytest.mark.parametrize("head_stride", [8, 4])
def test_forward_shapes_and_stride(backbone, head_stride):
    pose = PoseModel(backbone, n_keypoints=3, pretrained=False, head_stride=head_stride).eval()
    assert pose.backbone_stride == pose.backbone.feature_info.reduction()[-1] == 32
    assert pose.stride == head_stride
    with torch.no_grad():
        out = pose(torch.zeros(2, 3, 64, 64))
    side = 64 // head_stride
    assert out.heatmaps.shape == (2, 3, side, side)
    assert out.locref.shape == (2, 6, side, side)
    with torch.no_grad():
        odd = pose(torch.zeros(1, 3, 50, 70))
    assert odd.heatmaps.shape[-2:] == HeatmapCodec((50, 70), head_stride).output_size


def test_bad_head_stride_and_names():
    with pytest.raises(ValueError, match="head_stride"):
        PoseModel("resnet18", n_keypoints=1, pretrained=False, head_stride=6)
    with pytest.raises(UnknownBackboneError, match="resnet18"):
        PoseModel("resnet18x", n_keypoints=1, pretrained=False)


def test_config_round_trip():
    pose = PoseModel("resnet18", n_keypoints=4, pretrained=False, head_stride=8, head_channels=32)
    clone = PoseModel.from_config(pose.config())
    clone.load_state_dict(pose.state_dict())
    assert clone.config() == pose.config()


def test_normalize():
    pose = PoseModel("resnet18", n_keypoints=1, pretrained=False)
    images = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    expected = (1.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(pose.normalize(images)[0, :, 0, 0].numpy(), expected, rtol=1e-5)


def test_local_weight_file(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    pose = PoseModel("resnet18", n_keypoints=1, pretrained=str(path))
    torch.testing.assert_close(pose.backbone.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])
    with pytest.raises(PretrainedWeightsError, match="not found"):
        create_backbone("resnet18", pretrained=str(tmp_path / "missing.pth"))


def test_unreachable_hub_raises_quickly(monkeypatch):
    monkeypatch.setattr(model_module, "_cached_timm_weights", lambda name: None)
    monkeypatch.setattr(model_module, "_host_reachable", lambda url, timeout=0: False)
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError, match="pretrained=False"):
        PoseModel("resnet18", n_keypoints=1, pretrained=True)
    assert time.perf_counter() - start < 5


def test_pretrained_true_without_network_does_not_hang():
    """In this environment the Hub is unreachable unless weights are cached: either way no hang."""
    start = time.perf_counter()
    try:
        create_backbone("resnet18", pretrained=True)
    except PretrainedWeightsError:
        pass
    assert time.perf_counter() - start < 30


def test_model_without_pretrained_weights_is_an_error(monkeypatch):
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name, **kw: None)
    with pytest.raises(PretrainedWeightsError, match="no pretrained weights"):
        create_backbone("resnet18", pretrained=True)


def _dot_images(xy: np.ndarray, size: int = 64) -> torch.Tensor:
    yy, xx = np.mgrid[:size, :size]
    images = []
    for x, y in xy:
        blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
        images.append(np.repeat(blob[None], 3, axis=0))
    return torch.tensor(np.stack(images), dtype=torch.float32)


def test_tiny_overfit():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xy = rng.uniform(8, 56, size=(4, 1, 2))
    pose = PoseModel("resnet18", n_keypoints=1, pretrained=False, head_stride=4, head_channels=32)
    codec = HeatmapCodec((64, 64), stride=pose.stride, sigma=1.5)
    images = pose.normalize(_dot_images(xy[:, 0]))
    targets = codec.encode_batch(torch.tensor(xy, dtype=torch.float32))
    optimizer = torch.optim.AdamW(pose.parameters(), lr=3e-3)
    pose.train()
    for _ in range(80):  # enough steps for BatchNorm running statistics to settle
        out = pose(images)
        loss = F.binary_cross_entropy_with_logits(out.heatmaps, targets["heatmaps"])
        loss = (
            loss
            + (F.smooth_l1_loss(out.locref, targets["locref"], reduction="none") * targets["locref_weights"]).sum()
            / targets["locref_weights"].sum()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pose.eval()
    with torch.no_grad():
        out = pose(images)
    pred, conf = codec.decode(out.heatmaps, out.locref, from_logits=True)
    error = np.linalg.norm(pred.numpy() - xy, axis=-1)
    assert error.max() < 3.0, error
    assert (conf > 0.5).all()
