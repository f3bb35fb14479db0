"""Writing a trained model as a self-contained ONNX file (``posekit export``).

:func:`export_model` turns a checkpoint (or a project's latest one) into the
file :mod:`~napari_posekit.core.model_file` describes: the whole network of
:class:`~napari_posekit.core.torch_engine.PoseNetwork` (uint8 frames in,
heatmap probabilities and location refinement out) plus a JSON description
of body parts, codec, padding, input scale and scorer.  Such a file runs on
onnxruntime or OpenVINO without torch.

With ``int8=True`` the graph is quantised statically
(:func:`quantize_onnx`): int8 weights per output channel and uint8
activations whose ranges come from the project's own labeled frames
(:func:`calibration_batches`), fed as the crops around the animal that fast
analysis runs on plus some whole frames.  The two last convolutions (the
heatmap and location-refinement heads) and the sigmoid stay in float32, so
the outputs keep their resolution.

Needs torch and the ``onnx`` package; int8 also needs onnxruntime.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .model_file import META_KEY, MODEL_FORMAT, MODEL_FORMAT_VERSION, scorer_name
from .model_paths import project_of_checkpoint
from .predictor import resize_bilinear

__all__ = [
    "ExportError",
    "calibration_batches",
    "export_model",
    "onnx_bytes",
    "quantize_onnx",
]

FORMATS = ("onnx",)
#: Calibration images for int8 when none is said.
CALIBRATION_IMAGES = 64
#: Images per calibration batch (all of one size).
_CALIBRATION_BATCH = 8
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ExportError(ValueError):
    """A model cannot be exported as asked (the message says why and what to do)."""


def _require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("exporting needs the onnx package; install it with 'pip install onnx'") from exc
    return onnx


def _require_onnxruntime():
    try:
        import onnxruntime
        from onnxruntime import quantization
    except ImportError as exc:
        raise ExportError(
            "int8 export needs onnxruntime (its quantisation tools); install it with 'pip install onnxruntime'"
        ) from exc
    return onnxruntime, quantization


def _plain(value: Any) -> Any:
    """``value`` with only JSON types: tuples become lists, paths and unknown objects strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return str(value)


def _posekit_version() -> str:
    try:
        from napari_posekit import __version__
    except ImportError:  # pragma: no cover - the package always has one
        return "unknown"
    return str(__version__)


# --------------------------------------------------------------------------- the float32 graph
def onnx_bytes(
    model: Any,
    codec: Any,
    meta: dict[str, Any],
    *,
    skeleton: Sequence[Sequence[str]] = (),
    scorer: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    opset: int = 17,
) -> bytes:
    """The float32 ONNX model of ``(model, codec, meta)`` (:func:`~napari_posekit.core.checkpoint.load_checkpoint`).

    The graph is :class:`~napari_posekit.core.torch_engine.PoseNetwork` with
    dynamic batch, height and width; the description under
    :data:`~napari_posekit.core.model_file.META_KEY` is filled from ``meta``.
    ``checkpoint`` (the file ``meta`` came from) names the source and, when
    ``scorer`` is not given, the scorer (:func:`~napari_posekit.core.model_file.scorer_name`).
    """
    import torch

    from .forward import pad_multiple
    from .torch_engine import PoseNetwork

    onnx = _require_onnx()
    pad_to = pad_multiple(model, codec)
    network = PoseNetwork(model).eval()
    side = pad_to * max(2, math.ceil(256 / pad_to))  # any multiple of pad_to: the sizes stay dynamic
    dummy = torch.zeros(1, side, side, 3, dtype=torch.uint8)
    buffer = io.BytesIO()
    dims = {0: "batch", 2: "h", 3: "w"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes and constants
        torch.onnx.export(
            network,
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=int(opset),
            input_names=["images"],
            output_names=["heatmaps", "locref"],
            dynamic_axes={"images": {0: "batch", 1: "height", 2: "width"}, "heatmaps": dims, "locref": dims},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    k = int(model.n_keypoints)
    mean = getattr(model, "mean", None) or meta.get("mean")
    std = getattr(model, "std", None) or meta.get("std")
    description = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "posekit_version": _posekit_version(),
        "bodyparts": [str(b) for b in meta["bodyparts"]],
        "skeleton": [[str(a), str(b)] for a, b in skeleton],
        "codec": codec.to_dict(),
        "pad_to": int(pad_to),
        "input_scale": float(meta.get("input_scale", 1.0)),
        "input": {
            "name": "images",
            "dtype": "uint8",
            "layout": "NHWC",
            "channels": "RGB",
            "range": [0, 255],
            "mean": [float(v) for v in mean] if mean is not None else None,
            "std": [float(v) for v in std] if std is not None else None,
            "note": "normalisation is applied inside the graph; height and width must be multiples of pad_to",
        },
        "outputs": {
            "heatmaps": f"float32 (batch, {k}, height/{codec.stride}, width/{codec.stride}) probabilities, "
            "sigmoid applied",
            "locref": f"float32 (batch, {2 * k}, height/{codec.stride}, width/{codec.stride}) offsets from the "
            f"cell centres: channel 2k x, 2k+1 y of body part k, in units of locref_std={codec.locref_std:g} pixels",
        },
        "scorer": scorer if scorer is not None else scorer_name(meta, checkpoint),
        "step": int(meta.get("step", 0) or 0),
        "model_config": _plain(meta.get("model_config") or model.config()),
        "train_config": _plain(meta.get("train_config") or {}),
        "test_error_px": _plain(meta.get("test_error_px")),
        "precision": "float32",
        "quantization": None,
        "source_checkpoint": Path(checkpoint).name if checkpoint is not None else None,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _set_description(proto, description)
    proto.producer_name = "napari-posekit"
    proto.producer_version = _posekit_version()
    proto.doc_string = (
        f"napari-posekit pose model ({', '.join(description['bodyparts'])}); "
        f"its description is the JSON under the metadata key '{META_KEY}'"
    )
    return proto.SerializeToString()


def _set_description(proto: Any, description: dict[str, Any]) -> None:
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (META_KEY, json.dumps(description))]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _description(proto: Any) -> dict[str, Any]:
    for p in proto.metadata_props:
        if p.key == META_KEY:
            return json.loads(p.value)
    raise ExportError("the ONNX model has no napari-posekit description; export it from a checkpoint")


# --------------------------------------------------------------------------- calibration frames
def _to_network_input(image: np.ndarray, pad_to: int, input_scale: float) -> np.ndarray:
    """``image`` resized by ``input_scale`` as analysis does, padded on the right and bottom to ``pad_to``."""
    if input_scale != 1.0:
        image = resize_bilinear(image[None], input_scale)[0]
    h, w = image.shape[:2]
    return np.pad(image, ((0, (-h) % pad_to), (0, (-w) % pad_to), (0, 0)))


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices evenly spread over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return sorted(set(np.rint(np.linspace(0, n - 1, k)).astype(int).tolist()))


def _batched(images: list[np.ndarray]) -> list[np.ndarray]:
    """Images grouped by size into batches of at most ``_CALIBRATION_BATCH``."""
    by_size: dict[tuple[int, ...], list[np.ndarray]] = {}
    for image in images:
        by_size.setdefault(image.shape, []).append(image)
    batches = []
    for group in by_size.values():
        for i in range(0, len(group), _CALIBRATION_BATCH):
            batches.append(np.stack(group[i : i + _CALIBRATION_BATCH]))
    return batches


def _image_folder_frames(folder: Path, pad_to: int, input_scale: float, limit: int) -> list[np.ndarray]:
    from .data import load_image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ExportError(f"int8 needs calibration frames: {folder} holds no images (png, jpg, bmp, tif)")
    return [_to_network_input(load_image(files[i]), pad_to, input_scale) for i in _spread(len(files), limit)]


def calibration_batches(
    project: str | os.PathLike,
    pad_to: int,
    input_scale: float = 1.0,
    limit: int = CALIBRATION_IMAGES,
    crop: int = 256,
    margin: int = 48,
) -> list[np.ndarray]:
    """uint8 ``(B, H, W, 3)`` batches for int8 calibration, every batch of one size, sides multiples of ``pad_to``.

    From a project (folder or ``config.yaml``): about three quarters are crops
    around the labeled animal as fast analysis takes them (at least ``crop``
    frame pixels square, ``margin`` around the labels), the rest whole frames,
    both spread over the labeled frames; all resized by ``input_scale`` and
    padded as analysis does.  A folder without ``config.yaml`` is taken as a
    folder of images, used whole.  At most ``limit`` images in all.  Raises
    :class:`ExportError` when there is nothing to calibrate on.
    """
    from .data import load_image, load_project_labels
    from .inference import _crop_window

    folder = Path(project).expanduser()
    if folder.suffix in (".yaml", ".yml"):
        folder = folder.parent
    if not folder.is_dir():
        raise ExportError(f"int8 needs calibration frames: {project} is neither a project nor a folder of images")
    limit = int(limit)
    if limit < 1:
        raise ExportError(f"the number of calibration images must be at least 1, got {limit}")
    if not (folder / "config.yaml").is_file():
        return _batched(_image_folder_frames(folder, pad_to, input_scale, limit))
    try:
        paths, _, xy = load_project_labels(folder)
    except Exception as exc:
        raise ExportError(f"int8 needs calibration frames: cannot read the labels of {folder}: {exc}") from exc
    labeled = [i for i in range(len(paths)) if (~np.isnan(xy[i]).any(axis=-1)).any() and paths[i].is_file()]
    if not labeled:
        raise ExportError(
            f"int8 needs calibration frames: the project {folder} has no labeled frames; label some frames "
            "or pass a folder of images with --calibration"
        )
    n_whole = max(1, limit // 4) if limit > 1 else 0
    n_crops = limit - n_whole
    align = max(1, math.ceil(pad_to / input_scale))
    images: list[np.ndarray] = []
    for i in _spread(len(labeled), n_crops):
        index = labeled[i]
        frame = load_image(paths[index])
        points = xy[index][~np.isnan(xy[index]).any(axis=-1)]
        (x0, y0), (w, h) = _crop_window(points, frame.shape[:2], crop, margin, align, step=2 * align)
        images.append(_to_network_input(frame[y0 : y0 + h, x0 : x0 + w], pad_to, input_scale))
    for i in _spread(len(labeled), n_whole):
        images.append(_to_network_input(load_image(paths[labeled[i]]), pad_to, input_scale))
    return _batched(images[:limit])


# --------------------------------------------------------------------------- int8
def _float_head_nodes(proto: Any) -> list[str]:
    """Names of the nodes that make the outputs: the sigmoid and the two head convolutions."""
    producer = {out: node for node in proto.graph.node for out in node.output}
    names = []
    for output in proto.graph.output:
        node = producer.get(output.name)
        # walk back through casts and identities to the convolution
        while node is not None and node.op_type not in ("Conv",):
            names.append(node.name)
            node = producer.get(node.input[0]) if node.input else None
        if node is not None:
            names.append(node.name)
    return [n for n in names if n]


def _drop_unused(proto: Any) -> None:
    """Remove constants and initializers nothing reads (the quantiser leaves those of the activations it folds)."""
    graph = proto.graph
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Constant" and not any(o in used for o in n.output)]
        for node in dead:
            graph.node.remove(node)
        unused = [i for i in graph.initializer if i.name not in used]
        for init in unused:
            graph.initializer.remove(init)
        if not dead and not unused:
            return


def quantize_onnx(
    float_model: bytes | str | os.PathLike,
    batches: Sequence[np.ndarray],
    *,
    keep_heads_float: bool = True,
) -> bytes:
    """Static int8 (QDQ) version of an exported float32 model, calibrated on ``batches``.

    Weights int8 per output channel, activations uint8 (min/max ranges over
    ``batches``, uint8 ``(B, H, W, 3)`` arrays).  ``keep_heads_float`` leaves
    the output heads and the sigmoid in float32.  The description is kept,
    with ``precision: "int8"`` and the ``quantization`` entry filled.
    """
    onnx = _require_onnx()
    _, quantization = _require_onnxruntime()
    batches = [np.ascontiguousarray(b, dtype=np.uint8) for b in batches]
    if not batches:
        raise ExportError("int8 needs calibration frames: none were given")
    if isinstance(float_model, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(float_model))
    else:
        proto = onnx.load(str(float_model))
    description = _description(proto)
    exclude = _float_head_nodes(proto) if keep_heads_float else []

    class _Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(batches)

        def get_next(self):
            batch = next(self._items, None)
            return None if batch is None else {"images": batch}

    with tempfile.TemporaryDirectory(prefix="posekit-int8-") as tmp:
        source, target = Path(tmp, "float.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(proto.SerializeToString())
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # the quantiser's advice, printed through the root logger
        try:
            quantization.quantize_static(
                str(source),
                str(target),
                _Reader(),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                nodes_to_exclude=exclude,
            )
        finally:
            logging.disable(previous)
        quantized = onnx.load(str(target))
    _drop_unused(quantized)
    description["precision"] = "int8"
    description["quantization"] = {
        "method": "static QDQ",
        "calibration_images": int(sum(len(b) for b in batches)),
        "activations": "uint8",
        "weights": "int8 per channel",
        "float_nodes": exclude,
    }
    _set_description(quantized, description)
    quantized.producer_name = proto.producer_name
    quantized.producer_version = proto.producer_version
    quantized.doc_string = proto.doc_string
    return quantized.SerializeToString()


# --------------------------------------------------------------------------- export
def _project_skeleton(project: Path | None, bodyparts: Sequence[str]) -> list[tuple[str, str]]:
    """The project's skeleton when its body parts are the model's, else none."""
    if project is None or not (project / "config.yaml").is_file():
        return []
    from .config import read_config
    from .project import ProjectError

    try:
        config = read_config(project)
    except ProjectError:  # the skeleton is a courtesy: a config that cannot be read leaves it out
        return []
    if config.bodyparts and list(config.bodyparts) != list(bodyparts):
        return []
    return [(str(e[0]), str(e[1])) for e in (config.get("skeleton") or []) if len(e) == 2]


def _default_output(checkpoint: Path, int8: bool) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}{'-int8' if int8 else ''}.onnx")


def _check_output(output: Path, overwrite: bool) -> None:
    if output.is_dir():
        raise ExportError(f"{output} is a folder; give the name of the file to write")
    if output.suffix.lower() != ".onnx":
        raise ExportError(f"{output}: the file name must end in .onnx (analysis tells exported models by it)")
    if output.exists() and not overwrite:
        raise ExportError(f"{output} exists already; choose another --output or pass --overwrite")
    folder = output.parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {output}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {output}: the folder {folder} is not writable")


def export_model(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    fmt: str = "onnx",
    int8: bool = False,
    calibration_images: int | None = None,
    calibration: str | os.PathLike | None = None,
    opset: int = 17,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write ``source`` as an ONNX model file; returns its path.

    ``source`` is a project folder or its ``config.yaml`` (the latest
    checkpoint) or a checkpoint file.  ``output`` defaults to
    ``<checkpoint stem>.onnx`` (``-int8.onnx`` with ``int8``) beside the
    checkpoint; an existing file is replaced only with ``overwrite``.
    ``int8`` calibrates on ``calibration`` (a project or a folder of images;
    default: the checkpoint's own project) with at most
    ``calibration_images`` images (default 64).  ``progress`` is called with
    a line per stage.  The file is written atomically.

    Raises :class:`FileNotFoundError` for a missing source,
    :class:`~napari_posekit.core.project.ProjectError` for a project without
    a model, :class:`~napari_posekit.core.checkpoint.CheckpointError` for a
    file that is not a checkpoint and :class:`ExportError` for everything
    else that stands in the way.
    """
    from .filesafety import atomic_write_bytes
    from .model_file import is_model_file

    say = progress or (lambda message: None)
    if fmt != "onnx":
        raise ExportError(f"unknown export format {fmt!r}; supported: {', '.join(FORMATS)}")
    if calibration_images is not None and int(calibration_images) < 1:
        raise ExportError(f"the number of calibration images must be at least 1, got {calibration_images}")
    if calibration is not None and not int8:
        raise ExportError("calibration frames are used by int8 export only; add --int8 or leave out --calibration")
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such project or checkpoint")
    if path.is_file() and is_model_file(path):
        raise ExportError(f"{path} is an exported model already; export from its checkpoint or project")
    _require_onnx()
    if int8:
        _require_onnxruntime()

    from .checkpoint import load_checkpoint
    from .forward import pad_multiple
    from .workflow import latest_checkpoint

    checkpoint = latest_checkpoint(path) if path.is_dir() or path.suffix in (".yaml", ".yml") else path
    target = Path(output).expanduser() if output is not None else _default_output(checkpoint, int8)
    _check_output(target, overwrite)
    project = project_of_checkpoint(checkpoint)
    calibration_source = Path(calibration).expanduser() if calibration is not None else project
    if int8 and calibration_source is None:
        raise ExportError(
            f"int8 needs calibration frames: {checkpoint} is not inside a project; pass a project or a folder of "
            "images (--calibration PATH)"
        )
    if int8 and not calibration_source.exists():
        raise ExportError(f"int8 needs calibration frames: {calibration_source} does not exist")

    say(f"loading {checkpoint}")
    model, codec, meta = load_checkpoint(checkpoint)
    skeleton = _project_skeleton(project, meta["bodyparts"])
    if not skeleton and calibration_source is not None and calibration_source != project:
        skeleton = _project_skeleton(
            calibration_source.parent if calibration_source.suffix in (".yaml", ".yml") else calibration_source,
            meta["bodyparts"],
        )
    say("exporting the float32 graph")
    started = time.perf_counter()
    data = onnx_bytes(model, codec, meta, skeleton=skeleton, checkpoint=checkpoint, opset=opset)
    if int8:
        pad_to = pad_multiple(model, codec)
        say(f"reading calibration frames from {calibration_source}")
        batches = calibration_batches(
            calibration_source,
            pad_to,
            float(meta.get("input_scale", 1.0)),
            limit=calibration_images or CALIBRATION_IMAGES,
        )
        say(f"quantising to int8 on {sum(len(b) for b in batches)} calibration images")
        data = quantize_onnx(data, batches)
    say(f"writing {target} ({time.perf_counter() - started:.1f} s)")
    _check_output(target, overwrite)
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc}") from exc
    return target
