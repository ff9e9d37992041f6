"""Gradient penalty and orthogonal regularisation against closed forms and einsum references."""

import pytest
import torch
from torch import nn

from gankit.layers.spectral_norm import sn_conv2d, sn_embedding, sn_linear
from gankit.regularizers import gradient_penalty, orthogonal_reg, weight_matrices


def _linear_critic(w: torch.Tensor):
    """D(x, y) = w^T vec(x): its input gradient is w everywhere."""
    return lambda x, y: x.flatten(1) @ w


def test_gradient_penalty_zero_for_unit_norm_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(12)
    w = w / w.norm()
    real, fake, y = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2), torch.zeros(5).long()
    gp = gradient_penalty(_linear_critic(w), real, fake, y)
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_linear_critic_closed_form():
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ||w|| = 5
    real, fake, y = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2), torch.zeros(6).long()
    gp = gradient_penalty(_linear_critic(w), real, fake, y, weight=10.0)
    assert gp.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2)


def test_gradient_penalty_uses_labels():
    # D(x, y) = w_y^T x: the gradient norm of sample i is ||w_{y_i}|| = 2 or 0.5.
    w = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    y = torch.tensor([0, 1, 1, 1])
    gp = gradient_penalty(
        lambda x, y: (x * w[y]).sum(1), torch.randn(4, 2), torch.randn(4, 2), y, 1
    )
    assert gp.item() == pytest.approx((1.0 + 3 * 0.25) / 4)


def test_gradient_penalty_at_interpolates():
    # D(x) = sum x^2: gradient 2 xhat, so the penalty depends on where xhat lies.
    torch.manual_seed(1)
    real, fake, y = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3), torch.zeros(4).long()
    gp = gradient_penalty(
        lambda x, y: x.square().flatten(1).sum(1),
        real,
        fake,
        y,
        weight=2.0,
        generator=torch.Generator().manual_seed(7),
    )
    eps = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    x_hat = eps * real + (1 - eps) * fake
    norms = 2 * torch.sqrt(torch.einsum("bchw,bchw->b", x_hat, x_hat))
    assert gp.item() == pytest.approx(2.0 * ((norms - 1) ** 2).mean().item(), rel=1e-5)


def test_gradient_penalty_backpropagates_into_critic():
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    gp = gradient_penalty(lambda x, y: x @ w, torch.randn(3, 2), torch.randn(3, 2), None, 10.0)
    gp.backward()
    # d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||
    torch.testing.assert_close(w.grad, 2 * 10.0 * 4.0 * torch.tensor([3.0, 4.0]) / 5.0)


def test_orthogonal_reg_hand_computed_3x3():
    lin = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 2.0]]))
    # Filters (rows) w0 = (1,0,0), w1 = (1,1,0), w2 = (0,1,2):
    # <w0,w1> = 1, <w0,w2> = 0, <w1,w2> = 1; off-diagonal squares counted twice:
    # ||W W^T ⊙ (1-I)||_F^2 = 2 * (1 + 0 + 1) = 4, so beta = 0.5 gives 2.
    # (The column Gram W^T W would give 2 * (1 + 0 + 4) = 10.)
    assert orthogonal_reg(lin, 0.5).item() == pytest.approx(2.0)


def _einsum_reg(w: torch.Tensor) -> torch.Tensor:
    w2 = w.reshape(w.shape[0], -1)
    gram = torch.einsum("ik,jk->ij", w2, w2)
    return torch.einsum("ij,ij->", gram, gram) - torch.einsum("ii,ii->", gram, gram)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(5, 6, bias=False)  # BigGAN's shared class embedding: skipped
        self.embed = nn.Embedding(10, 8)  # skipped
        self.conv = sn_conv2d(3, 4, 3)  # raw weight regularised
        self.bn = nn.BatchNorm2d(4)  # 1-D weight: skipped
        self.fc = nn.Linear(7, 2)
        self.proj = sn_embedding(10, 4)  # skipped (embedding)


def test_orthogonal_reg_matches_einsum_on_network():
    torch.manual_seed(0)
    net = _Net()
    raw = net.conv.parametrizations.weight.original
    expected = 1e-3 * (_einsum_reg(raw) + _einsum_reg(net.fc.weight))
    torch.testing.assert_close(orthogonal_reg(net, 1e-3), expected)


def test_orthogonal_reg_gradient_closed_form():
    torch.manual_seed(0)
    net = _Net()
    beta = 0.1
    orthogonal_reg(net, beta).backward()
    w = net.conv.parametrizations.weight.original.detach().flatten(1)
    mask = 1 - torch.eye(w.shape[0])
    expected = 4 * beta * ((w @ w.t()) * mask) @ w  # dR/dW = 4 beta (W W^T ⊙ (1-I)) W
    torch.testing.assert_close(net.conv.parametrizations.weight.original.grad.flatten(1), expected)
    assert net.shared.weight.grad is None and net.embed.weight.grad is None


def test_orthogonal_reg_zero_for_orthogonal_filters_of_any_norm():
    lin = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(4, 3))
        lin.weight.copy_(q.t() * torch.tensor([[0.1], [2.0], [5.0]]))  # orthogonal rows
    assert orthogonal_reg(lin, 1.0).item() == pytest.approx(0.0, abs=1e-10)


def test_weight_matrices_names_and_raw_weights():
    net = _Net()
    names = [n for n, _ in weight_matrices(net)]
    assert names == ["shared.weight", "embed.weight", "conv.weight", "fc.weight", "proj.weight"]
    assert dict(weight_matrices(net))["conv.weight"] is net.conv.parametrizations.weight.original
    assert [n for n, _ in weight_matrices(net, embeddings=False, exclude={"shared"})] == [
        "conv.weight",
        "fc.weight",
    ]
    assert [n for n, _ in weight_matrices(sn_linear(3, 2))] == ["weight"]
