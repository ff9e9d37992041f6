"""Singular-value monitoring against known spectra and torch.linalg.svdvals."""

import numpy as np
import pytest
import torch
from torch import nn

from gankit.analysis import pick_layers, spectrum_report, top_singular_values
from gankit.errors import GankitError, ParameterError
from gankit.layers.spectral_norm import sn_conv2d, sn_embedding, sn_linear


def test_diagonal_matrix_known_values():
    w = torch.diag(torch.tensor([0.5, 4.0, -3.0, 1.0]))  # singular values |d| sorted
    torch.testing.assert_close(top_singular_values(w), torch.tensor([4.0, 3.0, 1.0]))
    torch.testing.assert_close(top_singular_values(w, k=1), torch.tensor([4.0]))


def test_conv_weight_reshaped_to_out_by_fan_in():
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3, dtype=torch.float64)
    expected = torch.linalg.svdvals(w.reshape(6, 27))[:3].float()
    got = top_singular_values(w)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_thin_matrix_zero_padded_and_bad_input():
    torch.testing.assert_close(
        top_singular_values(torch.tensor([[3.0, 4.0]])), torch.tensor([5.0, 0.0, 0.0])
    )
    with pytest.raises(ParameterError, match=r"weight: expected a tensor .* got shape \(3,\)"):
        top_singular_values(torch.ones(3))
    with pytest.raises(ParameterError, match="weight: expected a tensor .* got ndarray"):
        top_singular_values(np.ones((3, 3)))
    with pytest.raises(ParameterError, match="k: expected a positive integer, got 0"):
        top_singular_values(torch.ones(3, 3), k=0)
    with pytest.raises(ParameterError, match="k: expected a positive integer, got 2.0"):
        top_singular_values(torch.ones(3, 3), k=2.0)


def test_no_grad_and_bf16():
    w = torch.randn(4, 5, requires_grad=True)
    assert not top_singular_values(w).requires_grad
    got = top_singular_values(w.detach().bfloat16())
    torch.testing.assert_close(
        got, torch.linalg.svdvals(w.detach().bfloat16().float())[:3], rtol=0, atol=0
    )


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = sn_embedding(10, 8)
        self.blocks = nn.Sequential(sn_conv2d(3, 8, 3), nn.BatchNorm2d(8), sn_conv2d(8, 8, 3))
        self.mid = nn.Linear(8, 8)
        self.out = sn_linear(8, 1)


def test_spectrum_report_uses_raw_spectrally_normalised_weights():
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.blocks[0].parametrizations.weight.original.mul_(7.0)
    rep = spectrum_report(net)
    assert list(rep) == [
        "embed.weight",
        "blocks.0.weight",
        "blocks.2.weight",
        "mid.weight",
        "out.weight",
    ]
    raw = net.blocks[0].parametrizations.weight.original
    assert rep["blocks.0.weight"] == pytest.approx(
        torch.linalg.svdvals(raw.detach().flatten(1))[:3].tolist(), rel=1e-5
    )
    assert rep["out.weight"][1:] == [0.0, 0.0]  # (1, 8): a single singular value
    sub = spectrum_report(net, k=2, names=["mid.weight"])
    assert list(sub) == ["mid.weight"] and len(sub["mid.weight"]) == 2
    with pytest.raises(GankitError, match="nope.weight"):
        spectrum_report(net, names=["nope.weight"])


def test_pick_layers_first_last_evenly_spaced():
    net = nn.Sequential(*[nn.Linear(4, 4) for _ in range(7)], nn.Embedding(3, 4))
    assert pick_layers(net, 0) == []
    assert pick_layers(net, 1) == ["0.weight"]
    assert pick_layers(net, 2) == ["0.weight", "6.weight"]
    assert pick_layers(net, 4) == ["0.weight", "2.weight", "4.weight", "6.weight"]
    assert pick_layers(net, 100) == [f"{i}.weight" for i in range(7)]  # embedding excluded
    assert set(spectrum_report(net, names=pick_layers(net, 3))) == {
        "0.weight",
        "3.weight",
        "6.weight",
    }
    with pytest.raises(GankitError, match="train.sigma_layers"):
        pick_layers(net, -1)
