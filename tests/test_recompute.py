"""Activation recompute of ResNet blocks gives the plain blocks' outputs, gradients and
state (spectral-norm u/v, batch-norm running statistics), and runs only under autograd."""

import copy

import torch

import gankit.layers.recompute as recompute
from gankit.config import ModelConfig
from gankit.models import build

CFG = ModelConfig(
    arch="biggan", resolution=32, n_classes=3, dim_z=20, G_ch=4, D_ch=4, shared_dim=8, hier=True,
    G_attn=[16],
)  # fmt: skip


def _step(G, D, z, y):
    """One G-and-D forward/backward in training mode; returns (loss, grads by name)."""
    loss = D(G(z, y), y).square().mean()
    loss.backward()
    nets = {"G": G, "D": D}
    grads = {f"{k}.{n}": p.grad for k, net in nets.items() for n, p in net.named_parameters()}
    return loss.detach(), grads


def test_checkpointed_blocks_equal_plain_blocks():
    torch.manual_seed(0)
    G, D = build(CFG)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    for block in (*G2.blocks, *D2.blocks):
        block.checkpoint_activations = True
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(6, 20, generator=g), torch.randint(3, (6,), generator=g)
    loss, grads = _step(G, D, z, y)
    loss2, grads2 = _step(G2, D2, z, y)
    torch.testing.assert_close(loss2, loss, rtol=1e-6, atol=1e-7)
    assert grads.keys() == grads2.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads2[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # state advanced exactly once: SN vectors and BN running statistics/counters agree
    state, state2 = {**G.state_dict(), **D.state_dict()}, {**G2.state_dict(), **D2.state_dict()}
    for key in state:
        if key.endswith((".u", ".v", "running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(state2[key], state[key], rtol=1e-6, atol=1e-7, msg=key)


def test_recompute_runs_only_when_autograd_records(monkeypatch):
    """Each block goes through torch.utils.checkpoint exactly when gradients are recorded."""
    calls = []
    real = recompute.checkpoint

    def spy(fn, *args, **kwargs):
        calls.append(fn.__self__)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(recompute, "checkpoint", spy)
    torch.manual_seed(0)
    G, _ = build(CFG)
    for block in G.blocks:
        block.checkpoint_activations = True
    z, y = torch.randn(2, 20), torch.tensor([0, 1])
    with torch.no_grad():
        x = G(z, y)
    assert calls == [] and not x.requires_grad
    x = G(z, y)
    assert calls == list(G.blocks) and x.requires_grad
    x.sum().backward()  # recomputes through the spied calls
    assert all(p.grad is not None for p in G.blocks.parameters())
