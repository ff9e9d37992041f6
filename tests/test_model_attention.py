"""model.attn_type: every attention block is reachable from the config and used by the models."""

from __future__ import annotations

import pytest
import torch

from gankit.config import CHOICES, ModelConfig
from gankit.layers.attention import NonLocal, SelfAttention
from gankit.models import build, get_arch, list_archs

pytestmark = pytest.mark.usefixtures("one_thread")

TYPES = [t for t in CHOICES["model.attn_type"] if t != "auto"]


def _cfg(arch: str, attn_type: str) -> ModelConfig:
    return ModelConfig(
        arch=arch, resolution=32, channels=3, n_classes=3, dim_z=16, G_ch=8, D_ch=8,
        G_attn=[16], D_attn=[16], attn_type=attn_type, init="default",
    )  # fmt: skip


def _blocks(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if isinstance(m, (SelfAttention, NonLocal))]


@pytest.mark.parametrize("arch", list_archs())
@pytest.mark.parametrize("attn_type", TYPES)
def test_attention_type_is_built_and_used(arch, attn_type):
    """G and D hold one block of that type at 16x16, it sees (B, C, 16, 16), and the loss
    reaches its parameters (it is part of the forward pass)."""
    torch.manual_seed(0)
    G, D = build(_cfg(arch, attn_type))
    seen = []
    for net in (G, D):
        (block,) = _blocks(net)
        if attn_type.startswith("nonlocal:"):
            assert isinstance(block, NonLocal) and block.mode == attn_type.split(":")[1]
            torch.nn.init.normal_(block.w_z.weight)  # leave the identity start
        else:
            assert isinstance(block, SelfAttention) and block.pool == (attn_type == "biggan")
            block.gamma.data.fill_(0.5)
        block.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    y = torch.tensor([0, 2])
    D(G(torch.randn(2, 16), y), y).sum().backward()
    assert seen == [(16, 16), (16, 16)]
    for net in (G, D):
        assert all(
            p.grad is not None and p.grad.abs().sum() > 0 for p in _blocks(net)[0].parameters()
        )


@pytest.mark.parametrize("arch", list_archs())
def test_auto_is_the_arch_own_attention(arch):
    G, _ = build(_cfg(arch, "auto"))
    (block,) = _blocks(G)
    own = get_arch(arch).attention
    assert isinstance(block, SelfAttention) and block.pool == (own == "biggan")


def test_sagan_arch_honours_attn_type():
    """The sagan arch used to build SAGAN attention whatever the config said."""
    G, D = build(_cfg("sagan", "biggan"))
    assert all(b.pool for b in _blocks(G) + _blocks(D))


def test_nonlocal_block_starts_as_identity_in_a_model():
    torch.manual_seed(0)
    G, _ = build(_cfg("biggan", "nonlocal:embedded_gaussian"))
    (block,) = _blocks(G)
    x = torch.randn(2, block.in_channels, 16, 16)
    torch.testing.assert_close(block(x), x)
