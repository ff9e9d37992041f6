"""Generation: gankit.load, grids, .npz, interpolation strips, CLI errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import single_thread, tiny_cfg, tiny_data

import gankit
from gankit.cli import main
from gankit.errors import GankitError, ParameterError
from gankit.evaluation import evaluate_images
from gankit.generation import (
    _mixed_classes,
    eval_mode,
    interpolation_strip,
    make_grid,
    write_samples,
)
from gankit.run import load_discriminator
from gankit.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sampling")
    with single_thread():
        return train(tiny_cfg(tiny_data(tmp / "d.npz"), "train.steps=2"), tmp / "r", quiet=True)


def test_load_returns_ema_generator_with_config(run):
    G = gankit.load(run)
    assert not G.training and G.config.model.n_classes == 3
    x = G(torch.randn(2, 8), torch.tensor([0, 2]))
    assert x.shape == (2, 1, 32, 32) and x.abs().max() <= 1
    ckpt = run / "checkpoints" / "step_00000002"
    G2 = gankit.load(ckpt, ema=False)
    assert any(
        not torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values())
    )


def test_png_grid_size(run, tmp_path):
    out = write_samples(gankit.load(run), tmp_path / "g.png", n=7, classes=[1, 2])
    img = Image.open(out)
    assert img.size == (2 * 34 + 2, 4 * 34 + 2) and img.mode == "L"  # 2 columns, 4 rows


def test_npz_dtypes_shapes_and_class_cycle(run, tmp_path):
    out = write_samples(gankit.load(run), tmp_path / "s.npz", n=5, classes=[2, 0], truncation=0.5)
    data = np.load(out)
    assert data["x"].dtype == np.uint8 and data["x"].shape == (5, 32, 32, 1)
    assert data["y"].dtype == np.int64 and data["y"].tolist() == [2, 0, 2, 0, 2]


@pytest.mark.parametrize("name", ["s.npz", "g.png"])
def test_an_interrupted_write_keeps_the_previous_file(run, tmp_path, monkeypatch, name):
    """``gankit sample --out FILE`` writes atomically: a write that fails (or is killed) before
    it completes leaves the earlier file whole and no temp file."""
    G = gankit.load(run)
    out = write_samples(G, tmp_path / name, n=3)
    before = out.read_bytes()

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        write_samples(G, out, n=6, seed=1)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [name]


def test_npz_batched_matches_unbatched(run, tmp_path):
    sizes = []
    G = gankit.load(run)
    G.register_forward_hook(lambda m, inputs, out: sizes.append(len(inputs[0])))
    common = dict(n=7, classes=[2, 0, 1], truncation=0.5, seed=3)
    whole = np.load(write_samples(G, tmp_path / "a.npz", batch_size=7, **common))
    assert sizes == [7]
    sizes.clear()
    parts = np.load(write_samples(G, tmp_path / "b.npz", batch_size=3, **common))
    assert sizes == [3, 3, 1]
    assert parts["y"].tolist() == whole["y"].tolist() == [2, 0, 1, 2, 0, 1, 2]
    assert np.array_equal(parts["x"], whole["x"])
    with pytest.raises(ParameterError, match="batch_size") as err:
        write_samples(G, tmp_path / "c.npz", batch_size=0)
    assert err.value.param == "batch_size" and "--" not in str(err.value)


def test_interpolation_strips(run, tmp_path):
    for mode, classes in (("z", [2]), ("class", [0, 2])):
        out = write_samples(
            gankit.load(run), tmp_path / f"{mode}.png", n=6, classes=classes, interpolate=mode
        )
        assert Image.open(out).size == (6 * 34 + 2, 36)


def test_class_mixing_endpoints_equal_pure_classes(run):
    """t = 0 gives class a, t = 1 class b, t = 0.5 differs from both (module doc)."""
    G = gankit.load(run)
    z = torch.randn(1, 8).expand(3, -1)
    ya, yb = torch.zeros(3, dtype=torch.long), torch.full((3,), 2)
    with torch.no_grad(), _mixed_classes(G, yb, torch.tensor([0.0, 1.0, 0.5])):
        mixed = G(z, ya)
    with torch.no_grad():
        pure_a, pure_b = G(z[:1], ya[:1]), G(z[:1], yb[:1])
    torch.testing.assert_close(mixed[0:1], pure_a)
    torch.testing.assert_close(mixed[1:2], pure_b)
    assert not torch.allclose(mixed[2:3], pure_a) and not torch.allclose(mixed[2:3], pure_b)


def test_make_grid_places_tiles():
    imgs = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    grid = make_grid(imgs, ncol=2, pad=1)
    assert grid.shape == (7, 7, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 4, 0] == 1 and grid[4, 1, 0] == 2 and grid[4, 4, 0] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "x.jpg"], "unknown extension .jpg"),
        (["--out", "x.png", "--classes", "3,7"], "--classes: 3, 7 out of range"),
        (["--out", "x.npz", "--interpolate", "z"], "use a .png"),
        (["--out", "x.png", "--interpolate", "class", "--classes", "1"], "exactly two"),
        (["--out", "x.png", "--interpolate", "z", "--n", "1"], "--n: expected 2..1024 frames"),
        (["--out", "x.png", "--interpolate", "z", "--n", "1025"], "--n: expected 2..1024 frames"),
        (["--out", "x.png", "--interpolate", "z", "--n", "0"], "--n: expected 2..1024 frames"),
        (["--out", "x.png", "--interpolate", "z", "--classes", "1,2"], "keeps one class, got 2"),
    ],
)
def test_sample_cli_errors(run, tmp_path, capsys, args, message):
    args = [a.replace("x.", str(tmp_path / "x.")) for a in args]
    assert main(["sample", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0


@pytest.mark.parametrize("classes", [",", "", " , "])
def test_sample_cli_classes_without_a_class_is_an_error(run, tmp_path, capsys, classes):
    """Not "all classes" (leave ``--classes`` out for that): an argparse usage error."""
    with pytest.raises(SystemExit) as exit_:
        main(["sample", str(run), "--out", str(tmp_path / "x.png"), "--classes", classes])
    assert exit_.value.code == 2
    assert "argument --classes: expected comma-separated integers" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_sample_cli_unwritable_output_is_one_line(run, tmp_path, capsys):
    (tmp_path / "grid.png").mkdir()
    (tmp_path / "afile").write_text("")
    for out, reason in [
        ("grid.png", "Is a directory"),
        ("afile/a.png", "exists and is not a directory"),
    ]:
        assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"gankit: error: {tmp_path}/") and err.endswith(f": {reason}\n")
        assert err.count("\n") == 1


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([0, 3]), "labels: classes must lie in 0..2, got 0..3"),
        (torch.tensor([-1]), "labels: classes must lie in 0..2, got -1..-1"),
        (
            torch.tensor([1.5]),
            "labels: expected a 1-D integer tensor of classes, got a torch.float32",
        ),
        (
            torch.zeros(2, 2, dtype=torch.long),
            "labels: expected a 1-D integer tensor of classes, got a torch.int64 tensor of "
            "shape (2, 2)",
        ),
        ([1, 2], "labels: expected a 1-D integer tensor of classes, got list"),
    ],
)
def test_generate_checks_its_labels(run, labels, message):
    with pytest.raises(ParameterError) as err:
        next(gankit.generate(gankit.load(run), labels))
    assert str(err.value).startswith(message)


def test_generate_checks_its_generator_and_takes_any_integer_labels(run):
    G = gankit.load(run)
    for bad in (str(run), None, torch.nn.Linear(2, 2)):
        with pytest.raises(ParameterError, match="^G: expected a generator .e.g. gankit.load"):
            next(gankit.generate(bad, torch.tensor([0])))
    with pytest.raises(ParameterError, match="^truncation: expected 0 .off. or a finite number"):
        next(gankit.generate(G, torch.tensor([0]), truncation="0.5"))
    small, _ = next(gankit.generate(G, torch.arange(3, dtype=torch.uint8), generator=_gen()))
    wide, _ = next(gankit.generate(G, torch.arange(3), generator=_gen()))
    assert torch.equal(small, wide)


def test_generate_refuses_a_generator_in_training_mode_and_bad_latents(run):
    """A G in training mode would update its batch-norm statistics (and mix a batch's samples);
    a latent tensor must be finite and hold one ``dim_z`` row per label."""
    G, y = gankit.load(run), torch.tensor([0, 1])
    buffers = {k: v.clone() for k, v in G.named_buffers()}
    with pytest.raises(ParameterError, match="^G: expected a generator in eval mode"):
        next(gankit.generate(G.train(), y))
    assert all(torch.equal(v, buffers[k]) for k, v in G.named_buffers())
    G.eval()
    for z, got in [
        (torch.randn(2, G.dim_z + 1), f"torch.float32 (2, {G.dim_z + 1})"),
        (torch.randn(3, G.dim_z), f"torch.float32 (3, {G.dim_z})"),
        (torch.zeros(2, G.dim_z, dtype=torch.long), f"torch.int64 (2, {G.dim_z})"),
        (np.zeros((2, G.dim_z)), "ndarray"),
    ]:
        with pytest.raises(
            ParameterError,
            match=rf"^z: expected a float tensor \(2, {G.dim_z}\), got {re.escape(got)}$",
        ):
            next(gankit.generate(G, y, z=z))
    with pytest.raises(ParameterError, match="^z: expected finite latents"):
        next(gankit.generate(G, y, z=torch.full((2, G.dim_z), float("nan"))))
    z64 = torch.randn(2, G.dim_z, dtype=torch.float64)  # any float dtype is cast to G's
    assert torch.equal(
        next(gankit.generate(G, y, z=z64))[0], next(gankit.generate(G, y, z=z64.float()))[0]
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"generator": 5}, "generator: expected a torch.Generator or None, got int"),
        ({"generator": "x", "z": True}, "generator: expected a torch.Generator or None, got str"),
        (
            {"truncation": float("nan"), "z": True},
            "truncation: expected 0 (off) or a finite number > 0, got nan",
        ),
        (
            {"truncation": 0.5, "z": True},
            "truncation: applies only to drawn latents; a given z is used as is (leave out one "
            "of them)",
        ),
        (
            {"generator": torch.Generator(), "z": True},
            "generator: applies only to drawn latents; a given z is used as is (leave out one "
            "of them)",
        ),
    ],
)
def test_generate_checks_generator_and_truncation_even_with_z(run, kwargs, message):
    """Every argument is checked, whether or not z is given; truncation and generator act on
    drawn latents only, so with z they are refused rather than silently ignored."""
    G, y = gankit.load(run), torch.arange(3)
    if kwargs.pop("z", False):
        kwargs["z"] = torch.randn(3, G.dim_z)
    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
        next(gankit.generate(G, y, **kwargs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device type")
def test_generate_refuses_a_generator_on_another_device(run):
    with pytest.raises(
        ParameterError, match="^generator: expected a torch.Generator on G's device cpu, got cuda"
    ):
        next(gankit.generate(gankit.load(run), torch.arange(3), generator=torch.Generator("cuda")))


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1), (torch.float16, 2)])
def test_generate_and_strips_in_the_dtype_of_G(run, dtype, atol):
    """Latents are drawn (or cast) in G's dtype: a ``.double()`` or ``.half()`` G gives the
    images of the float32 one (up to rounding)."""
    G, Gd, y = gankit.load(run), gankit.load(run).to(dtype), torch.arange(3)
    z = torch.randn(3, G.dim_z)
    for kwargs in (lambda: {"generator": _gen()}, lambda: {"z": z}):
        want, got = (next(gankit.generate(g, y, **kwargs()))[0] for g in (G, Gd))
        assert (got.int() - want.int()).abs().max() <= atol
    for mode, classes in (("z", None), ("class", [0, 2])):
        want, got = (interpolation_strip(g, 3, mode, classes)[0] for g in (G, Gd))
        assert (got.int() - want.int()).abs().max() <= atol


@pytest.mark.parametrize(
    "classes, message",
    [("3,7", "expected a list of class indices, got str"),
     (3, "expected a list of class indices, got int"),
     (["3"], "expected integer class indices, got ['3']"),
     ([None], "expected integer class indices, got [None]"),
     ([True], "expected integer class indices, got [True]"),
     (torch.tensor([0.5]), "expected integer class indices, got [0.5]")],
)  # fmt: skip
def test_classes_must_be_integer_indices(run, tmp_path, classes, message):
    with pytest.raises(ParameterError, match=f"^classes: {re.escape(message)}"):
        write_samples(gankit.load(run), tmp_path / "x.png", n=2, classes=classes)
    assert not (tmp_path / "x.png").exists()


def test_classes_take_integer_arrays_and_tensors(run, tmp_path):
    G = gankit.load(run)
    for classes in (np.array([0, 2]), torch.tensor([0, 2]), (np.int64(0), 2)):
        write_samples(G, tmp_path / "x.npz", n=4, classes=classes)
        assert np.load(tmp_path / "x.npz")["y"].tolist() == [0, 2, 0, 2]


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_paths_of_the_api_are_checked(run, tmp_path):
    """A run path that is not a path, a checkpoint given where the run is expected, a
    config.toml that is a folder: one line each."""
    for call in (
        lambda: gankit.load(None),
        lambda: gankit.resume(3, steps=5),
        lambda: load_discriminator(None),
    ):
        with pytest.raises(ParameterError, match="expected a run or checkpoint directory path"):
            call()
    with pytest.raises(ParameterError, match="^ema: expected True or False, got 'no'"):
        gankit.load(run, ema="no")
    with pytest.raises(
        ParameterError, match="^resize: expected one of legacy, clean, got 'nearest'"
    ):
        evaluate_images(tmp_path, ["swd"], resize="nearest")
    with pytest.raises(
        ParameterError, match="^out: expected a .png or .npz file path, got NoneType"
    ):
        write_samples(gankit.load(run), None)
    with pytest.raises(ParameterError, match="^images: expected a file or folder of images"):
        evaluate_images(None, ["swd"])
    with pytest.raises(
        ParameterError, match=r"^source: expected a run or checkpoint directory path, got \w+$"
    ):
        gankit.evaluate(gankit.load(run), ["swd"])
    ckpt = run / "checkpoints" / "step_00000002"
    with pytest.raises(GankitError, match=f"a checkpoint, not a run directory; pass .*{run.name}$"):
        gankit.resume(ckpt, steps=5)
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(GankitError, match="config.toml: not a file"):
        gankit.resume(tmp_path, steps=5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n: expected a number of samples in 1..1000000, got 0"),
        ({"n": 2.5}, "n: expected a number of samples in 1..1000000, got 2.5"),
        ({"seed": 10**20}, "seed: expected an integer in 0..9223372036854775807"),
        ({"seed": -1}, "seed: expected an integer in 0..9223372036854775807, got -1"),
        ({"truncation": float("nan")}, "truncation: expected 0 (off) or a finite number > 0"),
    ],
)
def test_write_samples_checks_its_arguments(run, tmp_path, kwargs, message):
    with pytest.raises(ParameterError) as err:
        write_samples(gankit.load(run), tmp_path / "a.png", **{"n": 2, **kwargs})
    assert str(err.value).startswith(message)


def test_sample_cli_missing_run(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nope"), "--out", str(tmp_path / "a.png")]) == 2
    assert "no such run" in capsys.readouterr().err
    with pytest.raises(GankitError, match="found none"):
        gankit.load(tmp_path)


def test_eval_mode_restores_every_submodule_mode():
    """A training network with a submodule kept in eval mode (e.g. a frozen part) comes back
    exactly as it was, not all-train as ``net.train(True)`` would leave it."""
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(2), torch.nn.Sequential(torch.nn.Dropout()))
    net[1].eval()
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == [True, True, False, False]
