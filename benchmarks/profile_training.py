"""Where a training step's time goes, before and after each speed-up, side by side in one run.

On the openfield project (block split, 93 training images, the default
224-px crops, batch 8), every configuration of the ladder below trains from
the same starting weights on the same batches; rounds are interleaved
(A B C … A B C …) and the tables give medians over rounds::

    python benchmarks/profile_training.py --rounds 5 --steps 6
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/profile_training.py   # as an AVX2-only CPU

The ladder (each row adds one change to the row above):

- ``before``: plain AdamW, the weight average updated tensor by tensor,
  batch norms computed, every layer trained, float32, batches made between
  steps (the training step before the speed-ups);
- ``+fused``: fused AdamW and a one-pass weight average;
- ``+fold``: the frozen batch norms folded into their convolutions;
- ``+prefetch``: the next batch made by a thread while a step runs;
- ``+bf16``: bfloat16 autocast with depthwise convolutions in float32 (only
  where the CPU computes bfloat16 natively, or with ``--bf16``);
- ``+freeze``: the backbone's layers up to stride 4 frozen (an option,
  ``frozen_stride=4``, not the default: it costs accuracy per epoch).

Parts: ``data`` (waiting for the batch), ``forward``, ``loss``,
``backward``, ``optimizer``, ``ema``.  The evaluation's cost is measured once:
one evaluation of the 23 test images and its share of the training time
when it runs after every epoch (the schedule before) and on the 5 % budget.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_posekit.core._generators import prefetched
from napari_posekit.core.data import load_project_labels
from napari_posekit.core.evaluation import evaluate
from napari_posekit.core.hardware import cpu_description, native_bfloat16
from napari_posekit.core.options import TrainOptions
from napari_posekit.core.train import EVAL_SHARE
from napari_posekit.core.train_setup import start_run, training_dataset
from napari_posekit.core.train_tools import (
    fold_frozen_batchnorm,
    freeze_early_layers,
    keep_depthwise_float32,
    make_optimizer,
    pose_loss,
    set_train_mode,
)

HERE = Path(__file__).resolve().parent
DEFAULT_PROJECT = (
    Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
    / "dlc_openfield-Pranav-2018-10-30"
)
PARTS = ("data", "forward", "loss", "backward", "optimizer", "ema")
LADDER = ("before", "+fused", "+fold", "+prefetch", "+bf16", "+freeze")


class _LoopAverage:
    """The weight average as it was updated before: one lerp per tensor."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine = self.model.state_dict()
        for name, value in model.state_dict().items():
            if mine[name].is_floating_point():
                mine[name].lerp_(value.detach(), 1.0 - d)
            else:
                mine[name].copy_(value)


class _Config:
    """One rung of the ladder: a model, optimiser and weight average set up with its changes."""

    def __init__(self, name: str, base: torch.nn.Module, options: TrainOptions, bf16: bool) -> None:
        from napari_posekit.core.train_tools import WeightAverage

        rung = LADDER.index(name)
        self.name, self.options = name, options
        self.prefetch = rung >= LADDER.index("+prefetch")
        self.bf16 = bf16 and rung >= LADDER.index("+bf16")
        model = copy.deepcopy(base).to(memory_format=torch.channels_last)
        set_train_mode(model, True)
        if rung >= LADDER.index("+freeze"):
            freeze_early_layers(model, 4)
        if rung >= LADDER.index("+fold"):
            fold_frozen_batchnorm(model.backbone)
        if self.bf16:
            keep_depthwise_float32(model)
        if rung >= LADDER.index("+fused"):
            self.optimizer = make_optimizer(model, options.lr, options.weight_decay)
            self.ema = WeightAverage(model, 0.995)
        else:
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
            self.ema = _LoopAverage(model, 0.995)
        self.model = model

    def steps(self, loader, n: int) -> dict[str, list[float]]:
        """Train ``n`` steps on ``loader``'s batches; the seconds of every part of every step."""
        times: dict[str, list[float]] = {part: [] for part in PARTS}
        batches = prefetched(loader) if self.prefetch else iter(loader)
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                    out = self.model(batch["image"].contiguous(memory_format=torch.channels_last))
                if self.bf16:
                    out = type(out)(*(o.float() for o in out))
                t2 = time.perf_counter()
                loss, _ = pose_loss(out, batch, self.options.locref_loss_weight, self.options.absent_weight)
                t3 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                t4 = time.perf_counter()
                self.optimizer.step()
                t5 = time.perf_counter()
                self.ema.update(self.model)
                t6 = time.perf_counter()
                for part, a, b in zip(PARTS, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6), strict=True):
                    times[part].append(b - a)
        finally:
            if hasattr(batches, "close"):
                batches.close()
        return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="steps per configuration and round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="include the bfloat16 rung even without native support")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    images, bodyparts, xy = load_project_labels(args.project)
    options = TrainOptions(split="block", train_fraction=0.8, symmetric_pairs=[("leftear", "rightear")], seed=0)
    start = start_run(options, images, xy, bodyparts)
    dataset = training_dataset(options, start, images, xy, bodyparts)
    bf16 = args.bf16 or native_bfloat16("cpu")
    ladder = [r for r in LADDER if r != "+bf16" or bf16]
    configs = [_Config(name, start.model, options, bf16) for name in ladder]

    def loader(epoch: int):
        dataset.set_epoch(epoch)
        gen = torch.Generator().manual_seed(epoch)
        return torch.utils.data.DataLoader(dataset, batch_size=options.batch_size, shuffle=True, generator=gen)

    for c in configs:  # warm-up: caches, oneDNN kernels
        c.steps(loader(0), 2)
    results = {c.name: {part: [] for part in (*PARTS, "step")} for c in configs}
    for r in range(args.rounds):
        for c in configs:
            t = c.steps(loader(r + 1), args.steps)
            for part in PARTS:
                results[c.name][part].append(float(np.median(t[part])))
            results[c.name]["step"].append(float(np.sum([t[p] for p in PARTS]) / args.steps))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    test = start.test_idx
    eval_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        evaluate(configs[-1].ema.model, start.codec, [images[i] for i in test], xy[test], bodyparts=bodyparts)
        eval_s.append(time.perf_counter() - t0)
    eval_median = float(np.median(eval_s))

    print(f"\nCPU: {cpu_description()}; torch {torch.__version__}, {args.threads} threads")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if isa:
        print(f"ONEDNN_MAX_CPU_ISA={isa}, ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '(default)')}")
    print(f"medians of {args.rounds} rounds x {args.steps} steps, batch {options.batch_size}, crop 224 x 224\n")
    print("| configuration | " + " | ".join(PARTS) + " | step (ms) | images/s |")
    print("|---" * (len(PARTS) + 3) + "|")
    table = {}
    for c in configs:
        row = {part: 1000 * float(np.median(results[c.name][part])) for part in (*PARTS, "step")}
        row["images_per_s"] = options.batch_size * 1000 / row["step"]
        table[c.name] = row
        cells = " | ".join(f"{row[p]:.0f}" for p in PARTS)
        print(f"| {c.name} | {cells} | {row['step']:.0f} | {row['images_per_s']:.1f} |")
    default = ladder[-2]  # the last rung is the opt-in freezing
    first, last = table[ladder[0]], table[default]
    print(f"\nspeed-up {default} (the defaults) / before: {last['images_per_s'] / first['images_per_s']:.2f}x")
    n_train = len(start.train_idx)
    for name in (ladder[0], default):
        epoch_s = n_train / table[name]["images_per_s"]
        print(
            f"evaluation of {len(test)} images: {eval_median:.2f} s; with '{name}' steps an epoch trains in "
            f"{epoch_s:.1f} s, so evaluating after every epoch takes {eval_median / (epoch_s + eval_median):.0%} "
            f"of the time; the budgeted schedule at most {EVAL_SHARE:.0%}"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_description(), "table": table, "eval_s": eval_s}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
