"""Adversarial losses: hinge, non-saturating, Wasserstein and relativistic pairing (R3GAN), plus
the AC-GAN class term.

All functions are pure: they take the discriminator's logits and return a scalar loss tensor.
Logits have shape ``(B,)`` (any shape is accepted; every element is one sample's logit) and are
reduced in fp32, so bf16 logits from autocast give an fp32 loss. The Wasserstein critic needs a
Lipschitz constraint, supplied by :func:`gankit.regularizers.gradient_penalty` (WGAN-GP).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gankit.errors import GankitError


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss (Lim & Ye 2017; SAGAN, used by BigGAN).

    ``L_D = E_x[relu(1 - D(x))] + E_z[relu(1 + D(G(z)))]``.

    Args:
        real: ``D(x)`` logits on real images, ``(B,)``.
        fake: ``D(G(z))`` logits on generated images, ``(B',)``.

    Returns:
        Scalar fp32 loss.
    """
    return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()


def wasserstein_g(fake: torch.Tensor) -> torch.Tensor:
    """Generator loss ``L_G = -E_z[D(G(z))]`` (WGAN, Arjovsky et al. 2017; SAGAN).

    The hinge loss uses the same generator objective, so :func:`hinge_g` is this function.

    Args:
        fake: ``D(G(z))`` logits, ``(B,)``.

    Returns:
        Scalar fp32 loss.
    """
    return -fake.float().mean()


hinge_g = wasserstein_g
"""Hinge generator loss ``L_G = -E_z[D(G(z))]`` (SAGAN): same as :func:`wasserstein_g`."""


def nonsaturating_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Standard GAN discriminator loss (Goodfellow et al. 2014, eq. 1) in logit form.

    ``L_D = -E[log sigmoid(D(x))] - E[log(1 - sigmoid(D(G(z))))]
          = E[softplus(-D(x))] + E[softplus(D(G(z)))]``, i.e. binary cross-entropy with
    real = 1 and fake = 0, computed stably through ``softplus``.

    Args:
        real: logits on real images, ``(B,)``.
        fake: logits on generated images, ``(B',)``.

    Returns:
        Scalar fp32 loss.
    """
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


def nonsaturating_g(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss (Goodfellow et al. 2014, §3).

    ``L_G = -E[log sigmoid(D(G(z)))] = E[softplus(-D(G(z)))]`` (maximise ``log D`` instead of
    minimising ``log(1 - D)``, which saturates early in training).

    Args:
        fake: logits on generated images, ``(B,)``.

    Returns:
        Scalar fp32 loss.
    """
    return F.softplus(-fake.float()).mean()


def wasserstein_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss ``L_D = E_z[D(G(z))] - E_x[D(x)]`` (WGAN, Arjovsky et al. 2017).

    Add :func:`gankit.regularizers.gradient_penalty` for WGAN-GP (Gulrajani et al. 2017, eq. 3).

    Args:
        real: critic outputs on real images, ``(B,)``.
        fake: critic outputs on generated images, ``(B',)``.

    Returns:
        Scalar fp32 loss.
    """
    return fake.float().mean() - real.float().mean()


def rpgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing discriminator loss (RpGAN, Jolicoeur-Martineau 2019; the loss of
    R3GAN, Huang et al. 2024, "The GAN is dead; long live the GAN!").

    ``L_D = E[softplus(D(G(z_i)) - D(x_i))]`` over pairs ``(x_i, z_i)``: D must rank each real
    image above its paired fake. Use with zero-centred R1 and R2
    (:func:`gankit.regularizers.zero_centred_gp`) as R3GAN does.

    Args:
        real: ``D(x)`` logits ``(B,)``; fake: ``D(G(z))`` logits ``(B,)``, paired by index.

    Returns:
        Scalar fp32 loss.
    """
    _check_pairs(real, fake)
    return F.softplus(fake.float() - real.float()).mean()


def _check_pairs(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape != fake.shape:
        raise GankitError(
            f"train.loss = rpgan pairs real and fake samples: got {real.numel()} real and "
            f"{fake.numel()} fake logits"
        )


def rpgan_g(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing generator loss ``L_G = E[softplus(D(x_i) - D(G(z_i)))]``
    (:func:`rpgan_d` with the roles swapped); ``real`` are D's logits on a real batch drawn for
    the G step (no gradient reaches G through them).

    Args:
        fake: ``D(G(z))`` logits ``(B,)``; real: ``D(x)`` logits ``(B,)``, paired by index.

    Returns:
        Scalar fp32 loss.
    """
    _check_pairs(real, fake)
    return F.softplus(real.float() - fake.float()).mean()


_D_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "hinge": hinge_d,
    "nonsaturating": nonsaturating_d,
    "wgan-gp": wasserstein_d,
    "rpgan": rpgan_d,
}
_G_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "hinge": hinge_g,
    "nonsaturating": nonsaturating_g,
    "wgan-gp": wasserstein_g,
    "rpgan": rpgan_g,
}
PAIRED_LOSSES: tuple[str, ...] = ("rpgan",)
"""Losses whose G step also needs D's logits on a real batch (``g_loss(..., real_logits)``)."""
LOSS_NAMES: tuple[str, ...] = tuple(_D_LOSSES)
"""Valid values of ``train.loss``."""


def _check_name(name: str) -> None:
    if name not in _D_LOSSES:
        raise GankitError(
            f"train.loss: unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}"
        )


def d_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``name`` (``hinge``, ``nonsaturating``, ``wgan-gp`` or ``rpgan``).

    For ``wgan-gp`` this is the critic loss only; the training loop adds the gradient penalty.

    Args:
        name: the value of ``train.loss``.
        real_logits: ``D(x, y)``, ``(B,)``.
        fake_logits: ``D(G(z, y), y)``, ``(B',)``.

    Raises:
        GankitError: unknown ``name``.
    """
    _check_name(name)
    return _D_LOSSES[name](real_logits, fake_logits)


def g_loss(
    name: str, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None
) -> torch.Tensor:
    """Generator loss ``name`` (``hinge``, ``nonsaturating``, ``wgan-gp`` or ``rpgan``).

    Args:
        name: the value of ``train.loss``.
        fake_logits: ``D(G(z, y), y)``, ``(B,)``.
        real_logits: ``D(x, y)`` on a real batch, ``(B,)``: needed by the paired losses
            (:data:`PAIRED_LOSSES`), ignored by the others.

    Raises:
        GankitError: unknown ``name``, or a paired loss without ``real_logits``.
    """
    _check_name(name)
    if name not in PAIRED_LOSSES:
        return _G_LOSSES[name](fake_logits)
    if real_logits is None:
        raise GankitError(f"train.loss = {name}: the G loss needs D's logits on real images")
    return _G_LOSSES[name](fake_logits, real_logits)


def aux_classifier_loss(class_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Auxiliary-classifier term (AC-GAN, Odena et al. 2017, the ``L_C`` term).

    ``L_C = -E[log p(c = y | x)]``: the mean cross-entropy of D's class head against the labels,
    added with weight ``train.aux_weight`` to both the D loss (real and fake images) and the
    G loss (fake images).

    Args:
        class_logits: ``(B, n_classes)`` unnormalised class scores.
        y: ``(B,)`` int64 labels in ``[0, n_classes)``.

    Returns:
        Scalar fp32 loss.
    """
    return F.cross_entropy(class_logits.float(), y)
