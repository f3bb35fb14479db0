"""Which backend runs a model's network: chosen by measurement, once per model and machine.

Backends (:data:`BACKENDS`) are the network on torch (eager, or frozen
TorchScript graphs; float32 or bfloat16 autocast), on onnxruntime (float32 or
a statically quantised int8 graph) and on OpenVINO (float32, bfloat16 or
int8).  :func:`load_predictor` (behind
:meth:`~napari_posekit.core.predictor.Predictor.load`) builds the
candidates a model and this machine allow and, with ``backend="auto"``,
measures them side by side:

* speed: milliseconds per image on batches of fast-mode crops (median of
  several runs after a warm-up);
* accuracy: on the project's labeled frames (crops around the animal), the
  mean error of each backend against the labels must stay within
  :data:`ACCURACY_BUDGET_PX` of the float32 reference's.  Without labels
  (a bare checkpoint or model file), frames given as ``probe_frames`` are
  used instead and the mean shift of the confident keypoints from the
  reference's must stay within the budget; without either, only float32
  backends are candidates.

The ranking is cached in ``backends.json`` in :func:`cache_dir`, under the
model file's digest and the machine's signature (processor, instruction-set
cap, library versions); the ONNX graphs made from a checkpoint are
cached there too.  The next load takes the fastest accepted backend at once;
one that fails to load falls back to the next, and the predictor's ``notes``
say so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .codec import HeatmapCodec
from .engines import EngineError, OnnxRuntimeEngine, OpenVinoEngine, available_runtimes
from .predictor import AnalysisError

__all__ = [
    "ACCURACY_BUDGET_PX",
    "BACKENDS",
    "cache_dir",
    "load_predictor",
    "machine_signature",
    "probe_backends",
]

BACKENDS = (
    "torch-eager-float32",
    "torch-frozen-float32",
    "torch-frozen-bfloat16",
    "onnxruntime-float32",
    "onnxruntime-int8",
    "openvino-float32",
    "openvino-bfloat16",
    "openvino-int8",
)
ACCURACY_BUDGET_PX = 0.1
PROBE_CROP = 256  # the fast mode's smallest crop side
PROBE_BATCH = 16
PROBE_IMAGES = 64
CACHE_VERSION = 1


# --------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """``$POSEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-posekit``, else ``~/.cache/napari-posekit``."""
    folder = os.environ.get("POSEKIT_CACHE_DIR")
    if folder:
        return Path(folder).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "napari-posekit"


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_signature() -> dict[str, Any]:
    """What decides which backend is fastest here: processor, flags, instruction-set cap and library versions."""
    from .hardware import _REPORTED_FLAGS, cpu_flags, cpu_model

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "flags": [f for f in _REPORTED_FLAGS if f in flags],
        "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")),
        "versions": {p: _version(p) for p in ("napari-posekit", "torch", "onnxruntime", "openvino")},
    }


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:24]


def _cache_key(digest: str, signature: dict[str, Any]) -> str:
    text = json.dumps({"model": digest, "machine": signature, "v": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / "backends.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict[str, Any]) -> None:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = _read_cache()
        data[key] = entry
        tmp = folder / f".backends.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, folder / "backends.json")
    except OSError:
        pass  # a read-only home: the next run measures again


# --------------------------------------------------------------------------- probe data
def _probe_side(pad_to: int, input_scale: float) -> int:
    """Side, in frame pixels, of the probe's square crops: the fast mode's smallest crop, aligned as it aligns."""
    align = max(1, int(np.ceil(pad_to / input_scale)))
    return int(np.ceil(PROBE_CROP / input_scale / align) * align)


def _square_crop(image: np.ndarray, centre: np.ndarray, side: int) -> tuple[np.ndarray, int, int]:
    """``(crop, x0, y0)``: the ``side``-pixel square around ``centre`` kept inside the image, zero-padded if larger."""
    h, w = image.shape[:2]
    x0 = int(np.clip(round(centre[0] - side / 2), 0, max(0, w - side)))
    y0 = int(np.clip(round(centre[1] - side / 2), 0, max(0, h - side)))
    crop = np.zeros((side, side, 3), np.uint8)
    part = image[y0 : y0 + side, x0 : x0 + side, :3]
    crop[: part.shape[0], : part.shape[1]] = part
    return crop, x0, y0


def labeled_crops(project: Path, pad_to: int, input_scale: float = 1.0, limit: int = PROBE_IMAGES):
    """``(images uint8 (N, S, S, 3), truth (N, K, 2))``: fast-mode-sized crops around the labeled animals.

    Up to ``limit`` labeled images spread over the project; ``truth`` is in
    crop pixels, NaN where a part is not labeled.  None when the project has
    no labeled image that can be read.
    """
    from .data import load_image, load_project_labels

    try:
        paths, _, xy = load_project_labels(project)
    except (OSError, ValueError, KeyError):
        return None
    keep = [i for i in range(len(paths)) if np.isfinite(xy[i]).any() and paths[i].is_file()]
    if not keep:
        return None
    keep = [keep[j] for j in np.unique(np.linspace(0, len(keep) - 1, min(limit, len(keep))).round().astype(int))]
    side = _probe_side(pad_to, input_scale)
    images, truth = [], []
    for i in keep:
        try:
            image = load_image(paths[i])
        except (OSError, ValueError):
            continue
        crop, x0, y0 = _square_crop(image, np.nanmean(xy[i], axis=0), side)
        images.append(crop)
        truth.append(xy[i] - np.array([x0, y0], dtype=np.float64))
    if not images:
        return None
    return np.stack(images), np.stack(truth)


def _frames_as_crops(frames: np.ndarray | None, reference: Any) -> np.ndarray | None:
    """Probe images from unlabeled frames: fast-mode-sized crops where ``reference`` finds the animal."""
    if frames is None or not len(frames):
        return None
    frames = np.asarray(frames)
    h, w = frames.shape[1:3]
    side = _probe_side(reference.pad_to, reference.input_scale)
    crops = []
    for frame in frames:
        points = reference.locate(frame)
        centre = points.mean(axis=0) if points is not None else np.array([w / 2, h / 2])
        crops.append(_square_crop(frame, centre, side)[0])
    return np.stack(crops)


# --------------------------------------------------------------------------- measurement
def probe_backends(
    predictors: dict[str, Callable[[], Any]],
    reference: Any,
    images: np.ndarray | None,
    truth: np.ndarray | None = None,
    *,
    repeats: int = 3,
    budget_px: float = ACCURACY_BUDGET_PX,
) -> list[dict[str, Any]]:
    """Measure every candidate; the ranking (accepted ones first, fastest first) as dicts.

    ``predictors`` maps backend names to functions making a
    :class:`~napari_posekit.core.predictor.Predictor` on that backend;
    ``reference`` is the float32 predictor (or its backend's name) the
    others are compared with.  Each entry
    has ``backend``, ``ms_per_image``, ``error_px`` (against ``truth``, when
    given), ``shift_px`` (mean shift of confident keypoints from the
    reference's), ``accepted`` and ``reason`` (why not accepted, or a failure).
    """
    results: list[dict[str, Any]] = []
    ref_xy = ref_p = None
    if images is not None and len(images):
        ref = predictors[reference]() if isinstance(reference, str) else reference
        ref_xy, ref_p = ref.predict(images, batch_size=PROBE_BATCH)
    ref_error = _mean_error(ref_xy, truth)
    batch = None
    if images is not None and len(images):
        batch = images[np.arange(PROBE_BATCH) % len(images)]
    for name, make in predictors.items():
        entry: dict[str, Any] = {"backend": name, "ms_per_image": None, "error_px": None, "shift_px": None}
        try:
            start = time.perf_counter()
            predictor = make()
            entry["load_s"] = round(time.perf_counter() - start, 3)
            if batch is None:
                side = PROBE_CROP
                batch = np.zeros((PROBE_BATCH, side, side, 3), np.uint8)
            predictor.predict(batch, batch_size=PROBE_BATCH)  # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                predictor.predict(batch, batch_size=PROBE_BATCH)
                times.append(time.perf_counter() - t)
            entry["ms_per_image"] = round(1000 * statistics.median(times) / len(batch), 3)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run is ranked out, with the reason
            entry.update(accepted=False, reason=f"{type(exc).__name__}: {exc}")
            results.append(entry)
            continue
        lossless = name.endswith("float32")
        if ref_xy is not None:
            xy, p = predictor.predict(images, batch_size=PROBE_BATCH)
            sure = (ref_p >= 0.5) & (p >= 0.5)
            shift = np.linalg.norm(xy - ref_xy, axis=-1)[sure]
            entry["shift_px"] = round(float(shift.mean()), 4) if shift.size else None
            error = _mean_error(xy, truth)
            if error is not None:
                entry["error_px"] = round(error, 4)
                cost = error - ref_error
                ok = cost <= budget_px
                reason = None if ok else f"costs {cost:.2f} px against the labels (budget {budget_px} px)"
            else:
                ok = entry["shift_px"] is None or entry["shift_px"] <= budget_px
                reason = None if ok else f"moves keypoints by {entry['shift_px']:.2f} px (budget {budget_px} px)"
        else:
            ok, reason = lossless, None if lossless else "no frames to check its accuracy on"
        entry.update(accepted=bool(ok), reason=reason)
        results.append(entry)
    return sorted(results, key=lambda e: (not e["accepted"], e["ms_per_image"] or float("inf")))


def _mean_error(xy: np.ndarray | None, truth: np.ndarray | None) -> float | None:
    if xy is None or truth is None:
        return None
    err = np.linalg.norm(xy - truth, axis=-1)
    err = err[np.isfinite(err)]
    return float(err.mean()) if err.size else None


# --------------------------------------------------------------------------- loading
def _runtime_engine(name: str, path: Path, threads: int | None):
    """The engine of an onnxruntime or OpenVINO backend ``name`` (e.g. ``"openvino-int8"``) on the graph ``path``."""
    runtime, _, kind = name.partition("-")
    if runtime == "openvino":
        return OpenVinoEngine(path, precision=kind, threads=threads, cache_dir=cache_dir() / "openvino")
    return OnnxRuntimeEngine(path, precision=kind, threads=threads)


def _bf16_here() -> bool:
    from .hardware import native_bfloat16_cpu

    return native_bfloat16_cpu()


def load_predictor(
    cls,
    source: str | os.PathLike,
    *,
    device: Any = "cpu",
    backend: str = "auto",
    precision: str = "auto",
    freeze: bool = True,
    probe_frames: np.ndarray | Callable[[], np.ndarray] | None = None,
    threads: int | None = None,
    report: Callable[[str], None] | None = None,
):
    """See :meth:`~napari_posekit.core.predictor.Predictor.load`; ``cls`` is the Predictor class.

    ``report`` receives one-line messages about the choice (probing, fallbacks).
    """
    backend = os.environ.get("POSEKIT_BACKEND", backend) if backend == "auto" else backend
    if backend != "auto" and backend not in BACKENDS:
        raise AnalysisError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such project, checkpoint or model file")
    if path.suffix.lower() == ".onnx":
        return _load_model_file(cls, path, backend, probe_frames, threads, report)
    return _load_checkpoint(cls, path, device, backend, precision, freeze, probe_frames, threads, report)


def _choose(
    builders: dict[str, Callable[[], Any]],
    reference: str,
    backend: str,
    digest_of: Callable[[], str],
    probe_data: Callable[[Any], tuple[np.ndarray | None, np.ndarray | None]],
    report: Callable[[str], None] | None,
):
    """The predictor on the requested backend, or on the fastest accepted one (cached ranking, else a probe)."""
    if backend != "auto":
        if backend not in builders:
            raise AnalysisError(
                f"backend {backend!r} is not available for this model here; available: {', '.join(builders)}"
            )
        return builders[backend]()
    if len(builders) == 1:
        return next(iter(builders.values()))()
    key = _cache_key(digest_of(), machine_signature())
    entry = _read_cache().get(key)
    notes: list[str] = []
    if entry is None:
        if report is not None:
            report(f"choosing the fastest backend for this model on this machine (once): {', '.join(builders)}")
        ref = builders[reference]()
        images, truth = probe_data(ref)
        ranking = probe_backends(builders, ref, images, truth)
        entry = {"ranking": ranking, "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_signature()}
        _write_cache(key, entry)
        best = next((e for e in ranking if e["accepted"]), None)
        if report is not None and best is not None:
            report(f"backend: {best['backend']} ({best['ms_per_image']:.1f} ms per crop)")
    order = [e["backend"] for e in entry["ranking"] if e.get("accepted") and e["backend"] in builders]
    order += [reference] if reference not in order else []
    for name in order:
        try:
            predictor = builders[name]()
        except (EngineError, OSError, RuntimeError, ValueError) as exc:
            note = f"backend {name} failed to load ({exc}); falling back to the next one"
            notes.append(note)
            if report is not None:
                report(note)
            continue
        predictor.notes.extend(notes)
        return predictor
    raise AnalysisError("no backend could load this model: " + "; ".join(notes))


def _load_model_file(cls, path: Path, backend: str, probe_frames, threads, report):
    from .model_file import read_model_meta

    meta = read_model_meta(path)
    codec = HeatmapCodec.from_dict(meta["codec"])
    quantised = meta.get("precision") == "int8"
    runtimes = available_runtimes()
    kinds = ["int8"] if quantised else ["float32", *(["bfloat16"] if _bf16_here() else [])]
    names = [f"openvino-{k}" for k in kinds if "openvino" in runtimes]
    names += [f"onnxruntime-{kinds[0]}"] if "onnxruntime" in runtimes else []
    if not names:
        raise AnalysisError(
            f"{path.name}: running an exported model needs onnxruntime or openvino (pip install onnxruntime)"
        )
    skeleton = [tuple(e) for e in meta.get("skeleton") or [] if len(e) == 2]

    def builder(name: str):
        return lambda: cls(
            _runtime_engine(name, path, threads),
            codec,
            meta,
            checkpoint=path,
            skeleton=skeleton,
            pad_to=int(meta["pad_to"]),
        )

    builders = {name: builder(name) for name in names}
    reference = names[-1] if quantised or "onnxruntime" in runtimes else names[0]

    def probe_data(reference):
        frames = probe_frames() if callable(probe_frames) else probe_frames
        return _frames_as_crops(frames, reference), None

    return _choose(builders, reference, backend, lambda: _digest(path), probe_data, report)


def _project_parts(checkpoint: Path) -> tuple[Path | None, list[str] | None, list[tuple[str, str]]]:
    """``(project, its body parts, its skeleton)`` for a checkpoint inside a project; ``(None, None, [])`` outside."""
    from .config import read_config
    from .model_paths import project_of_checkpoint

    project = project_of_checkpoint(checkpoint)
    if project is None:
        return None, None, []
    config = read_config(project)
    skeleton = [tuple(e) for e in (config.get("skeleton") or []) if len(e) == 2]
    return project, list(config.bodyparts) if config.bodyparts else None, skeleton


def _check_bodyparts(checkpoint: Path, trained: Sequence[str], project_parts: list[str] | None) -> None:
    if project_parts and project_parts != list(trained):
        raise AnalysisError(
            f"{checkpoint}: the model was trained for body parts {list(trained)} but the project "
            f"now has {project_parts}; train a new model"
        )


def _from_cached_graph(cls, checkpoint: Path, backend: str, threads, parts, skeleton) -> Any | None:
    """The predictor on the cached choice's exported graph, without loading torch; None when torch is needed.

    Used when a checkpoint's backend ranking is cached and its first choice runs
    an ONNX graph made earlier: the start-up then reads neither the checkpoint
    nor torch.
    """
    from .model_file import ModelFileError, read_model_meta

    digest = _digest(checkpoint)
    if backend == "auto":
        entry = _read_cache().get(_cache_key(digest, machine_signature()))
        accepted = [e["backend"] for e in (entry or {}).get("ranking", []) if e.get("accepted")]
        if not accepted:
            return None
        backend = accepted[0]
    runtime, _, kind = backend.partition("-")
    graph = cache_dir() / "models" / f"{digest}{'-int8' if kind == 'int8' else ''}.onnx"
    if runtime not in available_runtimes() or not graph.is_file() or kind == "bfloat16" and not _bf16_here():
        return None  # bfloat16 where the processor lacks it: refused below with the list of what is available
    try:
        meta = read_model_meta(graph)
        _check_bodyparts(checkpoint, meta["bodyparts"], parts)
        engine = _runtime_engine(backend, graph, threads)
    except (EngineError, ModelFileError, OSError):
        return None  # the full path below measures or falls back, and says why
    codec = HeatmapCodec.from_dict(meta["codec"])
    return cls(engine, codec, meta, checkpoint=checkpoint, skeleton=skeleton, pad_to=int(meta["pad_to"]))


def _load_checkpoint(cls, path: Path, device, backend, precision, freeze, probe_frames, threads, report):
    from .model_paths import latest_checkpoint

    checkpoint = latest_checkpoint(path) if path.is_dir() or path.suffix in (".yaml", ".yml") else path
    project, parts, skeleton = _project_parts(checkpoint)
    torch_asked = backend.startswith("torch") or backend == "auto" and (precision != "auto" or not freeze)
    on_cpu = str(device if device is not None else "cpu").split(":")[0] == "cpu"
    if on_cpu and not torch_asked and checkpoint.is_file():
        predictor = _from_cached_graph(cls, checkpoint, backend, threads, parts, skeleton)
        if predictor is not None:
            return predictor

    from .checkpoint import load_checkpoint
    from .forward import pad_multiple

    model, codec, meta = load_checkpoint(checkpoint, device=device)
    _check_bodyparts(checkpoint, meta["bodyparts"], parts)
    pad_to = pad_multiple(model, codec)

    def torch_builder(freeze_: bool, precision_: str):
        return lambda: cls(
            model, codec, meta, checkpoint=checkpoint, skeleton=skeleton, device=device, precision=precision_,
            freeze=freeze_,
        )  # fmt: skip

    if not on_cpu or backend == "auto" and torch_asked:
        # a GPU, or torch settings asked for explicitly: torch as asked
        return torch_builder(freeze, precision)()
    builders: dict[str, Callable[[], Any]] = {
        "torch-frozen-float32": torch_builder(True, "float32"),
        "torch-eager-float32": torch_builder(False, "float32"),
    }
    if _bf16_here():
        builders["torch-frozen-bfloat16"] = torch_builder(True, "bfloat16")
    digest_of = functools.cache(lambda: _digest(checkpoint))
    runtimes = available_runtimes()
    if runtimes and _version("onnx") is not None:
        models = cache_dir() / "models"

        def onnx_file(int8: bool) -> Path:
            from .export import calibration_batches, onnx_bytes, quantize_onnx

            target = models / f"{digest_of()}{'-int8' if int8 else ''}.onnx"
            if not target.is_file():
                models.mkdir(parents=True, exist_ok=True)
                data = onnx_bytes(model, codec, meta, skeleton=skeleton, checkpoint=checkpoint)
                if int8:
                    data = quantize_onnx(
                        data, calibration_batches(project, pad_to, float(meta.get("input_scale", 1.0)))
                    )
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)
            return target

        def onnx_builder(name: str):
            return lambda: cls(
                _runtime_engine(name, onnx_file(name.endswith("int8")), threads),
                codec,
                meta,
                checkpoint=checkpoint,
                skeleton=skeleton,
                pad_to=pad_to,
            )

        kinds = ["float32", *(["bfloat16"] if _bf16_here() else [])]
        if project is not None:
            kinds.append("int8")
        for runtime in runtimes:
            for kind in kinds:
                if runtime == "onnxruntime" and kind == "bfloat16":
                    continue  # onnxruntime's CPU provider has no bfloat16 convolutions
                builders[f"{runtime}-{kind}"] = onnx_builder(f"{runtime}-{kind}")

    def probe_data(reference):
        found = labeled_crops(project, pad_to, float(meta.get("input_scale", 1.0))) if project else None
        if found is not None:
            return found
        frames = probe_frames() if callable(probe_frames) else probe_frames
        return _frames_as_crops(frames, reference), None

    return _choose(builders, "torch-eager-float32", backend, digest_of, probe_data, report)
