"""Training: :func:`iter_train` is a generator that yields progress and returns a checkpoint.

Run it in a loop (or in napari's ``thread_worker``)::

    gen = iter_train(frames, xy, bodyparts, epochs=50, checkpoint_dir="models")
    for progress in gen:
        print(progress["epoch"], progress["loss"])

The hyperparameters are a :class:`~napari_posekit.core.options.TrainOptions`
(``options=``), each of which may also be given as a keyword argument.

It stops between steps when ``stop()`` returns True or when the generator is
closed; either way a checkpoint is saved first.  The checkpoint path is the
generator's return value (``StopIteration.value``; ``returned`` in napari).

A checkpoint holds everything inference needs (model architecture and
weights, codec, normalisation, body parts) plus the split, the optimiser and
training time for resuming, and a format version.  It is written atomically
(:mod:`~napari_posekit.core.checkpoint`).  What a run starts from is set up in
:mod:`~napari_posekit.core.train_setup`, the loss and schedule are in
:mod:`~napari_posekit.core.train_tools` and the evaluation after an epoch is
:func:`~napari_posekit.core.evaluation.evaluate`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._generators import prefetched
from .checkpoint import (
    CHECKPOINT_KIND,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    set_aside,
)
from .evaluation import evaluate, likelihood_separation, predict_images
from .hardware import native_bfloat16
from .options import TRAIN_LR, TrainOptions, train_options
from .train_setup import (
    RunStart,
    image_keys,
    resolve_training_data,
    split_by_keys,
    start_run,
    train_config,
    training_dataset,
)
from .train_tools import (
    WeightAverage,
    fold_frozen_batchnorm,
    freeze_early_layers,
    keep_depthwise_float32,
    lr_factor,
    make_optimizer,
    pose_loss,
    set_train_mode,
)

__all__ = [
    "CHECKPOINT_KIND",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "DEFAULT_LR",
    "CheckpointError",
    "TrainOptions",
    "TrainingMemoryError",
    "WeightAverage",
    "default_device",
    "evaluate",
    "image_keys",
    "iter_train",
    "likelihood_separation",
    "load_checkpoint",
    "lr_factor",
    "pose_loss",
    "predict_images",
    "save_checkpoint",
    "set_train_mode",
    "split_by_keys",
]

DEFAULT_LR = TRAIN_LR

EVAL_SHARE = 0.05
"""With ``eval_every=None``, evaluations take at most this share of the training time between them."""


class TrainingMemoryError(MemoryError):
    """A training step needed more memory than the device has."""


def default_device() -> torch.device:
    """CUDA if available, else Apple MPS if available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


class _Run:
    """One training run between its steps: the clock and schedule, the weights, optimiser and history.

    It reads this module's ``time`` and calls its ``pose_loss``, so both can
    be replaced for a test.
    """

    def __init__(
        self,
        options: TrainOptions,
        start: RunStart,
        data: tuple[Any, np.ndarray, list[str]],
        *,
        device: torch.device,
        checkpoint_path: Path,
        stop: Callable[[], bool] | None,
        keep_previous: bool,
        resumed: dict[str, Any] | None,
        init_weights: Any,
        t0: float,
    ) -> None:
        self.options, self.start, self.t0 = options, start, t0
        self.images, self.xy, self.bodyparts = data
        self.device, self.checkpoint_path, self.stop = device, checkpoint_path, stop
        self.keep_previous, self.init_weights, self.saved = keep_previous, init_weights, False
        model = start.model
        # channels-last runs the convolutions about a quarter faster on CPU
        set_train_mode(model.to(device=device, memory_format=torch.channels_last), start.frozen_bn)
        freeze_early_layers(model, start.frozen_stride)
        if start.frozen_bn:
            fold_frozen_batchnorm(model.backbone, example=torch.rand(1, 3, 64, 64, device=device))
        precision = options.precision
        if precision == "auto":
            precision = "bfloat16" if native_bfloat16(device) else "float32"
        self.bfloat16 = precision == "bfloat16"
        if self.bfloat16:
            keep_depthwise_float32(model)
        self.ema = WeightAverage(model, float(options.ema_decay)) if options.ema_decay is not None else None
        if self.ema is not None and resumed is not None and "train_state_dict" in resumed:
            self.ema.model.load_state_dict(resumed["state_dict"])
            self.ema.updates = int(resumed.get("step", 0))
        self.served = self.ema.model if self.ema is not None else model  # the weights evaluated and predicting
        self.dataset = training_dataset(options, start, self.images, self.xy, self.bodyparts)
        self.steps_per_epoch = math.ceil(len(self.dataset) / options.batch_size)
        self.steps_total = self.steps_per_epoch * int(options.epochs) if options.epochs is not None else None
        self.budget_s = 60.0 * float(options.max_minutes) if options.max_minutes is not None else None
        self.optimizer = make_optimizer(model, options.lr, options.weight_decay)
        if resumed is not None and "optimizer" in resumed:
            self.optimizer.load_state_dict(resumed["optimizer"])
        self.step = start.start_epoch * self.steps_per_epoch
        self.epoch = start.start_epoch
        self.train_config = train_config(options, start, resumed=resumed, init_weights=init_weights)
        self.train_config["precision"] = precision  # the arithmetic "auto" chose
        self.last_eval: dict[str, Any] = {}
        self.eval_s: float | None = None  # how long the last evaluation took
        self.eval_end = t0  # when it ended
        self.start_progress = self.progress()
        self.last_epoch = int(options.epochs) if options.epochs is not None else 2**31
        self.loader_gen = torch.Generator().manual_seed(options.seed)

    # ------------------------------------------------------------------ clock
    def progress(self) -> float:
        """How far along training is (0..1): steps or time, whichever is further."""
        p = self.step / self.steps_total if self.steps_total else 0.0
        if self.budget_s is not None:
            p = max(p, (self.start.trained_s + time.monotonic() - self.t0) / self.budget_s)
        return min(p, 1.0)

    def should_stop(self) -> bool:
        if self.stop is not None and self.stop():
            return True
        return self.budget_s is not None and self.start.trained_s + time.monotonic() - self.t0 >= self.budget_s

    def eta(self) -> float:
        p = self.progress()
        return (time.monotonic() - self.t0) * (1.0 - p) / max(p - self.start_progress, 1e-9)

    # ------------------------------------------------------------------ steps
    def batches(self, epoch_index: int) -> Generator[dict[str, torch.Tensor], None, None]:
        """The shuffled training batches of an epoch (the same order for the same seed and epoch).

        A thread makes the next batch while the current one trains.
        """
        self.dataset.set_epoch(epoch_index)
        self.loader_gen.manual_seed(self.options.seed * 100_003 + epoch_index)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.options.batch_size, shuffle=True, generator=self.loader_gen, num_workers=0
        )
        return prefetched(loader)

    def train_step(self, batch: dict[str, torch.Tensor], epoch_index: int) -> dict[str, Any]:
        """One optimiser step on ``batch``; the progress event it yields."""
        o, model = self.options, self.start.model
        current_lr = o.lr * lr_factor(self.progress(), o.warmup_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = current_lr
        try:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
                outputs = model(batch["image"].contiguous(memory_format=torch.channels_last))
            if self.bfloat16:
                outputs = type(outputs)(*(o.float() for o in outputs))
            loss, parts = pose_loss(outputs, batch, o.locref_loss_weight, o.absent_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(model)
        except (RuntimeError, MemoryError) as exc:
            if not _is_out_of_memory(exc):
                raise
            size = self.start.codec.input_size
            raise TrainingMemoryError(
                f"not enough {self.device.type.upper()} memory for batch size {o.batch_size} at input "
                f"{size[1]}x{size[0]}: use a smaller batch size or input size "
                f"(checkpoints already written are unchanged)"
            ) from exc
        self.step += 1
        return {
            "epoch": epoch_index + 1,
            "epochs": int(o.epochs) if o.epochs is not None else None,
            "step": self.step,
            "progress": self.progress(),
            "loss": float(loss.detach()),
            **parts,
            "lr": current_lr,
            "elapsed_s": time.monotonic() - self.t0,
            "eta_s": self.eta(),
        }

    # ------------------------------------------------------------------ epochs
    def end_epoch(self, epoch: int, losses: list[float]) -> tuple[dict[str, Any], bool]:
        """Record epoch ``epoch``, evaluate when due, save; ``(history record, whether training ends)``."""
        self.epoch = epoch
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "train_seconds": self.start.trained_s + time.monotonic() - self.t0,
        }
        final = epoch == self.last_epoch or self.should_stop()
        if self.evaluation_due(epoch, final):
            began, test_idx = time.monotonic(), self.start.test_idx
            self.last_eval = evaluate(
                self.served,
                self.start.codec,
                [self.images[i] for i in test_idx],
                self.xy[test_idx],
                bodyparts=self.bodyparts,
                input_scale=self.start.input_scale,
                batch_size=self.options.batch_size,
                device=self.device,
            )
            set_train_mode(self.start.model, self.start.frozen_bn)
            self.eval_end = time.monotonic()
            self.eval_s = self.eval_end - began
            record["test_error_px"] = self.last_eval["mean_error_px"]
        self.start.history.append(record)
        self.save()
        return record, final

    def evaluation_due(self, epoch: int, final: bool) -> bool:
        """Whether to measure the test error after ``epoch`` (see ``TrainOptions.eval_every``)."""
        every = self.options.eval_every
        if not len(self.start.test_idx) or every == 0:
            return False
        if final:
            return True
        if every is not None:
            return epoch % int(every) == 0
        if self.eval_s is None:
            return True
        return self.eval_s <= EVAL_SHARE * (time.monotonic() - self.eval_end)

    def evaluated_event(self, record: dict[str, Any]) -> dict[str, Any]:
        """The ``"evaluated"`` event after an epoch whose test error was measured."""
        return {
            "event": "evaluated",
            "epoch": record["epoch"],
            "epochs": int(self.options.epochs) if self.options.epochs is not None else None,
            "step": self.step,
            "progress": self.progress(),
            "loss": record["loss"],
            "test_error_px": record["test_error_px"],
            "train_seconds": record["train_seconds"],
            "elapsed_s": time.monotonic() - self.t0,
            "eta_s": self.eta(),
        }

    def save(self) -> Path:
        """Write the checkpoint (before the first write, set an earlier one aside with ``keep_previous``)."""
        path = self.checkpoint_path
        if self.keep_previous and not self.saved and path.is_file():
            init = self.init_weights
            starts_from_it = init is not None and Path(init).resolve() == path.resolve()
            kept = set_aside(path)
            if starts_from_it:
                self.train_config["init_weights"] = str(kept)  # the weights fine-tuned from, under their new name
        self.saved = True
        return save_checkpoint(path, self._state())

    def _state(self) -> dict[str, Any]:
        start, model = self.start, self.start.model
        return {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "model_config": model.config(),
            "state_dict": {k: v.detach().cpu() for k, v in self.served.state_dict().items()},
            **(
                {"train_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
                if self.ema is not None
                else {}
            ),
            "codec": start.codec.to_dict(),
            "mean": list(model.mean),
            "std": list(model.std),
            "input_scale": float(start.input_scale),
            "bodyparts": list(self.bodyparts),
            "split": start.split_info,
            "epoch": int(self.epoch),
            "step": int(self.step),
            "optimizer": self.optimizer.state_dict(),
            "train_seconds": start.trained_s + (time.monotonic() - self.t0),
            "history": start.history,
            "test_error_px": self.last_eval.get("mean_error_px"),
            "train_config": self.train_config,
        }


def iter_train(
    data: Sequence[np.ndarray | str | os.PathLike] | np.ndarray | str | os.PathLike,
    xy: np.ndarray | None = None,
    bodyparts: Sequence[str] | None = None,
    *,
    options: TrainOptions | None = None,
    checkpoint_dir: str | os.PathLike = "posekit-model",
    resume: str | os.PathLike | None = None,
    stop: Callable[[], bool] | None = None,
    device: torch.device | str | None = None,
    keep_previous: bool = False,
    init_weights: str | os.PathLike | None = None,
    **overrides: Any,
) -> Generator[dict[str, Any], None, Path]:
    """Train a :class:`~napari_posekit.core.model.PoseModel`; yield progress after every step, return the checkpoint.

    Parameters
    ----------
    data:
        Images (``(H, W, 3)`` arrays, an ``(N, H, W, 3)`` array or image
        paths) with ``xy`` ``(N, K, 2)`` (NaN = not labeled), or a DeepLabCut
        project folder (labels from :func:`~napari_posekit.core.data.load_project_labels`).
    options:
        The hyperparameters (default :class:`~napari_posekit.core.options.TrainOptions`,
        whose fields say what each does).  Keyword ``overrides`` named like its
        fields replace them (``epochs=2``); other names raise :class:`TypeError`.
        Training runs for ``epochs`` epochs or ``max_minutes`` minutes of wall
        time, whichever ends first; the learning rate (AdamW, linear warm-up,
        cosine decay to 1 % of ``lr``) follows whichever is further along.
    checkpoint_dir:
        Folder of ``checkpoint.pt``, saved after every epoch and when stopped.
    resume:
        A checkpoint to continue from: its weights, optimiser, split,
        completed epochs and training time are restored and training goes on up to
        ``epochs`` / ``max_minutes`` (counted from the first session).
    stop:
        Called before every step; returning True stops training.
    device:
        Default: CUDA, else MPS, else CPU.
    keep_previous:
        Before the first save, rename an existing ``checkpoint.pt`` in
        ``checkpoint_dir`` to ``checkpoint-<its time>.pt`` instead of
        replacing it.
    init_weights:
        Fine-tune: a checkpoint whose weights start a new training run. Its
        architecture, codec (input size, sigma, stride) and input scale are
        used (``backbone``, ``pretrained``, ``head_stride``, ``input_size``,
        ``sigma`` and ``input_scale`` are then ignored); the optimiser,
        learning-rate schedule, epochs and history are new, unlike
        ``resume``. The images it held out for testing stay held out and
        every other image trains (so the test error before and after is
        measured on the same images); when the checkpoint's split has no
        image names, or the images are arrays, the split is made afresh.
        Its body parts must be ``bodyparts`` (:class:`CheckpointError`
        otherwise).

    Yields
    ------
    dict with ``epoch`` (1-based, current), ``step``, ``progress`` (0..1),
    ``loss``, ``lr``, ``elapsed_s``, ``eta_s`` and, after an evaluation,
    ``test_error_px`` (and ``event: "evaluated"``).
    """
    t0 = time.monotonic()
    options = train_options(options, **overrides)
    options.check()
    images, bodyparts, xy = resolve_training_data(data, xy, bodyparts)
    if len(xy) == 0:
        raise ValueError("no labeled images to train on")
    device = torch.device(device) if device is not None else default_device()
    if resume is not None and init_weights is not None:
        raise ValueError("give resume (continue a run) or init_weights (a new run from its weights), not both")
    resumed = read_checkpoint(resume) if resume is not None else None
    init = read_checkpoint(init_weights) if init_weights is not None else None
    start = start_run(
        options, images, xy, bodyparts, resumed=resumed, resume=resume, init=init, init_weights=init_weights
    )
    run = _Run(
        options,
        start,
        (images, xy, bodyparts),
        device=device,
        checkpoint_path=Path(checkpoint_dir) / CHECKPOINT_NAME,
        stop=stop,
        keep_previous=keep_previous,
        resumed=resumed,
        init_weights=init_weights,
        t0=t0,
    )
    try:
        for epoch_index in range(start.start_epoch, run.last_epoch):
            losses = []
            for batch in run.batches(epoch_index):
                if run.should_stop():
                    break  # the partial epoch is evaluated and saved like a full one
                event = run.train_step(batch, epoch_index)
                losses.append(event["loss"])
                yield event
            record, final = run.end_epoch(epoch_index + 1, losses)
            if "test_error_px" in record:
                yield run.evaluated_event(record)
            if final:
                break
    except GeneratorExit:
        run.save()
        raise
    return run.save()
