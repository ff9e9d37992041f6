"""Stabilisers in the training loop: exact resume with all of them on, R1 end to end against
autograd, rpgan's paired real batch, DiffAugment draws, init_from, data.limit, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_fixtures import d_inputs, tiny_cfg, tiny_data

from gankit import checkpoint as ckpt_io
from gankit.config import DataConfig
from gankit.data import load_dataset
from gankit.errors import GankitError
from gankit.training import resume, train
from gankit.training.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_ON = [
    "train.loss=rpgan",
    "train.diffaug=color,translation,cutout",
    "train.lecam_weight=0.3",
    "train.cr_weight=1.0",
    "train.r1_gamma=1.0",
    "train.r2_gamma=0.5",
    "train.reg_every=2",
    "train.d_measurement=conv_noise:sigma=1,noise=0.1",
    "train.d_measurement_fade=3",  # fades out across the resume
]


def test_resume_is_exact_with_every_stabiliser(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    straight = train(tiny_cfg(data, *ALL_ON, "train.keep_last=0"), tmp_path / "a", quiet=True)
    half = train(tiny_cfg(data, *ALL_ON, "train.steps=2"), tmp_path / "b", quiet=True)
    resume(half, steps=4, quiet=True)
    ca, cb = (ckpt_io.list_checkpoints(r / "checkpoints")[-1] for r in (straight, half))
    for net in ckpt_io.WEIGHT_FILES:
        wa, wb = ckpt_io.load_weights(ca, net), ckpt_io.load_weights(cb, net)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{net} differs after resume"
    sa, sb = ckpt_io.load_state(ca), ckpt_io.load_state(cb)
    assert int(sa["lecam"]["count"]) == 4 * 2  # n_D = 2 D steps per G step
    for key in ("real", "fake", "count"):
        assert torch.equal(sa["lecam"][key], sb["lecam"][key])


def test_r1_in_the_loop_equals_autograd_penalty_on_the_first_real_batch(tmp_path):
    """Iteration 1 with and without R1 sees the same weights, reals and fakes, so loss_D
    differs by exactly gamma/2 E||grad_x D(x)||^2 on that real batch."""
    data = tiny_data(tmp_path / "d.npz")
    gamma = 3.0
    base = Trainer(tiny_cfg(data, "train.n_D=1"), None, quiet=True).train_iteration()
    with_r1 = Trainer(tiny_cfg(data, "train.n_D=1", f"train.r1_gamma={gamma}"), None, quiet=True)
    out = with_r1.train_iteration()
    fresh = Trainer(tiny_cfg(data, "train.n_D=1"), None, quiet=True)
    x, y = fresh._real_batch()
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(fresh.D(x, y).sum(), x)  # same SN power-iteration step
    r1 = gamma / 2 * grad.flatten(1).square().sum(1).mean()
    torch.testing.assert_close(out["loss_D"] - base["loss_D"], r1, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["D_real"], base["D_real"])


@pytest.mark.parametrize(
    "penalty", [["train.r1_gamma=1", "train.r2_gamma=1"], ["train.loss=wgan-gp"]]
)
def test_input_gradient_penalties_work_through_attention(tmp_path, penalty):
    """The fused SDPA kernels have no double backward; the loop switches to the math path."""
    data = tiny_data(tmp_path / "d.npz")
    cfg = tiny_cfg(data, "model.D_attn=[16]", "train.n_D=1", *penalty)
    out = Trainer(cfg, None, quiet=True).train_iteration()
    assert all(torch.isfinite(v) for v in out.values())


def test_rpgan_draws_a_paired_real_batch_for_the_g_step(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    positions = {}
    for loss in ("hinge", "rpgan"):
        trainer = Trainer(tiny_cfg(data, "train.n_D=1", f"train.loss={loss}"), None, quiet=True)
        trainer.train_iteration()
        positions[loss] = trainer.batches.state_dict()["position"]  # batches used, not prefetched
    assert positions == {"hinge": 1, "rpgan": 2}


def test_diffaug_draws_from_the_latent_rng_and_stays_deterministic(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    states, losses = {}, {}
    for name, policy in (
        ("off", ""),
        ("on", "translation,cutout"),
        ("again", "translation,cutout"),
    ):
        trainer = Trainer(tiny_cfg(data, f"train.diffaug={policy}"), None, quiet=True)
        losses[name] = trainer.train_iteration()["loss_D"]
        states[name] = trainer.gen.get_state()
    assert not torch.equal(states["off"], states["on"])  # augmentation consumed latent draws
    assert torch.equal(states["on"], states["again"])
    assert torch.equal(losses["on"], losses["again"]) and not torch.equal(
        losses["on"], losses["off"]
    )


def test_init_from_loads_weights_and_reinitialises_class_weights(tmp_path, capsys):
    data = tiny_data(tmp_path / "d.npz")
    source = train(tiny_cfg(data, "train.steps=2"), tmp_path / "src", quiet=True)
    ckpt = ckpt_io.list_checkpoints(source / "checkpoints")[-1]
    src_G = ckpt_io.load_weights(ckpt, "G")

    same = Trainer(tiny_cfg(data, f"train.init_from={source}"), None, quiet=True)
    same.init_from(source)
    assert all(torch.equal(v, src_G[k]) for k, v in same.G.state_dict().items())
    src_D = ckpt_io.load_weights(ckpt, "D")
    assert all(torch.equal(v, src_D[k]) for k, v in same.D.state_dict().items())

    more = Trainer(tiny_cfg(data, "model.n_classes=5"), None, quiet=True)
    fresh = {k: v.clone() for k, v in more.D.state_dict().items()}
    lines = more.init_from(source)
    after = more.D.state_dict()
    class_keys = [k for k, v in after.items() if v.shape != src_D[k].shape]
    assert class_keys and all(torch.equal(after[k], fresh[k]) for k in class_keys)
    assert all(torch.equal(after[k], src_D[k]) for k in after if k not in class_keys)
    assert any("3 classes there, 5 here" in line and "embed" in line for line in lines)

    # end to end: `train` prints what it did
    train(tiny_cfg(data, "model.n_classes=5", f"train.init_from={source}"), tmp_path / "b")
    assert "class-dependent weights re-initialised" in capsys.readouterr().err
    with pytest.raises(GankitError, match="must match"):
        Trainer(tiny_cfg(data, "model.G_ch=4"), None, quiet=True).init_from(source)
    other = tiny_cfg(data, "model.arch=dcgan", "model.G_attn=[]", "model.D_attn=[]")
    with pytest.raises(GankitError, match=r"G has other tensors than this model \(not in the"):
        Trainer(other, None, quiet=True).init_from(source)  # a different architecture
    with pytest.raises(GankitError, match="no such run"):
        train(tiny_cfg(data, f"train.init_from={tmp_path / 'nope'}"), tmp_path / "c", quiet=True)


def test_data_limit_is_a_fixed_subset(tmp_path):
    data = tiny_data(tmp_path / "d.npz", n=30)
    full = load_dataset(DataConfig(path=str(data)), 32, 1)
    part = load_dataset(DataConfig(path=str(data), limit=10), 32, 1)
    again = load_dataset(DataConfig(path=str(data), limit=10), 32, 1)
    assert len(part) == 10 and np.array_equal(part.x, again.x) and part.n_classes == 3
    rows = {full.x[i].tobytes(): full.y[i] for i in range(len(full))}
    assert all(rows[part.x[i].tobytes()] == part.y[i] for i in range(10))
    with pytest.raises(GankitError, match="data.limit = 31"):
        load_dataset(DataConfig(path=str(data), limit=31), 32, 1)
    with pytest.raises(GankitError, match="^data.limit: expected a positive number .* got -1"):
        load_dataset(DataConfig(path=str(data), limit=-1), 32, 1)  # set in code, not validated
    with pytest.raises(GankitError, match="^data_cfg: expected a DataConfig, got NoneType"):
        load_dataset(None, 32, 1)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Gaussian blur, σ = 1 px, of ``x`` in [-1, 1], done in [0, 1] with black outside."""
    t = torch.arange(-3.0, 4.0, dtype=torch.float64)
    k = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / 2)
    u = torch.nn.functional.pad((x.double() + 1) / 2, (3, 3, 3, 3))
    out = torch.zeros_like(x, dtype=torch.float64)
    for i in range(7):
        for j in range(7):
            out += k[i, j] / k.sum() * u[..., i : i + x.shape[-2], j : j + x.shape[-1]]
    return (2 * out - 1).float()


def test_d_measurement_blurs_everything_d_sees(tmp_path):
    """D step: [real; fake] blurred (same batch and fakes as the plain run); G step likewise."""
    data = tiny_data(tmp_path / "d.npz")
    plain = d_inputs(Trainer(tiny_cfg(data, "train.n_D=1"), quiet=True))
    blur = "train.d_measurement=conv_noise:sigma=1,noise=0"
    measured = d_inputs(Trainer(tiny_cfg(data, "train.n_D=1", blur), quiet=True))
    torch.testing.assert_close(measured[0], _blur(plain[0]), atol=1e-5, rtol=0)
    g_step = measured[1]
    assert not torch.equal(g_step, plain[1])  # G step: other latents (θ were drawn)
    assert (g_step.amax() - g_step.amin()) < (plain[1].amax() - plain[1].amin())  # smoothed


def test_d_measurement_noise_is_fresh_per_image_and_has_its_std(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    noise = "train.d_measurement=conv_noise:sigma=1,noise=0.5"
    plain = d_inputs(Trainer(tiny_cfg(data, "train.n_D=1"), quiet=True))[0]
    noisy = d_inputs(Trainer(tiny_cfg(data, "train.n_D=1", noise), quiet=True))[0]
    residual = noisy - _blur(plain)
    assert abs(residual.std().item() - 0.5) < 0.02  # 2 * 16 * 32 * 32 draws
    assert not torch.allclose(residual[0], residual[1])


@pytest.mark.parametrize("step, strength", [(0, 1.0), (1, 0.75), (3, 0.25), (4, 0.0), (9, 0.0)])
def test_d_measurement_fade_is_linear_in_the_step(tmp_path, step, strength):
    """Annealed instance noise: D sees x + a (blur(x) - x), a = max(0, 1 - step / 4)."""
    data = tiny_data(tmp_path / "d.npz")
    plain = d_inputs(Trainer(tiny_cfg(data, "train.n_D=1"), quiet=True))[0]
    blur = "train.d_measurement=conv_noise:sigma=1,noise=0"
    faded = Trainer(tiny_cfg(data, "train.n_D=1", blur, "train.d_measurement_fade=4"), quiet=True)
    faded.step = step
    expected = plain + strength * (_blur(plain) - plain)
    torch.testing.assert_close(d_inputs(faded)[0], expected, atol=1e-5, rtol=0)


def test_d_measurement_fade_needs_a_measurement(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.d_measurement=", "train.d_measurement_fade=9")
    with pytest.raises(GankitError, match="d_measurement_fade.*needs a measurement to fade"):
        train(cfg, tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()  # checked before anything is created


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["train.diffaug=color,zoom"], "train.diffaug: unknown transform 'zoom'"),
        (["train.cr_weight=1", "train.cr_augment="], "train.cr_weight > 0 needs a transform"),
        (["train.r1_gamma=1", "train.compile=true"], "double backward"),
        (["train.d_measurement=blur"], "train.d_measurement 'blur': unknown measurement"),
        (["train.d_measurement=gaussian_projection"], "train.d_measurement.*not images"),
    ],
)
def test_bad_stabiliser_settings_fail_at_start(tmp_path, overrides, match):
    data = tiny_data(tmp_path / "d.npz")
    with pytest.raises(GankitError, match=match):
        train(tiny_cfg(data, *overrides), tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()
    with pytest.raises(GankitError, match=match):  # a Trainer built directly checks the same
        Trainer(tiny_cfg(data, *overrides), None, quiet=True)
