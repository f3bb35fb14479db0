"""Exported model files (ONNX): what they hold and how to read their description.

``posekit export`` (:func:`napari_posekit.core.export.export_model`) writes a
trained network as one self-contained ONNX file.  Its graph takes frames as a
video gives them and returns the network's two outputs:

* input ``images``: ``uint8 (batch, height, width, 3)`` RGB; height and width
  multiples of ``pad_to`` (pad frames on the right and bottom), frames already
  resized by ``input_scale``.  Normalisation happens inside the graph.
* output ``heatmaps``: ``float32 (batch, K, height / stride, width / stride)``
  probabilities (sigmoid applied);
* output ``locref``: ``float32 (batch, 2K, ...)``, channel ``2k`` the x offset
  and ``2k + 1`` the y offset of body part ``k``, in units of
  ``codec["locref_std"]`` pixels.

Everything needed to decode the outputs and to name the results is stored in
the file as a JSON object, under the ONNX metadata key ``"napari-posekit"``
(:data:`META_KEY`): body parts, skeleton, codec, ``pad_to``, ``input_scale``,
the DeepLabCut scorer name, training step and configuration, precision.

This module reads that description with the standard library alone (the
file's top-level protobuf fields), so finding out what a model is costs
no imports; running it needs onnxruntime or OpenVINO.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "META_KEY",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "ModelFileError",
    "is_model_file",
    "read_model_meta",
    "scorer_name",
]

MODEL_FORMAT = "napari-posekit-model"
MODEL_FORMAT_VERSION = 1
#: The ONNX ``metadata_props`` key under which the JSON description is stored.
META_KEY = "napari-posekit"
#: Entries every model file's description must have.
REQUIRED_KEYS = ("bodyparts", "codec", "pad_to", "input_scale")


class ModelFileError(ValueError):
    """A file is not a usable posekit model (not ONNX, from another program, a newer format, incomplete)."""


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an exported model (its suffix is ``.onnx``), as opposed to a checkpoint or project."""
    return Path(path).suffix.lower() == ".onnx"


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or invalid varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview):
    """``(field number, value)`` of a protobuf message's top-level fields (length-delimited values as memoryviews)."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("a field runs past the end of the file")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, value


#: ONNX ``ModelProto`` field numbers: producer_name, graph, metadata_props.
_PRODUCER, _GRAPH, _METADATA = 2, 7, 14


def _read_metadata(path: Path) -> tuple[dict[str, str], str]:
    """``(metadata_props, producer)`` of an ONNX file, read from its protobuf fields without any ONNX library.

    Only the top-level fields are walked (the graph is skipped by its length),
    so this takes milliseconds where importing ``onnx`` takes most of a second.
    """
    try:
        data = memoryview(path.read_bytes())
        props: dict[str, str] = {}
        producer, has_graph = "", False
        for field, value in _fields(data):
            if field == _PRODUCER and isinstance(value, memoryview):
                producer = bytes(value).decode("utf-8", "replace")
            elif field == _GRAPH:
                has_graph = isinstance(value, memoryview)
            elif field == _METADATA and isinstance(value, memoryview):
                entry = {f: bytes(v).decode("utf-8") for f, v in _fields(value) if isinstance(v, memoryview)}
                props[entry.get(1, "")] = entry.get(2, "")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not an ONNX model file (cannot be parsed: {exc})") from exc
    if not has_graph:
        raise ModelFileError(f"{path}: not an ONNX model file (no graph in it)")
    return props, producer


def read_model_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The description stored in an exported model file, checked.

    Raises :class:`FileNotFoundError` for a missing file and
    :class:`ModelFileError` for a file that is not ONNX, an ONNX model
    written by another program, one written in a newer format than this
    napari-posekit reads, or one whose description lacks required entries.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    props, producer = _read_metadata(path)
    text = props.get(META_KEY)
    if text is None:
        made_by = f" (made by {producer!r})" if producer else ""
        raise ModelFileError(
            f"{path}: an ONNX model{made_by} without napari-posekit's description; "
            "only models written by 'posekit export' can be used"
        )
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(
            f"{path}: the napari-posekit description is damaged (not JSON: {exc}); export again"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: the napari-posekit entry does not describe a '{MODEL_FORMAT}'; export again")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path}: model file format version {version!r} is not valid; export again")
    if version > MODEL_FORMAT_VERSION:
        written_by = meta.get("posekit_version")
        by = f" by napari-posekit {written_by}" if written_by else ""
        raise ModelFileError(
            f"{path}: model file format version {version} (written{by}) is newer than this napari-posekit "
            f"reads ({MODEL_FORMAT_VERSION}); update napari-posekit"
        )
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise ModelFileError(f"{path}: incomplete model description, missing {', '.join(missing)}; export again")
    if not isinstance(meta["bodyparts"], list) or not meta["bodyparts"]:
        raise ModelFileError(f"{path}: the model description names no body parts; export again")
    if not isinstance(meta["codec"], dict) or "stride" not in meta["codec"]:
        raise ModelFileError(f"{path}: the model description has no usable codec; export again")
    return meta


def scorer_name(meta: dict[str, Any], checkpoint_path: str | os.PathLike | None = None) -> str:
    """DeepLabCut-style scorer name of a checkpoint, e.g. ``DLC_efficientnetlite0_openfieldOct30shuffle1_4200``.

    ``meta`` is the checkpoint's description (``model_config``, ``step``);
    the middle part comes from the model folder DeepLabCut-style
    (``<task><date>-trainset<n>shuffle<m>``), or from the checkpoint's file
    name.  :attr:`napari_posekit.core.predictor.Predictor.scorer` names
    results with it.
    """
    backbone = str(meta.get("model_config", {}).get("backbone", "model")).replace("_", "")
    name = "posekitshuffle1"
    if checkpoint_path is not None:
        checkpoint = Path(checkpoint_path)
        folder = checkpoint.resolve().parent.parent.name
        match = re.fullmatch(r"(.*)-trainset\d+(shuffle\d+)(-block)?", folder)
        # DeepLabCut's names always hold "shuffle<n>"; tools (and the prediction reader) look for it
        name = f"{match.group(1)}{match.group(2)}{match.group(3) or ''}" if match else f"{checkpoint.stem}shuffle1"
    return f"DLC_{backbone}_{name}_{int(meta.get('step', 0))}"
