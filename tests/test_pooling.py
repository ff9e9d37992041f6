"""Fractional max-pooling (Graham 2014, Sec. 2): output sizes, the boundary sequences (random
and pseudo-random), every output against an independently computed max over its region
(disjoint and overlapping), regions redrawn in training and fixed in eval; ``model.D_down``."""

import dataclasses
import math

import pytest
import torch

from gankit.config import ConfigError, ModelConfig, load_preset, set_value
from gankit.layers.pooling import FractionalMaxPool2d, fmp_output_size, fmp_sequence
from gankit.models import build
from gankit.models.blocks import DBlock
from gankit.models.style import NetStyle

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHAS = [1.1, math.sqrt(2), 1.5, 2 ** (1 / 3), 1.99]


def test_output_size_formula():
    for alpha in ALPHAS:
        for n in range(2, 70):
            n_out = fmp_output_size(n, alpha)
            assert n_out == math.ceil((n - 1) / alpha)
            # the fewest increments of 1 or 2 that span n - 1 with mean at most alpha
            assert (n - 1) / 2 <= n_out <= n - 1 and (n - 1) / n_out <= alpha
            assert n_out == 1 or (n - 1) / (n_out - 1) > alpha
    assert [fmp_output_size(n, math.sqrt(2)) for n in (28, 20, 14, 32)] == [20, 14, 10, 22]
    for bad in (1.0, 2.0, 0.5):
        with pytest.raises(ValueError, match="alpha must lie in"):
            fmp_output_size(10, bad)


@pytest.mark.parametrize("pseudo_random", [False, True])
def test_sequences_have_increments_one_or_two(pseudo_random):
    gen = torch.Generator().manual_seed(0)
    for alpha in ALPHAS:
        for n in (2, 3, 7, 28, 33):
            n_out = fmp_output_size(n, alpha)
            a = fmp_sequence(n, n_out, pseudo_random, gen)
            steps = a[1:] - a[:-1]
            assert a[0] == 0 and a[-1] == n - 1 and len(a) == n_out + 1
            assert set(steps.tolist()) <= {1, 2} and int((steps == 2).sum()) == n - 1 - n_out


def test_pseudo_random_sequence_formula():
    """a_i = ceil(alpha' (i + u)) - ceil(alpha' u), alpha' = (N_in - 1) / N_out."""
    n, n_out = 28, 20
    a = fmp_sequence(n, n_out, True, torch.Generator().manual_seed(5))
    u = torch.rand((), generator=torch.Generator().manual_seed(5), dtype=torch.float64).item()
    ratio = (n - 1) / n_out
    expected = [math.ceil(ratio * (i + u)) - math.ceil(ratio * u) for i in range(n_out + 1)]
    assert a.tolist() == expected


def _brute_force(x, rows, cols, overlapping):
    """out[b, c, i, j] = max of x[b, c] over rows [a_{i-1}, a_i (- 1)] x cols likewise."""
    cut = 0 if overlapping else 1
    out = torch.empty(*x.shape[:2], len(rows) - 1, len(cols) - 1, dtype=x.dtype)
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            region = x[:, :, rows[i] : rows[i + 1] + 1 - cut, cols[j] : cols[j + 1] + 1 - cut]
            out[:, :, i, j] = region.amax(dim=(2, 3))
    return out


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [False, True])
def test_each_output_is_the_max_of_its_region(overlapping, pseudo_random):
    torch.manual_seed(1)
    pool = FractionalMaxPool2d(math.sqrt(2), pseudo_random=pseudo_random, overlapping=overlapping)
    x = torch.randn(2, 3, 13, 9)
    torch.manual_seed(7)
    rows, cols = pool.regions(13, 9)
    torch.manual_seed(7)  # the forward draws the same regions from the global RNG
    y = pool(x)
    assert y.shape == (2, 3, fmp_output_size(13, math.sqrt(2)), fmp_output_size(9, math.sqrt(2)))
    torch.testing.assert_close(y, _brute_force(x, rows.tolist(), cols.tolist(), overlapping))
    # max pooling routes each output's gradient to one input pixel (no ties in random data); a
    # pixel shared by overlapping regions can be the max of up to 4 of them
    x.requires_grad_(True)
    torch.manual_seed(7)
    pool(x).sum().backward()
    assert x.grad.sum().item() == y.numel()
    assert set(x.grad.unique().tolist()) <= ({0.0, 1.0, 2.0, 3.0, 4.0} if overlapping else {0, 1})


def test_regions_redrawn_in_training_fixed_in_eval():
    pool = FractionalMaxPool2d(1.5)
    draws = {tuple(pool.regions(28, 28)[0].tolist()) for _ in range(6)}
    assert len(draws) > 1
    pool.eval()
    x = torch.randn(1, 1, 28, 28)
    y = pool(x)
    torch.manual_seed(123)
    torch.testing.assert_close(pool(x), y)  # independent of the global RNG
    assert len({tuple(pool.regions(28, 28)[0].tolist()) for _ in range(3)}) == 1


def test_dblock_pools_both_paths_over_the_same_regions():
    style = NetStyle(net="D", sn=False, norm="none", down="fmp", fmp_alpha=1.5)
    block = DBlock(2, 4, 4, downsample=True, preactivation=True, style=style)
    x = torch.randn(2, 2, 10, 10)
    torch.manual_seed(3)
    rows, cols = block.fmp.regions(10, 10)
    r, c = rows.tolist(), cols.tolist()
    h = block.conv2(torch.relu(block.conv1(torch.relu(x))))
    expected = _brute_force(h, r, c, True) + block.conv_sc(_brute_force(x, r, c, True))
    torch.manual_seed(3)
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize("arch,res", [("dcgan", 28), ("sngan", 32)])
def test_fmp_in_d_follows_the_size_formula(arch, res):
    cfg = ModelConfig(arch=arch, resolution=res, channels=1, n_classes=3, dim_z=8, G_ch=4,
                      D_ch=4, init="default", D_down="fmp", fmp_alpha=math.sqrt(2))  # fmt: skip
    _, D = build(cfg)
    sizes = []
    for m in D.modules():  # DCGAN: FMP layers; ResNet: down-sampling blocks
        if isinstance(m, FractionalMaxPool2d) or getattr(m, "fmp", None) is not None:
            m.register_forward_hook(lambda m, a, o: sizes.append((a[0].shape[-1], o.shape[-1])))
    D(torch.randn(2, 1, res, res), torch.tensor([0, 1]))
    assert sizes and all(out == fmp_output_size(n, math.sqrt(2)) for n, out in sizes)
    assert sizes[0][0] == res  # the first pooling sees the full-resolution features


def test_bad_fmp_settings_are_one_line_errors():
    cfg = load_preset("mnist-sagan")
    with pytest.raises(ConfigError, match=r"model.fmp_alpha.*in \(1, 2\)"):
        set_value(cfg, "model.fmp_alpha", 2.0)
    with pytest.raises(ConfigError, match=r"model.D_down.*avgpool, fmp"):
        build(dataclasses.replace(cfg.model, D_down="maxpool"))
    with pytest.raises(ConfigError, match=r"model.D_attn.*valid resolutions: \[14, 20\]"):
        build(dataclasses.replace(cfg.model, D_down="fmp", D_attn=[7]))
