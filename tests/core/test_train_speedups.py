"""Tests for the faster training step: frozen early layers, folded batch norms, fused AdamW, bfloat16,
the one-pass weight average, batches made in a thread and the time-budgeted evaluation schedule."""

from __future__ import annotations

import copy
import math
import threading
import time

import pytest
import torch

import napari_posekit.core.train as train_module
from conftest import drain
from napari_posekit.core._generators import prefetched
from napari_posekit.core.checkpoint import read_checkpoint
from napari_posekit.core.hardware import cpu_description, cpu_flags, native_bfloat16
from napari_posekit.core.model import PoseModel
from napari_posekit.core.options import TrainOptions
from napari_posekit.core.synthetic import make_behaviour
from napari_posekit.core.train import WeightAverage, iter_train, load_checkpoint
from napari_posekit.core.train_setup import start_run
from napari_posekit.core.train_tools import (
    fold_frozen_batchnorm,
    freeze_early_layers,
    keep_depthwise_float32,
    make_optimizer,
    set_train_mode,
)

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]

# a tiny run: 8 images of 64 x 64, 6 train (two steps of 4 per epoch) and 2 are held out
TINY_RUN = {
    "backbone": "resnet18",
    "pretrained": False,
    "batch_size": 4,
    "input_size": (64, 64),
    "train_fraction": 0.75,
    "lr": 1e-3,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def small():
    return make_behaviour(n_frames=8, height=64, width=64, seed=5)


@pytest.fixture(scope="module")
def lite_weights():
    """A pretrained EfficientNet-Lite0 pose model's state (ImageNet weights from the installed package)."""
    return PoseModel("efficientnet_lite0", n_keypoints=3, pretrained=True).state_dict()


@pytest.fixture
def unsaved(monkeypatch):
    """Training writes no checkpoint files (they dominate a tiny run's time); the last state saved is kept here."""
    saved: dict[str, dict] = {}

    def save_checkpoint(path, state):
        saved["state"] = state
        return path

    monkeypatch.setattr(train_module, "save_checkpoint", save_checkpoint)
    return saved


def _lite(lite_weights) -> PoseModel:
    model = PoseModel("efficientnet_lite0", n_keypoints=3, pretrained=False)
    model.load_state_dict(lite_weights)
    return model


def _resnet(seed: int = 0) -> PoseModel:
    torch.manual_seed(seed)
    return PoseModel("resnet18", n_keypoints=3, pretrained=False)


def _randomise_batchnorms(model: torch.nn.Module, seed: int = 0) -> int:
    gen = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                module.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=gen))
                module.bias.copy_(0.1 * torch.randn(c, generator=gen))
                n += 1
    return n


def _outputs_and_grads(model: PoseModel, images: torch.Tensor, weights: list[torch.Tensor]):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # any stochastic layer draws the same in both models
    outputs = model(images)
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return [o.detach() for o in outputs], grads


def _output(model: PoseModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).heatmaps


# --------------------------------------------------------------------------- folded batch norms
@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_folded_batchnorms_compute_the_same_outputs_and_gradients(backbone, lite_weights):
    model = _lite(lite_weights) if backbone == "efficientnet_lite0" else _resnet()
    assert _randomise_batchnorms(model.backbone) > 10
    set_train_mode(model, True)
    reference = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    folded = fold_frozen_batchnorm(model.backbone)
    assert folded > 10
    assert fold_frozen_batchnorm(model.backbone) == 0  # folding twice folds nothing more

    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)

    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    shapes = [o.shape for o in reference(images)]
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(s, generator=gen) for s in shapes]
    ref_out, ref_grads = _outputs_and_grads(reference, images, weights)
    out, grads = _outputs_and_grads(model, images, weights)
    for a, b in zip(out, ref_out):
        scale = float(b.abs().max())
        assert float((a - b).abs().max()) <= 1e-4 * scale + 1e-6
    assert set(grads) == set(ref_grads)
    largest = max(float(g.abs().max()) for g in ref_grads.values())
    assert largest > 0
    worst = max(float((grads[k] - ref_grads[k]).abs().max()) for k in ref_grads)
    assert worst <= 1e-4 * largest, worst / largest
    # the batch norms' scale and shift still get their gradients
    bn_params = [
        f"{name}.weight"
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and name.startswith("backbone.")
    ]
    assert bn_params and all(float(grads[p].abs().max()) > 0 for p in bn_params)


def test_a_deep_copy_of_a_folded_model_stays_folded_with_its_own_batchnorms(lite_weights):
    model = _lite(lite_weights)
    _randomise_batchnorms(model.backbone)
    set_train_mode(model, True).eval()
    assert fold_frozen_batchnorm(model.backbone) > 0
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    original_out = _output(model, images)

    twin = copy.deepcopy(model)
    folded = [(n, c) for n, c in twin.named_modules() if hasattr(c, "_posekit_folded_bn")]
    assert len(folded) == sum(1 for m in model.modules() if hasattr(m, "_posekit_folded_bn"))
    twin_modules = set(map(id, twin.modules()))
    for _, conv in folded:
        assert id(conv._posekit_folded_bn) in twin_modules  # its own copy's batch norm, not the original's
        assert conv.forward.__self__ is conv
    assert torch.equal(_output(twin, images), original_out)

    # the stem's batch norm runs on every pixel: changing the copy's changes the copy's output only
    assert twin.backbone.conv_stem._posekit_folded_bn is twin.backbone.bn1
    with torch.no_grad():
        twin.backbone.bn1.running_mean += 1.0
        twin.backbone.bn1.weight.mul_(-1.0)
    assert not torch.allclose(_output(twin, images), original_out)
    assert torch.equal(_output(model, images), original_out)


# --------------------------------------------------------------------------- frozen early layers
def _head_loss(model: PoseModel) -> torch.Tensor:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    out = model(images)
    return out.heatmaps.square().mean() + out.locref.square().mean()


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_freeze_early_layers_stops_gradients_up_to_the_stride_4_features(backbone, lite_weights):
    model = _lite(lite_weights) if backbone == "efficientnet_lite0" else _resnet()
    names = freeze_early_layers(model, 4)
    if backbone == "efficientnet_lite0":
        assert names == ["conv_stem", "bn1", "blocks.0", "blocks.1"]
        later = "backbone.blocks.2."
    else:
        assert names[-1] == "layer1" and names[0] == "conv1"
        later = "backbone.layer2."
    frozen = {f"backbone.{n}.{p}" for n in names for p, _ in model.backbone.get_submodule(n).named_parameters()}
    assert frozen
    set_train_mode(model, True)
    _head_loss(model).backward()
    for name, p in model.named_parameters():
        if name in frozen:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad, name
    trained = dict(model.named_parameters())
    assert all(trained[n].grad is not None for n in trained if n.startswith(("heatmap_head.", later)))


def test_freeze_early_layers_zero_freezes_nothing_and_an_unknown_stride_raises():
    model = _resnet()
    assert freeze_early_layers(model, 0) == []
    assert freeze_early_layers(model, None) == []
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="stride 3"):
        freeze_early_layers(model, 3)
    with pytest.raises(ValueError):
        freeze_early_layers(model, 64)
    assert all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- fused AdamW
def _step(model: PoseModel, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    _head_loss(model).backward()
    optimizer.step()


def test_make_optimizer_skips_frozen_parameters_and_trains_the_rest():
    model = _resnet()
    names = freeze_early_layers(model, 4)
    optimizer = make_optimizer(model, 1e-2, 1e-2)
    assert optimizer.param_groups[0]["fused"] is True  # the fused kernel on the CPU
    listed = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert listed == {id(p) for p in model.parameters()}  # frozen ones too, so states load across runs
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    set_train_mode(model, False)
    _step(model, optimizer)
    prefixes = tuple(f"backbone.{n}." for n in names)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    frozen = {n for n in before if n.startswith(prefixes)}
    assert frozen and not (changed & frozen)
    # every parameter the loss reached moved (the deeper levels the head does not read have no gradient)
    reached = {n for n, p in model.named_parameters() if p.grad is not None and bool(p.grad.any())}
    assert reached <= changed and len(reached) > 20
    assert {n for n in before if n.startswith("heatmap_head.")} <= changed


def test_optimizer_states_load_between_make_optimizer_and_plain_adamw():
    model = _resnet()
    freeze_early_layers(model, 4)
    set_train_mode(model, False)
    fused = make_optimizer(model, 1e-3, 1e-4)
    _step(model, fused)
    plain = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    plain.load_state_dict(copy.deepcopy(fused.state_dict()))  # as read from a checkpoint file
    assert len(plain.state) == len(fused.state) > 0
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            if p in fused.state:
                assert torch.equal(plain.state[p][key], fused.state[p][key])

    # the reverse: an older run's plain AdamW state resumes into make_optimizer, and both step alike
    a = _resnet(seed=1)
    set_train_mode(a, False)
    old = torch.optim.AdamW(a.parameters(), lr=1e-3, weight_decay=1e-4)
    _step(a, old)
    b = copy.deepcopy(a)
    new = make_optimizer(b, 1e-3, 1e-4)
    new.load_state_dict(copy.deepcopy(old.state_dict()))  # a copy, as read from a file: no shared moments
    _step(a, old)
    _step(b, new)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6, msg=name)


def test_a_resumed_optimizer_stays_fused():
    model = _resnet()
    old = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    new = make_optimizer(model, 1e-3, 1e-4)
    new.load_state_dict(copy.deepcopy(old.state_dict()))
    assert new.param_groups[0]["fused"] is True


# --------------------------------------------------------------------------- depthwise float32
def test_depthwise_convolutions_stay_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    model = PoseModel("efficientnet_lite0", n_keypoints=3, pretrained=False).eval()
    reference = copy.deepcopy(model)
    n = keep_depthwise_float32(model)
    depthwise = [
        m for m in model.modules() if type(m) is torch.nn.Conv2d and m.groups > 1 and m.groups == m.in_channels
    ]
    assert n == len(depthwise) > 0
    pointwise = next(m for m in model.modules() if type(m) is torch.nn.Conv2d and m.kernel_size == (1, 1))
    dtypes: dict[str, torch.dtype] = {}

    def record(name):
        def hook(module, args, output):
            dtypes[name] = output.dtype

        return hook

    handles = [depthwise[0].register_forward_hook(record("depthwise")), pointwise.register_forward_hook(record("1x1"))]
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(images)
    for h in handles:
        h.remove()
    assert dtypes == {"depthwise": torch.float32, "1x1": torch.bfloat16}
    # outside autocast nothing changes
    with torch.no_grad():
        for a, b in zip(model(images), reference(images)):
            assert torch.equal(a, b)


# --------------------------------------------------------------------------- weight average
def test_weight_average_matches_a_per_tensor_lerp_with_its_warm_up():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    decay = 0.2  # the warm-up (1 + n) / (10 + n) is below it at the first update, above it later
    ema = WeightAverage(model, decay)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for n in (1, 2, 3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
            model[1].num_batches_tracked.add_(5)
        ema.update(model)
        d = min(decay, (1 + n) / (10 + n))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                expected[k].lerp_(v, 1.0 - d)
            else:
                expected[k].copy_(v)
        got = ema.model.state_dict()
        for k, value in expected.items():
            torch.testing.assert_close(got[k], value, rtol=1e-6, atol=1e-7, msg=f"{k} after {n} updates")
    assert int(ema.model[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 15
    assert ema.updates == 3


# --------------------------------------------------------------------------- prefetched
def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "posekit-prefetch" and t.is_alive()]


def test_prefetched_keeps_order_and_makes_the_next_item_ahead():
    assert list(prefetched(range(50), depth=2)) == list(range(50))
    assert list(prefetched([])) == []

    made = []

    def source():
        for i in range(10):
            made.append(i)
            yield i

    gen = prefetched(source(), depth=1)
    assert next(gen) == 0
    deadline = time.monotonic() + 5.0
    while len(made) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    # the next item was made while the first was in use, and no more than the queue (one) and a hand ahead
    assert 2 <= len(made) <= 3
    assert list(gen) == list(range(1, 10))
    assert not _prefetch_threads()


def test_prefetched_raises_the_sources_error_in_its_place():
    def source():
        yield "a"
        yield "b"
        raise KeyError("broken item")

    got = []
    with pytest.raises(KeyError, match="broken item"):
        for item in prefetched(source()):
            got.append(item)  # noqa: PERF402 - the items before the error are what is checked
    assert got == ["a", "b"]
    assert not _prefetch_threads()


def test_closing_prefetched_early_stops_its_thread():
    made = []

    def source():
        for i in range(1000):
            made.append(i)
            yield i

    gen = prefetched(source())
    for item in gen:
        assert item == 0
        break
    assert _prefetch_threads()
    closer = threading.Thread(target=gen.close, daemon=True)  # a hanging close fails the test, not the run
    closer.start()
    closer.join(timeout=5.0)
    assert not closer.is_alive()
    assert not _prefetch_threads()
    assert len(made) < 10  # the source was not run to its end


# --------------------------------------------------------------------------- evaluation schedule
def _evaluated(progress) -> list[int]:
    return [p["epoch"] for p in progress if p.get("event") == "evaluated"]


def _run(small, tmp_path, name, **options):
    return drain(
        iter_train(
            small.frames,
            small.keypoints,
            bodyparts=list(small.bodyparts),
            checkpoint_dir=tmp_path / name,
            **{**TINY_RUN, **options},
        )
    )


def test_eval_every_none_evaluates_the_first_and_the_last_epoch(small, tmp_path, unsaved):
    progress, _ = _run(small, tmp_path, "auto", epochs=4, precision="float32")
    evaluated = _evaluated(progress)
    assert evaluated[0] == 1 and evaluated[-1] == 4
    history = unsaved["state"]["history"]
    assert [r["epoch"] for r in history if "test_error_px" in r] == evaluated


class _Clock:
    """Training's clock, moved on only by training steps and evaluations (by the costs a test sets)."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.mark.parametrize(
    ("step_s", "eval_s", "expected"),
    [
        (1.0, 100.0, [1, 4]),  # evaluation is expensive next to training: only the first and the last epoch
        (9.0, 1.0, [1, 3, 4]),  # one epoch (18 s) is under 20 evaluations, two (36 s) are over
        (100.0, 1.0, [1, 2, 3, 4]),  # evaluation is cheap: every epoch
    ],
)
def test_eval_every_none_spends_a_share_of_the_time_evaluating(
    small, tmp_path, monkeypatch, unsaved, step_s, eval_s, expected
):
    assert train_module.EVAL_SHARE == 0.05
    clock = _Clock()
    monkeypatch.setattr(train_module, "time", clock)
    real_evaluate, real_step = train_module.evaluate, train_module._Run.train_step

    def evaluate(*args, **kwargs):
        clock.now += eval_s
        return real_evaluate(*args, **kwargs)

    def train_step(self, *args, **kwargs):
        clock.now += step_s
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", evaluate)
    monkeypatch.setattr(train_module._Run, "train_step", train_step)
    progress, _ = _run(small, tmp_path, "clock", epochs=4, precision="float32", augmentation=False)
    steps = [p for p in progress if "event" not in p]
    assert len(steps) == 8  # two steps per epoch, as the expected schedules assume
    assert _evaluated(progress) == expected


@pytest.mark.parametrize(("every", "expected"), [(2, [2, 4]), (0, [])])
def test_eval_every_counts_epochs(small, tmp_path, unsaved, every, expected):
    progress, _ = _run(small, tmp_path, f"every{every}", epochs=4, eval_every=every, precision="float32")
    assert _evaluated(progress) == expected


# --------------------------------------------------------------------------- options and checkpoints
@pytest.mark.parametrize(("option", "value"), [("precision", "half"), ("eval_every", -1)])
def test_bad_precision_and_eval_every_are_rejected(small, tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        next(iter_train(small.frames, small.keypoints, checkpoint_dir=tmp_path, **{**TINY_RUN, option: value}))
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_run_frozen_to_stride_4_keeps_those_weights_and_records_it(small, lite_weights, tmp_path):
    frames, xy = small.frames[:4], small.keypoints[:4]
    _, path = drain(
        iter_train(
            frames,
            xy,
            bodyparts=list(small.bodyparts),
            backbone="efficientnet_lite0",
            pretrained=True,
            epochs=1,
            batch_size=4,
            input_size=(64, 64),
            precision="bfloat16",
            frozen_stride=4,
            lr=1e-2,
            checkpoint_dir=tmp_path / "lite",
            device="cpu",
        )
    )
    state = read_checkpoint(path)
    config = state["train_config"]
    assert config["frozen_stride"] == 4 and config["precision"] == "bfloat16" and config["frozen_bn"] is True
    trained = state["train_state_dict"]
    assert all(trained[k].dtype == v.dtype for k, v in lite_weights.items())
    # the frozen stem and first blocks keep the ImageNet weights; the next block trained
    for prefix in ("backbone.conv_stem.", "backbone.bn1.", "backbone.blocks.0.", "backbone.blocks.1."):
        keys = [k for k in lite_weights if k.startswith(prefix)]
        assert keys and all(torch.equal(trained[k], lite_weights[k]) for k in keys), prefix
    later = [k for k in lite_weights if k.startswith("backbone.blocks.2.") and k.endswith(".weight")]
    assert any(not torch.equal(trained[k], lite_weights[k]) for k in later)

    # resuming keeps the parent's frozen stride; a parent from before it was recorded froze nothing
    options = TrainOptions(backbone="efficientnet_lite0", pretrained=True, epochs=2)
    bodyparts = list(small.bodyparts)
    assert start_run(options, list(frames), xy, bodyparts, resumed=state).frozen_stride == 4
    older = {**state, "train_config": {k: v for k, v in config.items() if k != "frozen_stride"}}
    assert start_run(options, list(frames), xy, bodyparts, resumed=older).frozen_stride == 0
    chosen = options.merged(frozen_stride=8)
    assert start_run(chosen, list(frames), xy, bodyparts, resumed=older).frozen_stride == 8
    # a new run trains every layer unless told otherwise
    assert start_run(options, list(frames), xy, bodyparts).frozen_stride == 0


def test_runs_from_scratch_freeze_nothing_and_resume_with_what_they_recorded(small, tmp_path):
    _, path = _run(small, tmp_path, "scratch", epochs=1, precision="float32", eval_every=0)
    config = read_checkpoint(path)["train_config"]
    assert config["frozen_stride"] == 0 and config["precision"] == "float32" and config["frozen_bn"] is False
    # an old checkpoint without frozen_stride resumes with nothing frozen, and records that
    state = read_checkpoint(path)
    del state["train_config"]["frozen_stride"]
    torch.save(state, path)
    _, resumed = _run(small, tmp_path, "scratch", epochs=2, precision="float32", eval_every=0, resume=path)
    resumed_state = read_checkpoint(resumed)
    assert resumed_state["epoch"] == 2 and resumed_state["train_config"]["frozen_stride"] == 0


# --------------------------------------------------------------------------- precision
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN for bfloat16 on this CPU")
def test_bfloat16_training_gives_finite_losses_and_a_float32_checkpoint(small, tmp_path):
    progress, path = _run(small, tmp_path, "bf16", epochs=1, precision="bfloat16", eval_every=0)
    losses = [p["loss"] for p in progress if "event" not in p]
    assert losses and all(math.isfinite(x) for x in losses)
    model, _, meta = load_checkpoint(path)
    assert meta["train_config"]["precision"] == "bfloat16"
    assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in model.parameters())
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert bool(torch.isfinite(out.heatmaps).all())


def test_float32_training_is_deterministic(small, tmp_path, unsaved):
    losses, weights = [], []
    for i in range(2):
        progress, _ = _run(small, tmp_path, f"fp32-{i}", epochs=2, precision="float32", eval_every=0)
        losses.append([p["loss"] for p in progress if "event" not in p])
        weights.append(unsaved["state"]["state_dict"])
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    a, b = weights
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- hardware
def test_hardware_description_and_bfloat16_support(monkeypatch):
    for cap in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):  # the processor's own abilities, uncapped
        monkeypatch.delenv(cap, raising=False)
    text = cpu_description()
    assert isinstance(text, str) and text.strip() and text.endswith(")")
    assert isinstance(cpu_flags(), set)
    assert native_bfloat16("meta") is False
    assert native_bfloat16(torch.device("meta")) is False
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        expected = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        assert native_bfloat16("cpu") is expected
    else:
        assert native_bfloat16("cpu") is False
    flags = cpu_flags()
    if "avx2" in flags:
        assert "avx2" in text


def test_auto_precision_follows_the_hardware(small, tmp_path, monkeypatch, unsaved):
    """``precision="auto"`` trains in bfloat16 exactly where ``native_bfloat16`` says so."""
    seen = []
    real = train_module.keep_depthwise_float32

    def spy(module):
        seen.append(module)
        return real(module)

    monkeypatch.setattr(train_module, "keep_depthwise_float32", spy)
    for native in (False, True):
        monkeypatch.setattr(train_module, "native_bfloat16", lambda device, native=native: native)
        seen.clear()
        _run(small, tmp_path, f"auto-{native}", epochs=1, eval_every=0, augmentation=False)
        assert bool(seen) is native
        # the checkpoint says which arithmetic "auto" chose
        assert unsaved["state"]["train_config"]["precision"] == ("bfloat16" if native else "float32")


def test_a_pair_that_does_not_run_back_to_back_is_left_unfolded():
    """With an example input, folding is checked: a network whose batch norm runs before its convolution stays as it was."""

    class NormFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)  # registered after the convolution, applied before it

        def forward(self, x):
            return self.conv(self.bn(x))

    torch.manual_seed(0)
    net = NormFirst().eval()
    net.bn.running_mean.uniform_(-1.0, 1.0)
    x = torch.rand(2, 3, 8, 8)
    expected = net(x)
    assert fold_frozen_batchnorm(net, example=x) == 0
    assert torch.equal(net(x), expected)
    assert "forward" not in vars(net.conv) and "forward" not in vars(net.bn)
    # without the check the same network would be folded, wrongly
    assert fold_frozen_batchnorm(copy.deepcopy(net)) == 1
