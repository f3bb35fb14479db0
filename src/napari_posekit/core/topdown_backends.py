"""The backend of each network of a multi-animal model, chosen by measurement.

:func:`load_network` is :meth:`Predictor.load <napari_posekit.core.predictor.Predictor.load>`
for the finder and the pose network of a multi-animal model: the same
candidates (torch eager or frozen, onnxruntime, OpenVINO; float32, bfloat16
and int8), the same measurement and the same cache of rankings and graphs
(:mod:`~napari_posekit.core.backends`).  What differs is the data: the
networks' body parts are not the project's (the finder's are the
individuals), and their inputs are whole downscaled frames or crops centred on
an animal, so the probe images and the int8 calibration images come from the
caller (``probe``), not from the project's single-animal labels.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_network"]

_CALIBRATION_BATCH = 8


def _calibration(images: np.ndarray, pad_to: int) -> list[np.ndarray]:
    """int8 calibration batches from probe images (padded to a multiple of ``pad_to``)."""
    h, w = images.shape[1:3]
    ph, pw = (-h) % pad_to, (-w) % pad_to
    if ph or pw:
        images = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)))
    return [images[i : i + _CALIBRATION_BATCH] for i in range(0, len(images), _CALIBRATION_BATCH)]


def load_network(
    checkpoint: str | os.PathLike,
    *,
    device: Any = "cpu",
    backend: str = "auto",
    probe: Callable[[], tuple[np.ndarray | None, np.ndarray | None]] | None = None,
    calibration: Callable[[], np.ndarray | None] | None = None,
    threads: int | None = None,
    report: Callable[[str], None] | None = None,
    budget_px: float | None = None,
):
    """A :class:`~napari_posekit.core.predictor.Predictor` for one network of a multi-animal model.

    ``backend="auto"`` measures the candidates once per checkpoint and
    machine on the images ``probe()`` returns: ``(images, truth)``, uint8
    ``(N, H, W, 3)`` images as :meth:`Predictor.predict` takes them (scaled
    by the checkpoint's input scale) and their ``(N, K, 2)`` keypoints or
    None.  ``calibration()`` gives int8's calibration images, as the network
    sees them (default: the probe images, for networks at scale 1).
    It takes the fastest backend whose error against ``truth`` is within
    :data:`~napari_posekit.core.backends.ACCURACY_BUDGET_PX` of the float32
    reference's (without truth: whose confident keypoints stay that close to
    the reference's).  int8 is a candidate only with probe images, which also
    calibrate it; without any, only float32 backends compete.  ``budget_px``
    replaces the accuracy budget for a network that needs less precision
    (the finder, whose anchors only centre the pose network's crops).
    """
    from . import backends as bk
    from .checkpoint import load_checkpoint
    from .engines import available_runtimes
    from .forward import pad_multiple
    from .predictor import AnalysisError, Predictor

    backend = os.environ.get("POSEKIT_BACKEND", backend) if backend == "auto" else backend
    if backend != "auto" and backend not in bk.BACKENDS:
        raise AnalysisError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(bk.BACKENDS)}")
    checkpoint = Path(checkpoint)
    model, codec, meta = load_checkpoint(checkpoint, device=device)
    pad_to = pad_multiple(model, codec)

    def torch_builder(freeze: bool, precision: str):
        return lambda: Predictor(
            model, codec, meta, checkpoint=checkpoint, device=device, precision=precision, freeze=freeze
        )

    on_cpu = str(device if device is not None else "cpu").split(":")[0] == "cpu"
    if not on_cpu:
        return torch_builder(True, "auto")()
    builders: dict[str, Callable[[], Any]] = {
        "torch-frozen-float32": torch_builder(True, "float32"),
        "torch-eager-float32": torch_builder(False, "float32"),
    }
    if bk._bf16_here():
        builders["torch-frozen-bfloat16"] = torch_builder(True, "bfloat16")
    probed = functools.cache(lambda: probe() if probe is not None else (None, None))

    def calibration_images():
        return calibration() if calibration is not None else probed()[0]

    digest_of = functools.cache(lambda: bk._digest(checkpoint))
    runtimes = available_runtimes()
    if runtimes and bk._version("onnx") is not None:

        def onnx_file(int8: bool) -> Path:
            from .export import onnx_bytes, quantize_onnx

            target = bk.cache_dir() / "models" / f"{digest_of()}{'-int8' if int8 else ''}.onnx"
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                data = onnx_bytes(model, codec, meta, checkpoint=checkpoint)
                if int8:
                    images = calibration_images()
                    if images is None or not len(images):
                        raise AnalysisError(f"{checkpoint}: int8 needs images to calibrate on")
                    data = quantize_onnx(data, _calibration(np.asarray(images), pad_to))
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)
            return target

        def onnx_builder(name: str):
            return lambda: Predictor(
                bk._runtime_engine(name, onnx_file(name.endswith("int8")), threads),
                codec,
                meta,
                checkpoint=checkpoint,
                pad_to=pad_to,
            )

        kinds = ["float32", *(["bfloat16"] if bk._bf16_here() else []), "int8"]
        for runtime in runtimes:
            for kind in kinds:
                if runtime == "onnxruntime" and kind == "bfloat16":
                    continue
                builders[f"{runtime}-{kind}"] = onnx_builder(f"{runtime}-{kind}")

    def probe_data(reference):
        images, truth = probed()
        if images is None or not len(images):
            return None, None
        return np.asarray(images), truth

    if backend == "auto" and budget_px is not None and len(builders) > 1:
        key = bk._cache_key(digest_of(), bk.machine_signature())
        if key not in bk._read_cache():
            if report is not None:
                report(f"choosing the fastest backend for {checkpoint.parent.name} on this machine (once)")
            images, truth = probe_data(None)
            ranking = bk.probe_backends(builders, builders["torch-eager-float32"](), images, truth, budget_px=budget_px)
            bk._write_cache(
                key,
                {
                    "ranking": ranking,
                    "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "machine": bk.machine_signature(),
                    "budget_px": budget_px,
                },
            )
    return bk._choose(builders, "torch-eager-float32", backend, digest_of, probe_data, report)
