"""Losses against closed-form values on fixed logits."""

import math

import pytest
import torch

from gankit import losses
from gankit.errors import GankitError

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5, -0.5])


def test_hinge_d_closed_form():
    # relu(1 - real) = [0, 0.5, 2] -> mean 5/6; relu(1 + fake) = [0, 1, 2.5, 0.5] -> mean 1
    assert losses.hinge_d(REAL, FAKE).item() == pytest.approx(5 / 6 + 1.0)


def test_generator_losses_closed_form():
    # -mean(fake) = -(-2 + 0 + 1.5 - 0.5) / 4 = 0.25
    assert losses.hinge_g(FAKE).item() == pytest.approx(0.25)
    assert losses.wasserstein_g(FAKE).item() == pytest.approx(0.25)
    sp = [math.log1p(math.exp(-f)) for f in FAKE.tolist()]  # -log sigmoid(f)
    assert losses.nonsaturating_g(FAKE).item() == pytest.approx(sum(sp) / 4, rel=1e-6)


def test_nonsaturating_d_is_binary_cross_entropy():
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    expected = -sum(math.log(sig(r)) for r in REAL.tolist()) / 3
    expected += -sum(math.log(1 - sig(f)) for f in FAKE.tolist()) / 4
    assert losses.nonsaturating_d(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_nonsaturating_is_stable_for_large_logits():
    big = torch.tensor([200.0])
    assert losses.nonsaturating_d(big, -big).item() == pytest.approx(0.0, abs=1e-30)
    assert losses.nonsaturating_g(-big).item() == pytest.approx(200.0)


def test_wasserstein_d_closed_form():
    # mean(fake) - mean(real) = -0.25 - 0.5
    assert losses.wasserstein_d(REAL, FAKE).item() == pytest.approx(-0.75)


def test_dispatchers_route_by_name():
    assert losses.d_loss("hinge", REAL, FAKE) == losses.hinge_d(REAL, FAKE)
    assert losses.d_loss("nonsaturating", REAL, FAKE) == losses.nonsaturating_d(REAL, FAKE)
    assert losses.d_loss("wgan-gp", REAL, FAKE) == losses.wasserstein_d(REAL, FAKE)
    assert losses.g_loss("nonsaturating", FAKE) == losses.nonsaturating_g(FAKE)
    assert losses.g_loss("wgan-gp", FAKE) == losses.wasserstein_g(FAKE)
    real, fake = REAL, FAKE[:3]
    assert losses.d_loss("rpgan", real, fake) == losses.rpgan_d(real, fake)
    assert losses.g_loss("rpgan", fake, real) == losses.rpgan_g(fake, real)
    assert set(losses.LOSS_NAMES) == {"hinge", "nonsaturating", "wgan-gp", "rpgan"}


@pytest.mark.parametrize(
    "call", [lambda: losses.d_loss("lsgan", REAL, FAKE), lambda: losses.g_loss("lsgan", FAKE)]
)
def test_unknown_name_lists_valid_ones(call):
    with pytest.raises(
        GankitError, match=r"train\.loss.*'lsgan'.*hinge, nonsaturating, wgan-gp, rpgan"
    ):
        call()


def test_bf16_logits_give_fp32_loss():
    assert losses.hinge_d(REAL.bfloat16(), FAKE.bfloat16()).dtype == torch.float32


def test_aux_classifier_loss_is_mean_negative_log_likelihood():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 1])
    # -log softmax picked by hand: log(sum exp) - logit[y]
    nll0 = math.log(math.exp(2) + 1 + math.exp(-1)) - 2.0
    nll1 = math.log(1 + math.e + math.exp(3)) - 1.0
    assert losses.aux_classifier_loss(logits, y).item() == pytest.approx((nll0 + nll1) / 2)


def test_hinge_gradient_only_from_margin_violations():
    real = REAL.clone().requires_grad_(True)
    fake = FAKE.clone().requires_grad_(True)
    losses.hinge_d(real, fake).backward()
    # d/d real_i = -1/3 where 1 - real_i > 0; d/d fake_j = 1/4 where 1 + fake_j > 0
    torch.testing.assert_close(real.grad, torch.tensor([0.0, -1 / 3, -1 / 3]))
    torch.testing.assert_close(fake.grad, torch.tensor([0.0, 0.25, 0.25, 0.25]))


def test_rpgan_closed_form_and_pairing():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # L_D = mean softplus(fake_i - real_i) = (log(1 + e^-1) + log(1 + e^2)) / 2
    expected_d = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(2.0))) / 2
    assert losses.rpgan_d(real, fake).item() == pytest.approx(expected_d)
    # L_G = mean softplus(real_i - fake_i) = (log(1 + e) + log(1 + e^-2)) / 2
    expected_g = (math.log1p(math.e) + math.log1p(math.exp(-2.0))) / 2
    assert losses.rpgan_g(fake, real).item() == pytest.approx(expected_g)
    # pairing matters: swapping the fakes changes the loss (it is not mean(fake) - mean(real))
    assert losses.rpgan_d(real, fake.flip(0)).item() != pytest.approx(expected_d)
    with pytest.raises(GankitError, match="rpgan pairs real and fake.* 3 real and 4 fake"):
        losses.rpgan_d(REAL, FAKE)
    with pytest.raises(GankitError, match="rpgan pairs real and fake.* 3 real and 4 fake"):
        losses.rpgan_g(FAKE, REAL)  # the G step's counts, not swapped
    with pytest.raises(GankitError, match="needs D's logits on real images"):
        losses.g_loss("rpgan", FAKE)


def test_rpgan_gradient_is_sigmoid_of_the_pair_difference():
    real = torch.tensor([1.0, -0.5, 0.3]).requires_grad_(True)
    fake = torch.tensor([0.2, 0.4, -1.0]).requires_grad_(True)
    losses.rpgan_d(real, fake).backward()
    # d/d fake_i softplus(fake_i - real_i) / B = sigmoid(fake_i - real_i) / B
    s = torch.sigmoid(fake.detach() - real.detach()) / 3
    torch.testing.assert_close(fake.grad, s)
    torch.testing.assert_close(real.grad, -s)
