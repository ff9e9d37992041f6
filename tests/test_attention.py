"""Attention layers against independent einsum implementations of the papers' equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from gankit.config import ModelConfig
from gankit.errors import GankitError, ParameterError
from gankit.layers.attention import (
    ATTENTION_NAMES,
    NONLOCAL_MODES,
    NonLocal,
    SelfAttention,
    attention,
    attention_reference,
    build_attention,
)
from gankit.models.base import make_attention

SHAPES = {1: (2, 6, 12), 2: (2, 6, 6, 4), 3: (2, 6, 3, 4, 6)}


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
def test_self_attention_grads_match_einsum(pool):
    """Folding gamma into the output conv's weight leaves every gradient as Eq. 3's
    ``gamma * o + x`` gives it (gamma's own included)."""
    torch.manual_seed(2)
    m = SelfAttention(32, pool=pool, sn=False).double()
    with torch.no_grad():
        m.gamma.fill_(0.3)
    x = torch.randn(2, 32, 8, 6, dtype=torch.float64)
    upstream = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).view_as(x)
    grads = []
    for forward in (m, lambda xi: _sagan_einsum(m, xi)):
        xi = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad((forward(xi) * upstream).sum(), [xi, *m.parameters()]))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def _assert_fused_matches_reference(m, x):
    """Outputs and gradients (input and every parameter) of ``m`` with ``fused`` True and False
    agree to 1e-5 under a non-uniform upstream gradient."""
    outs, grads = [], []
    for fused in (False, True):
        m.fused = fused
        m.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = m(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in m.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for g_fused, g_ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", [False, True])
def test_self_attention_fused_equals_reference_values_and_grads(pool):
    torch.manual_seed(1)
    m = SelfAttention(64, pool=pool, sn=False)
    with torch.no_grad():
        m.gamma.fill_(0.5)
    x = torch.randn(2, 64, 16, 16)
    _assert_fused_matches_reference(m, x)


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
    with pytest.raises(ParameterError, match=f"^channels: expected a positive int .*got {c}$"):
        SelfAttention(c, **kw)


def test_fused_path_engages_flash_kernel_with_unequal_widths():
    """BigGAN's v is 4x wider than q, k; padding keeps SDPA off its O(N M) math fallback."""
    q, k, v = torch.randn(2, 64, 8), torch.randn(2, 16, 8), torch.randn(2, 16, 32)
    with profile() as prof:
        attention(q, k, v)
    names = {e.name for e in prof.events()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
    assert "aten::_scaled_dot_product_attention_math" not in names


def _largest_allocation(m: SelfAttention, size: int) -> int:
    """Bytes of the largest single CPU allocation by any op in ``m``'s fwd + bwd (profiler)."""
    x = torch.randn(1, m.channels, size, size, requires_grad=True)
    with profile(profile_memory=True) as prof:
        m(x).sum().backward()
    return max(e.self_cpu_memory_usage for e in prof.events())


@pytest.mark.slow
@pytest.mark.parametrize("pool", [False, True])
def test_fused_self_attention_never_allocates_the_score_matrix(pool):
    """128x128 maps (N = 16,384): no op on the fused path allocates N x M floats (1 GiB / 256 MiB;
    the CPU flash kernel's scratch is ~2 MiB). Control: the reference path does, at 64x64."""

    def score_bytes(size):
        n = size * size
        return n * (n // 4 if pool else n) * 4

    fused, ref = (SelfAttention(32, pool=pool, fused=f, sn=False) for f in (True, False))
    assert _largest_allocation(ref, 64) >= score_bytes(64)
    assert _largest_allocation(fused, 128) < score_bytes(128) / 64


def _pool_by_reshape(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over non-overlapping pairs along the last ``min(dim, 2)`` axes (not T in 3-D)."""
    for axis in range(x.dim() - min(dim, 2), x.dim()):
        x = x.unflatten(axis, (x.shape[axis] // 2, 2)).amax(axis + 1)
    return x


def _nonlocal_einsum(m: NonLocal, x: torch.Tensor) -> torch.Tensor:
    """Non-local Eq. 1 and 6 with an explicit (B, N, M) pairwise matrix."""
    xs = x.flatten(2)
    xh = (_pool_by_reshape(x, m.dim) if m.subsample else x).flatten(2)

    def conv(c, t):
        return torch.einsum("oc,bcn->bon", c.weight[..., 0], t) + c.bias[None, :, None]

    g = conv(m.g, xh)
    if m.mode == "gaussian":
        f = torch.einsum("bci,bcj->bij", xs, xh).exp()
    else:
        th, ph = conv(m.theta, xs), conv(m.phi, xh)
        f = torch.einsum("bci,bcj->bij", th, ph)
    if m.mode == "embedded_gaussian":
        f = f.exp()
    if m.mode == "concatenation":
        pair = torch.cat(
            [
                th.unsqueeze(3).expand(-1, -1, -1, ph.shape[-1]),
                ph.unsqueeze(2).expand(-1, -1, th.shape[-1], -1),
            ],
            dim=1,
        )  # [theta(x_i), phi(x_j)]: (B, 2 inter, N, M)
        f = torch.relu(torch.einsum("c,bcij->bij", m.w_f.weight[0], pair))
    if m.mode in ("gaussian", "embedded_gaussian"):
        norm = f.sum(dim=2, keepdim=True)  # C(x) = sum_j f(x_i, x_j)
    else:
        norm = torch.tensor(float(xh.shape[-1]), dtype=x.dtype)  # C(x) = M
    y = torch.einsum("bij,bcj->bci", f / norm, g)
    return (conv(m.w_z, y) + xs).view_as(x)


@pytest.mark.parametrize("mode", NONLOCAL_MODES)
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("subsample", [False, True])
def test_nonlocal_matches_einsum(mode, dim, subsample):
    torch.manual_seed(3)
    m = NonLocal(6, mode, inter_channels=4, dim=dim, subsample=subsample).double()
    torch.nn.init.normal_(m.w_z.weight)
    torch.nn.init.normal_(m.w_z.bias)
    x = 0.5 * torch.randn(*SHAPES[dim], dtype=torch.float64)
    z = m(x)
    assert z.shape == x.shape
    torch.testing.assert_close(z, _nonlocal_einsum(m, x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode", NONLOCAL_MODES)
def test_nonlocal_normalisation_invariant_to_duplicated_and_permuted_keys(mode):
    """softmax modes: sum_j f and sum_j f g both double; C = M modes: sum and M both double."""
    torch.manual_seed(4)
    m = NonLocal(6, mode).double()
    x, x_hat = torch.randn(2, 6, 20, dtype=torch.float64), torch.randn(2, 6, 7, dtype=torch.float64)
    y = m.aggregate(x, x_hat)
    torch.testing.assert_close(m.aggregate(x, torch.cat([x_hat, x_hat], dim=2)), y)
    torch.testing.assert_close(m.aggregate(x, x_hat[..., torch.randperm(7)]), y)
    assert not torch.allclose(m.aggregate(x, x_hat[..., :5]), y)


@pytest.mark.parametrize("mode", ["gaussian", "embedded_gaussian"])
@pytest.mark.parametrize("subsample", [False, True])
def test_nonlocal_fused_equals_reference_values_and_grads(mode, subsample):
    torch.manual_seed(5)
    m = NonLocal(16, mode, subsample=subsample)
    torch.nn.init.normal_(m.w_z.weight, std=0.1)
    x = 0.3 * torch.randn(2, 16, 16, 16)
    _assert_fused_matches_reference(m, x)


@pytest.mark.parametrize("mode", NONLOCAL_MODES)
@pytest.mark.parametrize("bn", [False, True])
def test_nonlocal_block_starts_as_identity(mode, bn):
    m = NonLocal(8, mode, bn=bn, subsample=True)
    x = torch.randn(4, 8, 6, 6)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)
    zeroed = m.bn.weight if bn else m.w_z.weight
    assert torch.count_nonzero(zeroed) == 0


def test_nonlocal_rejects_bad_arguments_and_shapes():
    with pytest.raises(ParameterError, match="^mode: expected one of gaussian, embedded_gaussian"):
        NonLocal(8, "softmax")
    with pytest.raises(ParameterError, match="^dim: expected 1, 2 or 3, got 4"):
        NonLocal(8, "gaussian", dim=4)
    with pytest.raises(ValueError, match=r"expected \(B, 8\) \+ 2 spatial dims"):
        NonLocal(8, "gaussian")(torch.randn(2, 8, 5))


def test_build_attention_by_name():
    assert ATTENTION_NAMES == ("sagan", "biggan", *NONLOCAL_MODES)
    sagan, biggan = build_attention("sagan", 32, k=4), build_attention("biggan", 32, sn=False)
    assert isinstance(sagan, SelfAttention) and not sagan.pool and sagan.query.out_channels == 8
    assert isinstance(biggan, SelfAttention) and biggan.pool
    for mode in NONLOCAL_MODES:
        m = build_attention(mode, 32, dim=1)
        assert isinstance(m, NonLocal) and m.mode == mode and m.dim == 1
    with pytest.raises(ValueError, match="^name: expected one of sagan, biggan, gaussian"):
        build_attention("transformer", 32)
    with pytest.raises(GankitError):
        build_attention("transformer", 32)


def test_make_attention_by_type():
    """``model.attn_type`` values to layers: SAGAN's and BigGAN's (pooled) attention with
    ``model.attn_k``, and the non-local modes."""
    cfg = ModelConfig(attn_k=4)
    sagan = make_attention(cfg, "model.G_attn", 32, "sagan", sn=True)
    biggan = make_attention(cfg, "model.G_attn", 32, "biggan", sn=False)
    assert isinstance(sagan, SelfAttention) and not sagan.pool and sagan.query.out_channels == 8
    assert isinstance(biggan, SelfAttention) and biggan.pool
    for mode in NONLOCAL_MODES:
        m = make_attention(cfg, "model.D_attn", 32, f"nonlocal:{mode}", sn=True)
        assert isinstance(m, NonLocal) and m.mode == mode
    with pytest.raises(GankitError, match="'model.D_attn': .* 30 channels, expected a number"):
        make_attention(cfg, "model.D_attn", 30, "sagan", sn=True)
