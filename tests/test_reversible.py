"""Reversible residual blocks (RevNet, Gomez et al. 2017, Eq. 1-2, Alg. 1): the coupling
formula, exact inversion, gradients equal to plain stored-activation backprop (float64), no
double state updates, stored activations independent of depth; ``model.G_block`` /
``model.D_block`` in the ResNet models and their errors."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from gankit.cli import main
from gankit.config import ConfigError, ModelConfig, load_preset, validate
from gankit.errors import GankitError
from gankit.layers.recompute import no_state_updates
from gankit.layers.reversible import AdditiveCoupling, Upsample2x, reversible_sequence
from gankit.layers.spectral_norm import sn_conv2d
from gankit.models import build
from gankit.models.revblocks import RevDBlock, ReversibleBlock, RevGBlock
from gankit.models.style import NetStyle
from gankit.training.saved_activations import SavedActivations

pytestmark = pytest.mark.usefixtures("one_thread")


def _residual(c: int) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), sn_conv2d(c, c, 3, padding=1))


def _chain(depth: int, c: int = 4) -> nn.ModuleList:
    steps: list[nn.Module] = []
    for i in range(depth):
        steps += [AdditiveCoupling(_residual(c // 2), _residual(c // 2))]
        if i == 0:
            steps.append(Upsample2x())
    return nn.ModuleList(steps)


def test_coupling_formula_and_exact_inverse():
    """Training mode (BN batch statistics); the by-hand calls and the inverse reuse the SN
    vectors of the forward (no second power-iteration step), as the backward pass does."""
    torch.manual_seed(0)
    step = AdditiveCoupling(_residual(3), _residual(3))
    x = torch.randn(4, 6, 5, 5)
    y = step(x)
    with torch.no_grad(), no_state_updates(step):
        x1, x2 = x[:, :3], x[:, 3:]
        y1 = x1 + step.f(x2)  # Eq. 1
        torch.testing.assert_close(y, torch.cat([y1, x2 + step.g(y1)], dim=1))
        torch.testing.assert_close(step.inverse(y), x, atol=1e-6, rtol=0)  # Eq. 2


def _grads(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [x.grad] + [p.grad for p in module.parameters()]


def test_memory_saving_gradients_equal_plain_backprop_float64():
    torch.manual_seed(1)
    steps = _chain(3).double()
    ref = copy.deepcopy(steps)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y = reversible_sequence(list(steps), x, [None] * len(steps))
    y_ref = reversible_sequence(list(ref), x_ref, [None] * len(ref), memory_saving=False)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    dy = torch.randn_like(y)
    y.backward(dy)
    y_ref.backward(dy)
    for g, g_ref in zip(_grads(steps, x), _grads(ref, x_ref)):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    # the recomputation changed no state: BN running statistics and SN u, v as after one forward
    for (name, b), b_ref in zip(steps.named_buffers(), ref.buffers()):
        torch.testing.assert_close(b, b_ref, rtol=0, atol=0, msg=name)


def test_conditional_g_block_gradients_reach_the_condition():
    """RevGBlock with shared-embedding conditional BN: grads of x, parameters and the condition
    vector (which needs grad) equal plain backprop; the block inverts exactly."""
    torch.manual_seed(2)
    style = NetStyle(sn=True)

    def make_cn(c):
        return style.cond_norm2d(c, cond_dim=3, n_classes=0, shared=True, sn=True)

    block = RevGBlock(4, make_cn, style).double()
    ref = copy.deepcopy(block)
    ref.memory_saving = False
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    c_ref = c.detach().clone().requires_grad_(True)
    y, y_ref = block(x, c), ref(x_ref, c_ref)
    assert y.shape == (3, 4, 8, 8)
    (y * y_ref.detach()).sum().backward()
    (y_ref * y_ref.detach()).sum().backward()
    torch.testing.assert_close(c.grad, c_ref.grad, rtol=1e-10, atol=1e-12)
    for g, g_ref in zip(_grads(block, x), _grads(ref, x_ref)):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad(), no_state_updates(block):
        h = y
        for step, cc in zip(reversed(block.steps), (c, c)):
            h = step.inverse(h, cc)
    torch.testing.assert_close(h, x.detach(), atol=1e-12, rtol=0)


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn`` runs (nothing is released:
    no backward runs)."""
    with SavedActivations() as saved:
        fn()
    return saved.peak_bytes


def test_stored_activations_do_not_grow_with_depth():
    torch.manual_seed(3)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    saving, plain = [], []
    for depth in (1, 2, 3):
        steps = [AdditiveCoupling(_residual(2), _residual(2)) for _ in range(depth)]
        conds = [None] * depth
        saving.append(_saved_bytes(lambda s=steps, c=conds: reversible_sequence(s, x, c)))
        plain.append(
            _saved_bytes(lambda s=steps, c=conds: reversible_sequence(s, x, c, memory_saving=False))
        )
    assert saving == [2 * 4 * 6 * 6 * 4] * 3  # the chain's output (fp32) only
    assert plain[1] - plain[0] == plain[2] - plain[1] > 0 and plain[0] > saving[0]


def _small(**kw) -> ModelConfig:
    base = dict(arch="sngan", resolution=32, channels=1, n_classes=3, dim_z=8, G_ch=2, D_ch=2,
                init="default")  # fmt: skip
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["sngan", "biggan"])
def test_reversible_models_match_their_reference_path(arch):
    kw = dict(shared_dim=4, hier=True, dim_z=12) if arch == "biggan" else {}
    cfg = _small(arch=arch, G_block="reversible", D_block="reversible", **kw)
    torch.manual_seed(4)
    G, D = build(cfg)
    G, D = G.double(), D.double()
    assert sum(isinstance(b, RevGBlock) for b in G.blocks) == len(G.blocks)
    assert not isinstance(D.blocks[0], ReversibleBlock)  # the stem changes the channel count
    assert all(isinstance(b, RevDBlock) for b in D.blocks[1:])
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    for m in (*G_ref.modules(), *D_ref.modules()):
        if isinstance(m, ReversibleBlock):
            m.memory_saving = False
    z, y = torch.randn(3, cfg.dim_z, dtype=torch.float64), torch.tensor([0, 1, 2])
    D(G(z, y), y).sum().backward()
    D_ref(G_ref(z, y), y).sum().backward()
    for net, ref in ((G, G_ref), (D, D_ref)):
        for (name, p), p_ref in zip(net.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_reversible_errors_are_one_line(capsys):
    with pytest.raises(ConfigError, match=r"model.G_block.*G block 1 of biggan maps 32 -> 16"):
        build(_small(arch="biggan", resolution=64, G_block="reversible"))
    with pytest.raises(ConfigError, match=r"model.D_block.*arch 'dcgan' has no residual blocks"):
        build(dataclasses.replace(load_preset("mnist-sagan").model, D_block="reversible"))
    with pytest.raises(ConfigError, match=r"model.G_block.*resnet, reversible"):
        build(_small(G_block="revnet"))
    cfg = load_preset("sngan-cifar", ["model.D_block=reversible", "train.loss=wgan-gp"])
    with pytest.raises(GankitError, match="wgan-gp needs a double backward"):
        validate(cfg)
    assert main(["info", "--preset", "biggan-128", "--set", "model.G_block=reversible"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.G_block" in err and "\n" not in err


@pytest.mark.slow
def test_bench_reports_reversible_memory(capsys):
    args = ["bench", "--workload", "sngan-cifar", "--device", "cpu", "--steps", "1", "--warmup",
            "0", "--batch-size", "2", "--json", "--set", "model.G_ch=2", "--set", "model.D_ch=2",
            "--set", "train.n_D=1", "--set", "model.G_block=reversible",
            "--set", "model.D_block=reversible"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"peak_mem_GiB"' in out and '"params_G"' in out
