"""The fast training step (issue 6 levers) reproduces the reference step on CPU in fp32.

Reference = every lever off: NCHW, explicit-softmax attention, for-loop Adam, G's power
iteration in every forward, eager. Tolerances (also in README "Performance"):
- exact-semantics levers (channels_last, SDPA, foreach Adam, fused resampling convs,
  ``sn_once`` with ``n_D = 1``):
  losses within 1e-4 relative / 1e-5 absolute over the first 3 iterations (only float
  summation order differs);
- ``sn_once`` with ``n_D = 2``: G's ``u`` takes fewer power-iteration steps, so the losses are
  only close: 1e-3 relative and absolute (measured ~1e-5 on this model);
- bf16 autocast (CUDA only, not testable here): losses within 5e-2 relative of fp32.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gankit.bench import synthetic_dataset
from gankit.config import Config, apply_overrides
from gankit.layers.spectral_norm import sn_linear, spectral_norms
from gankit.training import speed
from gankit.training.loop import Trainer

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
    "train.ema_decay=0.9",
]
REFERENCE = [
    "train.channels_last=false",
    "train.sdpa=false",
    "train.fused_optim=false",
    "train.sn_once=false",
    "train.fused_resample=false",
    "train.compile=false",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(overrides: list[str], iters: int = 3) -> tuple[list[torch.Tensor], Trainer]:
    cfg = apply_overrides(Config(), TINY + overrides)
    trainer = Trainer(cfg, None, dataset=synthetic_dataset(cfg, 64), quiet=True)
    history = []
    for _ in range(iters):
        out = trainer.train_iteration()
        history.append(torch.stack([out[k] for k in ("loss_D", "loss_G", "D_real", "D_fake")]))
    return history, trainer


def test_fast_step_matches_reference_exact_levers():
    ref, ref_tr = _run(REFERENCE + ["train.n_D=1"])
    fast, fast_tr = _run(["train.n_D=1"])  # defaults: every lever on (compile off on CPU)
    assert fast_tr.cfg.train.channels_last and fast_tr.cfg.train.sn_once
    assert fast_tr.G.blocks[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    attn = [m for m in fast_tr.G.modules() if hasattr(m, "fused")]
    assert attn and all(m.fused for m in attn)
    assert not any(m.fused for m in ref_tr.G.modules() if hasattr(m, "fused"))
    assert all(b.fused_resample for b in fast_tr.G.blocks)
    assert not any(b.fused_resample for b in ref_tr.D.blocks)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Compare what the networks compute, not raw parameters: a conv bias right before a batch
    # norm has a zero true gradient, so Adam turns its rounding noise into +-lr steps.
    z, y = torch.randn(6, 16, generator=torch.Generator().manual_seed(1)), torch.arange(6) % 4
    with torch.no_grad(), speed.frozen_power_iteration(fast_tr.G):
        with speed.frozen_power_iteration(ref_tr.G):
            x = fast_tr.G(z, y)
            torch.testing.assert_close(x, ref_tr.G(z, y), rtol=1e-4, atol=1e-4)
        for tr in (fast_tr, ref_tr):
            tr.D.eval()
        torch.testing.assert_close(fast_tr.D(x, y), ref_tr.D(x, y), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast_tr.ema.module(z, y), ref_tr.ema.module(z, y), atol=1e-4, rtol=0)


def test_sn_once_close_to_reference_with_several_d_steps():
    ref, _ = _run(REFERENCE + ["train.n_D=2"])
    fast, _ = _run(["train.n_D=2"])
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_sn_once_runs_g_power_iteration_once_per_iteration():
    """With n_D = 3: G's u changes in the first D step's fake forward and in the G step only."""
    _, trainer = _run(["train.n_D=3"], iters=0)
    (_, sn), *_ = spectral_norms(trainer.G)
    calls = []
    original = sn.power_iteration
    sn.power_iteration = lambda w, n: (calls.append(n), original(w, n))[1]
    trainer.train_iteration()
    assert calls == [1, 1]  # D step 1 (D steps 2, 3 frozen) + the G step
    calls.clear()
    trainer.cfg.train.sn_once = False
    trainer.train_iteration()
    assert calls == [1, 1, 1, 1]


def test_frozen_power_iteration_keeps_u_and_restores_modes():
    torch.manual_seed(0)
    net = nn.Sequential(sn_linear(5, 3), nn.BatchNorm1d(3)).train()
    (_, sn), *_ = spectral_norms(net)
    u = sn.u.clone()
    with speed.frozen_power_iteration(net):
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
        opt = speed.adam([p], lr, [0.0, 0.999], eps, cfg.train, torch.device("cpu"))
        assert opt.defaults["foreach"] is fused_optim
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)


def test_flags_report_levers():
    cfg = apply_overrides(Config(), TINY + ["train.fused_optim=false"])
    f = speed.flags(cfg.train, torch.device("cpu"), None)
    assert f["amp"] == "fp32" and f["optimizer"] == "for-loop" and f["host_syncs_per_iter"] == 0
    cfg.train.fused_optim = True
    assert speed.flags(cfg.train, torch.device("cuda"), torch.bfloat16)["optimizer"] == "fused"
    assert speed.flags(cfg.train, torch.device("cpu"), None)["optimizer"] == "foreach"


def test_compile_failure_falls_back_to_eager_with_one_warning():
    net = nn.Linear(3, 2)
    call = speed.CompileOrEager(net, "D", enabled=False)
    assert not call.is_compiled

    def broken(*args, **kwargs):
        raise RuntimeError("backend exploded\nlong traceback")

    call.compiled = broken
    x = torch.randn(4, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y1 = call(x)
        y2 = call(x)
    assert len(caught) == 1 and "torch.compile of D failed" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)
    torch.testing.assert_close(y1, net(x))
    torch.testing.assert_close(y2, net(x))
    assert not call.is_compiled


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
