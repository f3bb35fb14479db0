"""Training accuracy vs time on the real openfield project (DeepLabCut's example data).

Trains with the project's labels through the same code as ``posekit train``
and records the test error after every evaluation, the final train and test
errors (per body part, PCK) and the training throughput::

    python benchmarks/train_openfield.py --split random --minutes 10
    python benchmarks/train_openfield.py --split block --minutes 15 --json out.json

Random split: DeepLabCut's protocol (95 % train, seed 0).  Block split: the
first 80 % of the labeled frames train, the rest test (93 / 23 frames here).
Run on an otherwise idle machine: the budget is wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_posekit.core.data import Augmentation, load_project_labels
from napari_posekit.core.options import TRAIN_FRACTION, TRAIN_MINUTES, TrainOptions
from napari_posekit.core.train import evaluate, iter_train, load_checkpoint

HERE = Path(__file__).resolve().parent
DEFAULT_PROJECT = (
    Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
    / "dlc_openfield-Pranav-2018-10-30"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    ap.add_argument("--split", choices=["random", "block"], default="random")
    ap.add_argument("--minutes", type=float, default=TRAIN_MINUTES)
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train this many epochs instead of a time budget (results that do not depend on load)",
    )
    ap.add_argument("--backbone", default=TrainOptions().backbone)
    ap.add_argument("--input-scale", type=float, default=None)
    ap.add_argument("--crop", type=int, default=None, help="square training crop in pixels")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--head-stride", type=int, default=None)
    ap.add_argument("--sigma", type=float, default=None)
    ap.add_argument("--weight-decay", type=float, default=None)
    ap.add_argument("--ema-decay", default=None, help="weight averaging decay per step, or 'none'")
    ap.add_argument("--rotation", type=float, default=None, help="augmentation: rotation range in degrees")
    ap.add_argument("--scale-range", type=float, nargs=2, default=None, help="augmentation: scale range")
    ap.add_argument(
        "--train-fraction",
        type=float,
        default=None,
        help="default: 0.95 for the random split, 0.8 for the block split (93 / 23 frames)",
    )
    ap.add_argument(
        "--train-batchnorm",
        action="store_true",
        help="backbone batch norms adapt their statistics (default: keep ImageNet's)",
    )
    ap.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default=None)
    ap.add_argument(
        "--frozen-stride", type=int, default=None, help="backbone layers up to this stride stay fixed (0: all train)"
    )
    ap.add_argument("--eval-every", type=int, default=None, help="default: the time-budgeted schedule")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--keep", type=Path, default=None, help="copy the final checkpoint here")
    args = ap.parse_args(argv)

    torch.set_num_threads(os.cpu_count() or 1)
    kwargs: dict = {}
    for name, key in [
        ("input_scale", "input_scale"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("head_stride", "head_stride"),
        ("sigma", "sigma"),
        ("weight_decay", "weight_decay"),
        ("precision", "precision"),
        ("frozen_stride", "frozen_stride"),
    ]:
        value = getattr(args, name)
        if value is not None:
            kwargs[key] = value
    if args.train_batchnorm:
        kwargs["frozen_bn"] = False
    if args.crop:
        kwargs["input_size"] = (args.crop, args.crop)
    if args.ema_decay is not None:
        kwargs["ema_decay"] = None if args.ema_decay == "none" else float(args.ema_decay)
    if args.rotation is not None or args.scale_range is not None:
        default = Augmentation()
        kwargs["augmentation"] = dataclasses.replace(
            default,
            rotation_deg=args.rotation if args.rotation is not None else default.rotation_deg,
            scale=tuple(args.scale_range) if args.scale_range is not None else default.scale,
        )

    images, bodyparts, xy = load_project_labels(args.project)
    scales_file = args.project / "scales.json"  # written by make_project_variants.py
    scales = json.loads(scales_file.read_text()) if scales_file.is_file() else {}

    def key(path: Path) -> str:
        return path.relative_to(args.project.resolve()).as_posix()

    workdir = Path(tempfile.mkdtemp(prefix="posekit-train-bench-"))
    curve = []
    t0 = time.monotonic()
    n_steps = 0
    batch = None
    try:
        gen = iter_train(
            args.project,
            backbone=args.backbone,
            epochs=args.epochs,
            max_minutes=None if args.epochs else args.minutes,
            split=args.split,
            train_fraction=args.train_fraction or (TRAIN_FRACTION if args.split == "random" else 0.8),
            seed=args.seed,
            eval_every=args.eval_every,
            symmetric_pairs=[("leftear", "rightear")],
            checkpoint_dir=workdir,
            device="cpu",
            **kwargs,
        )
        while True:
            try:
                p = next(gen)
            except StopIteration as done:
                checkpoint = done.value
                break
            if p.get("event") == "evaluated":
                curve.append({"train_seconds": round(p["train_seconds"], 1), "test_error_px": p["test_error_px"]})
                print(
                    f"{p['train_seconds']:7.1f} s  epoch {p['epoch']:4d}  loss {p['loss']:.4f}  "
                    f"test error {p['test_error_px']:.3f} px",
                    flush=True,
                )
            else:
                n_steps += 1
        wall = time.monotonic() - t0
        model, codec, meta = load_checkpoint(checkpoint)
        split = meta["split"]
        train_config = meta["train_config"]
        batch = train_config["batch_size"]
        results = {}
        for part in ("train", "test"):
            idx = split[part]
            r = evaluate(
                model,
                codec,
                [images[i] for i in idx],
                xy[idx],
                bodyparts=bodyparts,
                input_scale=meta["input_scale"],
            )
            pred = np.asarray(r.pop("predictions"))
            r.pop("likelihoods")
            if scales:  # errors in openfield pixels: each image's own pixels divided by its scale
                f = np.array([scales[key(images[i])] for i in idx])[:, None]
                e = np.linalg.norm(pred - xy[idx], axis=-1) / f
                r["mean_error_openfield_px"] = float(np.nanmean(e))
            if part == "test":  # per image and body part, to see where the error comes from
                err = np.linalg.norm(pred - xy[idx], axis=-1)
                r["per_image_px"] = {images[i].name: [round(float(e), 2) for e in row] for i, row in zip(idx, err)}
            results[part] = r
        images_per_s = n_steps * batch / meta["train_seconds"]
        if args.keep:
            shutil.copy(checkpoint, args.keep)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "split": args.split,
        "n_train": len(split["train"]),
        "n_test": len(split["test"]),
        "minutes": args.minutes,
        "wall_s": round(wall, 1),
        "train_config": train_config,
        "input_scale": meta["input_scale"],
        "input_size": list(codec.input_size),
        "stride": codec.stride,
        "images_per_s_including_evaluation": round(images_per_s, 2),
        "curve": curve,
        "train": results["train"],
        "test": results["test"],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "curve"}, indent=1, default=float))
    print(
        f"TEST mean error {results['test']['mean_error_px']:.3f} px, train {results['train']['mean_error_px']:.3f} px, "
        f"{images_per_s:.1f} images/s, {len(curve)} evaluations"
    )
    if scales:
        print(
            f"in openfield pixels: test {results['test']['mean_error_openfield_px']:.3f} px, "
            f"train {results['train']['mean_error_openfield_px']:.3f} px"
        )
    for part, sep in results["test"]["separation"].items():
        if sep["n_absent"]:
            print(
                f"{part}: test likelihood >= p-cutoff on {sep['labeled_above']:.0%} of {sep['n_labeled']} labeled, "
                f"< p-cutoff on {sep['absent_below']:.0%} of {sep['n_absent']} absent"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
