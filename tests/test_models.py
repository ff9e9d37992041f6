"""Models: BigGAN-PyTorch parameter counts, block equations, projection D, hierarchical z,
truncated sampling, initialisation and configuration errors."""

import contextlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gankit.config import CHOICES, ConfigError, ModelConfig, from_dict, load_preset
from gankit.errors import GankitError, ParameterError
from gankit.layers.init import init_weights, raw_weight
from gankit.layers.spectral_norm import sn_conv2d, sn_linear, spectral_norms
from gankit.layers.spectral_norm_batched import BatchedSpectralNorm
from gankit.models import build, count_params, get_arch, latent, list_archs, registry, sample_z
from gankit.models.biggan import BIGGAN_TABLES
from gankit.models.blocks import DBlock, GBlock
from gankit.models.dcgan import DCGAN_LAYOUTS
from gankit.models.resnet import ResNetGenerator
from gankit.models.sngan import SNGAN_TABLES
from gankit.models.style import NetStyle

# ---------------------------------------------------------------------------------- helpers


def small(arch: str, resolution: int, **kw) -> ModelConfig:
    """A tiny config of ``arch`` that builds and runs in milliseconds."""
    base = dict(arch=arch, resolution=resolution, channels=3, n_classes=5, dim_z=16, G_ch=4,
                D_ch=4, init="default")  # fmt: skip
    return ModelConfig(**{**base, **kw})


SUPPORTED = {arch: get_arch(arch).resolutions for arch in list_archs()}
TABLES = {"biggan": BIGGAN_TABLES, "sagan": BIGGAN_TABLES, "sngan": SNGAN_TABLES}
MATRIX = {**{a: tuple(t) for a, t in TABLES.items()}, "dcgan": tuple(DCGAN_LAYOUTS)}
"""The architecture matrix: every registered arch at every size it has a table/layout for."""

# ------------------------------------------------------------------ anchor parameter counts


def test_registry_lists_all_archs_and_their_tables():
    assert list_archs() == sorted(CHOICES["model.arch"])
    assert SUPPORTED["dcgan"] == tuple(DCGAN_LAYOUTS) == (28, 32, 48, 64)
    assert tuple(BIGGAN_TABLES) == tuple(SNGAN_TABLES) == (32, 64, 128, 256)
    # ResNet archs: every multiple of 8 from 32 to 256
    for arch in TABLES:
        assert SUPPORTED[arch] == tuple(range(32, 257, 8))


def test_biggan_cifar_parameter_counts_equal_biggan_pytorch():
    G, D = build(load_preset("biggan-cifar").model)
    assert (count_params(G), count_params(D)) == (4_304_387, 4_207_361)


def test_biggan_attention_adds_biggan_attention_parameters():
    cfg = small("biggan", 32, G_ch=8)
    G0, _ = build(cfg)
    G1, _ = build(small("biggan", 32, G_ch=8, G_attn=[16]))
    c = 32  # G_ch * 4 at 16x16
    assert count_params(G1) - count_params(G0) == 2 * c * c // 8 + 2 * c * c // 2 + 1


# ----------------------------------------------------------- every arch and resolution runs


@pytest.mark.parametrize(
    "arch,res", [(a, r) for a, rs in MATRIX.items() for r in rs], ids=lambda v: str(v)
)
def test_generator_and_discriminator_shapes(arch, res):
    channels = 1 if res in (28, 48) else 3
    # attention on a small feature map of G and of D (it costs O(N^2) at larger ones)
    kw = dict(channels=channels, G_attn=[min(res // 2, 32)], D_attn=[min(res // 4, 16)])
    if arch == "biggan":
        n_blocks = int(math.log2(res)) - 2  # from 4x4, one G block per doubling
        kw.update(shared_dim=8, hier=True, dim_z=4 * (n_blocks + 1))
    G, D = build(small(arch, res, **kw))
    dim_z = kw.get("dim_z", 16)
    assert (G.dim_z, G.n_classes, G.resolution, G.channels) == (dim_z, 5, res, channels)
    z, y = sample_z(2, G.dim_z), torch.tensor([0, 4])
    with torch.no_grad():
        x = G(z, y)
        logits = D(x, y)
    assert x.shape == (2, channels, res, res)
    assert x.abs().max() <= 1
    assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_unconditional_single_class():
    G, D = build(small("sngan", 32, n_classes=1))
    y = torch.zeros(3, dtype=torch.long)
    assert D(G(sample_z(3, 16), y), y).shape == (3,)


def test_spectral_norm_placement():
    G, D = build(small("biggan", 32, shared_dim=8))
    n_weights = lambda m: sum(  # noqa: E731
        isinstance(x, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)) for x in m.modules()
    )
    # every D weight; every G weight except BigGAN's un-normalised shared embedding
    assert len(spectral_norms(D)) == n_weights(D)
    assert len(spectral_norms(G)) == n_weights(G) - 1
    G, D = build(small("sngan", 32, G_sn=False))
    assert spectral_norms(G) == [] and len(spectral_norms(D)) == n_weights(D)


# --------------------------------------------------------------------- block equations


def test_gblock_equals_biggan_order_with_upsampled_skip():
    """h = conv2(relu(bn2(conv1(up(relu(bn1(x))))))) + conv_sc(up(x)) (BigGAN Fig. 15b)."""
    torch.manual_seed(0)
    G, _ = build(small("biggan", 32, G_sn=False))
    block = G.blocks[0]
    x, y = torch.randn(3, 16, 4, 4), torch.tensor([0, 1, 2])
    up = lambda t: t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # noqa: E731
    h = up(F.relu(block.bn1(x, y)))
    h = block.conv2(F.relu(block.bn2(block.conv1(h), y)))
    torch.testing.assert_close(block(x, y), h + block.conv_sc(up(x)))
    assert isinstance(block, GBlock)


@pytest.mark.parametrize("pre", [False, True])
def test_dblock_equals_reference_order(pre):
    """h = pool(conv2(relu(conv1(relu?(x))))) + pool(conv_sc(x)) (BigGAN Fig. 15c)."""
    torch.manual_seed(1)
    plain = NetStyle(net="D", sn=False, norm="none")
    block = DBlock(3, 6, 6, downsample=True, preactivation=pre, style=plain)
    x = torch.randn(2, 3, 8, 8)
    h = F.relu(x) if pre else x
    h = F.avg_pool2d(block.conv2(F.relu(block.conv1(h))), 2)
    torch.testing.assert_close(block(x), h + F.avg_pool2d(block.conv_sc(x), 2))
    same = DBlock(4, 4, 4, downsample=False, preactivation=True, style=plain)
    assert same.conv_sc is None  # identity shortcut


# ---------------------------------------------------------------------- projection D


@pytest.mark.parametrize("arch", ["biggan", "dcgan"])
def test_projection_discriminator_by_hand(arch):
    torch.manual_seed(2)
    _, D = build(small(arch, 32, aux_classifier=True))
    D.eval()  # freeze the SN power iteration so the weights read below are the ones used
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 3, 1])
    h = D.features(x)
    psi = h @ D.psi.weight.T + D.psi.bias
    proj = torch.einsum("bc,bc->b", D.embed.weight[y], h)
    logits, class_logits = D(x, y, return_aux=True)
    torch.testing.assert_close(D(x, y), psi[:, 0] + proj)
    torch.testing.assert_close(logits, psi[:, 0] + proj)
    torch.testing.assert_close(class_logits, h @ D.aux.weight.T + D.aux.bias)
    assert class_logits.shape == (4, 5)


def test_return_aux_without_head_is_an_error():
    _, D = build(small("sngan", 32))
    with pytest.raises(GankitError, match="aux_classifier"):
        D(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long), return_aux=True)


# ------------------------------------------------------------------------ hierarchical z


def test_hierarchical_z_chunks_reach_each_block():
    torch.manual_seed(3)
    G, _ = build(small("biggan", 32, shared_dim=6, hier=True, dim_z=12))  # 3 blocks + 1 = 4
    assert isinstance(G, ResNetGenerator) and G.chunk == 3 and G.cond_dim == 9
    z, y = torch.randn(2, 12), torch.tensor([1, 4])
    e = G.shared.weight[y]
    seen = {}
    for k, block in enumerate(G.blocks):
        for name in ("bn1", "bn2"):
            getattr(block, name).register_forward_pre_hook(
                lambda m, args, k=k, name=name: seen.__setitem__((k, name), args[1])
            )
    G.linear.register_forward_pre_hook(lambda m, args: seen.__setitem__("linear", args[0]))
    G(z, y)
    torch.testing.assert_close(seen["linear"], z[:, :3])
    for k in range(3):
        expect = torch.cat([e, z[:, 3 * (k + 1) : 3 * (k + 2)]], dim=1)
        torch.testing.assert_close(seen[(k, "bn1")], expect)
        torch.testing.assert_close(seen[(k, "bn2")], expect)
    # shared CBN maps: bias-free linears from cond_dim, as BigGAN-PyTorch (input 128 + 20 at 128px)
    assert G.blocks[0].bn1.gain.weight.shape == (G.blocks[0].bn1.num_features, 9)


def test_shared_embedding_without_hier_feeds_every_block():
    G, _ = build(small("biggan", 32, shared_dim=6))
    z, y = torch.randn(2, 16), torch.tensor([0, 2])
    z0, conds = G.conditions(z, y)
    assert z0 is z and len(conds) == 3
    for c in conds:
        torch.testing.assert_close(c, G.shared.weight[y])


# ------------------------------------------------------------------------------ sample_z


def test_truncation_bound_and_truncated_normal_variance():
    g = torch.Generator().manual_seed(0)
    tau = 0.5
    z = sample_z(2000, 64, truncation=tau, generator=g)
    assert z.shape == (2000, 64) and z.abs().max() <= tau
    # variance of N(0,1) truncated to [-tau, tau]: 1 - 2 tau phi(tau) / (2 Phi(tau) - 1)
    phi = math.exp(-(tau**2) / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + math.erf(tau / math.sqrt(2)))
    var = 1 - 2 * tau * phi / (2 * Phi - 1)
    assert abs(z.var().item() - var) < 0.01 * var * 5
    assert abs(z.mean().item()) < 0.01


def test_untruncated_is_standard_normal_and_seeded():
    z = sample_z(4000, 50, generator=torch.Generator().manual_seed(1))
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert z.abs().max() > 3  # not truncated
    again = sample_z(4000, 50, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, again, rtol=0, atol=0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(GankitError, match="^truncation: expected 0 .off. or a finite number"):
            sample_z(2, 3, truncation=bad)


@pytest.mark.parametrize("tau", [1e-6, 0.5, 2.0])
def test_truncated_by_inversion_after_the_rounds_run_out(tau, monkeypatch):
    """Past ``MAX_ROUNDS`` (here 0) the entries still outside are drawn by inverting the CDF:
    inside ``[-tau, tau]``, mean 0 and the truncated normal's variance (closed form), without
    an endless loop for a tiny ``tau``."""
    monkeypatch.setattr(latent, "MAX_ROUNDS", 0)
    z = sample_z(500, 64, truncation=tau, generator=torch.Generator().manual_seed(2))
    assert z.abs().max() <= tau
    phi = math.exp(-(tau**2) / 2) / math.sqrt(2 * math.pi)
    var = 1 - 2 * tau * phi / math.erf(tau / math.sqrt(2))  # 2 Phi(tau) - 1 = erf(tau / sqrt 2)
    var = var if tau > 1e-3 else tau**2 / 3  # (uniform on [-tau, tau] in the limit)
    assert abs(z.var().item() / var - 1) < 0.03 and abs(z.mean().item()) < 0.02 * math.sqrt(var)


# ---------------------------------------------------------------------------------- init


def test_orthogonal_init_of_raw_weight_under_spectral_norm():
    torch.manual_seed(4)
    conv = init_weights(sn_conv2d(8, 6, 3), "ortho")  # (6, 72): rows orthonormal
    w = raw_weight(conv).detach().flatten(1)
    assert raw_weight(conv) is conv.parametrizations.weight.original
    torch.testing.assert_close(w @ w.T, torch.eye(6), rtol=0, atol=1e-5)
    tall = init_weights(sn_linear(3, 10), "ortho")  # (10, 3): columns orthonormal
    w = raw_weight(tall).detach()
    torch.testing.assert_close(w.T @ w, torch.eye(3), rtol=0, atol=1e-5)


def test_normal_and_xavier_init():
    torch.manual_seed(5)
    lin = init_weights(torch.nn.Linear(400, 300), "normal")
    assert abs(lin.weight.std().item() - 0.02) < 0.001 and abs(lin.weight.mean().item()) < 0.001
    lin = init_weights(torch.nn.Linear(400, 300), "xavier")
    bound = math.sqrt(6 / (400 + 300))
    assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.99 * bound
    with pytest.raises(ParameterError, match="^style: unknown init 'glorot'.*ortho, normal"):
        init_weights(lin, "glorot")


def test_build_applies_init_and_keeps_cbn_tables():
    G, D = build(small("sngan", 32, init="ortho", G_sn=False))
    w = G.blocks[1].conv1.weight.detach().flatten(1)  # (16, 144)
    torch.testing.assert_close(w @ w.T, torch.eye(16), rtol=0, atol=1e-5)
    assert torch.equal(G.blocks[0].bn1.class_gain, torch.ones(5, 16))
    assert torch.equal(G.blocks[0].bn1.class_bias, torch.zeros(5, 16))


# ------------------------------------------------------------------------ config errors


@pytest.mark.parametrize(
    "cfg,match",
    [
        (small("nope", 32), r"model.arch.*'nope'.*biggan, dcgan, sagan, sngan"),
        (small("biggan", 36), r"model.resolution.*'biggan'.*36.*32, 40, \.\.\., 256 \(every "),
        (small("sagan", 264), r"model.resolution.*'sagan'.*264.*multiple of 8"),
        (small("dcgan", 128), r"model.resolution.*'dcgan'.*28, 32, 48, 64"),
        (small("biggan", 32, G_attn=[64]), r"model.G_attn.*\[64\].*\[8, 16, 32\]"),
        (small("sngan", 32, D_attn=[32]), r"model.D_attn.*\[32\].*\[8, 16\]"),
        (small("biggan", 32, hier=True), r"model.hier.*shared_dim"),
        (small("biggan", 32, hier=True, shared_dim=4, dim_z=10), r"model.dim_z.*10.*multiple of 4"),
        (small("sagan", 32, shared_dim=8), r"'sagan'.*per-class"),
        (small("biggan", 32, G_ch=0), r"model.G_ch.*1\.\.512.*channel multiplier"),
        (small("biggan", 32, init="glorot"), r"model.init.*'glorot'.*ortho, normal"),
    ],
)
def test_bad_model_config_names_the_key(cfg, match):
    with pytest.raises(ConfigError, match=match) as err:
        build(cfg)
    assert "\n" not in str(err.value)


def test_networks_too_big_for_memory_are_a_config_error(monkeypatch):
    """An allocator failure while the layers are built is a one-line ConfigError naming the
    size keys, not torch's traceback (a size within the bounds can still exceed the memory)."""

    def factory(cfg, attention):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] can't allocate memory: 5 TB")

    monkeypatch.setitem(registry._ARCHS, "biggan", replace(get_arch("biggan"), factory=factory))
    with pytest.raises(ConfigError, match=r"do not fit in memory \(model.G_ch=64, ") as err:
        build(small("biggan", 32, G_ch=64))
    assert "\n" not in str(err.value)


def test_attention_channel_mismatch_names_the_key():
    with pytest.raises(ConfigError, match=r"model.G_attn.*4 channels.*model.attn_k=8"):
        build(small("biggan", 32, G_ch=1, G_attn=[16]))


# ------------------------------ peer check: BigGAN-PyTorch's outputs with the same weights

GOLDEN = np.load(Path(__file__).parent / "golden" / "biggan_golden.npz")


def _golden_models(case: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """gankit's biggan G and D of ``case`` with the weights BigGAN-PyTorch ran with."""
    stored = {"model": json.loads(str(GOLDEN[f"{case}/config"]))}  # a stored (legacy) table
    G, D = build(from_dict(stored).model, init=False)
    for prefix, net in (("G", G), ("D", D)):
        keys = [k for k in GOLDEN.files if k.startswith(f"{case}/{prefix}/")]
        state = {k.split("/", 2)[2]: torch.from_numpy(GOLDEN[k]) for k in keys}
        net.load_state_dict(state)  # strict: gankit's state-dict layout, key for key
    return G, D


@pytest.mark.parametrize("case", ["cifar", "shared_hier"])
@pytest.mark.parametrize("batched_sn", [False, True])
def test_biggan_matches_biggan_pytorch_outputs(case, batched_sn):
    """G(z, y) and D(G(z, y), y) in training mode (batch statistics, one power-iteration step)
    equal BigGAN-PyTorch's on the same weights (tests/golden/make_biggan_golden.py made the
    numbers from the peer's sources), per-layer and with batched spectral norm."""
    G, D = _golden_models(case)
    z, y = (torch.from_numpy(GOLDEN[f"{case}/{k}"]) for k in ("z", "y"))
    x_peer = torch.from_numpy(GOLDEN[f"{case}/G_out"])
    ctx_G, ctx_D = (
        (BatchedSpectralNorm(G).applied(), BatchedSpectralNorm(D).applied())
        if batched_sn
        else (contextlib.nullcontext(), contextlib.nullcontext())
    )
    with torch.no_grad(), ctx_G, ctx_D:
        torch.testing.assert_close(G(z, y), x_peer, rtol=1e-4, atol=1e-4)
        d_peer = torch.from_numpy(GOLDEN[f"{case}/D_out"])
        torch.testing.assert_close(D(x_peer, y), d_peer, rtol=1e-4, atol=1e-4)
