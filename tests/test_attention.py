"""Attention layers against independent einsum implementations of the papers' equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gankit.layers.attention import SelfAttention, attention, attention_reference


def _w(conv: torch.nn.Module) -> torch.Tensor:
    """A 1x1(x1) conv's (spectrally normalised) weight as an ``(out, in)`` matrix."""
    return conv.weight.flatten(1)


def _sagan_einsum(m: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """SAGAN Sec. 3 / BigGAN, written position by position (j: output, i: attended)."""
    b, c, h, w = x.shape
    xs = x.flatten(2)  # (B, C, N)

    def proj(conv, pool):
        y = torch.einsum("oc,bcn->bon", _w(conv), xs)
        if pool:
            y = F.max_pool2d(y.reshape(b, -1, h, w), 2).flatten(2)
        return y

    f_i = proj(m.key, m.pool)  # f(x_i) / phi
    g_j = proj(m.query, False)  # g(x_j) / theta
    h_i = proj(m.value, m.pool)  # h(x_i) / g
    s = torch.einsum("bci,bcj->bij", f_i, g_j)  # s_ij = f(x_i)^T g(x_j)
    beta = s.softmax(dim=1)  # softmax over i
    o = torch.einsum("bij,bci->bcj", beta, h_i)  # sum_i beta_{j,i} h(x_i)
    o = torch.einsum("oc,bcj->boj", _w(m.out), o)  # v(.)
    return (m.gamma * o).reshape(b, c, h, w) + x


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_self_attention_matches_einsum(pool, fused):
    torch.manual_seed(0)
    m = SelfAttention(32, pool=pool, fused=fused).eval()  # eval: SN weights stay fixed
    with torch.no_grad():
        m.gamma.fill_(0.7)
    x = torch.randn(2, 32, 8, 6)
    torch.testing.assert_close(m(x), _sagan_einsum(m, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", [False, True])
def test_self_attention_fused_equals_reference_values_and_grads(pool):
    torch.manual_seed(1)
    m = SelfAttention(64, pool=pool, sn=False)
    with torch.no_grad():
        m.gamma.fill_(0.5)
    x = torch.randn(2, 64, 16, 16)
    outs, grads = [], []
    for fused in (False, True):
        m.fused = fused
        m.zero_grad()
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in m.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for g_fused, g_ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-5, atol=1e-5)


def test_self_attention_starts_as_identity():
    m = SelfAttention(16, k=2)
    x = torch.randn(3, 16, 4, 4)
    assert m.gamma.item() == 0.0
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("channels", [64, 96 * 2, 768])
def test_biggan_parameter_count(channels):
    c = channels
    m = SelfAttention(c, pool=True)
    assert sum(p.numel() for p in m.parameters()) == c * c // 8 * 2 + c * c // 2 * 2 + 1


def test_sagan_parameter_count_and_sn():
    c, k = 32, 4
    m = SelfAttention(c, k=k)
    assert sum(p.numel() for p in m.parameters()) == 4 * c * (c // k) + 1
    assert len([n for n, _ in m.named_buffers() if n.endswith(".u")]) == 4
    assert not any(n.endswith(".u") for n, _ in SelfAttention(c, sn=False).named_buffers())


@pytest.mark.parametrize(("d_qk", "d_v"), [(4, 4), (4, 16), (16, 4)])
def test_attention_padding_keeps_scores(d_qk, d_v):
    torch.manual_seed(2)
    q, k = torch.randn(2, 30, d_qk), torch.randn(2, 11, d_qk)
    v = torch.randn(2, 11, d_v)
    torch.testing.assert_close(attention(q, k, v), attention_reference(q, k, v))


@pytest.mark.parametrize(("c", "kw"), [(30, {}), (9, {"pool": True, "k": 3}), (6, {"k": 0})])
def test_self_attention_rejects_bad_channels(c, kw):
    from gankit.errors import GankitError

    with pytest.raises(GankitError, match=f"channels={c}"):
        SelfAttention(c, **kw)
