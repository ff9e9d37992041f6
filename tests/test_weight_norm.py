"""Weight normalisation against its formulas: w = g v / ||v|| per output unit (Salimans & Kingma
Eq. 2), Xiang & Li's strict (no gain, no bias) and affine layers, and the data-dependent
initialisation statistics (Salimans & Kingma Sec. 3); the wn-gan preset's layout."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gankit.config import ConfigError, load_preset
from gankit.layers.recompute import no_state_updates
from gankit.layers.spectral_norm import sn_conv2d
from gankit.layers.weight_norm import (
    data_dependent_init,
    weight_norms,
    wn_conv2d,
    wn_conv_transpose2d,
    wn_linear,
)
from gankit.models import build

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(v: torch.Tensor, transposed: bool) -> torch.Tensor:
    """One row per output unit: (out, fan_in)."""
    return (v.transpose(0, 1) if transposed else v).reshape(v.shape[1 if transposed else 0], -1)


def _normalised(v: torch.Tensor, g: torch.Tensor | None, transposed: bool) -> torch.Tensor:
    """g_k v_k / ||v_k|| written out row by row."""
    rows = _rows(v, transposed)
    scale = torch.stack([1 / rows[k].norm() for k in range(rows.shape[0])])
    if g is not None:
        scale = scale * g.flatten()
    shape = [1] * v.dim()
    shape[1 if transposed else 0] = -1
    return v * scale.view(shape)


@pytest.mark.parametrize("kind", ["conv", "deconv", "linear"])
@pytest.mark.parametrize("affine", [False, True])
def test_reparametrisation_matches_formula(kind, affine):
    torch.manual_seed(0)
    make = {"conv": wn_conv2d, "deconv": wn_conv_transpose2d, "linear": wn_linear}[kind]
    args = (3, 5) if kind == "linear" else (3, 5, 3)
    layer = make(*args, affine=affine).double()
    v = layer.parametrizations.weight.original
    g = layer.parametrizations.weight[0].g if affine else None
    with torch.no_grad():
        if affine:
            g.uniform_(0.5, 2.0)
            layer.bias.normal_()
    w = _normalised(v, g, transposed=kind == "deconv")
    if kind == "linear":
        x = torch.randn(4, 3, dtype=torch.float64)
        expected = F.linear(x, w, layer.bias)
    else:
        x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
        op = F.conv2d if kind == "conv" else F.conv_transpose2d
        expected = op(x, w, layer.bias)
    torch.testing.assert_close(layer(x), expected)
    # strict: no gain, no bias; every output unit's weight has unit norm
    n_params = v.numel() + (g.numel() + layer.bias.numel() if affine else 0)
    assert sum(p.numel() for p in layer.parameters()) == n_params
    if not affine:
        assert layer.bias is None
        norms = _rows(layer.weight.detach(), kind == "deconv").norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


def test_gradients_reach_direction_and_gain():
    torch.manual_seed(1)
    layer = wn_conv2d(2, 3, 3, affine=True).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    v = layer.parametrizations.weight.original
    g = layer.parametrizations.weight[0].g

    def f(v_, g_):
        return F.conv2d(x, _normalised(v_, g_, False), layer.bias).square().sum()

    layer(x).square().sum().backward()
    v2, g2 = v.detach().clone().requires_grad_(), g.detach().clone().requires_grad_()
    f(v2, g2).backward()
    torch.testing.assert_close(v.grad, v2.grad)
    torch.testing.assert_close(g.grad, g2.grad)
    # the gradient w.r.t. v is orthogonal to v per output unit (Salimans & Kingma Eq. 4)
    dots = (_rows(v.grad, False) * _rows(v.detach(), False)).sum(dim=1)
    torch.testing.assert_close(dots, torch.zeros_like(dots), atol=1e-10, rtol=0)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = wn_conv2d(3, 4, 3, padding=1, affine=True)
        self.strict = wn_conv2d(4, 4, 3, padding=1, affine=False)
        self.bn = nn.BatchNorm2d(4)
        self.sn = sn_conv2d(4, 4, 1)
        self.fc = wn_linear(4 * 6 * 6, 5, affine=True)

    def forward(self, x):
        h = F.relu(self.strict(F.relu(self.conv(x))))
        return self.fc(self.sn(self.bn(h)).flatten(1))


def test_data_dependent_init_statistics():
    """After the init, each affine layer's pre-activations on the init batch have zero mean and
    unit variance per unit, with g = 1/sigma[t], b = -mu[t]/sigma[t] for t = v.x/||v||."""
    torch.manual_seed(2)
    net = _Net().double()
    x = torch.randn(16, 3, 6, 6, dtype=torch.float64) * 3 + 1
    with torch.no_grad():  # t of the first layer, by hand
        w = _normalised(net.conv.parametrizations.weight.original, None, False)
        t = F.conv2d(x, w, padding=1)
    mu, var = t.mean(dim=(0, 2, 3)), t.var(dim=(0, 2, 3), unbiased=False)
    buffers = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or ".u" in k}
    assert data_dependent_init(net, lambda: net(x)) == 2  # the two affine layers
    g = net.conv.parametrizations.weight[0].g.flatten()
    torch.testing.assert_close(g, 1 / torch.sqrt(var + 1e-6))
    torch.testing.assert_close(net.conv.bias.detach(), -mu / torch.sqrt(var + 1e-6))
    # no other state changed: BN running statistics and SN vectors as before
    for k, v in buffers.items():
        torch.testing.assert_close(net.state_dict()[k], v)
    outputs = {}
    hooks = [m.register_forward_hook(lambda m, a, o, k=k: outputs.__setitem__(k, o))
             for k, m in (("conv", net.conv), ("fc", net.fc))]  # fmt: skip
    with torch.no_grad(), no_state_updates(net):  # the init pass's conditions (no SN step)
        net(x)
    for h in hooks:
        h.remove()
    for name, dims in (("conv", (0, 2, 3)), ("fc", (0,))):
        out, ones = outputs[name], torch.ones(outputs[name].shape[1], dtype=torch.float64)
        torch.testing.assert_close(out.mean(dim=dims), 0 * ones, atol=1e-8, rtol=0)
        torch.testing.assert_close(out.var(dim=dims, unbiased=False), ones, atol=1e-5, rtol=0)


def test_init_without_affine_layers_runs_nothing():
    calls = []
    net = nn.Sequential(wn_conv2d(1, 2, 1, affine=False))
    assert data_dependent_init(net, lambda: calls.append(1)) == 0
    assert not calls


def test_wn_gan_layout_and_its_generator_init():
    """Strict hidden layers (no bias), affine last layers, TPReLU; G's output layer starts with
    zero-mean unit-variance pre-activations on the init batch."""
    cfg = dataclasses.replace(load_preset("wn-gan").model, init="default")
    torch.manual_seed(3)
    G, D = build(cfg)
    kinds = {name: p.affine for name, m in G.named_modules() for layer, p in weight_norms(m)
             if layer is m}  # fmt: skip
    assert {name for name, affine in kinds.items() if affine} == {"out_conv"}
    assert len(kinds) == 1 + len(G.ups) + 1  # linear, deconvs, output conv
    assert G.linear.bias is None and all(up.bias is None for up in G.ups)
    assert D.psi.parametrizations.weight[0].affine and D.body[0].bias is None
    z, y = torch.randn(32, cfg.dim_z), torch.arange(32) % 10
    data_dependent_init(G, lambda: G(z, y))
    seen = {}
    hook = G.out_conv.register_forward_hook(lambda m, a, o: seen.__setitem__("t", o))
    with torch.no_grad():
        G(z, y)
    hook.remove()
    t = seen["t"]
    assert abs(t.mean().item()) < 1e-5 and abs(t.var(unbiased=False).item() - 1) < 1e-3


def test_weight_norm_with_spectral_norm_is_a_one_line_error():
    cfg = dataclasses.replace(load_preset("wn-gan").model, D_sn=True)
    with pytest.raises(ConfigError, match=r"model.D_norm.*set model.D_sn=false") as err:
        build(cfg)
    assert "\n" not in str(err.value)
