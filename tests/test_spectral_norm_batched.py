"""Batched spectral norm equals the per-layer path: W / sigma, u, v and gradients."""

import copy

import pytest
import torch
from torch import nn

from gankit.layers.init import raw_weight
from gankit.layers.spectral_norm import sn_conv2d, sn_embedding, sn_linear, spectral_norms
from gankit.layers.spectral_norm_batched import BatchedSpectralNorm, plan_buckets


def _net() -> nn.Module:
    """SN layers of five shapes: a run of equal 3x3 convs, padded 1x1 convs, linears, an
    embedding with fewer rows, and a big linear that gets a bucket of its own."""
    torch.manual_seed(0)
    return nn.ModuleDict(
        {
            "c1": sn_conv2d(6, 6, 3),
            "c2": sn_conv2d(6, 6, 3),
            "c3": sn_conv2d(6, 6, 3),
            "sc": sn_conv2d(3, 6, 1),
            "lin": sn_linear(6, 4),
            "emb": sn_embedding(3, 6),
            "big": sn_linear(2000, 1200),
        }
    )


def _layers(net: nn.Module) -> list[nn.Module]:
    return list(net.values())


def test_buckets_group_by_shape_and_bound_the_padding():
    sizes = [(6, 54), (6, 54), (6, 3), (4, 6), (3, 6), (1200, 2000)]
    buckets = plan_buckets(sizes)
    assert buckets == [[0, 1, 2, 3, 4], [5]]  # small ones padded to (6, 54); the big one alone
    # a slot padded by more than its own size (and by > 2**20 zeros) opens a new bucket
    assert plan_buckets([(1024, 2048), (1024, 1)]) == [[0], [1]]  # 2M zeros for 1024 entries
    assert plan_buckets([(1024, 2048), (1024, 1500)]) == [[0, 1]]
    net = _net()
    batched = BatchedSpectralNorm(net)
    assert sorted(len(b.sns) for b in batched.buckets) == [1, 6]


@pytest.mark.parametrize("training", [True, False])
def test_weights_vectors_and_gradients_equal_the_per_layer_path(training):
    ref = _net().train(training)
    net = copy.deepcopy(ref)
    batched = BatchedSpectralNorm(net)
    grads = [torch.randn_like(raw_weight(m)) for m in _layers(ref)]
    for _ in range(3):  # u, v carried over between steps
        w_ref = [m.weight for m in _layers(ref)]
        with batched.applied():
            w = [m.weight for m in _layers(net)]
        for a, b in zip(w, w_ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        sum((a * g).sum() for a, g in zip(w_ref, grads)).backward()
        sum((a * g).sum() for a, g in zip(w, grads)).backward()
        for m, m_ref in zip(_layers(net), _layers(ref)):
            g, g_ref = raw_weight(m).grad, raw_weight(m_ref).grad
            torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5 * g_ref.abs().max())
        for (_, a), (_, b) in zip(spectral_norms(net), spectral_norms(ref)):
            torch.testing.assert_close(a.u, b.u, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.v, b.v, rtol=1e-5, atol=1e-6)
        with torch.no_grad():  # a step between passes, so that W changes
            for m, m_ref in zip(_layers(net), _layers(ref)):
                for p in (raw_weight(m), raw_weight(m_ref)):
                    p -= 0.1 * p.grad
                    p.grad = None


def test_gradient_is_the_closed_form_with_u_v_held_constant():
    """dL/dW = (G - <G, W_SN> u v^T) / sigma with sigma = u^T W v: autograd of that formula
    written independently, on one layer in training mode."""
    torch.manual_seed(1)
    lin = sn_linear(5, 4)
    w = raw_weight(lin)
    with BatchedSpectralNorm(lin).applied():
        w_sn = lin.weight
    (_, sn), *_ = spectral_norms(lin)
    u, v = sn.u.clone(), sn.v.clone()  # the vectors of this step (written back on compute)
    g = torch.randn(4, 5)
    (w_sn * g).sum().backward()
    w_ = w.detach().clone().requires_grad_(True)
    ((w_ / torch.dot(u, w_ @ v)) * g).sum().backward()
    torch.testing.assert_close(w.grad, w_.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w_sn, w.detach() / torch.dot(u, w.detach() @ v))


def test_unused_layer_does_not_advance_and_state_dict_is_unchanged():
    net = nn.ModuleDict({"used": sn_linear(4, 3), "unused": sn_linear(1500, 1000)})
    keys = list(net.state_dict())
    u_unused = spectral_norms(net["unused"])[0][1].u.clone()
    with BatchedSpectralNorm(net).applied():
        net["used"](torch.randn(2, 4))
    assert torch.equal(spectral_norms(net["unused"])[0][1].u, u_unused)  # own bucket, never run
    assert list(net.state_dict()) == keys
    assert all(sn.batch is None for _, sn in spectral_norms(net))  # per-layer path afterwards


def test_frozen_reuse_recomputes_after_a_weight_change():
    net = _net().eval()
    batched = BatchedSpectralNorm(net, reuse_frozen=True)
    with torch.no_grad():
        with batched.applied():
            first = [m.weight for m in _layers(net)]
        with batched.applied():
            again = [m.weight for m in _layers(net)]
        assert all(a is b for a, b in zip(first, again))  # nothing changed: reused
        raw_weight(net["c2"]).mul_(2.0)  # in place, like an optimizer step
        with batched.applied():
            after = [m.weight for m in _layers(net)]
    torch.testing.assert_close(after[1], net["c2"].weight)  # per-layer path, outside the block
    torch.testing.assert_close(after[1], first[1], rtol=1e-5, atol=1e-6)  # W/sigma scale-free
    assert after[1] is not first[1]


def test_two_training_forwards_before_one_backward():
    """A second pass (e.g. the gradient penalty's D forward) rewrites u, v; the first pass's
    backward still uses the vectors it was built with."""
    torch.manual_seed(0)
    m = sn_linear(4, 3)
    ref = copy.deepcopy(m)
    batched = BatchedSpectralNorm(m)
    x = torch.randn(5, 4)
    with batched.applied():
        a = m(x).sum()
    with batched.applied():
        b = m(x).sum()
    (a + b).backward()
    (ref(x).sum() + ref(x).sum()).backward()
    torch.testing.assert_close(raw_weight(m).grad, raw_weight(ref).grad, rtol=1e-5, atol=1e-6)


def test_gradients_have_exactly_the_strides_of_their_weights():
    """DDP's gradient buckets expect each gradient laid out like its parameter, also in size-1
    dimensions: a (1, 6) linear slice of the padded stack and a channels-last 1x1 kernel
    (strides (3, 1, 3, 3)) both count as contiguous with other strides."""
    torch.manual_seed(0)
    net = nn.ModuleDict(
        {"c": sn_conv2d(6, 6, 3), "sc": sn_conv2d(3, 6, 1), "head": sn_linear(6, 1)}
    )
    sc = raw_weight(net["sc"])
    sc.data = sc.data.to(memory_format=torch.channels_last)
    assert sc.stride() == (3, 1, 3, 3)
    with BatchedSpectralNorm(net).applied():
        sum(m.weight.sum() for m in net.values()).backward()
    for name, m in net.items():
        w = raw_weight(m)
        assert w.grad.stride() == w.stride(), name
