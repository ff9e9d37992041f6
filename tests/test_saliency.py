"""Saliency maps of D (Simonyan et al. 2014, Sec. 3.1), load_discriminator, `analyze saliency`."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from training_fixtures import saved_run, settle, tiny_cfg, tiny_data

from gankit.analysis.common import check_eval
from gankit.analysis.saliency import analyze_saliency, saliency_maps
from gankit.cli import main
from gankit.data import to_float
from gankit.errors import GankitError
from gankit.models import ProjectionDiscriminator, build
from gankit.run import load_discriminator

pytestmark = pytest.mark.usefixtures("one_thread")

AUX = ("model.aux_classifier=true", "train.aux_weight=0.1")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saliency")
    return saved_run(tmp / "r", tiny_cfg(tiny_data(tmp / "d.npz"), *AUX))


@functools.cache
def _D(*overrides):
    """A settled tiny D in float64 (exact comparisons)."""
    torch.manual_seed(0)
    G, D = build(tiny_cfg(Path("unused.npz"), *overrides).model)
    settle(G, D)
    return D.double().eval()


def _gradients(D, x, y, head):
    """dS/dx of every image, one image at a time: S = D(x, y) or the aux logit of class y."""
    grads = []
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_()
        yi = y[i : i + 1]
        if head == "adv":
            score = D(xi, yi)[0]
        else:
            score = D(xi, yi, return_aux=True)[1][0, yi[0]]
        grads.append(torch.autograd.grad(score, xi)[0][0])
    return torch.stack(grads)


def _reference(D, x, y, head):
    """M_ij = max_c |dS/dx_cij| (Simonyan et al. 2014, Sec. 3.1)."""
    return _gradients(D, x, y, head).abs().max(dim=1).values


@pytest.mark.parametrize("head", ["adv", "aux"])
def test_saliency_is_autograd_gradient_max_over_channels(head):
    D = _D("model.channels=3", *AUX)
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x * 2 - 1
    y = torch.tensor([0, 1, 2, 1, 0])
    maps = saliency_maps(D, x, y, head, batch_size=2)  # batches of 2, 2, 1
    grads = _gradients(D, x, y, head)
    assert maps.shape == (5, 32, 32)
    torch.testing.assert_close(maps, grads.abs().max(dim=1).values, rtol=1e-10, atol=0)
    # every channel holds the maximum somewhere: the map is not one channel's gradient
    assert grads.abs().argmax(dim=1).unique().tolist() == [0, 1, 2]


def test_aux_head_needs_aux_classifier():
    D = _D()
    with pytest.raises(GankitError, match="aux_classifier"):
        saliency_maps(D, torch.zeros(1, 1, 32, 32), torch.zeros(1, dtype=torch.long), "aux")


@pytest.mark.parametrize(
    "shape, labels, message",
    [
        ((2, 1, 16, 16), [0, 1], r"expected images \(N, 1, 32, 32\)"),  # another resolution
        ((2, 3, 32, 32), [0, 1], r"expected images \(N, 1, 32, 32\)"),  # another channel count
        ((0, 1, 32, 32), [], "at least one image"),
        ((2, 1, 32, 32), [0, 3], r"labels must lie in \[0, 2\]"),
    ],
)
def test_bad_images_are_one_line_errors(shape, labels, message):
    with pytest.raises(GankitError, match=message) as err:
        saliency_maps(_D(), torch.zeros(shape), torch.tensor(labels, dtype=torch.long))
    assert "\n" not in str(err.value)


IMAGES = torch.zeros(2, 1, 32, 32)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (IMAGES.to(torch.uint8), [0, 1], "expected float images in .-1, 1., got torch.uint8"),
        (IMAGES + 128, [0, 1], r"expected images in \[-1, 1\], found \[128, 128\]"),
        (IMAGES, [True, False], "expected 2 integer labels, got torch.bool"),
        (IMAGES.numpy(), [0, 1], "expected image and label tensors, got ndarray"),
    ],
)
def test_images_of_another_range_or_type_are_refused(x, y, message):
    """Not a silently wrong map: uint8 or [0, 255] images, boolean labels, numpy arrays."""
    with pytest.raises(GankitError, match=message):
        saliency_maps(_D(), x, torch.tensor(y))


def test_cli_samples_writes_grid_and_raw_maps(run, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["analyze", "saliency", str(run), "--samples", "6", "--out", str(out)]) == 0
    assert '"heads"' in capsys.readouterr().out
    # 3 classes x (images, D maps, aux maps) rows, 2 samples per class
    assert Image.open(out / "saliency.png").size == (2 * 34 + 2, 9 * 34 + 2)
    saved = np.load(out / "saliency.npz")
    assert saved["y"].tolist() == [0, 1, 2, 0, 1, 2] and saved["y"].dtype == np.int64
    assert main(["sample", str(run), "--n", "6", "--out", str(tmp_path / "g.npz")]) == 0
    np.testing.assert_array_equal(saved["x"], np.load(tmp_path / "g.npz")["x"])  # the same draw
    D = load_discriminator(run)
    x = to_float(torch.as_tensor(saved["x"]).permute(0, 3, 1, 2))
    y = torch.as_tensor(saved["y"])
    for head in ("adv", "aux"):
        ref = _reference(D, x, y, head).numpy()  # float32, one image at a time
        np.testing.assert_allclose(saved[head], ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_real_images_per_class(run, tmp_path):
    data = tmp_path / "three.npz"
    tiny_data(data, n=12)
    result = analyze_saliency(run, tmp_path / "o", data=str(data), per_class=2, device="cpu")
    saved = np.load(tmp_path / "o" / "saliency.npz")
    assert result["n"] == 6 and sorted(saved["y"].tolist()) == [0, 0, 1, 1, 2, 2]
    rows = np.load(data)["x"]
    for img in saved["x"][..., 0]:  # every image is one of the data set's
        assert any(np.array_equal(img, r) for r in rows)


def test_cli_bare_images_means_the_runs_data(run, tmp_path, capsys):
    args = ["analyze", "saliency", str(run), "--images", "--per-class", "1"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 3 and str(run.parent / "d.npz") in result["images"]


def test_run_without_d_weights(run, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (next((bare / "checkpoints").iterdir()) / "D.safetensors").unlink()
    args = ["analyze", "saliency", str(bare), "--samples", "3", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no D.safetensors" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--samples", "0"], "gankit: error: --samples: expected a number of samples in 1.."),
        (
            ["--images", "{data}", "--per-class", "-1"],
            "gankit: error: --per-class: expected a positive integer",
        ),
        (  # checked with generated samples too, where it does not apply
            ["--samples", "2", "--per-class", "-1"],
            "gankit: error: --per-class: expected a positive integer",
        ),
        (["--samples", "2", "--seed", str(2**70)], "gankit: error: --seed: expected an integer"),
        (["--samples", "2", "--seed", "-1"], "gankit: error: --seed: expected an integer in 0.."),
        (["--samples", "2", "--out", ""], "gankit: error: --out: expected an output folder, got"),
    ],
)
def test_cli_bad_counts(run, tmp_path, capsys, args, message):
    args = [a.replace("{data}", str(run.parent / "d.npz")) for a in args]
    assert main(["analyze", "saliency", str(run), "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_sample_count_is_bounded_in_the_library(tmp_path):
    with pytest.raises(
        GankitError, match=r"^samples: expected a number of samples in 1\.\.1000000, got 10000001$"
    ):
        analyze_saliency(tmp_path / "nope", tmp_path, samples=10_000_001)


def test_quiet_is_checked_and_a_compiled_network_is_accepted(run, tmp_path):
    with pytest.raises(GankitError, match="^quiet: expected True or False, got 'no'$"):
        analyze_saliency(tmp_path / "nope", tmp_path, quiet="no")
    D = load_discriminator(run)
    compiled = torch.compile(D, backend="eager")  # not called: no tracing
    check_eval(compiled, "D", ProjectionDiscriminator, "a discriminator")
    with pytest.raises(GankitError, match="^D: expected a discriminator, got Sequential$"):
        check_eval(torch.nn.Sequential(), "D", ProjectionDiscriminator, "a discriminator")


def test_load_discriminator_matches_checkpoint(run):
    D = load_discriminator(run / "checkpoints" / "step_00000001")
    assert not D.training and D.config.model.aux_classifier
    assert not any(p.requires_grad for p in D.parameters())
    stored = load_file(str(run / "checkpoints" / "step_00000001" / "D.safetensors"))
    assert stored.keys() == D.state_dict().keys()
    assert all(torch.equal(v, stored[k]) for k, v in D.state_dict().items())
