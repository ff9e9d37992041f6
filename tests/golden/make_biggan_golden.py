"""Generate ``biggan_golden.npz``: BigGAN-PyTorch's outputs with weights in gankit's layout.

Run once, outside CI, with the peer's sources unpacked outside the repo (nothing of them is
stored here, only the numbers they produce)::

    git --git-dir=<ajbrock/BigGAN-PyTorch clone>/.git archive HEAD | tar x -C /tmp/biggan
    BIGGAN_PYTORCH=/tmp/biggan PYTHONPATH=/work/shared/anchor/stubs:src \\
        .venv/bin/python tests/golden/make_biggan_golden.py

For each case of :data:`CASES` (32x32, small widths) it builds the peer's ``Generator`` and
``Discriminator`` and gankit's ``biggan`` pair, copies the peer's weights and spectral-norm
vectors ``u`` into gankit's layers, and runs both peers in training mode (batch statistics,
one power-iteration step) on seeded ``z``, ``y``. Stored per case: gankit's model config
(JSON), gankit's G and D state dicts, ``z``, ``y``, the peer's ``G(z, y)`` and its
``D(G(z, y), y)``. ``tests/test_models.py`` loads the state dicts into gankit's models and
compares their outputs with those numbers.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gankit.config import ModelConfig
from gankit.layers.init import raw_weight
from gankit.models import build

GOLDEN = Path(__file__).with_name("biggan_golden.npz")
SEED = 0
BATCH = 6

CASES = {
    # per-class conditional BN (the CIFAR workload's conditioning), self-attention at 16x16
    "cifar": dict(n_classes=5, dim_z=16, shared_dim=0, hier=False, G_attn=[16]),
    # BigGAN's shared class embedding + hierarchical z (the ImageNet workloads' conditioning)
    "shared_hier": dict(n_classes=5, dim_z=20, shared_dim=8, hier=True, G_attn=[]),
}
WIDTH = 4  # G_ch = D_ch


def model_config(case: str) -> ModelConfig:
    """gankit's config of ``case``: 32x32 biggan with the peer's SN epsilon."""
    kw = CASES[case]
    return ModelConfig(arch="biggan", resolution=32, channels=3, G_ch=WIDTH, D_ch=WIDTH,
                       D_attn=[], sn_eps=1e-6, init="default", **kw)  # fmt: skip


def _copy(theirs: nn.Module, ours: nn.Module) -> None:
    """Raw weight, bias and SN vector u of one peer layer into ours (the same power iteration:
    v = normalize(W^T u), u = normalize(W v), sigma = u^T W v)."""
    with torch.no_grad():
        raw_weight(ours).copy_(theirs.weight)
        if isinstance(getattr(theirs, "bias", None), torch.Tensor):
            ours.bias.copy_(theirs.bias)
        if hasattr(ours, "parametrizations"):
            ours.parametrizations.weight[0].u.copy_(theirs.u0[0])


def _copy_attention(theirs: nn.Module, ours: nn.Module) -> None:
    for a, b in [("theta", "query"), ("phi", "key"), ("g", "value"), ("o", "out")]:
        _copy(getattr(theirs, a), getattr(ours, b))
    with torch.no_grad():  # the peer starts gamma at 0: make attention reach the output
        theirs.gamma.fill_(0.7)
        ours.gamma.fill_(0.7)


def align(tG: nn.Module, tD: nn.Module, G: nn.Module, D: nn.Module, shared: bool) -> None:
    """Copy every peer weight into gankit's G and D (gankit's layer names and layout)."""
    for a, b in [(tG.linear, G.linear), (tG.output_layer[2], G.out_conv)]:
        _copy(a, b)
    with torch.no_grad():
        G.out_bn.weight.copy_(tG.output_layer[0].gain)
        G.out_bn.bias.copy_(tG.output_layer[0].bias)
        if shared:
            G.shared.weight.copy_(tG.shared.weight)
    for (tb, *t_attn), ob, o_attn in zip(tG.blocks, G.blocks, G.attn):
        for name in ("conv1", "conv2", "conv_sc"):
            _copy(getattr(tb, name), getattr(ob, name))
        for name in ("bn1", "bn2"):
            t_bn, o_bn = getattr(tb, name), getattr(ob, name)
            if shared:
                _copy(t_bn.gain, o_bn.gain)
                _copy(t_bn.bias, o_bn.bias)
            else:  # the peer's gain is 1 + embedding(y)
                with torch.no_grad():
                    o_bn.class_gain.copy_(1 + t_bn.gain.weight)
                    o_bn.class_bias.copy_(t_bn.bias.weight)
        if t_attn:
            _copy_attention(t_attn[0], o_attn)
    for (tb, *t_attn), ob in zip(tD.blocks, D.blocks):
        assert not t_attn and tb.learnable_sc == (ob.conv_sc is not None)
        for name in ("conv1", "conv2") + (("conv_sc",) if tb.learnable_sc else ()):
            _copy(getattr(tb, name), getattr(ob, name))
    _copy(tD.linear, D.psi)
    _copy(tD.embed, D.embed)


def make_case(BigGAN, case: str) -> dict[str, np.ndarray]:  # noqa: N803 - the peer's module
    cfg = model_config(case)
    attn = "_".join(map(str, cfg.G_attn)) or "0"
    kw = dict(resolution=32, n_classes=cfg.n_classes, dim_z=cfg.dim_z, SN_eps=1e-6,
              skip_init=True, no_optim=True)  # fmt: skip
    torch.manual_seed(SEED)
    tG = BigGAN.Generator(G_ch=WIDTH, G_attn=attn, G_shared=cfg.shared_dim > 0,
                          shared_dim=cfg.shared_dim, hier=cfg.hier, **kw)  # fmt: skip
    tD = BigGAN.Discriminator(D_ch=WIDTH, D_attn="0", **kw)
    G, D = build(cfg, init=False)
    align(tG, tD, G, D, cfg.shared_dim > 0)
    state = {f"G/{k}": v.clone() for k, v in G.state_dict().items()}
    state.update({f"D/{k}": v.clone() for k, v in D.state_dict().items()})
    g = torch.Generator().manual_seed(SEED + 1)
    z = torch.randn(BATCH, cfg.dim_z, generator=g)
    y = torch.randint(0, cfg.n_classes, (BATCH,), generator=g)
    with torch.no_grad():
        x = tG(z, tG.shared(y))  # training mode: batch statistics, one power-iteration step
        d = tD(x, y)[:, 0]
    out = {f"{case}/{k}": v.numpy() for k, v in state.items()}
    out.update({f"{case}/z": z.numpy(), f"{case}/y": y.numpy(), f"{case}/G_out": x.numpy(),
                f"{case}/D_out": d.numpy(),
                f"{case}/config": np.array(json.dumps(dataclasses.asdict(cfg)))})  # fmt: skip
    return out


def main() -> None:
    sys.path.insert(0, os.environ["BIGGAN_PYTORCH"])
    BigGAN = importlib.import_module("BigGAN")  # noqa: N806 - the peer's module name
    arrays: dict[str, np.ndarray] = {}
    for case in CASES:
        arrays.update(make_case(BigGAN, case))
    np.savez_compressed(GOLDEN, **arrays)
    print(f"{GOLDEN}: {GOLDEN.stat().st_size / 1024:.0f} KiB, {len(arrays)} arrays")


if __name__ == "__main__":
    main()
