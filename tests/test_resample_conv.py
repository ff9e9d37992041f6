"""Fused resampling convs equal "upsample, conv3x3" and "conv3x3, avg-pool" exactly."""

import pytest
import torch
import torch.nn.functional as F

from gankit.config import ModelConfig
from gankit.layers.resample_conv import (
    conv3x3_avgpool,
    nearest_upsample_2x,
    pool_kernel,
    upsample_by_broadcast,
    upsample_conv3x3,
    upsample_kernel,
)
from gankit.models import build


def _inputs(shape, c_out=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, shape[1], 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w, b


def _plain_upsample_conv(x, w, b):
    """Independent reference: repeat_interleave as the nearest upsampling, then conv2d."""
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return F.conv2d(up, w, b, padding=1)


def _plain_conv_pool(x, w, b):
    """Independent reference: conv2d, then the mean of each 2x2 block by reshaping."""
    h = F.conv2d(x, w, b, padding=1)
    n, c, hh, ww = h.shape
    h = h[:, :, : hh // 2 * 2, : ww // 2 * 2]
    return h.reshape(n, c, hh // 2, 2, ww // 2, 2).mean(dim=(3, 5))


CASES = [
    # (fused op, independent reference, input shape, output size from (H, W))
    *[(upsample_conv3x3, _plain_upsample_conv, s, lambda h, w: (2 * h, 2 * w))
      for s in [(2, 3, 4, 4), (1, 4, 5, 7), (3, 2, 1, 1)]],
    *[(conv3x3_avgpool, _plain_conv_pool, s, lambda h, w: (h // 2, w // 2))
      for s in [(2, 3, 8, 8), (1, 4, 6, 10), (2, 2, 7, 9)]],
]  # fmt: skip


@pytest.mark.parametrize("op, reference, shape, out_size", CASES)
def test_fused_equals_plain_ops(op, reference, shape, out_size):
    x, w, b = _inputs(shape)
    fast, ref = op(x, w, b), reference(x, w, b)
    assert fast.shape == (shape[0], 5, *out_size(*shape[2:]))
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(fast.square().sum(), (x, w, b))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, w, b))
    for g1, g2 in zip(grads, ref_grads):
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(op(x, w, b, fused=False), ref)  # the module's reference path


def test_composed_kernels_by_hand():
    """1-D-separable closed forms on a delta kernel: K = e_{1,1} (the centre tap)."""
    k = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    k[0, 0, 1, 1] = 1.0
    # pool: P[t] = (K[t] + K[t-1]) / 2 -> [0, .5, .5, 0] per axis
    p = torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(pool_kernel(k)[0, 0], torch.outer(p, p))
    # upsample: U[t] = K[2-t] + K[3-t] -> [0, 1, 1, 0] per axis
    u = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(upsample_kernel(k)[0, 0], torch.outer(u, u))
    with pytest.raises(ValueError, match="3, 3"):
        pool_kernel(torch.zeros(1, 1, 4, 4))


def test_biggan_blocks_fused_equal_reference():
    cfg = ModelConfig(arch="biggan", resolution=32, n_classes=3, dim_z=16, G_ch=4, D_ch=4)
    torch.manual_seed(0)
    G, D = build(cfg)
    G.eval(), D.eval()
    z, y = torch.randn(4, 16), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        fast_x, fast_d = G(z, y), D(G(z, y), y)
        for m in (*G.blocks, *D.blocks):
            m.fused_resample = False
        ref_x, ref_d = G(z, y), D(G(z, y), y)
    torch.testing.assert_close(fast_x, ref_x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_d, ref_d, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 3, 3), (2, 4, 1, 1)])
def test_upsample_by_broadcast_is_interpolate(shape, channels_last):
    """Values and layout as F.interpolate's nearest 2x; the gradient is each 2x2 block's sum
    (integer-valued float64 data, so the sums are exact in any order)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-8, 8, shape, generator=g).double()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = upsample_by_broadcast(x)
    ref = F.interpolate(x.detach(), scale_factor=2, mode="nearest")
    assert torch.equal(y, ref)
    assert y.stride() == ref.stride()
    dy = torch.randint(-8, 8, y.shape, generator=g).double()
    (dx,) = torch.autograd.grad(y, x, dy)
    n, c, h, w = shape
    assert torch.equal(dx, dy.reshape(n, c, h, 2, w, 2).sum(dim=(3, 5)))


def test_nearest_upsample_2x_broadcasts_only_when_compiled():
    """Eagerly F.interpolate itself; traced by torch.compile, the broadcast form (no
    upsample_nearest2d in the graph), with the same values and gradient."""
    ops = []

    def record(gm, inputs):
        ops.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager = nearest_upsample_2x(xe)
    compiled = torch.compile(nearest_upsample_2x, backend=record, fullgraph=True)(xc)
    assert torch.equal(eager, F.interpolate(x, scale_factor=2, mode="nearest"))
    assert torch.equal(compiled, eager) and compiled.stride() == eager.stride()
    assert ops and not any("interpolate" in op or "upsample" in op for op in ops)
    g = torch.randn_like(eager)
    (ge,), (gc,) = torch.autograd.grad(eager, xe, g), torch.autograd.grad(compiled, xc, g)
    torch.testing.assert_close(gc, ge)
