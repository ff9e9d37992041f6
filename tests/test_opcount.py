"""The ATen op counter behind ``gankit bench``'s ``ops_per_iter`` and ``host_syncs_per_iter``."""

import torch

from gankit.training.opcount import SYNC_OPS, OpCounter


def test_counts_each_dispatched_op_forward_and_backward():
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(4, 2)
    with OpCounter() as counter:
        y = torch.mm(a, b).relu().sum()
    assert dict(counter.counts) == {"mm": 1, "relu": 1, "detach": 1, "sum": 1}  # relu saves y
    assert counter.views == 1  # detach aliases its input
    with OpCounter() as backward:
        y.backward()
    # seed, sum -> expand, relu -> threshold_backward, mm -> mm with b^T, grad into a.grad
    assert backward.counts["threshold_backward"] == 1 and backward.counts["mm"] == 1
    assert backward.total == sum(backward.counts.values())
    assert counter.top(2) == {"mm": 1, "relu": 1}


def test_counts_host_synchronisations():
    x = torch.tensor([0.0, 2.0, 0.0, 3.0])
    with OpCounter() as counter:
        x.sum().item()  # _local_scalar_dense
        torch.nonzero(x)  # output shape depends on the values
        bool(x.any())  # is_nonzero / _local_scalar_dense
        x.mul(2)  # no sync
    assert counter.host_syncs == 3
    assert {"_local_scalar_dense", "nonzero", "is_nonzero"} <= SYNC_OPS
