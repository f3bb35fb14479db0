"""Exported model files: ONNX round trip, int8 export, the description, bad files and the ``export`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import torch_thread_limit

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from napari_posekit.cli import main
from napari_posekit.core.export import ExportError, calibration_batches, export_model, onnx_bytes
from napari_posekit.core.model_file import (
    META_KEY,
    MODEL_FORMAT,
    ModelFileError,
    is_model_file,
    read_model_meta,
    scorer_name,
)

#: A DeepLabCut-style model folder, so that the scorer takes its name from it.
CHECKPOINT_NAME = "posekit-models/iteration-0/mouseOct30-trainset95shuffle2/train/checkpoint.pt"


def _session(path_or_bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tiny_model():
    """A random ResNet-18 pose model for two body parts, its codec and checkpoint description."""
    from napari_posekit.core.codec import HeatmapCodec
    from napari_posekit.core.model import PoseModel

    with torch_thread_limit():
        model = PoseModel("resnet18", n_keypoints=2, pretrained=False, head_channels=16).eval()
    codec = HeatmapCodec(input_size=(64, 64), stride=4)
    meta = {"bodyparts": ["nose", "tail"], "input_scale": 1.0, "step": 7, "model_config": model.config()}
    return model, codec, meta


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    model, codec, meta = tiny_model
    with torch_thread_limit():
        data = onnx_bytes(model, codec, meta, skeleton=[("nose", "tail")], checkpoint=Path("/x") / CHECKPOINT_NAME)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- round trip
def test_onnx_outputs_match_torch_at_another_size(tiny_model, tiny_onnx):
    import torch

    from napari_posekit.core.torch_engine import PoseNetwork

    model, _, _ = tiny_model
    images = np.random.default_rng(0).integers(0, 256, size=(2, 64, 96, 3), dtype=np.uint8)  # export used 256x256
    heatmaps, locref = _session(tiny_onnx).run(None, {"images": images})
    with torch_thread_limit(), torch.no_grad():
        expected = PoseNetwork(model).eval()(torch.from_numpy(images))
    assert heatmaps.shape == (2, 2, 16, 24) and locref.shape == (2, 4, 16, 24)
    assert heatmaps.dtype == np.float32 and locref.dtype == np.float32
    np.testing.assert_allclose(heatmaps, expected[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(locref, expected[1].numpy(), atol=1e-4)


def test_description_read_back(tiny_model, tiny_onnx):
    _, codec, _ = tiny_model
    found = read_model_meta(tiny_onnx)
    assert found["format"] == MODEL_FORMAT and found["format_version"] == 1
    assert found["bodyparts"] == ["nose", "tail"]
    assert found["skeleton"] == [["nose", "tail"]]
    assert found["codec"] == codec.to_dict()
    assert found["pad_to"] == 32 and found["input_scale"] == 1.0
    assert found["scorer"] == "DLC_resnet18_mouseOct30shuffle2_7"
    assert found["precision"] == "float32" and found["quantization"] is None
    assert found["source_checkpoint"] == "checkpoint.pt" and found["step"] == 7
    assert found["input"]["layout"] == "NHWC" and found["input"]["dtype"] == "uint8"
    assert is_model_file(tiny_onnx) and not is_model_file(tiny_onnx.with_suffix(".pt"))


def test_scorer_name_is_the_predictors(tiny_model):
    from napari_posekit.core.predictor import Predictor

    model, codec, meta = tiny_model
    for checkpoint in (Path("/data") / CHECKPOINT_NAME, Path("/elsewhere/my-model.pt"), None):
        predictor = Predictor(model, codec, meta, checkpoint=checkpoint, precision="float32")
        assert scorer_name(meta, checkpoint) == predictor.scorer
    assert scorer_name(meta, Path("/elsewhere/my-model.pt")) == "DLC_resnet18_my-modelshuffle1_7"


def test_description_reads_without_torch_or_the_onnx_package(tiny_onnx):
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "from napari_posekit.core.model_file import read_model_meta\n"
        f"meta = read_model_meta({str(tiny_onnx)!r})\n"
        "assert meta['bodyparts'] == ['nose', 'tail'], meta\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_description_reads_without_any_onnx_library_and_running_needs_a_runtime(tiny_onnx, monkeypatch):
    from napari_posekit.core import engines
    from napari_posekit.core.predictor import AnalysisError, Predictor

    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert read_model_meta(tiny_onnx)["bodyparts"]
    monkeypatch.setattr(engines, "available_runtimes", list)
    monkeypatch.setattr("napari_posekit.core.backends.available_runtimes", list)
    with pytest.raises(AnalysisError, match="pip install onnxruntime"):
        Predictor.load(tiny_onnx)


# --------------------------------------------------------------------------- int8
def test_int8_export_from_a_project(tiny_project_copy):
    with torch_thread_limit():
        float_path = export_model(tiny_project_copy)
        int8_path = export_model(tiny_project_copy, int8=True, calibration_images=8)
    assert float_path.name == "checkpoint.onnx" and int8_path.name == "checkpoint-int8.onnx"
    assert float_path.parent == int8_path.parent and (float_path.parent / "checkpoint.pt").is_file()
    assert int8_path.stat().st_size < 0.5 * float_path.stat().st_size
    meta = read_model_meta(int8_path)
    assert meta["precision"] == "int8"
    assert 0 < meta["quantization"]["calibration_images"] <= 8
    assert meta["quantization"]["method"] == "static QDQ"
    assert meta["bodyparts"] == read_model_meta(float_path)["bodyparts"]

    from napari_posekit.core.data import load_image, load_project_labels

    paths, _, _ = load_project_labels(tiny_project_copy)
    images = np.stack([load_image(p) for p in paths[:4]])  # 64 x 96, multiples of 32
    hm32, lr32 = _session(float_path).run(None, {"images": images})
    hm8, lr8 = _session(int8_path).run(None, {"images": images})
    assert hm8.shape == hm32.shape and lr8.shape == lr32.shape
    assert np.abs(hm8 - hm32).max() < 0.1
    # the peak stays within a cell or two of the float32 one where the float32 peak is clear
    b, k, h, w = hm32.shape
    peak32 = np.stack(np.unravel_index(hm32.reshape(b, k, -1).argmax(-1), (h, w)), -1)
    peak8 = np.stack(np.unravel_index(hm8.reshape(b, k, -1).argmax(-1), (h, w)), -1)
    clear = hm32.reshape(b, k, -1).max(-1) > 0.3
    assert np.abs(peak8 - peak32).max(-1)[clear].max(initial=0) <= 2


def test_calibration_batches_are_network_sized(tiny_trained_project):
    batches = calibration_batches(tiny_trained_project, pad_to=32, limit=6)
    assert sum(len(b) for b in batches) == 6
    for batch in batches:
        assert batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[-1] == 3
        assert batch.shape[1] % 32 == 0 and batch.shape[2] % 32 == 0


# --------------------------------------------------------------------------- bad input
def _write_model(path: Path, props: dict[str, str]) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, producer_name="another-program")
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_bad_model_files(tmp_path, tiny_onnx):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        read_model_meta(garbage)
    with pytest.raises(ModelFileError, match="another-program.*posekit export"):
        read_model_meta(_write_model(tmp_path / "other.onnx", {}))

    description = json.loads(onnx.load(str(tiny_onnx)).metadata_props[0].value)
    newer = _write_model(tmp_path / "newer.onnx", {META_KEY: json.dumps({**description, "format_version": 99})})
    with pytest.raises(ModelFileError, match="version 99.*newer.*update napari-posekit"):
        read_model_meta(newer)
    partial = {k: v for k, v in description.items() if k not in ("codec", "pad_to")}
    with pytest.raises(ModelFileError, match="missing codec, pad_to"):
        read_model_meta(_write_model(tmp_path / "partial.onnx", {META_KEY: json.dumps(partial)}))
    with pytest.raises(ModelFileError, match="not JSON"):
        read_model_meta(_write_model(tmp_path / "broken.onnx", {META_KEY: "{not json"}))
    with pytest.raises(FileNotFoundError):
        read_model_meta(tmp_path / "missing.onnx")


def test_export_refusals(tiny_trained_project, tmp_path):
    from napari_posekit.core.workflow import latest_checkpoint

    bare = Path(shutil.copy(latest_checkpoint(tiny_trained_project), tmp_path / "bare.pt"))
    with pytest.raises(ExportError, match="int8 needs calibration frames.*--calibration"):
        export_model(bare, int8=True)
    with pytest.raises(ExportError, match="int8 needs calibration frames.*holds no images"):
        export_model(bare, int8=True, calibration=tmp_path)
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(bare, fmt="tflite")
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="exists already.*--overwrite"):
        export_model(bare, taken)
    assert taken.read_bytes() == b"keep me"
    with pytest.raises(ExportError, match="must end in .onnx"):
        export_model(bare, tmp_path / "model.pt")
    with pytest.raises(ExportError, match="does not exist"):
        export_model(bare, tmp_path / "no" / "such" / "folder.onnx")
    with pytest.raises(ExportError, match="exported model already"):
        export_model(_write_model(tmp_path / "m.onnx", {}))
    with pytest.raises(FileNotFoundError):
        export_model(tmp_path / "missing.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.pt", "m.onnx", "taken.onnx"]


def test_export_command(tiny_trained_project, tmp_path, capsys):
    from napari_posekit.core.workflow import latest_checkpoint

    bare = Path(shutil.copy(latest_checkpoint(tiny_trained_project), tmp_path / "bare.pt"))
    out = tmp_path / "model.onnx"
    with torch_thread_limit():
        assert main(["export", str(bare), "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert f"written: {out}" in printed.out and "float32" in printed.out
    assert read_model_meta(out)["scorer"] == "DLC_resnet18_bareshuffle1_" + str(read_model_meta(out)["step"])

    assert main(["export", str(bare), "--output", str(out)]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["export", str(bare), "--int8", "--output", str(tmp_path / "q.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: int8 needs calibration frames") and "Traceback" not in err
    assert main(["export", str(tmp_path / "missing.pt")]) == 1
    assert "error: cannot use the model" in capsys.readouterr().err
    assert main(["export", str(bare), "--format", "tflite"]) == 1
    assert "unknown export format" in capsys.readouterr().err

    with torch_thread_limit():
        code = main(
            [
                "export",
                str(bare),
                "--int8",
                "--calibration",
                str(tiny_trained_project),
                "--calibration-images",
                "4",
                "--output",
                str(tmp_path / "q.onnx"),
            ]
        )
    assert code == 0
    assert "int8, calibrated on 4 images" in capsys.readouterr().out
