"""Gradient penalty, orthogonal, R1/R2, LeCam and consistency regularisation against closed
forms, autograd brute force and einsum references."""

import pytest
import torch
from torch import nn

from gankit.layers.spectral_norm import sn_conv2d, sn_embedding, sn_linear
from gankit.regularizers import (
    LeCamAnchors,
    consistency_reg,
    d_regularization,
    gradient_penalty,
    lazy_factor,
    lecam_reg,
    orthogonal_reg,
    weight_matrices,
    zero_centred_gp,
)


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


def test_r1_r2_linear_critic_closed_form_and_gradient():
    """D(x) = w^T vec(x): grad_x D = w, so R1 = gamma1/2 ||w||^2, R2 = gamma2/2 ||w||^2 and
    d(R1 + R2)/dw = (gamma1 + gamma2) w."""
    w = torch.tensor([3.0, 4.0, 0.0, 1.0], requires_grad=True)  # ||w||^2 = 26
    images = torch.randn(6, 1, 2, 2).requires_grad_(True)  # 3 real, 3 fake
    logits = images.flatten(1) @ w
    reg = d_regularization(logits, images, 3, 3, r1_gamma=2.0, r2_gamma=0.5)
    assert reg.item() == pytest.approx((2.0 + 0.5) / 2 * 26.0)
    reg.backward()
    torch.testing.assert_close(w.grad, 2.5 * w.detach())


def test_r1_r2_quadratic_critic_against_per_sample_autograd():
    """D(x) = sum(x^2): grad = 2x differs per sample and between the real and fake parts."""
    torch.manual_seed(0)
    real, fake = torch.randn(4, 2, 3, 3), 3 * torch.randn(5, 2, 3, 3)
    images = torch.cat([real, fake]).requires_grad_(True)
    logits = images.square().flatten(1).sum(1)
    r1 = d_regularization(logits, images, 4, 5, r1_gamma=10.0)
    r2 = d_regularization(logits, images, 4, 5, r2_gamma=10.0)

    def brute(x: torch.Tensor) -> float:
        norms = []
        for xi in x:
            xi = xi.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(xi.square().sum(), xi)
            norms.append(g.square().sum())
        return 10.0 / 2 * torch.stack(norms).mean().item()

    assert r1.item() == pytest.approx(brute(real), rel=1e-5)
    assert r2.item() == pytest.approx(brute(fake), rel=1e-5)
    assert zero_centred_gp(torch.zeros(3, 4), 5.0).item() == 0.0


def test_lazy_factor_scales_every_kth_step():
    assert [lazy_factor(s, 4) for s in range(9)] == [4, 0, 0, 0, 4, 0, 0, 0, 4]
    assert [lazy_factor(s, 1) for s in range(3)] == [1, 1, 1]


def test_lecam_anchors_ema_and_regulariser_closed_form():
    anchors = LeCamAnchors(decay=0.9)
    anchors.update(torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0]))  # first: copy the means
    assert (anchors.real.item(), anchors.fake.item()) == (2.0, -1.0)
    anchors.update(torch.tensor([4.0]), torch.tensor([1.0]))  # 0.9 * old + 0.1 * mean
    assert anchors.real.item() == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    assert anchors.fake.item() == pytest.approx(0.9 * -1.0 + 0.1 * 1.0)
    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -0.5, 0.0])
    a_r, a_f = anchors.real.item(), anchors.fake.item()
    expected = ((1 - a_f) ** 2 + (2 - a_f) ** 2) / 2 + (
        (0.5 - a_r) ** 2 + (0.5 + a_r) ** 2 + a_r**2
    ) / 3
    assert lecam_reg(real, fake, anchors).item() == pytest.approx(expected)


def test_lecam_in_d_regularization_updates_anchors_then_penalises():
    anchors = LeCamAnchors(decay=0.5)
    logits = torch.tensor([2.0, 4.0, -1.0, -3.0], requires_grad=True)  # 2 real, 2 fake
    reg = d_regularization(logits, None, 2, 2, lecam=anchors, lecam_weight=0.1)
    # anchors after the first update: alpha_R = 3, alpha_F = -2
    expected = 0.1 * (((2 + 2) ** 2 + (4 + 2) ** 2) / 2 + ((-1 - 3) ** 2 + (-3 - 3) ** 2) / 2)
    assert reg.item() == pytest.approx(expected)
    reg.backward()  # the anchors are constants: d/dD(x_i) = 0.1 * 2 (D(x_i) - alpha_F) / 2
    torch.testing.assert_close(logits.grad, 0.1 * torch.tensor([4.0, 6.0, -4.0, -6.0]))
    state = anchors.state_dict()
    other = LeCamAnchors(decay=0.5)
    other.load_state_dict(state)
    assert (other.real.item(), other.fake.item(), int(other.count)) == (3.0, -2.0, 1)


def test_consistency_reg_closed_form_and_rows():
    logits, transformed = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.0])
    assert consistency_reg(logits, transformed).item() == pytest.approx((0.25 + 4.0) / 2)
    # d_regularization reads the CR rows after the real and fake rows
    all_logits = torch.tensor([1.0, -2.0, 7.0, 0.5, 0.0])  # 2 real, 1 fake, 2 transformed reals
    reg = d_regularization(all_logits, None, 2, 1, cr_weight=4.0)
    assert reg.item() == pytest.approx(4.0 * (0.25 + 4.0) / 2)
    assert d_regularization(all_logits, None, 2, 1).item() == 0.0
