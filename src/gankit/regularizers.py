"""Regularisers: WGAN-GP gradient penalty, BigGAN's modified orthogonal regularisation, the
zero-centred R1/R2 penalties, LeCam regularisation and consistency regularisation.

Each returns a scalar loss tensor that the training loop adds to the D or G loss, so autograd
produces their gradients; :func:`d_regularization` sums the D-step terms that the ``train.*``
weights switch on. :func:`weight_matrices` is the shared walk over a network's raw weights
(also used by :mod:`gankit.analysis.spectrum`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from gankit.layers.init import raw_weight


def weight_matrices(
    module: nn.Module, embeddings: bool = True, exclude: Collection[str] = ()
) -> list[tuple[str, torch.Tensor]]:
    """Every ``weight`` of ``module`` with at least 2 dims, as ``(name, parameter)`` pairs.

    For a parametrized weight (spectral norm) the *raw* parameter
    ``<path>.parametrizations.weight.original`` is returned, still named ``<path>.weight``.
    Order is that of ``module.named_modules()`` (definition order: input layer first).

    Args:
        module: the network.
        embeddings: include ``nn.Embedding`` weights (class embeddings).
        exclude: module paths to skip, with everything under them (e.g. ``{"shared"}``).

    Returns:
        ``[(module_path + ".weight", weight (out, ...))]``; the parameter itself, not a copy.
    """
    skip = tuple(exclude)
    out: list[tuple[str, torch.Tensor]] = []
    for path, m in module.named_modules():
        if any(path == s or path.startswith(s + ".") for s in skip):
            continue
        if not embeddings and isinstance(m, nn.Embedding):
            continue
        own = parametrize.is_parametrized(m, "weight") or isinstance(
            getattr(m, "weight", None), nn.Parameter
        )
        w = raw_weight(m) if own else None
        if w is not None and w.dim() >= 2:
            out.append((f"{path}.weight" if path else "weight", w))
    return out


def gradient_penalty(
    D: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    y: torch.Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``lambda * E[(||grad_xhat D(xhat, y)||_2 - 1)^2]`` (Gulrajani et al. 2017).

    ``xhat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample; the norm is
    over all non-batch dimensions of the per-sample input gradient. The graph is kept
    (``create_graph=True``) so the penalty can be back-propagated into D's parameters.

    Args:
        D: critic, ``D(x: (B, C, H, W), y: (B,)) -> (B,)``.
        real: real images ``(B, C, H, W)`` (any ``(B, ...)`` shape).
        fake: generated images, same shape as ``real`` (detached here).
        y: labels ``(B,)`` passed to ``D`` with the interpolates.
        weight: ``lambda`` (``train.gp_weight``; 10 in the paper).
        generator: optional RNG for ``eps``.

    Returns:
        Scalar fp32 penalty.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must match")
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, device=real.device, generator=generator, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    out = D(x_hat, y)
    (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norms = torch.linalg.vector_norm(grad.float().flatten(1), dim=1)
    return weight * (norms - 1.0).square().mean()


def orthogonal_reg(
    module: nn.Module, beta: float, exclude: Collection[str] = ("shared",)
) -> torch.Tensor:
    """BigGAN's modified orthogonal regularisation (Brock et al. 2019, §3.1).

    ``R_beta = beta * sum_W ||G(W) ⊙ (1 - I)||_F^2`` over every weight ``W`` of >= 2 dims, where
    ``W`` is reshaped to ``(out, fan_in)`` so that each *row* is one filter ``w_i``, and
    ``G(W) = W W^T`` is the ``(out, out)`` Gram matrix of the filters, ``G_ij = <w_i, w_j>``.

    Why ``W W^T`` and not the literal ``W^T W`` of the paper: the paper's aim is to "minimise the
    pairwise cosine similarity between filters" without constraining their norms (the diagonal,
    ``||w_i||^2``, is masked out). BigGAN was written in TensorFlow, whose kernels flatten to
    ``(fan_in, out)`` with filters as *columns*, where ``W^T W`` is that filter Gram matrix. In
    PyTorch's ``(out, fan_in)`` layout the same matrix is ``W W^T``. (The ``(fan_in, fan_in)``
    matrix would instead decorrelate input dimensions, and for a 3x3 conv with ``fan_in = 9C``
    could not be made diagonal when ``out < fan_in``.)

    Skipped: ``nn.Embedding`` weights and modules under ``exclude`` (the default ``"shared"`` is
    BigGAN's shared class embedding, which BigGAN-PyTorch also leaves out). Spectrally normalised
    weights are regularised through their raw ``parametrizations.weight.original``.

    Gradient: ``dR/dW = 4 beta (G(W) ⊙ (1 - I)) W``. BigGAN-PyTorch adds
    ``2 beta (G(W) ⊙ (1 - I)) W`` to the gradient directly, i.e. its strength ``beta`` equals
    ``beta / 2`` here (its default 1e-4 corresponds to ``train.ortho_reg = 5e-5``).

    Args:
        module: the network (usually G).
        beta: the strength ``beta`` (``train.ortho_reg``).
        exclude: module paths to skip.

    Returns:
        Scalar fp32 loss (0 if the module has no such weights).
    """
    terms = []
    for _, w in weight_matrices(module, embeddings=False, exclude=exclude):
        w2 = w.float().flatten(1)
        gram = w2 @ w2.t()
        off_diag = gram * (1.0 - torch.eye(gram.shape[0], device=gram.device))
        terms.append(off_diag.square().sum())
    return beta * torch.stack(terms).sum() if terms else torch.zeros(())


def zero_centred_gp(grad: torch.Tensor, gamma: float) -> torch.Tensor:
    """Zero-centred gradient penalty ``gamma / 2 * E[||grad_x D(x)||_2^2]`` (Mescheder et al.
    2018, "Which training methods for GANs do actually converge?", §4.1): R1 when ``x`` are real
    images, R2 when they are generated (R3GAN, Huang et al. 2024, pairs both with the
    relativistic loss, :func:`gankit.losses.rpgan_d`).

    Args:
        grad: ``d D(x) / d x``, ``(B, C, H, W)`` (any ``(B, ...)``), with its graph kept
            (``create_graph=True``) so that the penalty trains D.
        gamma: the weight ``gamma`` (``train.r1_gamma`` / ``train.r2_gamma``).

    Returns:
        Scalar fp32 penalty.
    """
    return 0.5 * gamma * grad.float().flatten(1).square().sum(dim=1).mean()


def consistency_reg(logits: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """Consistency regularisation ``E_x[(D(x) - D(T(x)))^2]`` on real images (Zhang et al.
    2020, "Consistency regularization for generative adversarial networks"; the loop multiplies by
    ``train.cr_weight``, their lambda). D's logit is a scalar per image, so the squared norm is
    a square.

    Args:
        logits: ``D(x)`` on real images ``(B,)``; transformed: ``D(T(x))`` on the same images
            after the augmentation ``T``, ``(B,)``.
    """
    return (logits.float() - transformed.float()).square().mean()


class LeCamAnchors:
    """Exponential moving averages ``alpha_R``, ``alpha_F`` of D's mean output on real and on
    generated images (Tseng et al. 2021): ``alpha <- decay * alpha + (1 - decay) * mean``,
    the first update copying the mean. Kept on the device (no host sync) and resumable through
    :meth:`state_dict`.

    Args:
        decay: the EMA decay (0.99 in the paper).
        device: where the anchors live.
    """

    def __init__(self, decay: float = 0.99, device: torch.device | str = "cpu"):
        self.decay = decay
        self.real = torch.zeros((), device=device)
        self.fake = torch.zeros((), device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Average the means of ``real (B,)`` and ``fake (B',)`` logits into the anchors."""
        w = torch.where(self.count > 0, 1.0 - self.decay, 1.0)
        self.real.lerp_(real.float().mean(), w)
        self.fake.lerp_(fake.float().mean(), w)
        self.count += 1

    def state_dict(self) -> dict[str, Any]:
        return {"real": self.real.cpu(), "fake": self.fake.cpu(), "count": self.count.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("real", "fake", "count"):
            getattr(self, name).copy_(state[name])


def lecam_reg(real: torch.Tensor, fake: torch.Tensor, anchors: LeCamAnchors) -> torch.Tensor:
    """LeCam regularisation (Tseng et al. 2021, "Regularizing generative adversarial networks
    under limited data"): ``R_LC = E_x[(D(x) - alpha_F)^2] + E_z[(D(G(z)) - alpha_R)^2]``,
    pulling D's outputs on real images towards the running mean of its fake outputs and vice
    versa (the loop multiplies by ``train.lecam_weight``, their lambda). This is the paper's
    two-sided equation; the authors' code squares only ``relu`` of the same differences.

    Args:
        real: ``D(x)`` logits ``(B,)``; fake: ``D(G(z))`` logits ``(B',)``.
        anchors: the EMA anchors (updated by the caller, :func:`d_regularization`).
    """
    return (real.float() - anchors.fake).square().mean() + (
        fake.float() - anchors.real
    ).square().mean()


def lazy_factor(step: int, every: int) -> int:
    """Lazy regularisation (Karras et al. 2020, StyleGAN2 §3.1): a penalty computed only every
    ``every`` steps is multiplied by ``every`` to keep its average strength; 0 on other steps."""
    return every if step % every == 0 else 0


def d_regularization(
    logits: torch.Tensor,
    images: torch.Tensor,
    n_real: int,
    n_fake: int,
    lecam: LeCamAnchors | None = None,
    lecam_weight: float = 0.0,
    cr_weight: float = 0.0,
    r1_gamma: float = 0.0,
    r2_gamma: float = 0.0,
) -> torch.Tensor:
    """Sum of the D-step regularisers switched on by non-zero weights, for one D forward on
    ``images = cat(real, fake[, T(real)])`` (:func:`gankit.augment.d_input`).

    ``lecam_weight * R_LC + cr_weight * R_CR + R1(r1_gamma) + R2(r2_gamma)``; the anchors are
    updated with this batch first (as Tseng et al.'s code does). R1/R2 differentiate the logits
    w.r.t. ``images`` (D's actual input, after augmentation), which must require grad when
    ``r1_gamma`` or ``r2_gamma`` is non-zero (scale the gammas by :func:`lazy_factor`).

    Args:
        logits: D's logits ``(n_real + n_fake [+ n_real],)``; images: its input ``(N, C, H, W)``.
        n_real, n_fake: sizes of the real and fake parts (the rest are the CR rows).
    Returns:
        Scalar fp32 loss (0 when every weight is 0).
    """
    real, fake, transformed = logits.float().split([n_real, n_fake, len(logits) - n_real - n_fake])
    total = torch.zeros((), device=logits.device)
    if lecam_weight > 0:
        lecam.update(real, fake)
        total = total + lecam_weight * lecam_reg(real, fake, lecam)
    if cr_weight > 0:
        total = total + cr_weight * consistency_reg(real, transformed)
    if r1_gamma > 0 or r2_gamma > 0:
        (grad,) = torch.autograd.grad(
            logits[: n_real + n_fake].float().sum(), images, create_graph=True
        )
        total = total + zero_centred_gp(grad[:n_real], r1_gamma)
        total = total + zero_centred_gp(grad[n_real : n_real + n_fake], r2_gamma)
    return total
