"""Top singular values of weights, for BigGAN's collapse monitoring (Brock et al. 2019, §4.1).

BigGAN tracks the top three singular values ``sigma_0, sigma_1, sigma_2`` of each weight reshaped
to ``(out, fan_in)``: in G, ``sigma_0`` of some layers grows until training collapses; in D the
spectra are noisy with spikes. Values here are exact (``torch.linalg.svdvals`` in fp32), of the
raw weight: for a spectrally normalised layer that is ``parametrizations.weight.original``,
whose ``sigma_0`` the normalisation divides out.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from gankit.analysis.common import check_positive, check_tensor
from gankit.errors import GankitError
from gankit.regularizers import weight_matrices


@torch.no_grad()
def top_singular_values(weight: torch.Tensor, k: int = 3) -> torch.Tensor:
    """The ``k`` largest singular values of ``weight`` reshaped to ``(out, fan_in)``.

    Args:
        weight: ``(out, ...)`` with at least 2 dims, any dtype/device.
        k: how many values (``k >= 1``).

    Returns:
        fp32 ``(k,)`` in descending order, on ``weight``'s device; zero-padded when
        ``min(out, fan_in) < k`` (the missing values of a thin matrix count as 0).
    """
    check_tensor(weight, "weight", "(out, fan_in, ...)")
    check_positive(k, "k")
    s = torch.linalg.svdvals(weight.detach().float().flatten(1))[:k]
    return torch.cat([s, s.new_zeros(k - s.numel())])


def spectrum_report(
    module: nn.Module, k: int = 3, names: Collection[str] | None = None
) -> dict[str, list[float]]:
    """``{name: [sigma_0, ..., sigma_{k-1}]}`` for every weight of ``module`` with >= 2 dims.

    Names are the module path + ``".weight"`` (also for spectrally normalised layers, whose raw
    weight is measured), as listed by :func:`gankit.regularizers.weight_matrices`.

    Args:
        module: G or D.
        k: singular values per weight.
        names: only these weights (e.g. from :func:`pick_layers`); ``None`` means all.

    Raises:
        GankitError: a name in ``names`` is not a weight of ``module``.
    """
    weights = dict(weight_matrices(module))
    if names is None:
        names = list(weights)
    unknown = [n for n in names if n not in weights]
    if unknown:
        raise GankitError(
            f"spectrum: unknown weight(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(weights)}"
        )
    return {n: top_singular_values(weights[n], k).tolist() for n in names}


def pick_layers(module: nn.Module, n: int) -> list[str]:
    """``n`` representative weight names of ``module`` to track during training.

    Candidates are the >= 2-D weights except embeddings, in definition order (input to output).
    The picks are evenly spaced over that list and always include the first and last layer
    (``n = 1``: the first); all candidates when ``n`` exceeds their number.

    Args:
        module: G or D.
        n: how many (``train.sigma_layers``; 0 turns tracking off).

    Raises:
        GankitError: ``n < 0``.
    """
    if n < 0:
        raise GankitError(f"train.sigma_layers: expected an integer >= 0, got {n}")
    names = [name for name, _ in weight_matrices(module, embeddings=False)]
    if n >= len(names):
        return names
    if n == 1:
        return names[:1]
    step = (len(names) - 1) / (n - 1)  # >= 1, so the rounded indices are distinct
    return [names[round(i * step)] for i in range(n)]
