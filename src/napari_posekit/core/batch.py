"""Many videos at once on a Dask cluster: one task per video.

:func:`analyze_videos` runs :func:`~napari_posekit.core.inference.analyze_video`
for each video as one ``dask.distributed`` task (:func:`analyze_one`).  By
default it starts a :class:`~distributed.LocalCluster` of worker processes on
this machine and closes it at the end; given the address of a running scheduler
(``tcp://host:8786``) or a scheduler file it connects a client to that cluster
and leaves it running, so clusters started by ``dask-jobqueue`` (SLURM, PBS,
SGE...), ``dask-kubernetes`` or ``dask scheduler`` / ``dask worker`` by hand are
used unchanged.  The workers need napari-posekit installed and must see the
videos, the checkpoint and the output folder under the same paths (a shared
file system); all paths are sent as absolute paths.

The unit of work is a whole video: a worker loads the model once (it is cached
per worker process, keyed by the checkpoint) and analyses the video to the end.
A video that is interrupted (a worker lost, the batch stopped) keeps its
progress in ``analyze_video``'s resumable partial files, and running the batch
again continues it.  Videos whose predictions already exist are skipped unless
``overwrite``.  A video that fails (unreadable file, unwritable folder...) is
reported with the reason and does not stop the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import ANALYSIS_BATCH_SIZE
from .video import VIDEO_EXTENSIONS

__all__ = [
    "BatchError",
    "BatchResult",
    "VideoFailed",
    "analyze_one",
    "analyze_videos",
    "find_videos",
    "resolve_model",
]


class BatchError(RuntimeError):
    """The batch cannot start (no scheduler at the address, bad arguments); the message says why."""


class VideoFailed(RuntimeError):
    """One video could not be analysed; raised inside its task with the reason as a plain message.

    The original exception is turned into this one so that the reason always
    reaches the client: not every exception can be pickled and rebuilt there.
    """


@dataclass
class BatchResult:
    """What :func:`analyze_videos` did, per video (keys: the videos as absolute paths).

    ``done``: predictions written in this run (``.h5`` path); ``skipped``:
    predictions that existed and were kept; ``failed``: the reason.
    """

    checkpoint: Path
    scorer: str
    done: dict[Path, Path] = field(default_factory=dict)
    skipped: dict[Path, Path] = field(default_factory=dict)
    failed: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    @property
    def predictions(self) -> dict[Path, Path]:
        """Every video's ``.h5``, written now or kept."""
        return {**self.skipped, **self.done}


# --------------------------------------------------------------------------- paths
def _absolute(path: str | os.PathLike) -> Path:
    """Absolute path without resolving links (prediction files are named after the link, as DeepLabCut does)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def find_videos(paths: Iterable[str | os.PathLike], extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """The videos named by ``paths``: files as given, folders expanded to the video files inside.

    A folder contributes its files with a video extension (not recursive,
    sorted by name), leaving out hidden files and labeled videos written by
    posekit (``*_labeled.mp4``).  Duplicates are dropped; a path that does not
    exist is kept, so that the caller can report it.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    wanted = {e.lower() for e in extensions}
    for path in paths:
        path = _absolute(path)
        if path.is_dir():
            items = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and p.suffix.lower() in wanted
                and not p.name.startswith(".")
                and not p.stem.endswith("_labeled")
            )
        else:
            items = [path]
        for item in items:
            if item not in seen:
                seen.add(item)
                found.append(item)
    return found


def resolve_model(model: str | os.PathLike, backend: str = "auto") -> tuple[Path, str]:
    """``(checkpoint, scorer)`` of a project folder / ``config.yaml`` (its latest model), a checkpoint or ``.onnx`` file.

    Loads the model once to check it, so that a bad path fails here, before
    any work is sent out.  Raises :class:`FileNotFoundError`,
    :class:`~napari_posekit.core.project.ProjectError` (no trained model yet),
    :class:`~napari_posekit.core.train.CheckpointError` (not a posekit
    checkpoint) or :class:`~napari_posekit.core.inference.AnalysisError`.
    """
    from .inference import Predictor

    predictor = Predictor.load(model, device="cpu", backend=backend)
    assert predictor.checkpoint is not None
    return _absolute(predictor.checkpoint), predictor.scorer


# --------------------------------------------------------------------------- worker side
_PREDICTORS: dict[tuple[str, int, str], Any] = {}
_PREDICTORS_LOCK = threading.Lock()
_PREDICTORS_KEPT = 2


def _cached_predictor(checkpoint: str, device: str | None, backend: str = "auto", threads: int | None = None):
    """The worker process's :class:`~napari_posekit.core.inference.Predictor` for ``checkpoint``, loaded once.

    An exported model (``.onnx``) runs without torch: its device is the CPU.
    """
    from .inference import Predictor

    if device is None and not str(checkpoint).lower().endswith(".onnx"):
        from .hardware import gpu_present

        if gpu_present():  # else the CPU, without importing torch to ask
            from .train import default_device

            device = default_device()
    resolved = str(device or "cpu")
    key = (str(checkpoint), os.stat(checkpoint).st_mtime_ns, resolved, backend)
    with _PREDICTORS_LOCK:
        predictor = _PREDICTORS.get(key)
        if predictor is None:
            while len(_PREDICTORS) >= _PREDICTORS_KEPT:
                _PREDICTORS.pop(next(iter(_PREDICTORS)))
            predictor = Predictor.load(checkpoint, device=resolved, backend=backend, threads=threads)
            _PREDICTORS[key] = predictor
    return predictor


def _worker_threads() -> int:
    """Torch threads for one task on this worker: its CPUs shared among its task slots."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    slots = 1
    try:
        from distributed import get_worker

        worker = get_worker()
        slots = int(getattr(getattr(worker, "state", None), "nthreads", None) or getattr(worker, "nthreads", 1))
    except (ImportError, ValueError):  # not inside a worker
        pass
    return max(1, cpus // max(1, slots))


def _stop_checker(event_name: str | None, every: float = 2.0) -> Callable[[], bool] | None:
    """``should_stop()`` that looks at the batch's distributed ``Event`` at most every ``every`` seconds."""
    if not event_name:
        return None
    from distributed import Event

    state = {"next": 0.0, "stop": False}
    event = Event(event_name)

    def should_stop() -> bool:
        now = time.monotonic()
        if not state["stop"] and now >= state["next"]:
            state["next"] = now + every
            with contextlib.suppress(Exception):  # no answer from the scheduler: carry on
                state["stop"] = bool(event.is_set())
        return state["stop"]

    return should_stop


def analyze_one(
    checkpoint: str | os.PathLike,
    video: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    torch_threads: int | None = None,
    stop_event: str | None = None,
    backend: str = "auto",
    **options: Any,
) -> str:
    """Analyse one video to the end in this process; the task :func:`analyze_videos` sends to the workers.

    Parameters
    ----------
    checkpoint
        Checkpoint file or exported model (``.onnx``, which runs without torch); the loaded model is
        kept for the next videos of this process.
    video
        The video file.
    output_dir
        Where the predictions go (default: beside the video).
    device
        Torch device (default: the best this process has: CUDA, MPS or CPU).
    torch_threads
        Threads the network may use (default: this machine's CPUs divided by the worker's task slots).
    stop_event
        Name of a ``distributed.Event``; when it is set the analysis stops between blocks and keeps its
        progress for a later run.
    backend
        ``"auto"`` or a backend name (see :mod:`~napari_posekit.core.backends`).
    **options
        Passed to :func:`~napari_posekit.core.inference.analyze_video` (``batch_size``, ``fast``,
        ``overwrite``, ``chunk_frames``...).

    Returns
    -------
    str
        The ``.h5`` predictions.

    Raises
    ------
    VideoFailed
        With the reason, when the video cannot be analysed or the batch was stopped.
    """
    from .inference import analyze_video

    should_stop = _stop_checker(stop_event)
    if should_stop is not None and should_stop():
        raise VideoFailed("not started: the batch was stopped")
    threads = int(torch_threads or _worker_threads())
    try:
        predictor = _cached_predictor(str(checkpoint), device, backend, threads)
        if "torch" in sys.modules:  # torch's threads; the other runtimes' engines were given theirs
            sys.modules["torch"].set_num_threads(threads)
        gen = analyze_video(predictor, video, output_dir=output_dir, should_stop=should_stop, **options)
        while True:
            try:
                next(gen)
            except StopIteration as finished:
                h5 = finished.value
                break
    except Exception as exc:  # noqa: BLE001 - reported to the client as a plain message
        raise VideoFailed(_reason(exc)) from None
    if h5 is None:
        raise VideoFailed("stopped before the end; the progress is kept and a new run continues it")
    return str(h5)


def _reason(exc: BaseException) -> str:
    from .checkpoint import CheckpointError
    from .inference import AnalysisError
    from .model_file import ModelFileError
    from .project import ProjectError
    from .video import VideoError

    text = str(exc)
    if (
        isinstance(
            exc, (VideoError, AnalysisError, ProjectError, CheckpointError, ModelFileError, VideoFailed, OSError)
        )
        and text
    ):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- client side
def _connect(scheduler: Any, timeout: float):
    """``(client, own)``: a client for ``scheduler``; ``own`` is True when the client was made here."""
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, False
    if hasattr(scheduler, "scheduler_address"):  # a cluster object (LocalCluster, SLURMCluster, KubeCluster...)
        return Client(scheduler, timeout=timeout), True
    text = os.fspath(scheduler) if isinstance(scheduler, (str, os.PathLike)) else None
    if not text:
        raise BatchError(
            f"scheduler must be an address (tcp://host:8786), a scheduler file, a Client or a "
            f"cluster, got {scheduler!r}"
        )
    path = Path(text).expanduser()
    try:
        if "://" not in text and path.is_file():
            return Client(scheduler_file=str(path), timeout=timeout), True
        if "://" not in text and ":" not in text:
            raise BatchError(f"{text}: not a scheduler address (tcp://host:port) nor a scheduler file")
        return Client(text, timeout=timeout), True
    except BatchError:
        raise
    except (OSError, TimeoutError, ValueError) as exc:
        raise BatchError(f"cannot connect to the Dask scheduler at {text}: {exc}") from exc


def _local_cluster(n_workers: int | None, options: dict[str, Any] | None):
    from distributed import LocalCluster

    settings: dict[str, Any] = {
        "n_workers": n_workers or min(2, os.cpu_count() or 1),
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "silence_logs": logging.CRITICAL,  # failures are reported through the results
    }
    settings.update(options or {})
    return LocalCluster(**settings)


def _videos_to_send(
    videos: Iterable[str | os.PathLike],
    scorer: str,
    out: Path | None,
    overwrite: bool,
    settle: Callable[[Path, str, Path | str], None],
) -> list[tuple[Path, Path]]:
    """``(video, .h5)`` pairs to analyse; missing videos, clashing outputs and existing results are settled here."""
    from .inference import output_paths

    todo: list[tuple[Path, Path]] = []
    targets: dict[Path, Path] = {}
    for video in find_videos(videos):
        if not video.is_file():
            settle(video, "failed", f"{video}: no such video file")
            continue
        h5 = output_paths(video, scorer, out)["h5"]
        if h5 in targets:
            settle(
                video,
                "failed",
                f"{video}: would write the same file as {targets[h5]} ({h5.name}); "
                "give the videos different names or separate output folders",
            )
            continue
        targets[h5] = video
        if h5.is_file() and not overwrite:
            settle(video, "skipped", h5)
            continue
        todo.append((video, h5))
    return todo


def analyze_videos(
    model: str | os.PathLike,
    videos: Iterable[str | os.PathLike],
    *,
    output_dir: str | os.PathLike | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    fast: bool = True,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    overwrite: bool = False,
    device: str | None = None,
    torch_threads: int | None = None,
    on_result: Callable[[Path, str, Path | str], None] | None = None,
    cluster_options: dict[str, Any] | None = None,
    timeout: float = 30.0,
    **options: Any,
) -> BatchResult:
    """Analyse many videos with a trained model, one ``dask.distributed`` task per video.

    Parameters
    ----------
    model
        Project folder or its ``config.yaml`` (its latest model), a checkpoint file or an exported model
        (``.onnx``, which needs no torch on the workers).  Resolved and checked here, before anything is sent.
    videos
        Video files, or folders whose video files are analysed (see :func:`find_videos`).
    output_dir
        Where the predictions go (default: beside each video).
    scheduler
        ``None``: a local cluster of ``n_workers`` processes, closed at the end.  An address
        (``tcp://host:8786``), a scheduler file, a ``distributed.Client`` or a cluster object: that running
        cluster, which is left running.
    n_workers
        Worker processes of the local cluster (default: ``min(2, CPUs)``), one video at a time each.
    fast, batch_size, overwrite
        As in :func:`~napari_posekit.core.inference.analyze_video`.
    device
        Torch device on the workers (default: the best each worker has).
    torch_threads
        Torch threads per task (default: the worker machine's CPUs divided among its concurrent tasks; for the
        local cluster, the CPUs divided among its workers).
    on_result
        Called once per video as it is settled, ``on_result(video, status, value)`` with status ``"done"``
        (value: the ``.h5``), ``"skipped"`` (the existing ``.h5``) or ``"failed"`` (the reason).
    cluster_options
        Extra keyword arguments for :class:`~distributed.LocalCluster` (``memory_limit``, ...).
    timeout
        Seconds to wait when connecting to a scheduler.
    **options
        Passed to :func:`analyze_one` (``backend``) and
        :func:`~napari_posekit.core.inference.analyze_video` (``chunk_frames``, ``csv``, ``block``...).

    Returns
    -------
    BatchResult
        Per video: written, skipped or failed with the reason.  Missing videos are reported as failed without
        being sent; two videos that would write the same file (same name, one ``output_dir``) fail the second.

    Raises
    ------
    FileNotFoundError, ProjectError, CheckpointError, AnalysisError
        The model cannot be used (nothing is started).
    BatchError
        No scheduler at the address.
    """
    t0 = time.monotonic()
    checkpoint, scorer = resolve_model(model, options.get("backend", "auto"))
    result = BatchResult(checkpoint=checkpoint, scorer=scorer)
    out = _absolute(output_dir) if output_dir is not None else None

    def settle(video: Path, status: str, value: Path | str) -> None:
        getattr(result, status)[video] = value
        if on_result is not None:
            on_result(video, status, value)

    todo = _videos_to_send(videos, scorer, out, overwrite, settle)
    if not todo:
        result.seconds = time.monotonic() - t0
        return result

    cluster = None
    if scheduler is None:
        cluster = _local_cluster(n_workers, cluster_options)
        if torch_threads is None:
            cpus = os.cpu_count() or 1
            torch_threads = max(1, cpus // max(1, len(cluster.workers)))
    try:
        client, own_client = _connect(cluster if cluster is not None else scheduler, timeout)
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    try:
        _run(
            client,
            todo,
            checkpoint,
            out,
            settle,
            device=device,
            torch_threads=torch_threads,
            options={"fast": fast, "batch_size": batch_size, "overwrite": overwrite, **options},
        )
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    result.seconds = time.monotonic() - t0
    return result


def _run(
    client,
    todo: list[tuple[Path, Path]],
    checkpoint: Path,
    output_dir: Path | None,
    settle: Callable[[Path, str, Path | str], None],
    *,
    device: str | None,
    torch_threads: int | None,
    options: dict[str, Any],
    stop_wait: float = 10.0,
) -> None:
    """Submit one task per video and settle each as it completes; on an interruption, stop the tasks."""
    from distributed import Event, as_completed, wait

    batch = uuid.uuid4().hex[:8]
    stop_name = f"posekit-analyze-stop-{batch}"
    futures = {}
    for i, (video, _) in enumerate(todo):
        future = client.submit(
            analyze_one,
            str(checkpoint),
            str(video),
            None if output_dir is None else str(output_dir),
            device=device,
            torch_threads=torch_threads,
            stop_event=stop_name,
            **options,
            key=f"posekit-analyze-{video.stem}-{batch}-{i}",
            pure=False,
        )
        futures[future] = video
    finished = False
    try:
        for future in as_completed(list(futures)):
            video = futures[future]
            try:
                settle(video, "done", Path(future.result()))
            except Exception as exc:  # noqa: BLE001 - one video's failure does not stop the others
                settle(video, "failed", _reason(exc))
        finished = True
    finally:
        if not finished:
            # interrupted (Ctrl+C) or the client failed: tasks not started yet end at once, running ones stop
            # between blocks and save their progress for the next run
            with contextlib.suppress(BaseException):  # best effort, also on a second Ctrl+C
                event = Event(stop_name, client=client)
                event.set()
                wait([f for f in futures if not f.done()], timeout=stop_wait)
            client.cancel(list(futures))
