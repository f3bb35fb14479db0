"""Label QA: does ``check_labels`` find labeling mistakes planted in real projects?

Copies a project into a work folder (the shared data is only read), plants
mistakes with a seed, runs the checks on the copy and scores the ranked list::

    python benchmarks/label_qa.py                        # openfield + fly, fast checks, 5 seeds (~1.5 min)
    python benchmarks/label_qa.py --quick                # smoke run: one seed, fewer plants
    nice -n 5 python benchmarks/label_qa.py --cv --species openfield   # with cross-validation, ~11 min
    python benchmarks/label_qa.py --effect --effect-epochs 60          # img0102's fix: test error before/after

Planted kinds (each in its own image; never ``img0102`` on openfield, whose ears
are really swapped): ``swap`` (a left/right pair exchanged), ``move`` (one part
moved 20-40 px in a random direction, kept inside the image), ``collapse`` (one
part put on another, within 1 px) and ``hard`` (one part moved 8-15 px).  Moved
parts end at least ``MIN_GAP`` px from every other part, so a move is not also
a collapse, and only pairs at least ``2 x MIN_GAP`` px apart are swapped (folded
wings at one spot exchanged are no mistake) or collapsed.

Scoring: the top ``2 x planted`` suspects of the ranked list.  A plant is found
when one of them is of its image and names its part (a swap or a collapse:
either of the two).  Printed: recall per kind and overall (median and minimum
over seeds), where every plant ranks, which top suspects are not planted (with
their reasons, to look at; ``--look`` draws them), and whether the real
mistake, ``img0102``'s ears, is in the top list.

The second species is the SLEAP fly clip: the ``female`` track on every 10th
frame of 0-999 becomes a single-animal project (100 PNGs decoded with the
project's video reader, the 13 nodes as body parts, the clip's skeleton).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_posekit.core.collected_data import (
    arrays_to_collected,
    collected_to_arrays,
    index_style,
    read_collected,
    write_collected,
)
from napari_posekit.core.config import read_config, write_config
from napari_posekit.core.hardware import cpu_flags, cpu_model
from napari_posekit.core.label_suspects import CheckReport, LabelSet, Suspect, project_label_set

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
OPENFIELD = SHARED / "dlc_openfield-Pranav-2018-10-30"
FLY = SHARED / "sleap_fly_clip"
REAL_MISTAKE = ("labeled-data/m4s1/img0102.png", ("leftear", "rightear"))
KINDS = ("swap", "move", "collapse", "hard")
MOVE_PX = {"move": (20.0, 40.0), "hard": (8.0, 15.0)}
MIN_GAP = 6.0  # px: a moved part ends at least this far from every other part
FLY_NODES = ("head", "thorax", "abdomen", "wingL", "wingR", "forelegL4", "forelegR4")
FLY_NODES += ("midlegL4", "midlegR4", "hindlegL4", "hindlegR4", "eyeL", "eyeR")
FLY_SKELETON = [("head", "eyeL"), ("head", "eyeR")] + [
    ("thorax", n) for n in FLY_NODES if n not in ("thorax", "eyeL", "eyeR")
]
FLY_PAIRS = [("wingL", "wingR"), ("forelegL4", "forelegR4"), ("midlegL4", "midlegR4")]
FLY_PAIRS += [("hindlegL4", "hindlegR4"), ("eyeL", "eyeR")]


# -- machine ---------------------------------------------------------------------------------
def cpu_description() -> tuple[str, str]:
    """The CPU model and the vector-instruction flags that matter for torch on the CPU."""
    model, have = cpu_model(), cpu_flags()
    wanted = {
        "AVX2": {"avx2"},
        "AVX-512": {"avx512f"},
        "AVX-512 BF16": {"avx512_bf16"},
        "AVX-512 VNNI": {"avx512_vnni"},
        "AVX-VNNI": {"avx_vnni"},
        "AMX": {"amx_tile", "amx_bf16", "amx_int8"},
    }
    listed = [f"{name} {'yes' if need & have else 'no'}" for name, need in wanted.items()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} usable of {os.cpu_count()} logical CPUs", ", ".join(listed)


def revisions() -> str:
    """The last commit of each label QA module, and whether the working tree changes it."""
    import subprocess

    out = []
    for name in ("label_checks", "label_cv", "label_qa"):
        path = f"src/napari_posekit/core/{name}.py"
        try:
            log = ["git", "-C", str(HERE.parent), "log", "-1", "--format=%h", "--", path]
            commit = subprocess.run(log, capture_output=True, text=True, check=True).stdout.strip()
            diff = ["git", "-C", str(HERE.parent), "diff", "--quiet", "HEAD", "--", path]
            dirty = subprocess.run(diff, check=False, capture_output=True).returncode != 0
        except (OSError, subprocess.CalledProcessError):
            commit, dirty = "unknown", False
        out.append(f"{name} {commit or 'uncommitted'}{' + changes' if dirty else ''}")
    return ", ".join(out)


# -- projects ----------------------------------------------------------------------------------
def copy_project(source: Path, dest: Path) -> Path:
    """``config.yaml`` and ``labeled-data`` of ``source`` in ``dest`` (replaced), config pointing at the copy."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(source / "labeled-data", dest / "labeled-data", copy_function=shutil.copyfile)
    for folder in [dest / "labeled-data", *(dest / "labeled-data").rglob("*")]:
        if folder.is_dir():  # copytree keeps the folders' modes: the shared data's are read-only
            folder.chmod(0o755)
    config = read_config(source)
    config["project_path"] = str(dest)
    config["video_sets"] = {}
    write_config(dest / "config.yaml", config)
    return dest


def build_fly_project(dest: Path, step: int = 10, stop: int = 1000, track: str = "female") -> Path:
    """A single-animal project from the fly clip's ``track`` on every ``step``-th frame below ``stop``."""
    import pandas as pd
    from PIL import Image

    from napari_posekit.core.project import create_project
    from napari_posekit.core.video import VideoReader

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    config_path = create_project(dest, "fly", "sleap", [FLY / "clip.mp4"], list(FLY_NODES), FLY_SKELETON)
    root = config_path.parent
    flat = pd.read_csv(FLY / "clip.labels.flat.csv")
    flat = flat[(flat["track"] == track) & (flat["frame_idx"] < stop) & (flat["frame_idx"] % step == 0)]
    frames = sorted(int(f) for f in flat["frame_idx"].unique())
    table = flat.pivot(index="frame_idx", columns="node", values=["x", "y"])
    xy = np.stack([table["x"][list(FLY_NODES)].to_numpy(), table["y"][list(FLY_NODES)].to_numpy()], axis=-1)
    xy = xy[[list(table.index).index(f) for f in frames]]
    folder = root / "labeled-data" / "clip"
    keys = []
    with VideoReader(FLY / "clip.mp4") as reader:
        for f in frames:
            name = f"img{f:04d}.png"
            Image.fromarray(np.asarray(reader.get(f))).convert("L").save(folder / name)
            keys.append(f"labeled-data/clip/{name}")
    write_collected(arrays_to_collected(keys, FLY_NODES, xy, "sleap"), folder)
    return root


def write_labels(labels: LabelSet, xy: np.ndarray) -> None:
    """Write ``xy`` (rows as ``labels.images``) into the project's CollectedData files (.h5 and .csv)."""
    rows = {key: i for i, key in enumerate(labels.images)}
    for h5 in sorted(labels.root.glob("labeled-data/*/CollectedData_*.h5")):
        df = read_collected(h5)
        keys, parts, old = collected_to_arrays(df)
        new = old.copy()
        for j, key in enumerate(keys):
            i = rows[key.replace("\\", "/")]
            for k, bp in enumerate(labels.bodyparts):
                new[j, parts.index(bp)] = xy[i, k]
        scorer = df.columns.get_level_values("scorer")[0]
        write_collected(arrays_to_collected(keys, parts, new, scorer, index_style(df)), h5)


def image_sizes(labels: LabelSet) -> np.ndarray:
    """``(N, 2)`` width, height of every labeled image."""
    from napari_posekit.core.images import image_size

    return np.array([image_size(labels.image_path(i)) for i in range(len(labels.images))], dtype=np.float64)


# -- planting ----------------------------------------------------------------------------------
@dataclass
class Plant:
    image: str
    kind: str
    parts: tuple[str, ...]  # the part(s) a suspect must name (any one of them)
    detail: str


def _move_target(rng, xy, k, size, lo, hi, tries=200):
    others = np.delete(xy, k, axis=0)
    others = others[~np.isnan(others).any(axis=1)]
    for _ in range(tries):
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(lo, hi)
        target = xy[k] + dist * np.array([np.cos(angle), np.sin(angle)])
        inside = 2 <= target[0] <= size[0] - 3 and 2 <= target[1] <= size[1] - 3
        if inside and (not len(others) or np.linalg.norm(others - target, axis=1).min() >= MIN_GAP):
            return target, dist
    return None, None


def plant(
    labels: LabelSet, counts: dict[str, int], seed: int, exclude: set[str]
) -> tuple[np.ndarray, list[Plant], list[str]]:
    """Altered coordinates, the plants (ground truth) and notes on what could not be planted."""
    rng = np.random.default_rng(seed)
    xy = labels.xy.copy()
    sizes = image_sizes(labels)
    order = [i for i in rng.permutation(len(labels.images)) if labels.images[i] not in exclude]
    index = {bp: k for k, bp in enumerate(labels.bodyparts)}
    plants: list[Plant] = []
    notes: list[str] = []
    queue = iter(order)
    for kind in KINDS:
        for _ in range(counts.get(kind, 0)):
            done = False
            for i in queue:
                row = xy[i]
                labeled = [k for k in range(len(labels.bodyparts)) if not np.isnan(row[k]).any()]
                key = labels.images[i]
                if kind == "swap":
                    pairs = [
                        (a, b)
                        for a, b in labels.pairs
                        if index[a] in labeled
                        and index[b] in labeled
                        and np.linalg.norm(row[index[a]] - row[index[b]]) >= 2 * MIN_GAP
                    ]
                    if not pairs:
                        continue
                    a, b = pairs[rng.integers(len(pairs))]
                    ka, kb = index[a], index[b]
                    gap = float(np.linalg.norm(row[ka] - row[kb]))
                    row[[ka, kb]] = row[[kb, ka]]
                    plants.append(Plant(key, kind, (a, b), f"{a} and {b} exchanged ({gap:.1f} px apart)"))
                elif kind == "collapse":
                    apart = [
                        (j, k)
                        for j in labeled
                        for k in labeled
                        if j != k and np.linalg.norm(row[j] - row[k]) >= 2 * MIN_GAP
                    ]
                    if not apart:
                        continue
                    ka, kb = apart[rng.integers(len(apart))]
                    a, b = labels.bodyparts[ka], labels.bodyparts[kb]
                    gap = float(np.linalg.norm(row[ka] - row[kb]))
                    row[ka] = row[kb] + rng.uniform(-0.7, 0.7, size=2)
                    plants.append(Plant(key, kind, (a, b), f"{a} put on {b} (was {gap:.1f} px away)"))
                else:
                    if not labeled:
                        continue
                    k = int(rng.choice(labeled))
                    target, dist = _move_target(rng, row, k, sizes[i], *MOVE_PX[kind])
                    if target is None:
                        continue
                    row[k] = target
                    bp = labels.bodyparts[k]
                    plants.append(Plant(key, kind, (bp,), f"{bp} moved {dist:.1f} px"))
                done = True
                break
            if not done:
                notes.append(f"could not plant a {kind}: no image left that allows one")
    return xy, plants, notes


# -- scoring -----------------------------------------------------------------------------------
def names(suspect: Suspect, plant_: Plant) -> bool:
    return suspect.image == plant_.image and bool(set(suspect.bodyparts) & set(plant_.parts))


def score(report: CheckReport, plants: list[Plant], real: tuple[str, tuple[str, ...]] | None) -> dict:
    """Recall per kind in the top ``2 x len(plants)``, each plant's best rank, the top list's other suspects."""
    ranked = report.suspects
    n_top = 2 * len(plants)
    top = ranked[:n_top]
    found, rank = {}, {}
    for p in plants:
        hits = [r for r, s in enumerate(ranked, 1) if names(s, p)]
        rank[id(p)] = hits[0] if hits else None
        found[id(p)] = bool(hits) and hits[0] <= n_top
    recall = {}
    for kind in KINDS:
        mine = [p for p in plants if p.kind == kind]
        if mine:
            recall[kind] = sum(found[id(p)] for p in mine) / len(mine)
    recall["all"] = sum(found.values()) / len(plants) if plants else float("nan")
    strict = sum(1 for p in plants if rank[id(p)] is not None and rank[id(p)] <= len(plants))
    planted_images = {p.image for p in plants}
    status = []
    for r, s in enumerate(top, 1):
        if any(names(s, p) for p in plants):
            what = "planted"
        elif real and s.image == real[0] and set(s.bodyparts) & set(real[1]):
            what = "real"
        elif s.image in planted_images:
            what = "planted image, other part"
        else:
            what = "not planted"
        status.append((r, what, s))
    real_rank = None
    if real:
        hits = [r for r, s in enumerate(ranked, 1) if s.image == real[0] and set(s.bodyparts) & set(real[1])]
        real_rank = hits[0] if hits else None
    return {
        "recall": recall,
        "recall_at_n": strict / len(plants) if plants else float("nan"),
        "n_top": n_top,
        "rank": rank,
        "status": status,
        "real_rank": real_rank,
        "n_suspects": len(ranked),
    }


def run_checks(root: Path, cv: bool, max_minutes: float, verbose: bool) -> CheckReport:
    from napari_posekit.core._generators import drive
    from napari_posekit.core.label_qa import iter_check_labels

    last = [0.0]

    def progress(item: dict) -> None:
        if verbose and time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            print(f"    {100 * item.get('progress', 0):5.1f} %  {item.get('message', '')}", flush=True)

    labels = project_label_set(root)
    return drive(iter_check_labels(labels, cross_validate=cv, max_minutes=max_minutes, device="cpu"), progress)


# -- one species ---------------------------------------------------------------------------------
def trial(source: Path, work: Path, name: str, counts: dict, seed: int, cv: bool, args) -> dict:
    real = REAL_MISTAKE if name == "openfield" else None
    root = copy_project(source, work / f"{name}-seed{seed}{'-cv' if cv else ''}")
    labels = project_label_set(root)
    xy, plants, notes = plant(labels, counts, seed, {real[0]} if real else set())
    write_labels(labels, xy)
    t0 = time.perf_counter()
    report = run_checks(root, cv, args.max_minutes, verbose=cv)
    seconds = time.perf_counter() - t0
    result = score(report, plants, real)
    result.update(seed=seed, seconds=seconds, plants=plants, notes=notes, report=report, root=root)
    return result


def print_trial(result: dict, show_others: bool) -> None:
    report = result["report"]
    recall = result["recall"]
    parts = ", ".join(f"{k} {v:.0%}" for k, v in recall.items())
    real = result["real_rank"]
    real_text = (
        ""
        if "real_rank" not in result or result["root"].name.startswith("fly")
        else (f"; img0102 ears: rank {real}" if real else "; img0102 ears: not listed")
    )
    print(
        f"  seed {result['seed']}: {report.checks} {result['seconds']:.2f} s, {result['n_suspects']} suspects; "
        f"top {result['n_top']} recall: {parts}; recall in top {len(result['plants'])}: "
        f"{result['recall_at_n']:.0%}{real_text}"
    )
    for note in result["notes"] + list(report.notes):
        print(f"    note: {note}")
    missed = [p for p in result["plants"] if not (result["rank"][id(p)] or 10**9) <= result["n_top"]]
    for p in missed:
        r = result["rank"][id(p)]
        print(f"    missed {p.kind}: {p.image} {p.detail} (rank {r if r else 'none'})")
    if show_others:
        for r, what, s in result["status"]:
            if what != "planted":
                print(f"    #{r} [{what}] {s.kind} {s.image} {','.join(s.bodyparts)} score {s.score:.2f}: {s.reason}")


def summarise(name: str, results: list[dict]) -> None:
    print(f"\n{name}: {len(results)} seed(s); recall in the top 2 x planted (median, min over seeds)")
    print("| kind | planted per seed | median | min |")
    print("|---|---|---|---|")
    for kind in (*KINDS, "all"):
        values = [r["recall"][kind] for r in results if kind in r["recall"]]
        if not values:
            continue
        n = sum(1 for p in results[0]["plants"] if kind == "all" or p.kind == kind)
        print(f"| {kind} | {n} | {statistics.median(values):.0%} | {min(values):.0%} |")
    strict = [r["recall_at_n"] for r in results]
    print(f"| all, top 1 x planted | | {statistics.median(strict):.0%} | {min(strict):.0%} |")
    others = [sum(1 for _, w, _ in r["status"] if w == "not planted") for r in results]
    print(f"not-planted suspects in the top list per seed: {others}")
    seconds = [r["seconds"] for r in results]
    print(
        f"check time per run: median {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})"
    )
    if name == "openfield":
        ranks = [r["real_rank"] for r in results]
        inside = sum(1 for r, res in zip(ranks, results) if r is not None and r <= res["n_top"])
        print(f"img0102 (real ear swap): rank per seed {ranks}; in the top list in {inside} of {len(results)} seeds")


def draw_suspect(labels: LabelSet, s: Suspect, file: Path, margin: int = 60, width: int = 480) -> None:
    """The labels of one suspect's image around the animal: red its parts, green the others, blue the suggestion."""
    from PIL import Image, ImageDraw

    image = Image.open(labels.image_path(s.image)).convert("RGB")
    row = labels.xy[labels.row(s.image)]
    points = row[~np.isnan(row).any(axis=1)]
    if s.suggested is not None:
        points = np.concatenate([points, s.suggested[~np.isnan(s.suggested).any(axis=1)]])
    lo = np.maximum(points.min(axis=0) - margin, 0).astype(int)
    hi = np.minimum(points.max(axis=0) + margin, image.size).astype(int)
    f = width / max(hi[0] - lo[0], 1)
    image = image.crop((*lo, *hi)).resize((width, round((hi[1] - lo[1]) * f)), Image.LANCZOS)
    draw = ImageDraw.Draw(image)

    def at(xy):
        return (xy[0] - lo[0] + 0.5) * f - 0.5, (xy[1] - lo[1] + 0.5) * f - 0.5

    for k, bp in enumerate(labels.bodyparts):
        if not np.isnan(row[k]).any():
            x, y = at(row[k])
            colour = (255, 40, 40) if bp in s.bodyparts else (40, 230, 40)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=colour, width=2)
            draw.text((x + 6, y - 6), bp, fill=colour)
    if s.suggested is not None:
        for xy in s.suggested:
            if not np.isnan(xy).any():
                x, y = at(xy)
                draw.rectangle([x - 4, y - 4, x + 4, y + 4], outline=(80, 160, 255), width=2)
    image.save(file)


def look(reports: list[tuple[str, CheckReport, list[tuple[int, str, Suspect]]]], out: Path) -> None:
    """Draw every distinct not-planted suspect of the top lists (and of the unmodified projects) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    seen = set()
    for name, report, status in reports:
        for r, what, s in status:
            key = (name, s.image, s.kind, s.bodyparts)
            if what in ("planted", "planted image, other part") or key in seen:
                continue
            seen.add(key)
            draw_suspect(report.labels, s, out / f"{name}-{Path(s.image).stem}-{s.kind}-{'-'.join(s.bodyparts)}.png")
    print(f"drew {len(seen)} not-planted suspects under {out} (red: the suspect's parts, blue: the suggestion)")


def unmodified(name: str, source: Path, work: Path) -> tuple[str, CheckReport, list]:
    """The checks on a project as it is: every suspect is a candidate real mistake."""
    root = copy_project(source, work / f"{name}-unmodified")
    report = run_checks(root, False, 0.0, verbose=False)
    print(f"\n{name} as it is: {len(report.suspects)} suspects ({report.seconds:.2f} s)")
    for r, s in enumerate(report.suspects, 1):
        print(f"  #{r} {s.kind} {s.image} {','.join(s.bodyparts)} score {s.score:.2f}: {s.reason}")
    return f"{name}-as-is", report, [(r, "not planted", s) for r, s in enumerate(report.suspects, 1)]


# -- timing of the fast checks ---------------------------------------------------------------------
def time_fast_checks(work: Path, reps: int) -> None:
    from napari_posekit.core.label_checks import fast_checks

    root = copy_project(OPENFIELD, work / "openfield-unmodified")
    load, fast, whole = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        labels = project_label_set(root)
        t1 = time.perf_counter()
        suspects, notes, checks = fast_checks(labels)
        t2 = time.perf_counter()
        run_checks(root, False, 0.0, verbose=False)
        t3 = time.perf_counter()
        load.append(t1 - t0)
        fast.append(t2 - t1)
        whole.append(t3 - t2)
    print(f"\nfast checks on the unmodified openfield project ({len(labels.images)} images), {reps} repetitions:")
    print("| step | median | min | max |")
    print("|---|---|---|---|")
    for what, values in (("read the labels", load), ("fast_checks", fast), ("iter_check_labels, no CV", whole)):
        print(f"| {what} | {statistics.median(values):.3f} s | {min(values):.3f} s | {max(values):.3f} s |")
    print(f"checks that ran: {checks}; fast_checks suspects: {len(suspects)}")
    for note in notes:
        print(f"  note: {note}")


# -- the effect of fixing img0102 --------------------------------------------------------------------
def _train(root: Path, epochs: int, split: str) -> Path:
    from napari_posekit.core._generators import drive
    from napari_posekit.core.workflow import train_project

    t0 = time.monotonic()
    work = train_project(root, epochs=epochs, split=split, train_fraction=0.8, seed=0, eval_every=0, device="cpu")
    checkpoint = drive(work)
    print(f"  trained {root.name}: {epochs} epochs in {time.monotonic() - t0:.0f} s", flush=True)
    return checkpoint


def _errors(evaluation, labels: LabelSet) -> dict[str, float]:
    """Mean test/train error of an evaluation's predictions against ``labels`` (by image key), and img0102's."""
    table = evaluation.per_image.set_index("image")
    pred = np.stack([table[[f"{bp}_x", f"{bp}_y"]].to_numpy() for bp in labels.bodyparts], axis=1)
    rows = [labels.row(key) for key in table.index]
    err = np.linalg.norm(pred - labels.xy[rows], axis=-1)
    split = table["split"].to_numpy()
    out = {part: float(np.nanmean(err[split == part])) for part in ("train", "test")}
    out["img0102"] = float(np.nanmean(err[list(table.index).index(REAL_MISTAKE[0])]))
    out["where"] = str(table.loc[REAL_MISTAKE[0], "split"])
    return out


def effect(work: Path, epochs: int, split: str, retrain: bool) -> None:
    """Train on openfield as it is and with the checks' fix for img0102; test errors on both label sets."""
    from napari_posekit.core.workflow import evaluate_project

    before = copy_project(OPENFIELD, work / "effect-as-given")
    report = run_checks(before, False, 0.0, verbose=False)
    image, ears = REAL_MISTAKE
    fixes = [
        s for s in report.suspects if s.image == image and set(s.bodyparts) & set(ears) and s.suggested is not None
    ]
    if not fixes:
        print(f"the checks suggest no fix for {image}: nothing to compare")
        return
    fix = fixes[0]
    print(
        f"\nfix applied: {fix.kind} of {', '.join(fix.bodyparts)} (rank {report.suspects.index(fix) + 1}): {fix.reason}"
    )
    after = copy_project(OPENFIELD, work / "effect-fixed")
    labels = {"as given": project_label_set(before)}
    xy = labels["as given"].xy.copy()
    row = labels["as given"].row(image)
    for bp, new in zip(fix.bodyparts, fix.suggested):
        xy[row, labels["as given"].bodyparts.index(bp)] = new
    write_labels(project_label_set(after), xy)
    labels["fixed"] = project_label_set(after)
    evaluations = {"as given": evaluate_project(before, _train(before, epochs, split), write=False)}
    where = _errors(evaluations["as given"], labels["as given"])["where"]
    print(f"{image} is in the {where} part of the {split} split")
    if where == "train" or retrain:
        evaluations["fixed"] = evaluate_project(after, _train(after, epochs, split), write=False)
    else:
        print("  not retrained on the fixed labels: the training images, labels and seed are the same, so is the model")
    print(f"\n{split} split of 116 images at 0.8, seed 0, {epochs} epochs:")
    print("| model trained on | labels evaluated | test error | train error | img0102 error | img0102 in |")
    print("|---|---|---|---|---|---|")
    for trained, evaluation in evaluations.items():
        for evaluated, against in labels.items():
            e = _errors(evaluation, against)
            print(
                f"| {trained} | {evaluated} | {e['test']:.3f} px | {e['train']:.3f} px | "
                f"{e['img0102']:.2f} px | {e['where']} |"
            )


# -- main ----------------------------------------------------------------------------------------------
def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qa_bench"), help="copies and drawings go here")
    ap.add_argument("--species", nargs="+", choices=["openfield", "fly"], default=["openfield", "fly"])
    ap.add_argument("--seeds", type=int, default=5, help="seeds without cross-validation (0, 1, ...)")
    ap.add_argument("--counts", type=int, nargs=4, default=[4, 6, 4, 6], metavar=("SWAP", "MOVE", "COLLAPSE", "HARD"))
    ap.add_argument("--cv", action="store_true", help="with cross-validation (one seed, --max-minutes each)")
    ap.add_argument("--max-minutes", type=float, default=10.0)
    ap.add_argument("--cv-seed", type=int, default=0)
    ap.add_argument("--timing-reps", type=int, default=5, help="repetitions of the fast checks' timing (0: none)")
    ap.add_argument("--effect", action="store_true", help="train before/after img0102's fix instead of planting")
    ap.add_argument("--effect-epochs", type=int, default=60)
    ap.add_argument("--effect-split", choices=["block", "random"], default="block")
    ap.add_argument("--effect-retrain", action="store_true", help="retrain on the fixed labels even when it is in test")
    ap.add_argument("--look", action="store_true", help="draw the top lists' not-planted suspects under WORK/look")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 plant of each kind, 1 timing rep")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    if args.quick:
        args.seeds, args.counts, args.timing_reps = 1, [1, 1, 1, 1], 1
        args.max_minutes = min(args.max_minutes, 1.0)
    model, flags = cpu_description()
    print(f"CPU: {model}\nCPU flags: {flags}")
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average {os.getloadavg()[0]:.1f}"
    )
    print(f"checks at {revisions()}")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.effect:
        effect(args.work, args.effect_epochs, args.effect_split, args.effect_retrain)
        return 0
    counts = dict(zip(KINDS, args.counts))
    print(f"planted per run: {counts}; scored on the top 2 x {sum(counts.values())} suspects")
    sources = {"openfield": OPENFIELD}
    if "fly" in args.species:
        t0 = time.monotonic()
        sources["fly"] = build_fly_project(args.work / "fly-source")
        print(f"fly project built in {time.monotonic() - t0:.1f} s: {sources['fly']}")
    everything = []
    for name in args.species:
        seeds = [args.cv_seed] if args.cv else list(range(args.seeds))
        mode = f"with cross-validation (max {args.max_minutes:g} min)" if args.cv else "fast checks only"
        print(f"\n== {name}, {mode}")
        results = []
        for seed in seeds:
            result = trial(sources[name], args.work, name, counts, seed, args.cv, args)
            print_trial(result, show_others=True)
            results.append(result)
        summarise(name, results)
        everything.extend(results)
    if args.timing_reps and "openfield" in args.species and not args.cv:
        time_fast_checks(args.work, args.timing_reps)
    if not args.cv:
        shown = [unmodified(name, sources[name], args.work) for name in args.species]
        if args.look:
            shown += [(r["root"].name.split("-seed")[0], r["report"], r["status"]) for r in everything]
            look(shown, args.work / "look")
    return 0


if __name__ == "__main__":
    sys.exit(main())
