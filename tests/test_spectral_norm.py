"""Spectral norm: sigma estimate vs torch.linalg.matrix_norm, state-dict persistence."""

import torch
from torch import nn

from gankit.layers.spectral_norm import (
    SNLayers,
    SpectralNorm,
    frozen_power_iteration,
    sn_conv2d,
    sn_linear,
    spectral_norm,
    spectral_norms,
)


def _sn(module: nn.Module) -> SpectralNorm:
    return module.parametrizations.weight[0]


def test_power_iteration_converges_to_largest_singular_value():
    torch.manual_seed(0)
    conv = sn_conv2d(6, 10, 3)
    w = conv.parametrizations.weight.original
    for _ in range(200):
        conv(torch.zeros(1, 6, 3, 3))  # each training forward runs one power-iteration step
    sigma = torch.linalg.matrix_norm(w.detach().flatten(1), ord=2)
    torch.testing.assert_close(_sn(conv).sigma(w.detach()), sigma, rtol=1e-4, atol=0)
    w_sn = conv.weight.detach()  # W / sigma
    torch.testing.assert_close(
        torch.linalg.matrix_norm(w_sn.flatten(1), ord=2), torch.tensor(1.0), rtol=1e-4, atol=0
    )


def test_u_v_in_state_dict_and_reload_continues_estimate():
    torch.manual_seed(1)
    a = spectral_norm(nn.Linear(8, 5))
    x = torch.randn(3, 8)
    for _ in range(3):
        a(x)
    sd = a.state_dict()
    assert "parametrizations.weight.0.u" in sd and "parametrizations.weight.0.v" in sd
    torch.manual_seed(123)  # a fresh module starts from different random u
    b = spectral_norm(nn.Linear(8, 5))
    b.load_state_dict(sd)
    torch.testing.assert_close(_sn(b).u, _sn(a).u)
    for _ in range(4):  # the same next steps from the same state
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    torch.testing.assert_close(_sn(b).v, _sn(a).v)


def test_eval_mode_freezes_u_and_spectral_norms_lists_them():
    lin = spectral_norm(nn.Linear(4, 4))
    net = nn.Sequential(lin, nn.ReLU(), sn_conv2d(1, 2, 1))
    assert [name for name, _ in spectral_norms(net)] == [
        "0.parametrizations.weight.0",
        "2.parametrizations.weight.0",
    ]
    net.eval()
    u0 = _sn(lin).u.clone()
    lin(torch.randn(2, 4))
    torch.testing.assert_close(_sn(lin).u, u0, rtol=0, atol=0)


def test_two_training_forwards_before_backward():
    """A second forward (e.g. the gradient penalty's D pass) updates u, v in place; the first
    graph's backward must still work and use the u, v it was built with."""
    torch.manual_seed(0)
    m = sn_linear(4, 3)
    x = torch.randn(5, 4)
    a = m(x).sum()
    b = m(x).sum()
    (a + b).backward()
    assert torch.isfinite(m.parametrizations.weight.original.grad).all()


def test_power_iteration_ahead_of_a_frozen_forward_equals_a_training_forward():
    """The compiled step's split: ``SNLayers.advance`` then a frozen forward gives the
    training forward's output, gradient and ``u``, ``v``; layers already frozen keep theirs."""
    torch.manual_seed(0)
    nets = [nn.Sequential(sn_conv2d(3, 4, 3), nn.Flatten(), sn_linear(64, 2)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    frozen = [net[2] for net in nets]
    for layer in frozen:
        layer.eval()  # only SN layers in training mode advance
    x = torch.randn(2, 3, 6, 6)
    trained = nets[0](x)
    SNLayers(nets[1]).advance()
    with frozen_power_iteration(nets[1]):
        split = nets[1](x)
    torch.testing.assert_close(split, trained, rtol=0, atol=0)
    trained.square().sum().backward()
    split.square().sum().backward()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0)
    for (_, a), (_, b) in zip(spectral_norms(nets[0]), spectral_norms(nets[1])):
        torch.testing.assert_close(b.u, a.u, rtol=0, atol=0)
        torch.testing.assert_close(b.v, a.v, rtol=0, atol=0)
    assert nets[1][0].training and not _sn(frozen[1]).training  # modes restored


def test_power_iteration_stays_fp32_under_autocast():
    """The training forward turns autocast off around it; the compiled step's separate
    ``SNLayers.advance`` runs inside the step's autocast region and must too."""
    torch.manual_seed(0)
    a, b = sn_linear(256, 128), sn_linear(256, 128)
    b.load_state_dict(a.state_dict())
    SNLayers(a).advance()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        SNLayers(b).advance()
    assert _sn(b).u.dtype == torch.float32
    torch.testing.assert_close(_sn(b).u, _sn(a).u, rtol=0, atol=0)
    torch.testing.assert_close(_sn(b).v, _sn(a).v, rtol=0, atol=0)
