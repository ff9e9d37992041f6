"""The fast training step reproduces the reference step on CPU in fp32.

Reference = every lever off: NCHW, explicit-softmax attention, for-loop Adam, G's power
iteration in every forward, per-layer spectral norms, one G forward per D step, eager.
Tolerances (also in README "Performance"):
- exact-semantics levers (channels_last, SDPA, fused Adam, fused resampling convs, batched
  spectral norms, batched fakes, ``sn_once`` with ``n_D = 1``):
  losses within 1e-4 relative / 1e-5 absolute over the first 3 iterations (only float
  summation order differs);
- ``sn_once`` with ``n_D = 2``: G's ``u`` takes fewer power-iteration steps, so the losses are
  only close: 1e-3 relative and absolute (measured ~1e-5 on this model);
- bf16 autocast (CUDA only, not testable here): losses within 5e-2 relative of fp32.
"""

from __future__ import annotations

import os
import shutil
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from gankit.bench import synthetic_dataset
from gankit.config import Config, ConfigError, apply_overrides, load_preset, load_toml, validate
from gankit.errors import GankitError
from gankit.layers.activations import relu
from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d
from gankit.layers.init import raw_weight
from gankit.layers.spectral_norm import (
    SpectralNorm,
    frozen_power_iteration,
    power_iterate,
    power_iterate_all,
    sn_conv2d,
    sn_linear,
    spectral_norms,
)
from gankit.models import build
from gankit.models.base import ProjectionDiscriminator
from gankit.training import compiled, optim, speed
from gankit.training.loop import Trainer
from gankit.training.opcount import OpCounter
from gankit.training.saved_activations import SavedActivations

TINY = [
    "model.arch=biggan",
    "model.resolution=32",
    "model.n_classes=4",
    "model.dim_z=16",
    "model.G_ch=4",
    "model.D_ch=4",
    "model.G_attn=[16]",
    "model.D_attn=[16]",
    "train.batch_size=4",
    "train.device=cpu",
    "train.amp=fp32",
    "train.sn_batched=true",  # auto is off on CPU; the batched path is tested here too
    "train.ema_decay=0.9",
]
REFERENCE = [
    "train.channels_last=false",
    "train.sdpa=false",
    "train.fused_optim=false",
    "train.sn_once=false",
    "train.fused_resample=false",
    "train.sn_batched=false",
    "train.batched_fakes=false",
    "train.compile=false",
]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Forget earlier tests' compiled frames: each test compiles new networks with the same
    code, and past TorchDynamo's recompile limit a frame would run eagerly (only logged)."""
    torch._dynamo.reset()


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(overrides: list[str], iters: int = 3) -> tuple[list[torch.Tensor], Trainer]:
    cfg = apply_overrides(Config(), TINY + overrides)
    trainer = Trainer(cfg, None, dataset=synthetic_dataset(cfg, 64), quiet=True)
    history = []
    for _ in range(iters):
        out = trainer.train_iteration()
        history.append(torch.stack([out[k] for k in ("loss_D", "loss_G", "D_real", "D_fake")]))
    return history, trainer


def _assert_same_networks(a: Trainer, b: Trainer) -> None:
    """G, D and the EMA generator compute the same functions; SN vectors and BN statistics
    agree. Compare what the networks compute, not raw parameters: a conv bias right before a
    batch norm has a zero true gradient, so Adam turns its rounding noise into +-lr steps."""
    z, y = torch.randn(6, 16, generator=torch.Generator().manual_seed(1)), torch.arange(6) % 4
    with torch.no_grad(), frozen_power_iteration(a.G), frozen_power_iteration(b.G):
        x = a.G(z, y)
        torch.testing.assert_close(x, b.G(z, y), rtol=1e-4, atol=1e-4)
        for tr in (a, b):
            tr.D.eval()
        torch.testing.assert_close(a.D(x, y), b.D(x, y), rtol=1e-4, atol=1e-4)
        # the EMA generator in eval mode amplifies that bias noise by its BN statistics
        torch.testing.assert_close(a.ema.module(z, y), b.ema.module(z, y), atol=2e-4, rtol=0)
    for net_a, net_b in ((a.G, b.G), (a.D, b.D)):  # SN vectors (BN statistics see the bias)
        for sn_a, sn_b in zip(spectral_norms(net_a), spectral_norms(net_b)):
            torch.testing.assert_close(sn_a[1].u, sn_b[1].u, rtol=1e-4, atol=1e-5)


def test_fast_step_matches_reference_exact_levers():
    ref, ref_tr = _run(REFERENCE + ["train.n_D=1"])
    fast, fast_tr = _run(["train.n_D=1"])  # defaults: every lever on (compile off on CPU)
    assert fast_tr.cfg.train.channels_last and fast_tr.cfg.train.sn_once
    assert fast_tr.G_fn.sn is not None and ref_tr.G_fn.sn is None  # batched SN in use
    # channels_last: images and plain conv weights NHWC; SN raw weights stay plain for the
    # batched SN stack (a view, no copy)
    assert fast_tr._real_batch()[0].is_contiguous(memory_format=torch.channels_last)
    assert raw_weight(fast_tr.G.blocks[0].conv1).is_contiguous()
    attn = [m for m in fast_tr.G.modules() if hasattr(m, "fused")]
    assert attn and all(m.fused for m in attn)
    assert not any(m.fused for m in ref_tr.G.modules() if hasattr(m, "fused"))
    assert all(b.fused_resample for b in fast_tr.G.blocks)
    assert not any(b.fused_resample for b in ref_tr.D.blocks)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    _assert_same_networks(fast_tr, ref_tr)


def test_sn_once_close_to_reference_with_several_d_steps():
    ref, _ = _run(REFERENCE + ["train.n_D=2"])
    fast, _ = _run(["train.n_D=2"])
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("batched", ["true", "false"])
def test_sn_once_runs_g_power_iteration_once_per_iteration(batched):
    """With n_D = 3: G's u changes in the D steps' first fake forward and in the G step only
    (per-layer and batched spectral norm alike); without sn_once in every G forward."""
    _, trainer = _run(["train.n_D=3", f"train.sn_batched={batched}"], iters=0)
    (_, sn), *_ = spectral_norms(trainer.G)
    version = sn.u._version
    trainer.train_iteration()
    assert sn.u._version - version == 2  # D step 1 (D steps 2, 3 frozen) + the G step
    trainer.cfg.train.sn_once = False
    version = sn.u._version
    trainer.train_iteration()
    assert sn.u._version - version == 4


def _state(trainer: Trainer) -> list[torch.Tensor]:
    """Every parameter and buffer (BN statistics, SN u/v) of G, D and the EMA generator."""
    nets = (trainer.G, trainer.D, trainer.ema.module)
    return [t.detach() for net in nets for t in (*net.parameters(), *net.buffers())]


@pytest.mark.parametrize(
    "lever, n_D, rtol",
    [
        ("train.batched_fakes=false", 3, 0.0),  # the same batch-norm kernels: bit for bit
        ("train.fused_optim=false", 3, 1e-5),
        ("train.sn_batched=false", 1, 1e-5),
    ],
)
def test_each_op_saving_lever_matches_its_reference(lever, n_D, rtol):
    """Turning one lever off (its reference path) changes nothing but float rounding: losses,
    and every weight, EMA weight, BN statistic and SN vector after 3 iterations. Adam's eps is
    raised to 1e-3 so that the rounding noise of gradients that are truly zero (conv biases
    before a batch norm) does not become +-lr steps (see _assert_same_networks). A lever that
    changes rounding can still tip an activation or hinge input across zero in a later D step:
    with the batched SN (1e-7 in W / sigma) and seed 0, D's gradients agree to 5e-7 in the first
    D step and differ by 1e-3 in the second on an AVX-512 CPU (3e-5 in the losses after one
    iteration with n_D = 3). So the batched SN is compared with single D steps (its reuse of
    W / sigma across D steps has unit tests in test_spectral_norm_batched). ``fused_optim``
    could meet the same on another CPU; it does not here."""
    common = [f"train.n_D={n_D}", "train.adam_eps=1e-3"]
    fast, fast_tr = _run(common)
    ref, ref_tr = _run([*common, lever])
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol / 10)
    for a, b in zip(_state(fast_tr), _state(ref_tr)):
        torch.testing.assert_close(a, b, rtol=10 * rtol, atol=rtol / 10)


def test_fast_step_has_a_third_of_the_reference_ops_and_no_host_sync():
    """ATen ops per iteration (the launch-overhead proxy) of the cifar workload's structure:
    every lever on (the batched SN too, as on CUDA) vs every lever off. Op counts do not depend
    on widths' values or timing."""
    cifar = ["model.G_ch=4", "model.D_ch=4", "train.batch_size=2", "train.device=cpu"]
    cifar.append("train.sn_batched=true")
    counts = {}
    for name, levers in (("fast", []), ("reference", REFERENCE)):
        cfg = load_preset("biggan-cifar", cifar + levers)
        trainer = Trainer(cfg, None, dataset=synthetic_dataset(cfg, 16), quiet=True)
        trainer.train_iteration()
        with OpCounter() as counts[name]:
            trainer.train_iteration()
    assert 3 * counts["fast"].total <= counts["reference"].total
    assert counts["fast"].host_syncs == 0
    assert counts["reference"].host_syncs > 0  # for-loop Adam reads each step counter


def test_frozen_power_iteration_keeps_u_and_restores_modes():
    torch.manual_seed(0)
    net = nn.Sequential(sn_linear(5, 3), nn.BatchNorm1d(3)).train()
    (_, sn), *_ = spectral_norms(net)
    u = sn.u.clone()
    with frozen_power_iteration(net):
        w_frozen = net[0].weight
        assert not sn.training and net[1].training  # only SN layers change mode
        torch.testing.assert_close(sn.u, u, rtol=0, atol=0)
        torch.testing.assert_close(w_frozen, net[0].weight, rtol=0, atol=0)
    assert sn.training
    net[0].weight  # noqa: B018 - a training-mode access advances u
    assert not torch.equal(sn.u, u)


def test_adam_implementations_match_closed_form_first_step():
    """First Adam step: m_hat = g, v_hat = g^2, so p <- p - lr * g / (|g| + eps)."""
    cfg = apply_overrides(Config(), TINY)
    g = torch.tensor([0.5, -2.0, 1e-3, 0.0])
    lr, eps = 0.1, 1e-8
    expected = torch.ones(4) - lr * g / (g.abs() + eps)
    for fused_optim in (True, False):
        cfg.train.fused_optim = fused_optim
        p = nn.Parameter(torch.ones(4))
        opt = optim.adam([p], lr, [0.0, 0.999], eps, cfg.train)
        assert bool(opt.defaults["fused"]) is fused_optim
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)


def test_sn_batched_auto_is_on_for_cuda_only():
    cfg = apply_overrides(Config(), ["train.compile=false"])
    assert cfg.train.sn_batched == "auto"
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not speed.sn_batched(cfg.train, cpu) and speed.sn_batched(cfg.train, cuda)
    assert speed.flags(cfg.train, cpu, None)["sn_batched"] is False
    cfg = apply_overrides(cfg, ["train.sn_batched=true"])
    assert speed.sn_batched(cfg.train, cpu)
    cfg = apply_overrides(cfg, ["train.checkpoint_activations=true"])  # needs per-layer SN graphs
    assert not speed.sn_batched(cfg.train, cuda)
    with pytest.raises(ConfigError, match="train.sn_batched must be auto, true or false"):
        validate(apply_overrides(Config(), ["train.sn_batched=sometimes"]))


@pytest.mark.parametrize("preset", ["mnist-sagan", "biggan-128"])
def test_cudnn_benchmark_is_set_on_cuda_only(preset):
    t = load_preset(preset).train
    big = preset == "biggan-128"  # the small presets' start-up costs more than the timing saves
    assert t.cudnn_benchmark is big
    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = not big
        speed.configure_backends(t, torch.device("cpu"))  # nothing to set on CPU
        assert torch.backends.cudnn.benchmark is (not big)
        speed.configure_backends(t, torch.device("cuda"))
        assert torch.backends.cudnn.benchmark is big
    finally:
        torch.backends.cudnn.benchmark = saved
    assert speed.flags(t, torch.device("cuda"), None)["cudnn_benchmark"] is big
    assert speed.flags(t, torch.device("cpu"), None)["cudnn_benchmark"] is False


def test_flags_report_levers():
    cfg = apply_overrides(Config(), TINY + ["train.fused_optim=false"])
    f = speed.flags(cfg.train, torch.device("cpu"), None)
    assert f["amp"] == "fp32" and f["optimizer"] == "for-loop" and f["compile"] is False
    assert "host_syncs_per_iter" not in f  # measured by gankit bench, not a constant
    cfg.train.fused_optim = True
    assert speed.flags(cfg.train, torch.device("cuda"), torch.bfloat16)["optimizer"] == "fused"
    assert speed.flags(cfg.train, torch.device("cuda"), torch.bfloat16)["compile"] == "default"
    assert speed.flags(cfg.train, torch.device("cuda"), None)["sn_batched"] is False  # compiled
    # batched fakes as the D steps decide it: also on whether G's batch norms can chunk
    G = build(cfg.model)[0]
    assert f["batched_fakes"] is None  # not known without G
    assert speed.flags(cfg.train, torch.device("cpu"), None, G=G)["batched_fakes"] is True
    next(m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)).momentum = None
    assert speed.flags(cfg.train, torch.device("cpu"), None, G=G)["batched_fakes"] is False


@pytest.mark.parametrize(
    ("value", "device", "mode"),
    [
        ("auto", "cpu", None),
        ("auto", "cuda", "default"),
        ("true", "cpu", "default"),
        ("false", "cuda", None),
        ("reduce-overhead", "cpu", "reduce-overhead"),
        ("max-autotune-no-cudagraphs", "cuda", "max-autotune-no-cudagraphs"),
    ],
)
def test_compile_setting_resolves_to_a_mode(value, device, mode):
    cfg = apply_overrides(Config(), [f"train.compile={value}"])
    assert speed.compile_mode(cfg.train, torch.device(device)) == mode


def test_activation_memory_budget_needs_a_compiled_step():
    """``auto`` compiles on CUDA with ``checkpoint_activations`` too; a budget below 1 with an
    eager step is an error naming both settings, one outside [0, 1] a config error."""
    cfg = apply_overrides(Config(), ["train.checkpoint_activations=true"])
    assert speed.compile_mode(cfg.train, torch.device("cuda")) == "default"
    cfg = apply_overrides(cfg, ["train.activation_memory_budget=0.5"])
    assert speed.flags(cfg.train, torch.device("cuda"), None)["activation_memory_budget"] == 0.5
    with pytest.raises(GankitError, match=r"activation_memory_budget=0.5 .*train.compile=auto"):
        speed.compile_mode(cfg.train, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"train.activation_memory_budget.*\[0, 1\]"):
        validate(apply_overrides(Config(), ["train.activation_memory_budget=1.5"]))


def test_compile_setting_rejects_unknown_mode_and_reads_old_bool_configs(tmp_path):
    cfg = apply_overrides(Config(), ["train.compile=fastest"])
    with pytest.raises(ConfigError, match="'train.compile': train.compile must be auto, true"):
        validate(cfg)
    old = tmp_path / "config.toml"
    old.write_text("[train]\ncompile = false\n")  # configs written before "auto" existed
    assert load_toml(old).train.compile is False
    assert Config().train.compile == "auto"


def test_compile_cache_lives_under_gankit_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    compiled.enable_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    # importing torch._inductor.config writes its default folder into the environment, so
    # inductor's default counts as unset
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    compiled.enable_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    compiled.enable_compile_cache()  # a user's own setting wins
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


@pytest.mark.parametrize("batched_fakes", [True, False])
def test_compiled_power_iteration_is_one_graph_per_network(batched_fakes, monkeypatch):
    """The compiled step's power iteration is one graph per network (G, D), whichever SN layers
    are frozen and whether W requires grad, shared by the step's four calls; the per-layer step
    is only ever traced inside it. (Tracing the module walk used to break the graph in the D
    step's fake pass, so TorchDynamo compiled the layers one by one until its recompile limit
    and ran the rest eagerly.) Every graph has static shapes: G's and D's calls see other batch
    sizes, which automatic dynamic shapes would turn into symbols."""
    inputs = []

    def recording_backend(gm, example_inputs):
        inputs.extend(example_inputs)
        return gm.forward

    monkeypatch.setattr(compiled, "compile_backend", lambda: recording_backend)
    counters = torch._dynamo.utils.counters
    counters.clear()
    _, trainer = _run(
        ["train.compile=true", f"train.batched_fakes={str(batched_fakes).lower()}"], iters=2
    )
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 6  # 2 power iterations, 4 calls
    assert inputs and all(isinstance(x, torch.Tensor) for x in inputs)  # no SymInt
    assert not any(isinstance(n, torch.SymInt) for x in inputs for n in x.shape)
    calls = (trainer.G_fn, trainer.D_fn, trainer.G_fake, trainer.D_frozen)
    assert len({id(call.power_iterations) for call in calls}) == 1
    entries = torch._dynamo.eval_frame._debug_get_cache_entry_list
    assert len(entries(_code(trainer.G_fn.power_iterations))) == 2
    assert entries(power_iterate_all.__code__) == []
    assert entries(power_iterate.__code__) == []
    assert entries(SpectralNorm.power_iteration.__wrapped__.__code__) == []


def _code(compiled) -> types.CodeType:
    """The code object TorchDynamo compiles for a ``torch.compile``d function."""
    return compiled._torchdynamo_orig_callable.__code__


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    """The forward fails to compile after the power iteration ran as its own graph: one
    one-line warning, the call runs eagerly without a second power-iteration step (``u``
    advances once per call, as in the eager network), later calls stay eager."""
    monkeypatch.setenv("GANKIT_COMPILE_BACKEND", "eager")
    torch.manual_seed(0)
    net, ref = sn_linear(3, 2), sn_linear(3, 2)
    ref.load_state_dict(net.state_dict())
    call = compiled.CompileOrEager(net, "D", "default")
    assert call.is_compiled

    def broken(*args, **kwargs):
        raise RuntimeError("backend exploded\nlong traceback")

    call.compiled = broken
    x = torch.randn(4, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y1 = call(x)
        torch.testing.assert_close(y1, ref(x), rtol=0, atol=0)
        y2 = call(x)
        torch.testing.assert_close(y2, ref(x), rtol=0, atol=0)
    (warning,) = caught
    assert "torch.compile of D failed (RuntimeError: backend exploded)" in str(warning.message)
    assert "\n" not in str(warning.message)
    [(_, sn)], [(_, sn_ref)] = spectral_norms(net), spectral_norms(ref)
    torch.testing.assert_close(sn.u, sn_ref.u, rtol=0, atol=0)
    assert sn.training and not call.is_compiled


@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("clang++")), reason="inductor on CPU needs C++"
)
def test_compiled_calls_force_channels_last_graphs_with_train_channels_last(monkeypatch, tmp_path):
    """TorchInductor keeps NCHW for a training graph holding a conv with at least twice more
    input than output channels and a kernel wider than 1 (G's last conv to RGB). With
    ``train.channels_last`` the compiled call's forward and backward graphs are lowered
    channels-last; without it, by that heuristic. Recorded in the lowering itself, on the CPU
    with oneDNN off (with it on, every CPU graph gets channels-last)."""
    from torch._inductor.graph import GraphLowering

    monkeypatch.setenv("GANKIT_COMPILE_BACKEND", "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    decide = GraphLowering.decide_layout_opt
    decisions = []

    def record(gm, *, is_inference):
        decisions.append(decide(gm, is_inference=is_inference))
        return decisions[-1]

    monkeypatch.setattr(GraphLowering, "decide_layout_opt", staticmethod(record))
    before = torch._inductor.config.force_layout_optimization
    x = torch.randn(2, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    for channels_last in (False, True):
        decisions.clear()
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)
        )
        net = net.to(memory_format=torch.channels_last)
        call = compiled.CompileOrEager(net, "G", "default", channels_last=channels_last)
        with (
            torch.backends.mkldnn.flags(enabled=False),
            # no FX-graph or AOTAutograd cache hit: lower every graph
            torch._inductor.config.patch(force_layout_optimization=False, fx_graph_cache=False),
            torch._functorch.config.patch(enable_autograd_cache=False),
        ):
            out = call(x)
            out.sum().backward()
            torch.testing.assert_close(out, net(x), rtol=1e-4, atol=1e-5)
        assert call.is_compiled and decisions == [channels_last, channels_last]  # fw, bw
    assert torch._inductor.config.force_layout_optimization == before  # patched per call only


class _SmallG(nn.Module):
    """``(z: (B, 8), y) -> (B, 3, 8, 8)``: SN linear, conditional BN (chunkable), SN conv."""

    def __init__(self):
        super().__init__()
        self.linear = sn_linear(8, 8 * 4 * 4)
        self.bn = ConditionalBatchNorm2d(8, 0, n_classes=4)
        self.conv = sn_conv2d(8, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = relu(self.bn(self.linear(z).view(-1, 8, 4, 4), y))
        return torch.tanh(self.conv(F.interpolate(h, scale_factor=2)))


class _SmallD(ProjectionDiscriminator):
    """``(x: (B, 3, 8, 8), y) -> (B,)``: SN conv, ReLU, sum, projection head."""

    def __init__(self):
        super().__init__(8, n_classes=4, resolution=8, channels=3)
        self.conv = sn_conv2d(3, 8, 3, stride=2, padding=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return relu(self.conv(x)).sum(dim=(2, 3))


class _BreakingD(_SmallD):
    """:class:`_SmallD` with a graph break before its SN conv, as a reversible block's
    ``autograd.grad`` or DDP's forward make: TorchDynamo resumes after it in a frame keyed by
    the original code, which guards on the conv's per-instance parametrized class."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        torch._dynamo.graph_break()
        return relu(self.conv(x)).sum(dim=(2, 3))


@pytest.mark.parametrize(
    "net_class",
    [
        _SmallD,
        pytest.param(
            _BreakingD,
            marks=pytest.mark.skipif(
                not compiled.ISOLATES_RECOMPILES, reason="torch.compile has no isolate_recompiles"
            ),
        ),
    ],
)
def test_compiled_calls_keep_their_own_cache(net_class, monkeypatch):
    """Each compiled call has its own TorchDynamo cache and recompile limit: more networks of
    one class than the limit (8) in one process all run compiled, with and without a graph
    break in the forward. (A shared frame past its limit runs eagerly with only a log line;
    here the limit is made an error, which :class:`CompileOrEager` would turn into a warning
    and an eager call.)"""
    monkeypatch.setenv("GANKIT_COMPILE_BACKEND", "eager")
    entries = torch._dynamo.eval_frame._debug_get_cache_entry_list
    n = torch._dynamo.config.recompile_limit + 2
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    calls = [compiled.CompileOrEager(net_class(), "D", "default") for _ in range(n)]
    with (
        torch._dynamo.config.patch(fail_on_recompile_limit_hit=True),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        for call in calls:
            out = call(x, y)
            with call.layers.frozen():  # the u, v that call advanced
                torch.testing.assert_close(out, call.module(x, y), rtol=0, atol=0)
    assert not [w for w in caught if "torch.compile of" in str(w.message)]  # no eager fallback
    assert all(call.is_compiled for call in calls)
    assert [len(entries(_code(call.compiled))) for call in calls] == [1] * n
    assert [len(entries(_code(call.power_iterations))) for call in calls] == [1] * n


@pytest.mark.parametrize("loss", ["hinge", "wgan-gp"])
@pytest.mark.parametrize("backend", ["aot_eager", "aot_eager_decomp_partition"])
def test_compiled_gan_step_matches_eager(backend, loss, monkeypatch):
    """The compiled path on CPU through AOTAutograd with the ``aot_eager`` backend (graphs
    captured and split into forward and backward as inductor gets them, without code
    generation, so it runs in seconds), and with inductor's decompositions and min-cut
    partitioner (``aot_eager_decomp_partition``), on small networks built from gankit's layers.
    GAN patterns covered: G under no_grad making the fakes of two D steps in one chunked-BN
    forward, D's forward on real + fake then its backward, the G step's two forwards (G, then
    the frozen D) before one backward, the spectral norms' power iteration as a compiled graph
    of its own before each compiled forward, BN buffers updated by compiled graphs, and with
    wgan-gp an eager second D forward (the penalty's double backward, with the
    D step's spectral-norm vectors) before the compiled D's backward."""
    monkeypatch.setenv("GANKIT_COMPILE_BACKEND", backend)
    levers = [
        "model.resolution=8", "model.dim_z=8", "model.n_classes=4", "train.batch_size=3",
        "train.device=cpu", "train.n_D=2", f"train.loss={loss}",
    ]  # fmt: skip
    results = {}
    for compile_ in ("false", "true"):
        cfg = apply_overrides(Config(), [*levers, f"train.compile={compile_}"])
        torch.manual_seed(0)
        G, D = _SmallG(), _SmallD()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager fails the test
            tr = Trainer(cfg, None, G=G, D=D, dataset=synthetic_dataset(cfg, 12), quiet=True)
            results[compile_] = [tr.train_iteration() for _ in range(2)]
    assert all(c.is_compiled for c in (tr.G_fn, tr.D_fn, tr.G_fake, tr.D_frozen))
    for graphs, eager in zip(results["true"], results["false"]):
        for key in eager:
            torch.testing.assert_close(graphs[key], eager[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_step_matches_reference():
    """torch.compile (inductor, C++ codegen) of G and D: minutes on 2 cores, hence slow."""
    ref, _ = _run(REFERENCE + ["train.n_D=1"], iters=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would fail the test
        fast, tr = _run(["train.n_D=1", "train.compile=true"], iters=2)
    assert tr.G_fn.is_compiled and tr.D_fn.is_compiled
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _saved_bytes(trainer: Trainer) -> tuple[int, torch.Tensor]:
    """The most memory autograd holds for backward in one training iteration (weights and
    buffers left out), and that iteration's losses as :func:`_run` records them."""
    with SavedActivations([trainer.G, trainer.D]) as saved:
        out = trainer.train_iteration()
    return saved.peak_bytes, torch.stack([out[k] for k in ("loss_D", "loss_G", "D_real", "D_fake")])


@pytest.mark.parametrize(
    ("backend", "lever", "rtol"),
    [
        # checkpoint regions are traced as their own subgraphs: gradient sums may be ordered
        # differently (3e-7 relative in the losses here)
        ("aot_eager", "train.checkpoint_activations=true", 1e-5),
        # the min-cut partitioner (inductor's), which is what honours the budget
        ("aot_eager_decomp_partition", "train.activation_memory_budget=0", 0.0),
    ],
)
def test_compiled_step_recomputing_activations_matches_compiled_step(
    backend, lever, rtol, monkeypatch
):
    """Compiled with recomputation in backward (the blocks' checkpoint regions, or the
    partitioner's memory budget): the backward recomputes from the ``u``, ``v`` and BN inputs
    of its forward, so losses, networks, SN vectors and BN statistics are those of the same
    compiled step without recomputation (bit for bit with the partitioner's budget; that step
    follows the eager one up to the decompositions' rounding, see
    test_compiled_gan_step_matches_eager), and far less is held for backward at once.
    Measured here, as fractions of the plain eager step's 6.5 MB: plain compiled 0.58
    (``aot_eager``) / 0.41 (min-cut partitioner), with checkpoint regions 0.17, with budget 0
    0.015."""
    monkeypatch.setenv("GANKIT_COMPILE_BACKEND", backend)
    common = ["train.n_D=2", "train.adam_eps=1e-3"]  # eps: see the op-saving levers' test
    plain_saved, _ = _saved_bytes(_run([*common, "train.compile=false"], iters=0)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager fails the test
        plain, plain_tr = _run([*common, "train.compile=true"], iters=3)
        torch._dynamo.reset()  # the recomputing step compiles its own graphs
        compiled, tr = _run([*common, "train.compile=true", lever], iters=2)
        saved, losses = _saved_bytes(tr)
    assert saved < 0.35 * plain_saved
    assert tr.G_fn.is_compiled and tr.D_fn.is_compiled
    for a, b in zip([*compiled, losses], plain):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol / 10)
    for a, b in zip(_state(tr), _state(plain_tr)):
        torch.testing.assert_close(a, b, rtol=10 * rtol, atol=rtol / 10)


@pytest.mark.parametrize("mode, owned", [("reduce-overhead", True), ("default", False)])
def test_cuda_graph_modes_return_owned_copies(mode, owned, monkeypatch):
    """CUDA-graph replays overwrite their output pool; the step keeps G's fakes over the D steps
    and D's logits for the log, so those modes hand back (differentiable) copies."""
    monkeypatch.setenv("GANKIT_COMPILE_BACKEND", "aot_eager")
    net = nn.Linear(3, 2)
    call = compiled.CompileOrEager(net, "D", mode)
    x = torch.randn(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # aot_eager ignores the mode, with a warning
        y = call(x)
    assert call.is_compiled
    assert (type(y.grad_fn).__name__ == "CloneBackward0") is owned
    torch.testing.assert_close(y, net(x))
    y.sum().backward()
    torch.testing.assert_close(net.bias.grad, torch.full((2,), 4.0))
