"""TPReLU (Xiang & Li 2017) and SELU (Klambauer et al. 2017, Eq. 2, with its constants and
LeCun-normal initialisation) against their formulas; ``model.activation`` in the models."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from gankit.cli import main
from gankit.config import ConfigError, ModelConfig
from gankit.layers.activations import TPReLU
from gankit.layers.init import init_weights, lecun_normal_
from gankit.models import build, count_params

pytestmark = pytest.mark.usefixtures("one_thread")

# Klambauer et al. 2017, Eq. 14 (the fixed point (0, 1)), to 30 digits
ALPHA_01 = 1.6732632423543772848170429916717
LAMBDA_01 = 1.0507009873554804934193349852946


def test_tprelu_matches_formula():
    torch.manual_seed(0)
    act = TPReLU(3).double()
    with torch.no_grad():
        act.translation.copy_(torch.tensor([-0.5, 0.0, 1.5]))
        act.slope.copy_(torch.tensor([0.1, 0.25, -0.3]))
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 2
    alpha = act.translation.view(1, 3, 1, 1)
    a = act.slope.view(1, 3, 1, 1)
    u = x - alpha  # PReLU(x - alpha) + alpha
    expected = torch.where(u > 0, u, a * u) + alpha
    torch.testing.assert_close(act(x), expected)
    # the translated ReLU is the special case a = 0: max(x, alpha)
    with torch.no_grad():
        act.slope.zero_()
    torch.testing.assert_close(act(x), torch.maximum(x, alpha.expand_as(x)))
    assert torch.autograd.gradcheck(TPReLU(3).double(), (x[:1, :, :2, :2].requires_grad_(),))


def test_tprelu_starts_as_prelu():
    act = TPReLU(2)
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(act(x), torch.where(x > 0, x, 0.25 * x))
    assert sum(p.numel() for p in act.parameters()) == 2 * 2


def test_selu_matches_formula_with_paper_constants():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    expected = LAMBDA_01 * torch.where(x > 0, x, ALPHA_01 * (torch.exp(x) - 1))
    torch.testing.assert_close(nn.SELU()(x), expected)


def test_lecun_normal_and_selu_fixed_point():
    """N(0, 1/fan_in) weights keep SELU activations near mean 0, variance 1 through depth."""
    torch.manual_seed(1)
    w = lecun_normal_(torch.empty(400, 50, 3, 3))
    assert abs(w.std().item() - 1 / math.sqrt(450)) < 0.002 and abs(w.mean().item()) < 0.002
    layers = [init_weights(nn.Linear(256, 256, bias=False), "lecun") for _ in range(16)]
    h = torch.randn(2048, 256)
    for layer in layers:
        h = torch.selu(layer(h))
    assert abs(h.mean().item()) < 0.1 and abs(h.var().item() - 1) < 0.15


def _small(**kw) -> ModelConfig:
    base = dict(arch="dcgan", resolution=28, channels=1, n_classes=3, dim_z=8, G_ch=4, D_ch=4,
                init="default")  # fmt: skip
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("arch,res", [("dcgan", 28), ("sngan", 32)])
def test_activation_switch_replaces_every_rectifier(arch, res):
    cfg = _small(arch=arch, resolution=res)
    G0, D0 = build(cfg)
    G, D = build(dataclasses.replace(cfg, activation="tprelu"))
    for net in (G, D):
        kinds = {type(m) for m in net.modules()}
        assert TPReLU in kinds and not kinds & {nn.ReLU, nn.LeakyReLU}
    # one translation and one slope per channel of every activation
    extra = sum(
        2 * m.num_channels for net in (G, D) for m in net.modules() if isinstance(m, TPReLU)
    )
    assert count_params(G) + count_params(D) - count_params(G0) - count_params(D0) == extra
    G, D = build(dataclasses.replace(cfg, activation="selu"))
    assert {nn.SELU} <= {type(m) for m in D.modules()}
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    assert torch.isfinite(D(G(z, y), y)).all()


def test_unknown_activation_is_a_one_line_error(capsys):
    with pytest.raises(ConfigError, match=r"model.activation.*relu, selu, tprelu"):
        build(_small(activation="gelu"))
    assert main(["info", "--set", "model.activation=gelu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.activation" in err and "\n" not in err
