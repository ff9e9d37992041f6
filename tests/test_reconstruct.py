"""GAN inversion: recovery of G's own images, failures reported, baseline, `analyze reconstruct`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_fixtures import saved_run, settle, tiny_cfg, tiny_data

from gankit.analysis.common import run_data, summarize
from gankit.analysis.reconstruct import analyze_reconstruct, invert
from gankit.cli import main
from gankit.errors import GankitError
from gankit.metrics import heldout_split
from gankit.models import build
from gankit.run import load_generator as load

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ("model.arch=dcgan", "model.resolution=28", "model.G_ch=4", "model.D_ch=4")
FAST = dict(steps=60, restarts=2, lr=0.3, seed=5)


@pytest.fixture(scope="module")
def G():
    """A small settled dcgan G (28x28, dim_z 8, 3 classes) whose classes differ."""
    torch.manual_seed(0)
    G, D = build(tiny_cfg(Path("unused.npz"), *SMALL).model)
    for m in G.modules():
        if hasattr(m, "class_bias"):
            m.class_bias.data.normal_()
    settle(G, D)
    return G.requires_grad_(False)


@pytest.fixture(scope="module")
def target(G):
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return z, y, G(z, y)


def test_recovers_an_image_g_made_from_a_random_start(G, target):
    z, y, x = target
    inv = invert(G, x, y, **FAST)
    assert inv.error.max() < 1e-4 and not inv.failed
    assert torch.equal(inv.labels, y)
    # the reported error is the pixel MSE in [0, 1] units of G(z_found)
    torch.testing.assert_close(inv.images, G(inv.z, y))
    torch.testing.assert_close(inv.error, ((inv.images - x) / 2).square().mean((1, 2, 3)))
    # from a random start the loss is far from 0: the optimisation did the work
    z0 = torch.randn(6, 8, generator=torch.Generator().manual_seed(7))
    assert ((G(z0, y) - x) / 2).square().mean((1, 2, 3)).min() > 100 * inv.error.max()


def test_result_does_not_depend_on_batch_size(G, target):
    z, y, x = target
    quick = {**FAST, "steps": 10}
    a = invert(G, x[:3], y[:3], **quick, batch_size=2)  # one target (two starts) per batch
    b = invert(G, x[:3], y[:3], **quick, batch_size=64)
    torch.testing.assert_close(a.z, b.z, rtol=1e-4, atol=1e-5)


def test_search_class_finds_the_class(G, target):
    z, y, x = target
    inv = invert(G, x, torch.zeros_like(y), **FAST, search_class=True)
    assert inv.labels.tolist() == y.tolist() and inv.error.max() < 1e-4


def test_impossible_targets_are_reported_not_raised(G, target):
    _, y, x = target
    bad = x[:4].clone()
    bad[0, 0, 3, 3] = float("nan")  # not an image
    bad[1] = 3.0  # out of G's tanh range [-1, 1]: MSE >= ((3 - 1) / 2)^2 = 1 in [0, 1] units
    bad[2] = torch.linspace(-1, 1, 28).expand(28, 28)  # a ramp G cannot draw exactly
    inv = invert(G, bad, y[:4], **FAST)
    assert inv.failed == {0: "non-finite target image"}
    assert torch.isnan(inv.error[0]) and inv.error[1] >= 1.0 and inv.error[2] > 1e-3
    assert inv.error[3] < 1e-4  # the possible target in the same batch is unaffected


def test_diverging_candidates_fail_alone(G, target):
    """A G that outputs NaN for class 2: those targets fail, the others are untouched."""
    _, y, x = target
    handle = G.register_forward_hook(
        lambda m, inp, out: torch.where((inp[1] == 2)[:, None, None, None], torch.nan, out)
    )
    try:
        inv = invert(G, x, y, **FAST)
    finally:
        handle.remove()
    reference = invert(G, x, y, **FAST)
    assert sorted(inv.failed) == [2, 5] and "diverged" in inv.failed[2]
    ok = y != 2
    assert torch.isnan(inv.error[~ok]).all()
    torch.testing.assert_close(inv.z[ok], reference.z[ok])


def test_feature_term_joins_the_objective(G, target):
    z, y, x = target
    w = torch.randn(28 * 28, 5, generator=torch.Generator().manual_seed(2)) / 28
    inv = invert(G, x, y, **FAST, features=lambda img: img.flatten(1) @ w, feature_weight=0.5)
    assert inv.error.max() < 1e-4  # the true z also minimises the feature term
    with pytest.raises(GankitError, match="feature_weight"):
        invert(G, x, y, feature_weight=1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, r"^steps: expected a number of Adam steps in 1\.\.100,000, got 0$"),
        ({"steps": 10**11}, r"^steps: expected a number of Adam steps in 1\.\.100,000, got 10"),
        ({"restarts": -1}, r"^restarts: expected a number of starts in 1\.\.1000, got -1$"),
        ({"restarts": 10**8}, r"^restarts: expected a number of starts in 1\.\.1000, got 1"),
        ({"lr": 0.0}, r"^lr: expected a learning rate in \(0, 10\], got 0\.0$"),
        ({"lr": 1e39}, r"^lr: expected a learning rate in \(0, 10\], got 1e\+39$"),
        ({"lr": float("nan")}, r"^lr: expected a learning rate in \(0, 10\], got nan$"),
        ({"lr": True}, r"^lr: expected a learning rate in \(0, 10\], got True$"),
        ({"feature_weight": -1.0}, r"^feature_weight: expected a number in \[0, 1000\], got -1"),
        ({"feature_weight": 1e39}, r"^feature_weight: expected a number in \[0, 1000\], got 1e"),
        ({"feature_weight": float("inf")}, r"^feature_weight: expected .*, got inf$"),
        ({"search_class": "no"}, "search_class: expected True or False, got 'no'"),
    ],
)
def test_bad_parameters(G, target, kwargs, message):
    _, y, x = target
    with pytest.raises(GankitError, match=message):
        invert(G, x, y, **kwargs)


def test_training_mode_is_an_error(G):
    try:
        with pytest.raises(GankitError, match="G: expected a network in eval mode"):
            invert(G.train(), torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    finally:
        G.eval()


def test_another_resolution_is_an_error(G):
    with pytest.raises(GankitError, match=r"expected images \(N, 1, 28, 28\)"):
        invert(G, torch.zeros(2, 1, 32, 32), torch.zeros(2, dtype=torch.long))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reconstruct")
    return saved_run(tmp / "r", tiny_cfg(tiny_data(tmp / "d.npz", n=40), *SMALL))


def test_cli_writes_json_grids_and_baseline(run, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["analyze", "reconstruct", str(run), "--n", "5", "--steps", "3", "--out", str(out)]
    assert main([*args, "--restarts", "1", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    result = json.loads((out / "reconstruct.json").read_text())
    assert printed == result
    assert (out / "reconstruct_best.png").is_file() and (out / "reconstruct_worst.png").is_file()
    # the baseline, brute force: MSE of each held-out image to its nearest same-class
    # training image, images in [0, 1] (the tiny model's 28x28 is the data's 32x32 fitted)
    data = np.load(run.parent / "d.npz")
    train, held = heldout_split(len(data["y"]))
    assert set(result["indices"]) <= set(held.tolist())
    x = _fitted(run)
    mse = [
        min(((x[i] - x[j]) ** 2).mean() for j in train if data["y"][j] == data["y"][i])
        for i in result["indices"]
    ]
    assert result["baseline"]["median"] == pytest.approx(np.median(mse), rel=1e-9)
    assert result["baseline"]["mean"] == pytest.approx(np.mean(mse), rel=1e-9)
    assert result["error"]["n"] == 5 and result["failed"] == []


def _fitted(run):
    """The run's data at the model's resolution, as floats in [0, 1]."""
    return np.asarray(run_data(load(run).config, None).x, dtype=np.float64) / 255


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "n: expected a positive integer, got 0"),
        (["--n", "9"], "n: 9 requested but the held-out split of"),
        (["--n", "2", "--steps", "0"], "--steps: expected a number of Adam steps in 1..100,000"),
        (["--n", "2", "--lr", "-1"], "gankit: error: --lr: expected a learning rate in (0, 10]"),
        (["--n", "2", "--feature-weight", "-1"], "error: --feature-weight: expected a number"),
        (["--n", "2", "--seed", str(2**70)], "gankit: error: --seed: expected an integer in"),
        (["--n", "2", "--out", " "], "gankit: error: --out: expected an output folder, got an"),
    ],
)
def test_cli_bad_values(run, tmp_path, capsys, args, message):
    assert main(["analyze", "reconstruct", str(run), "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--steps", "10000000000"],
            "--steps: expected a number of Adam steps in 1..100,000, got 10000000000",
        ),
        (
            ["--restarts", "100000000"],
            "--restarts: expected a number of starts in 1..1000, got 100000000",
        ),
        (["--lr", "1e39"], "--lr: expected a learning rate in (0, 10], got 1e+39"),
        (
            ["--feature-weight", "1e39"],
            "--feature-weight: expected a number in [0, 1000], got 1e+39",
        ),
        (["--feature-weight", "nan"], "--feature-weight: expected a number in [0, 1000], got nan"),
        (["--n", "0"], "--n: expected a positive integer, got 0"),
    ],
)
def test_cli_options_are_checked_before_loading(tmp_path, capsys, args, message):
    """A missing run: the bad option is reported, not the run (nothing was loaded)."""
    argv = ["analyze", "reconstruct", str(tmp_path / "nope"), "--out", str(tmp_path), *args]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"gankit: error: {message}\n"


def test_feature_weight_uses_the_offline_classifier(run, tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    result = analyze_reconstruct(
        run, tmp_path / "o", n=2, steps=2, restarts=1, feature_weight=0.1, device="cpu"
    )
    assert result["feature_weight"] == 0.1 and result["error"]["n"] == 2
    assert list((tmp_path / "cache" / "classifiers").glob("*.safetensors"))


def test_summaries_skip_failed_images():
    values = torch.tensor([1.0, float("nan"), 3.0, 2.0, 10.0])
    s = summarize(values)
    finite = np.array([1.0, 3.0, 2.0, 10.0])
    assert s["n"] == 4 and s["mean"] == finite.mean() and s["median"] == np.median(finite)
    assert s["q10"] == pytest.approx(np.quantile(finite, 0.1)) and (s["min"], s["max"]) == (1, 10)
    assert summarize(torch.tensor([float("nan")])) == {
        "n": 0, "mean": None, "min": None, "q10": None, "median": None, "q90": None, "max": None
    }  # fmt: skip
