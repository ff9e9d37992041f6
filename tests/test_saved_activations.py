"""SavedActivations: the bytes autograd holds for backward, against what the ops save by
their derivative formulas (``mm`` saves the input its weight gradient needs, ``relu`` its
output)."""

import torch
from torch import nn

from gankit.training.saved_activations import SavedActivations


def _nbytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


def test_counts_what_the_ops_save_once_per_storage_and_not_the_weights():
    w = nn.Parameter(torch.randn(8, 16))
    x = torch.randn(32, 8)
    with SavedActivations([nn.ParameterList([w])]) as saved:
        h = x @ w  # saves x (for dL/dw); w is left out
        z = h.relu()  # saves its output z
        q = (x.t() @ x.detach()).sum() * 0 + z.sum()  # x again and a view of it: same storage
        expected = _nbytes(x) + _nbytes(z)
        assert saved.live_bytes == expected
        q.backward()
    assert saved.peak_bytes == expected
    assert saved.live_bytes == 0 and not saved.holders  # released after the backward


def test_peak_of_successive_steps_is_the_largest_not_the_sum():
    w = nn.Parameter(torch.randn(4, 4))
    sizes = (64, 256, 16)
    with SavedActivations([nn.ParameterList([w])]) as saved:
        for n in sizes:
            x = torch.randn(n, 4)
            (x @ w).sum().backward()  # saves x only
    assert saved.peak_bytes == max(sizes) * 4 * 4  # fp32


def test_recomputation_holds_less():
    """A checkpointed block keeps only its input: the peak falls from every intermediate
    output to the one input (the recompute in backward keeps its tensors in the checkpoint's
    own store, for the moment it needs them)."""
    layers = nn.Sequential(*[nn.Sequential(nn.Linear(32, 32), nn.ReLU()) for _ in range(4)])
    x = torch.randn(64, 32, requires_grad=True)
    with SavedActivations([layers]) as plain:
        layers(x).sum().backward()
    with SavedActivations([layers]) as recomputed:
        torch.utils.checkpoint.checkpoint(layers, x, use_reentrant=False).sum().backward()
    act = 64 * 32 * 4
    # each Linear saves its input, each ReLU its output, which is the next Linear's input
    assert plain.peak_bytes == 5 * act
    assert recomputed.peak_bytes == act  # the checkpoint's input x
