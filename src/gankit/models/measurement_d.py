"""A discriminator for measurements that are not images of the model's size (AmbientGAN).

AmbientGAN's D judges measurements ``y = f_θ(x)``; for extracted patches and 1-D projections
(``gankit.measurements``) ``y`` is not an image the architecture's D accepts, so D is a small
MLP on the flattened measurement with the same projection head as every gankit D
(:class:`~gankit.models.base.ProjectionDiscriminator`: ``psi(h) + <embed(y), h>``, optional
auxiliary classifier): ``h = lrelu(W2 lrelu(W1 flatten(y)))``, width ``8 * model.D_ch``,
spectrally normalised with ``model.D_sn``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gankit.config import ModelConfig
from gankit.layers.spectral_norm import sn_linear
from gankit.models.base import ProjectionDiscriminator
from gankit.models.dcgan import LRELU_SLOPE
from gankit.models.style import NetStyle

__all__ = ["MeasurementDiscriminator"]

WIDTH_MULT = 8  # hidden width = WIDTH_MULT * model.D_ch


class MeasurementDiscriminator(ProjectionDiscriminator):
    """``D(y: (B, *in_shape), labels: (B,)) -> (B,)`` logits for measurements of shape
    ``in_shape`` (e.g. ``(C, P)`` projections, ``(m, n + 1)`` Gaussian projections)."""

    def __init__(self, cfg: ModelConfig, in_shape: tuple[int, ...]):
        width = WIDTH_MULT * cfg.D_ch
        super().__init__(
            width, cfg.n_classes, cfg.resolution, cfg.channels, style=NetStyle.of(cfg, "D"),
            aux_classifier=cfg.aux_classifier,
        )  # fmt: skip
        self.in_shape = tuple(in_shape)
        sn = dict(sn=cfg.D_sn, eps=cfg.sn_eps)
        self.body = nn.Sequential(
            sn_linear(math.prod(self.in_shape), width, **sn),
            nn.LeakyReLU(LRELU_SLOPE),
            sn_linear(width, width, **sn),
            nn.LeakyReLU(LRELU_SLOPE),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *in_shape) -> (B, width)``."""
        return self.body(x.flatten(1))

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}"
