"""Group normalisation (Wu & He 2018, Eq. 1-3, 6) against a hand-written per-group
normalisation; the class-conditional variant shares conditional BN's gain/bias code;
``model.G_norm`` / ``model.D_norm`` / ``model.num_groups`` in the models."""

import dataclasses

import pytest
import torch
from torch import nn

from gankit.cli import main
from gankit.config import ConfigError, ModelConfig
from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d
from gankit.layers.cond_norm import ConditionalAffine2d, ConditionalNorm2d
from gankit.layers.group_norm import ConditionalGroupNorm2d
from gankit.models import build, count_params

pytestmark = pytest.mark.usefixtures("one_thread")


def _group_normalise(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """Per sample n and group g: (x - mean) / sqrt(var + eps) over the group's channels and all
    positions, biased variance; written with explicit loops."""
    out = torch.empty_like(x)
    per = x.shape[1] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            s = x[n, g * per : (g + 1) * per]
            mu = s.sum() / s.numel()
            var = ((s - mu) ** 2).sum() / s.numel()
            out[n, g * per : (g + 1) * per] = (s - mu) / torch.sqrt(var + eps)
    return out


def test_conditional_group_norm_per_class_matches_formula():
    torch.manual_seed(0)
    gn = ConditionalGroupNorm2d(6, num_groups=3, cond_dim=0, n_classes=4, eps=1e-3).double()
    x = torch.randn(5, 6, 3, 4, dtype=torch.float64) * 2 + 1
    y = torch.tensor([0, 3, 1, 1, 2])
    torch.testing.assert_close(gn(x, y), _group_normalise(x, 3, 1e-3))  # gain 1, bias 0
    with torch.no_grad():
        gn.class_gain.normal_()
        gn.class_bias.normal_()
    gamma, beta = gn.class_gain[y][:, :, None, None], gn.class_bias[y][:, :, None, None]
    torch.testing.assert_close(gn(x, y), _group_normalise(x, 3, 1e-3) * gamma + beta)
    assert sum(p.numel() for p in gn.parameters()) == 2 * 4 * 6


def test_conditional_group_norm_shared_and_per_sample():
    """Shared mode: gamma = 1 + W_g c, beta = W_b c. GN never mixes samples: one sample's output
    does not depend on the rest of the batch, in train and eval alike."""
    torch.manual_seed(1)
    gn = ConditionalGroupNorm2d(4, num_groups=2, cond_dim=3, n_classes=0, shared=True, sn=False)
    x, c = torch.randn(3, 4, 5, 5), torch.randn(3, 3)
    gamma = 1 + c @ gn.gain.weight.T
    beta = c @ gn.bias.weight.T
    expected = _group_normalise(x, 2, 1e-5) * gamma[:, :, None, None] + beta[:, :, None, None]
    torch.testing.assert_close(gn(x, c), expected)
    torch.testing.assert_close(gn(x[:1], c[:1]), gn(x, c)[:1])
    torch.testing.assert_close(gn.eval()(x, c), expected)


def test_conditional_norms_share_the_conditioning_code():
    kinds = (ConditionalBatchNorm2d, ConditionalGroupNorm2d, ConditionalAffine2d)
    assert all(issubclass(k, ConditionalNorm2d) for k in kinds)
    assert all("gamma_beta" not in vars(k) and "forward" not in vars(k) for k in kinds)
    affine = ConditionalAffine2d(3, cond_dim=0, n_classes=2)
    with torch.no_grad():
        affine.class_gain.normal_()
    x, y = torch.randn(2, 3, 2, 2), torch.tensor([1, 0])
    torch.testing.assert_close(affine(x, y), x * affine.class_gain[y][:, :, None, None])


def test_group_count_must_divide_channels():
    with pytest.raises(ValueError, match="num_groups=4 must divide num_features=6"):
        ConditionalGroupNorm2d(6, num_groups=4, cond_dim=0, n_classes=2)


def _small(**kw) -> ModelConfig:
    base = dict(arch="sngan", resolution=32, channels=1, n_classes=3, dim_z=8, G_ch=4, D_ch=4,
                init="default", num_groups=4)  # fmt: skip
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("arch,res", [("sngan", 32), ("dcgan", 28)])
def test_group_norm_switches_in_g_and_d(arch, res):
    cfg = _small(arch=arch, resolution=res)
    G0, D0 = build(cfg)
    G, D = build(dataclasses.replace(cfg, G_norm="group", D_norm="group"))
    g_kinds = [type(m) for m in G.modules() if isinstance(m, (ConditionalNorm2d, nn.GroupNorm))]
    assert ConditionalGroupNorm2d in g_kinds and ConditionalBatchNorm2d not in g_kinds
    gns = [m for m in D.modules() if isinstance(m, nn.GroupNorm)]
    assert gns and all(m.num_groups == 4 for m in gns)
    bn = nn.modules.batchnorm._BatchNorm
    assert not any(isinstance(m, bn) for m in (*G.modules(), *D.modules()))
    # G's conditional tables are unchanged; D gains 2 * C affine parameters per GN layer
    assert count_params(G) == count_params(G0)
    assert count_params(D) - count_params(D0) == sum(2 * m.num_channels for m in gns)
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    assert torch.isfinite(D(G(z, y), y)).all()
    G, D = build(dataclasses.replace(cfg, G_norm="none", D_norm="batch"))
    assert any(isinstance(m, ConditionalAffine2d) for m in G.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in D.modules())


def test_bad_group_count_and_norm_are_one_line_errors(capsys):
    with pytest.raises(ConfigError, match=r"model.num_groups.*3 groups do not divide a 16-chann"):
        build(_small(G_norm="group", num_groups=3))
    with pytest.raises(ConfigError, match=r"model.D_norm.*batch, group, weight, none"):
        build(_small(D_norm="layer"))
    assert main(["info", "--set", "model.G_norm=group", "--set", "model.num_groups=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.num_groups" in err and "\n" not in err
    assert main(["info", "--json", "--set", "model.G_norm=group", "--set", "model.D_norm=group",
                 "--set", "model.num_groups=8"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert '"G_norm": "group"' in out and '"num_groups": 8' in out
