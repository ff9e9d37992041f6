"""Regularisers: WGAN-GP gradient penalty and BigGAN's modified orthogonal regularisation.

Both return a scalar loss tensor that the training loop adds to the D or G loss, so autograd
produces their gradients. :func:`weight_matrices` is the shared walk over a network's raw weights
(also used by :mod:`gankit.analysis.spectrum`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

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
