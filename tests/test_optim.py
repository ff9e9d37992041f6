"""AMSGrad (Reddi et al. 2018, Alg. 2, with Adam's bias corrections) against a closed form: a
scalar parameter with the loss g_t * x, gradient C at step 1 and 0 afterwards, so that Adam's
second moment decays while AMSGrad's running maximum stays at its first value."""

import math

import pytest
import torch

from gankit.config import CHOICES, ConfigError, TrainConfig, load_preset, validate_section
from gankit.training import optim

LR, B1, B2, EPS, C, STEPS = 0.1, 0.9, 0.99, 1e-8, 3.0, 12


def _closed_form(amsgrad: bool) -> float:
    """x_T = x_0 - sum_t lr * m_hat_t / (sqrt(v_hat_t) + eps), with m_t = (1 - b1) b1^(t-1) C,
    v_t = (1 - b2) b2^(t-1) C^2 and, for AMSGrad, max_{s<=t} v_s = v_1 = (1 - b2) C^2."""
    x = 1.0
    for t in range(1, STEPS + 1):
        m = (1 - B1) * B1 ** (t - 1) * C
        v = (1 - B2) * C**2 if amsgrad else (1 - B2) * B2 ** (t - 1) * C**2
        x -= LR * (m / (1 - B1**t)) / (math.sqrt(v / (1 - B2**t)) + EPS)
    return x


@pytest.mark.parametrize("fused_optim", [False, True])  # for-loop and foreach implementations
@pytest.mark.parametrize("name", ["adam", "amsgrad"])
def test_amsgrad_and_adam_follow_their_closed_forms(name, fused_optim):
    t = TrainConfig(optimizer=name, fused_optim=fused_optim)
    x = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = optim.adam([x], LR, [B1, B2], EPS, t)
    for step in range(STEPS):
        opt.zero_grad()
        ((C if step == 0 else 0.0) * x).sum().backward()
        opt.step()
    assert x.item() == pytest.approx(_closed_form(name == "amsgrad"), rel=1e-12, abs=1e-12)
    # the running maximum makes AMSGrad's later steps smaller than Adam's
    assert abs(_closed_form(True) - _closed_form(False)) > 1e-3  # far beyond the tolerance


def test_optimizer_switch_from_config_and_unknown_names():
    t = TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match=r"train.optimizer.*adam, amsgrad"):
        validate_section("train", t)
    assert CHOICES["train.optimizer"] == optim.OPTIMIZERS
    cfg = load_preset("mnist-sagan", ["train.optimizer=amsgrad"])
    assert cfg.train.optimizer == "amsgrad"
    opt = optim.adam([torch.nn.Parameter(torch.ones(1))], 1e-3, [0.0, 0.9], 1e-8, cfg.train)
    assert opt.param_groups[0]["amsgrad"] is True
