"""AmbientGAN end to end: `gankit measure`, measured data sets, the three training modes."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import d_inputs, tiny_cfg, tiny_data

from gankit import checkpoint as ckpt_io
from gankit.cli import main
from gankit.config import DataConfig
from gankit.data import ImageDataset, MeasuredDataset, load_dataset, read_measured, to_float
from gankit.data.measured import write_measured
from gankit.errors import GankitError
from gankit.evaluation import prepare
from gankit.measure import measure_dataset
from gankit.measurements import build_measurement
from gankit.models import MeasurementDiscriminator
from gankit.training import resume, train
from gankit.training.hooks import GRID_COLS
from gankit.training.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 32, 32)  # the tiny config's images


def measured(tmp_path, spec: str, seed: int = 0):
    """The tiny random data set measured with ``spec``, written as a measured .npz."""
    clean = load_dataset(DataConfig(path=str(tiny_data(tmp_path / "clean.npz"))), 32, 1)
    path = tmp_path / f"{spec.split(':')[0]}.npz"
    write_measured(path, measure_dataset(clean, build_measurement(spec), seed))
    return path, clean


def test_measure_cli_writes_measurements_labels_and_theta(tmp_path, capsys):
    clean_path = tiny_data(tmp_path / "clean.npz")
    clean = load_dataset(DataConfig(path=str(clean_path)), 32, 1)
    x = to_float(torch.from_numpy(np.asarray(clean.x)))
    res = ["--set", "model.resolution=32", "--set", "model.channels=1"]
    for spec, dtype in (("block_pixels:p=0.5", np.uint8), ("conv_noise:sigma=1", np.float32)):
        out = tmp_path / f"{spec[:5]}.npz"
        args = ["measure", "--data", str(clean_path), "--measurement", spec, "--out", str(out)]
        assert main(args + ["--seed", "3"] + res) == 0
        summary = json.loads(capsys.readouterr().out)
        data = read_measured(out)
        m = build_measurement(spec)
        assert summary["measurement"] == data.measurement == m.spec
        assert data.x.dtype == dtype and data.image_shape == SHAPE
        assert np.array_equal(data.y, clean.y) and data.class_names == clean.class_names
        again = m.apply(x, torch.from_numpy(data.theta))  # the stored theta made the stored y
        stored = torch.from_numpy(data.x)
        if dtype == np.uint8:
            stored = to_float(stored)
        torch.testing.assert_close(stored, again, atol=1e-6, rtol=0)
        assert isinstance(load_dataset(DataConfig(path=str(out)), 32, 1), MeasuredDataset)
    # non-image measurements are stored as float arrays of their own shape
    out = tmp_path / "proj.npz"
    assert main(["measure", "--data", str(clean_path), "--measurement", "pad_rotate_project",
                 "--out", str(out)] + res) == 0  # fmt: skip
    assert read_measured(out).x.shape == (24, 1, math.ceil(math.hypot(32, 32)))


def test_measure_cli_errors_are_one_line(tmp_path, capsys):
    clean = str(tiny_data(tmp_path / "clean.npz"))
    out = str(tmp_path / "m.npz")
    res = ["--set", "model.resolution=32", "--set", "model.channels=1"]
    for extra, words in (
        (["--measurement", "blok", "--out", out], "measurement 'blok': unknown measurement"),
        (["--measurement", "block_patch:k=40", "--out", out], "larger than the 32x32 images"),
        (["--measurement", "block_pixels", "--out", str(tmp_path / "m.png")], "ending in .npz"),
        (["--measurement", "block_pixels", "--out", out, "--seed", str(2**64)], "--seed: expected"),
        (["--measurement", "block_pixels", "--out", out, "--seed", "-1"], "--seed: expected an"),
    ):
        assert main(["measure", "--data", clean] + extra + res) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
        assert not os.path.exists(out)
    again = ["--measurement", "block_pixels", "--out", out] + res
    assert main(["measure", "--data", clean] + again) == 0
    capsys.readouterr()
    assert main(["measure", "--data", out] + again) == 2
    assert "already holds measurements" in capsys.readouterr().err


def test_ambient_d_sees_measured_fakes_and_ignore_raw_ones(tmp_path):
    data, _ = measured(tmp_path, "block_pixels:p=0.5")
    spec = "train.measurement=block_pixels:p=0.5"
    for mode, blocked in (("ambient", 0.5), ("ignore", 0.0)):
        trainer = Trainer(
            tiny_cfg(data, spec, f"train.ambient_mode={mode}", "train.n_D=1"), quiet=True
        )
        d_step, g_step = d_inputs(trainer)
        b = trainer.cfg.train.batch_size
        for fake in (d_step[b:], g_step):  # D step input is [real; fake], G step input fake
            assert fake.shape == (b, *SHAPE)
            frac = (fake == -1).float().mean().item()  # tanh never reaches -1 exactly
            assert abs(frac - blocked) < 5 * math.sqrt(0.25 / fake.numel())
        assert ((d_step[:b] == -1).float().mean() > 0.4).item()  # real: measurements


def test_damaged_images_without_theta_train_in_ambient_mode(tmp_path):
    data = tiny_data(tmp_path / "plain.npz")  # images the user says are block_pixels output
    trainer = Trainer(tiny_cfg(data, "train.measurement=block_pixels:p=0.5"), quiet=True)
    assert isinstance(trainer.dataset, ImageDataset)
    trainer.train_iteration()


@pytest.mark.parametrize(
    "spec, loss", [("pad_rotate_project_theta", "wgan-gp"), ("gaussian_projection:m=2", "hinge")]
)
def test_non_image_measurements_train_with_an_mlp_d(tmp_path, spec, loss):
    data, _ = measured(tmp_path, spec)
    trainer = Trainer(tiny_cfg(data, f"train.measurement={spec}", f"train.loss={loss}"), quiet=True)
    shape = build_measurement(spec).output_shape(SHAPE)
    assert isinstance(trainer.D, MeasurementDiscriminator) and trainer.D.in_shape == shape
    d_step, g_step = d_inputs(trainer)[-2:]
    assert d_step.shape[1:] == shape and g_step.shape[1:] == shape
    assert torch.isfinite(g_step).all()


def test_ambient_resume_is_exact(tmp_path):
    """The θ of the fakes come from the latent generator, whose state the checkpoint keeps."""
    data, _ = measured(tmp_path, "block_pixels:p=0.5")
    cfg = ["train.measurement=block_pixels:p=0.5", "train.n_D=1", "train.snapshot_every=1"]
    straight = train(tiny_cfg(data, *cfg, "train.steps=2"), tmp_path / "a", quiet=True)
    half = train(tiny_cfg(data, *cfg, "train.steps=1"), tmp_path / "b", quiet=True)
    resume(half, steps=2, quiet=True)
    ca, cb = (ckpt_io.list_checkpoints(r / "checkpoints")[-1] for r in (straight, half))
    assert ca.name == cb.name == "step_00000002"
    for net in ckpt_io.WEIGHT_FILES:
        wa, wb = ckpt_io.load_weights(ca, net), ckpt_io.load_weights(cb, net)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{net} differs after resume"


def test_unmeasure_trains_on_the_inverse(tmp_path):
    data, _ = measured(tmp_path, "block_patch:k=6")
    cfg = tiny_cfg(data, "train.measurement=block_patch:k=6", "train.ambient_mode=unmeasure")
    trainer = Trainer(cfg, quiet=True)
    stored = read_measured(data)
    m = build_measurement("block_patch:k=6")
    want = m.inverse(to_float(torch.from_numpy(stored.x)), torch.from_numpy(stored.theta))
    assert isinstance(trainer.dataset, ImageDataset)
    got = to_float(torch.from_numpy(trainer.dataset.x))
    torch.testing.assert_close(got, want, atol=1 / 127.5, rtol=0)  # stored as uint8
    assert not (got == -1).all(dim=(1, 2, 3)).any()
    trainer.train_iteration()


def test_snapshot_grid_shows_each_sample_next_to_its_measurement(tmp_path):
    data, _ = measured(tmp_path, "block_pixels:p=0.5")
    run = train(
        tiny_cfg(data, "train.measurement=block_pixels:p=0.5", "train.steps=2"),
        tmp_path / "r",
        quiet=True,
    )
    grid = np.asarray(Image.open(run / "samples" / "step_00000002.png"))
    assert grid.shape == (3 * (32 + 2) + 2, GRID_COLS * (64 + 2) + 2)  # tiles are 32 x 64
    left, right = grid[2:34, 2:34], grid[2:34, 34:66]
    assert (right == 0).mean() > 0.4 and (left == 0).mean() < 0.1


@pytest.mark.parametrize(
    "overrides, data_spec, words",
    [
        (["train.measurement=block_pixels", "train.ambient_mode=both"], None, "ambient_mode"),
        ([], "block_pixels:p=0.5", "holds measurements; set --set train.measurement"),
        (["train.measurement=block_pixels:p=0.3"], "block_pixels:p=0.5", "holds 'block_pixels"),
        (
            ["train.measurement=pad_rotate_project", "train.ambient_mode=ignore"],
            "pad_rotate_project",
            "not the model's images",
        ),  # fmt: skip
        (
            ["train.measurement=keep_patch:k=4", "train.ambient_mode=unmeasure"],
            "keep_patch:k=4",
            "has no approximate inverse",
        ),  # fmt: skip
        (["train.measurement=block_pixels", "train.ambient_mode=unmeasure"], None, "needs the θ"),
        (["train.measurement=pad_rotate_project"], None, "written by `gankit measure`"),
        (
            ["train.measurement=block_pixels", "eval.every=5", "eval.metrics=[swd]"],
            None,
            "eval.every > 0",
        ),  # fmt: skip
        (["train.measurement=block_patch:k=33"], None, "larger than the 32x32 images"),
    ],
)
def test_training_errors_are_one_line(tmp_path, overrides, data_spec, words):
    data = measured(tmp_path, data_spec)[0] if data_spec else tiny_data(tmp_path / "plain.npz")
    with pytest.raises(GankitError) as err:
        Trainer(tiny_cfg(data, *overrides), quiet=True)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_measured_data_limit_and_cache(tmp_path, capsys):
    """``data.limit`` subsets measurements with their θ (was an AttributeError); a cache of a
    measured data set is refused in one line, by ``data.cache`` and by ``gankit data build``."""
    data, _ = measured(tmp_path, "block_pixels:p=0.5")
    full = load_dataset(DataConfig(path=str(data)), 32, 1)
    part = load_dataset(DataConfig(path=str(data), limit=7), 32, 1)
    assert isinstance(part, MeasuredDataset) and len(part) == 7 and "data.limit = 7" in part.source
    rows = [i for i in range(len(full)) if any(np.array_equal(full.x[i], x) for x in part.x)]
    assert len(rows) == 7 and np.array_equal(full.theta[rows], part.theta)
    assert np.array_equal(full.y[rows], part.y) and part.measurement == full.measurement
    cache = DataConfig(path=str(data), cache=str(tmp_path / "c.npy"))
    with pytest.raises(GankitError, match=r"holds measurements .* not cached \(leave data.cache"):
        load_dataset(cache, 32, 1)
    out = str(tmp_path / "c.npy")
    assert main(["data", "build", str(data), "--out", out, "--resolution", "32"])
    assert "holds measurements (gankit measure)" in capsys.readouterr().err
    assert not (tmp_path / "c.npy").exists()


def test_eval_refuses_measurements_as_reference(tmp_path):
    data, _ = measured(tmp_path, "block_pixels:p=0.5")
    with pytest.raises(GankitError, match="holds measurements, not images.*--data"):
        prepare(["swd"], DataConfig(path=str(data)), 32, 1, 10, None, torch.device("cpu"))


def test_analyze_refuses_measurements_as_images(tmp_path):
    """saliency, reconstruct and neighbours compare with real images: a measured data set
    (damaged pixels) is an error, as in eval."""
    from gankit.analysis.common import run_data
    from gankit.config import Config

    data, _ = measured(tmp_path, "block_pixels:p=0.5")
    cfg = Config()
    cfg.model.resolution, cfg.model.channels, cfg.model.n_classes = 32, 1, 3
    with pytest.raises(GankitError, match="holds measurements, not images; analyse against"):
        run_data(cfg, str(data))
