"""Chunked batch norm equals separate training-mode forwards of nn.BatchNorm2d."""

import copy

import pytest
import torch
from torch import nn

from gankit.layers.batchnorm import BatchNorm2d, can_chunk, chunked


@pytest.mark.parametrize("grad", [True, False])  # two ways to assemble the output
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_chunked_forward_equals_separate_forwards(affine, channels_last, grad):
    torch.manual_seed(0)
    bn = BatchNorm2d(5, affine=affine, momentum=0.3)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
    ref = nn.BatchNorm2d(5, affine=affine, momentum=0.3)
    ref.load_state_dict(bn.state_dict())  # same parameters, buffers and state-dict keys
    xs = [torch.randn(3, 5, 4, 6) * (k + 1) + k for k in range(4)]
    x = torch.cat(xs)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs = [ref(xk) for xk in x.chunk(4)]  # four sequential running-statistic updates
    with chunked(bn, 4), torch.set_grad_enabled(grad):
        out = bn(x)
    assert bn.chunks == 1  # restored
    torch.testing.assert_close(out, torch.cat(outs), rtol=0, atol=0)  # the same kernels
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(ref, name), rtol=0, atol=0)


def test_chunked_gradient_equals_separate_forwards():
    torch.manual_seed(1)
    bn = BatchNorm2d(3)
    ref = copy.deepcopy(bn)
    x = torch.randn(8, 3, 2, 2, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    g = torch.randn(8, 3, 2, 2)
    with chunked(bn, 2):
        (bn(x) * g).sum().backward()
    (torch.cat([ref(part) for part in x_ref.chunk(2)]) * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)


def test_eval_mode_and_chunking_rules():
    bn = BatchNorm2d(2).eval()
    x = torch.randn(4, 2, 3, 3)
    expected = nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias)
    with chunked(bn, 2):
        torch.testing.assert_close(bn(x), expected)  # running statistics, no chunking
    assert can_chunk(nn.Sequential(BatchNorm2d(2), nn.ReLU()))
    assert not can_chunk(nn.Sequential(BatchNorm2d(2, momentum=None)))  # cumulative average
    assert not can_chunk(nn.Sequential(nn.BatchNorm2d(2)))  # torch's own batch norm


def test_uneven_sub_batches_are_an_error_that_names_the_sizes():
    bn = BatchNorm2d(2).train()
    before = {key: value.clone() for key, value in bn.state_dict().items()}
    with chunked(bn, 3), pytest.raises(ValueError, match="batch 4 is not 3 equal sub-batches"):
        bn(torch.randn(4, 2, 3, 3))
    for key, value in bn.state_dict().items():  # nothing updated
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
