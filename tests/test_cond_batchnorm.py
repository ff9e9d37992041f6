"""ConditionalBatchNorm2d against the formula out = (x - mu_B) / sqrt(var_B + eps) * g(y) + b(y)."""

import pytest
import torch

from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d


def _normalise(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Batch statistics per channel over (B, H, W), biased variance, computed by hand."""
    mu = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mu) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def test_per_class_matches_formula_and_starts_as_plain_bn():
    torch.manual_seed(0)
    bn = ConditionalBatchNorm2d(5, cond_dim=0, n_classes=3, shared=False, eps=1e-3)
    x, y = torch.randn(6, 5, 4, 4) * 3 + 1, torch.tensor([0, 1, 2, 2, 1, 0])
    torch.testing.assert_close(bn(x, y), _normalise(x, 1e-3))  # gain 1, bias 0 at init
    with torch.no_grad():
        bn.class_gain.normal_()
        bn.class_bias.normal_()
    gamma = bn.class_gain[y][:, :, None, None]
    beta = bn.class_bias[y][:, :, None, None]
    torch.testing.assert_close(bn(x, y), _normalise(x, 1e-3) * gamma + beta)
    assert sum(p.numel() for p in bn.parameters()) == 2 * 3 * 5


@pytest.mark.parametrize("sn", [False, True])
def test_shared_mode_linear_gain_bias(sn):
    torch.manual_seed(1)
    bn = ConditionalBatchNorm2d(4, cond_dim=7, n_classes=10, shared=True, sn=sn)
    x, c = torch.randn(8, 4, 3, 3), torch.randn(8, 7)
    out = bn(x, c)  # training forward: SN's power iteration updates u, v first
    bn.eval()
    w_g, w_b = bn.gain.weight, bn.bias.weight  # the (spectrally normalised) weights now used
    bn.train()
    gamma = (1 + c @ w_g.T)[:, :, None, None]
    beta = (c @ w_b.T)[:, :, None, None]
    torch.testing.assert_close(out, _normalise(x, 1e-5) * gamma + beta)
    # bias-free linear maps, BigGAN's count: 2 * cond_dim * C
    assert sum(p.numel() for p in bn.parameters()) == 2 * 7 * 4


def test_running_statistics_used_in_eval():
    torch.manual_seed(2)
    bn = ConditionalBatchNorm2d(3, cond_dim=0, n_classes=2, momentum=None)  # cumulative average
    xs = [torch.randn(4, 3, 2, 2) + i for i in range(3)]
    y = torch.zeros(4, dtype=torch.long)
    for x in xs:
        bn(x, y)
    bn.eval()
    x = torch.randn(4, 3, 2, 2)
    mean = torch.stack([x_.mean(dim=(0, 2, 3)) for x_ in xs]).mean(0)
    var = torch.stack([x_.var(dim=(0, 2, 3), unbiased=True) for x_ in xs]).mean(0)
    expect = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5)
    torch.testing.assert_close(bn(x, y), expect)


def test_sync_batchnorm_conversion_keeps_conditioning():
    bn = ConditionalBatchNorm2d(3, cond_dim=2, n_classes=4, shared=True, sn=False)
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    assert isinstance(converted.bn, torch.nn.SyncBatchNorm)
    assert not converted.bn.affine


@pytest.mark.parametrize("shared", [False, True])
def test_autocast_keeps_the_input_dtype_and_rounds_the_fp32_result_once(shared):
    """Under bf16 autocast the per-class gains are fp32 and addcmul promotes; the layer returns
    x's dtype: the affine map computed in fp32 and rounded once (the rounding the next
    convolution's cast made before), so the activations after it are bf16, not fp32."""
    torch.manual_seed(2)
    bn = ConditionalBatchNorm2d(4, cond_dim=5, n_classes=3, shared=shared, sn=False)
    with torch.no_grad():
        for p in bn.parameters():
            p.normal_()
    x = torch.randn(6, 4, 3, 3).to(torch.bfloat16)
    cond = torch.randn(6, 5) if shared else torch.tensor([0, 1, 2, 2, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = bn(x, cond)
        gamma, beta = bn.gamma_beta(cond)
    assert out.dtype == torch.bfloat16
    # the batch norm of a bf16 input is bf16; the affine map is computed in fp32, rounded once
    n = _normalise(x.float(), bn.bn.eps).to(torch.bfloat16).float()
    ref = n * gamma.float()[:, :, None, None] + beta.float()[:, :, None, None]
    torch.testing.assert_close(out, ref.to(torch.bfloat16), rtol=2**-7, atol=2**-7)
    # fp32 input (no autocast) is untouched: the same tensor dtype and the exact formula
    x32 = x.float()
    assert bn(x32, cond).dtype == torch.float32
