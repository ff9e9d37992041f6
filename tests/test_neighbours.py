"""Nearest neighbours: exact search vs brute force, memorisation ratios, `analyze neighbours`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from training_fixtures import saved_run, tiny_cfg, tiny_data

import gankit.analysis.neighbours as neighbours
from gankit.analysis.common import run_data
from gankit.analysis.neighbours import analyze_neighbours, memorisation_ratios, nearest
from gankit.cli import main
from gankit.data import to_float
from gankit.errors import GankitError, ParameterError
from gankit.metrics import heldout_split
from gankit.run import load_generator as load

pytestmark = pytest.mark.usefixtures("one_thread")


def _brute_force(q, r, k):
    """Python loops: every distance, sorted."""
    out_d, out_i = [], []
    for a in q.tolist():
        dists = [(math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b))), j) for j, b in enumerate(r)]
        dists.sort()
        out_d.append([d for d, _ in dists[:k]])
        out_i.append([j for _, j in dists[:k]])
    return torch.tensor(out_d, dtype=torch.float64), torch.tensor(out_i)


@pytest.mark.parametrize("chunked", [False, True])
def test_nearest_equals_brute_force(chunked):
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(7, 5, generator=g), torch.randn(50, 5, generator=g)
    reference = (r[s : s + 13] for s in range(0, 50, 13)) if chunked else r
    d, i = nearest(q, reference, k=3, query_batch=3)
    want_d, want_i = _brute_force(q, r.tolist(), 3)
    assert torch.equal(i, want_i)
    torch.testing.assert_close(d, want_d, rtol=1e-12, atol=1e-12)


def test_nearest_of_a_copy_is_itself_at_distance_zero():
    r = torch.rand(20, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    d, i = nearest(r[[4, 11]], r)
    assert i[:, 0].tolist() == [4, 11] and d.abs().max() < 1e-6


def test_nearest_k_larger_than_reference():
    with pytest.raises(GankitError, match="k: 4 neighbours requested from 3 reference rows"):
        nearest(torch.zeros(1, 2), torch.zeros(3, 2), k=4)


@pytest.mark.parametrize(
    "queries, reference, message",
    [
        ([[0.0, 1.0]], torch.zeros(3, 2), r"queries: expected a tensor \(Q, F\), got list"),
        (torch.zeros(2), torch.zeros(3, 2), r"queries: .* got shape \(2,\)"),
        (torch.zeros(1, 2), 3, r"reference: expected a tensor \(M, F\) or chunks of one, got int"),
        (torch.zeros(1, 2), [torch.zeros(3, 2), "x"], "reference: expected a tensor .* got str"),
        (torch.zeros(1, 2), torch.zeros(3, 5), "reference: expected 2 features per row, got 5"),
    ],
)
def test_nearest_names_bad_input(queries, reference, message):
    with pytest.raises(ParameterError, match=message):
        nearest(queries, reference)


def test_memorisation_ratio_is_distance_over_heldout_class_median():
    d_h, y_h = torch.tensor([1.0, 3.0, 2.0, 10.0]), torch.tensor([0, 0, 0, 1])
    r_s, r_h = memorisation_ratios(torch.tensor([1.0, 5.0, 4.0]), torch.tensor([0, 1, 2]), d_h, y_h)
    # class 0: median 2; class 1: 10; class 2 has no held-out image: overall median (2 + 3) / 2
    torch.testing.assert_close(r_s, torch.tensor([0.5, 0.5, 1.6]))
    torch.testing.assert_close(r_h, torch.tensor([0.5, 1.5, 1.0, 1.0]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("neighbours")
    return saved_run(tmp / "r", tiny_cfg(tiny_data(tmp / "d.npz", n=30)))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))


def test_cli_json_and_grids(run, tmp_path, capsys, cache):
    out = tmp_path / "o"
    args = ["analyze", "neighbours", str(run), "--n", "7", "--k", "2", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((out / "neighbours.json").read_text())
    assert {f.rsplit("/", 1)[-1] for f in result["files"]} == {
        "neighbours.png", "neighbours_closest.png", "neighbours.json"
    }  # fmt: skip
    # held-out images' nearest training images, brute force in numpy on [0, 1] pixels
    x = np.asarray(run_data(load(run).config, None).x, dtype=np.float64) / 255
    train, held = heldout_split(len(x))
    d_h = [min(np.sqrt(((x[i] - x[j]) ** 2).sum()) for j in train) for i in held]
    assert result["pixel"]["heldout_to_train"]["median"] == pytest.approx(np.median(d_h))
    assert result["pixel"]["heldout_to_train"]["q10"] == pytest.approx(np.quantile(d_h, 0.1))
    assert result["n_samples"] == 7 and result["pixel"]["sample_to_train"]["n"] == 7


class CopyingG(torch.nn.Module):
    """A "generator" that returns training images in turn: a perfect memoriser."""

    def __init__(self, images, config):
        super().__init__()
        self.bank = to_float(images)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config, self.dim_z, self.n_classes = config, config.model.dim_z, 3
        self.taken = 0

    def forward(self, z, y):
        out = self.bank[self.taken : self.taken + len(z)]
        self.taken += len(z)
        return out


def test_copies_of_training_images_have_ratio_zero(run, tmp_path, monkeypatch, cache):
    cfg = load(run).config
    ds = run_data(cfg, None)
    train, _ = heldout_split(len(ds))
    fake = CopyingG(torch.as_tensor(np.asarray(ds.x[train[:6]])), cfg).eval()
    monkeypatch.setattr(neighbours, "load", lambda source, device: fake)
    result = analyze_neighbours(run, tmp_path / "o", n=6, k=1, device="cpu")
    assert result["pixel"]["ratio"]["q90"] < 1e-6
    assert result["pixel"]["frac_ratio_below_half"] == 1.0
    assert result["features"]["ratio"]["q90"] < 1e-4
    assert result["pixel"]["heldout_frac_ratio_below_half"] < 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "gankit: error: --n: expected a number of samples in 1..1000000, got 0"),
        (["--n", "2", "--k", "0"], "gankit: error: --k: expected a positive integer, got 0"),
        (["--n", "2", "--k", "30"], "--k: 30 exceeds the 24 images of the training split"),
        (["--n", "2", "--seed", "-1"], "gankit: error: --seed: expected an integer in 0.."),
    ],
)
def test_cli_bad_values(run, tmp_path, capsys, cache, args, message):
    assert main(["analyze", "neighbours", str(run), "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_data_too_small_for_a_held_out_split(run, tmp_path, capsys, cache):
    """Two images leave the held-out split empty: one line (was a ValueError from numpy)."""
    tiny_data(tmp_path / "two.npz", n=2)
    args = ["analyze", "neighbours", str(run), "--out", str(tmp_path), "--n", "2", "--k", "1"]
    assert main([*args, "--data", str(tmp_path / "two.npz")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 images, too few for a held-out split" in err and err.count("\n") == 1


def test_sample_count_is_bounded_in_the_library(tmp_path):
    with pytest.raises(
        ParameterError, match=r"^n: expected a number of samples in 1\.\.1000000, got 10000001$"
    ):
        analyze_neighbours(tmp_path / "nope", tmp_path, n=10_000_001)
