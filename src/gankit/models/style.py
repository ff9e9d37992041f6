"""The layer choices of one network (G or D) that the model config switches: how weights are
parametrised (spectral norm, weight norm or plain), which normalisation and activation the
blocks use, and how D down-samples. Every architecture builds its layers through a
:class:`NetStyle`, so each switch reaches every architecture that has the layer in question.

- ``model.G_norm`` / ``model.D_norm``: ``batch`` (G: conditional BN, G's default), ``group``
  (group norm, :mod:`gankit.layers.group_norm`; ``model.num_groups``), ``weight`` (weight-
  normalised layers, :mod:`gankit.layers.weight_norm`: strict hidden layers and affine last
  layers as Xiang & Li 2017, or affine everywhere with ``model.wn_affine``; no activation
  normalisation) or ``none``. In a class-conditional G the conditional gain/bias stays in every
  case (with ``weight`` / ``none`` without a normalisation before it), since the label enters G
  there. D's default is ``none``; D never normalises its first layer.
- ``model.activation``: ``relu`` (each architecture's own rectifiers: ReLU, and
  LeakyReLU(0.1) in DCGAN's D; the default), ``selu`` or ``tprelu``
  (:mod:`gankit.layers.activations`) in place of all of them.
- ``model.D_down``: ``avgpool`` (ResNet D's 2x2 average pooling; DCGAN's D keeps its stride-2
  4x4 conv) or ``fmp``: fractional max-pooling by ``model.fmp_alpha``
  (:mod:`gankit.layers.pooling`; random or pseudo-random, overlapping or disjoint).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from gankit.config import ConfigError, ModelConfig
from gankit.layers.activations import ReLU, TPReLU
from gankit.layers.batchnorm import BatchNorm2d
from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d
from gankit.layers.cond_norm import ConditionalAffine2d, ConditionalNorm2d
from gankit.layers.group_norm import ConditionalGroupNorm2d
from gankit.layers.pooling import FractionalMaxPool2d, fmp_output_size
from gankit.layers.spectral_norm import sn_conv2d, sn_linear, spectral_norm
from gankit.layers.weight_norm import wn_conv2d, wn_conv_transpose2d, wn_linear

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "DOWNSAMPLERS",
    "D_STYLE",
    "G_STYLE",
    "NORMS",
    "NetStyle",
]

NORMS = ("batch", "group", "weight", "none")
ACTIVATIONS = ("relu", "selu", "tprelu")
DOWNSAMPLERS = ("avgpool", "fmp")
BLOCKS = ("resnet", "reversible")
"""The values of the switches; ``gankit.config.CHOICES`` lists them for
:func:`gankit.config.validate` (which :func:`gankit.models.build` runs on the model section), as
does its rule that weight norm replaces spectral norm."""


@dataclass(frozen=True)
class NetStyle:
    """Layer factory of one network; the defaults are the architectures' own layers (spectral
    norm, BN in G, none in D, their rectifiers, average pooling).

    Attributes:
        net: ``"G"`` or ``"D"`` (names config keys in errors).
        sn, sn_eps: spectral norm on weights (not with ``norm = "weight"``).
        norm: one of :data:`NORMS`; num_groups, eps: group-norm groups and BN/GN epsilon.
        activation: one of :data:`ACTIVATIONS`.
        wn_affine: affine weight norm in every layer (else strict hidden layers).
        down: one of :data:`DOWNSAMPLERS`; fmp_*: fractional max-pooling settings.
    """

    net: str = "G"
    sn: bool = True
    sn_eps: float = 1e-6
    norm: str = "batch"
    num_groups: int = 32
    eps: float = 1e-5
    activation: str = "relu"
    wn_affine: bool = False
    down: str = "avgpool"
    fmp_alpha: float = math.sqrt(2)
    fmp_random: bool = True
    fmp_overlap: bool = True

    @classmethod
    def of(cls, cfg: ModelConfig, net: str) -> NetStyle:
        """The style of network ``net`` (``"G"``/``"D"``) of ``cfg`` (a validated model
        section: choices and the weight-norm/spectral-norm rule are checked by
        :func:`gankit.config.validate_section`)."""
        norm, sn = (cfg.G_norm, cfg.G_sn) if net == "G" else (cfg.D_norm, cfg.D_sn)
        return cls(
            net=net, sn=sn, sn_eps=cfg.sn_eps, norm=norm, num_groups=cfg.num_groups,
            eps=cfg.bn_eps, activation=cfg.activation, wn_affine=cfg.wn_affine,
            down=cfg.D_down, fmp_alpha=cfg.fmp_alpha, fmp_random=cfg.fmp_random,
            fmp_overlap=cfg.fmp_overlap,
        )  # fmt: skip

    # -- weights -----------------------------------------------------------------------------
    @property
    def wn(self) -> bool:
        return self.norm == "weight"

    def conv2d(self, *args: Any, last: bool = False, **kwargs: Any) -> nn.Module:
        """``nn.Conv2d`` with spectral norm, weight norm (affine when ``last``) or plain."""
        if self.wn:
            return wn_conv2d(*args, affine=last or self.wn_affine, **kwargs)
        return sn_conv2d(*args, sn=self.sn, eps=self.sn_eps, **kwargs)

    def linear(self, *args: Any, last: bool = False, **kwargs: Any) -> nn.Module:
        """``nn.Linear`` with spectral norm, weight norm (affine when ``last``) or plain."""
        if self.wn:
            return wn_linear(*args, affine=last or self.wn_affine, **kwargs)
        return sn_linear(*args, sn=self.sn, eps=self.sn_eps, **kwargs)

    def conv_transpose2d(self, *args: Any, **kwargs: Any) -> nn.Module:
        """``nn.ConvTranspose2d`` with spectral norm, (strict) weight norm or plain."""
        if self.wn:
            return wn_conv_transpose2d(*args, affine=self.wn_affine, **kwargs)
        conv = nn.ConvTranspose2d(*args, **kwargs)
        return spectral_norm(conv, eps=self.sn_eps) if self.sn else conv

    # -- normalisation -----------------------------------------------------------------------
    def _check_groups(self, channels: int) -> None:
        if self.norm == "group" and channels % self.num_groups:
            raise ConfigError(
                f"config key 'model.num_groups': {self.num_groups} groups do not divide a "
                f"{channels}-channel feature map of {self.net} (model.{self.net}_norm=group)"
            )

    def norm2d(self, channels: int) -> nn.Module:
        """Unconditional normalisation over ``channels``: BN, GN, or the identity."""
        self._check_groups(channels)
        if self.norm == "batch":
            return BatchNorm2d(channels, eps=self.eps)
        if self.norm == "group":
            return nn.GroupNorm(self.num_groups, channels, eps=self.eps)
        return nn.Identity()

    def cond_norm2d(self, channels: int, **cond: Any) -> ConditionalNorm2d:
        """Class-conditional BN, GN, or gain/bias alone; ``cond``: the conditioning arguments
        of :class:`~gankit.layers.cond_norm.ConditionalNorm2d` (cond_dim, n_classes, ...)."""
        self._check_groups(channels)
        if self.norm == "batch":
            return ConditionalBatchNorm2d(channels, eps=self.eps, **cond)
        if self.norm == "group":
            return ConditionalGroupNorm2d(channels, self.num_groups, eps=self.eps, **cond)
        return ConditionalAffine2d(channels, **cond)

    # -- activation and down-sampling --------------------------------------------------------
    def act(self, channels: int, default: Callable[[], nn.Module] = ReLU) -> nn.Module:
        """The activation over ``channels``: ``default()`` for ``relu``, SELU or TPReLU."""
        if self.activation == "selu":
            return nn.SELU()
        if self.activation == "tprelu":
            return TPReLU(channels)
        return default()

    def pool(self) -> FractionalMaxPool2d | None:
        """D's fractional max-pooling layer, or ``None`` for the architecture's own."""
        if self.down != "fmp":
            return None
        return FractionalMaxPool2d(
            self.fmp_alpha, pseudo_random=not self.fmp_random, overlapping=self.fmp_overlap
        )

    def down_size(self, size: int) -> int:
        """Side length after one down-sampling of a ``size`` feature map."""
        if self.down == "fmp":
            return fmp_output_size(size, self.fmp_alpha)
        return size // 2


G_STYLE = NetStyle()
"""The default G layers: spectral norm, conditional BN, ReLU."""
D_STYLE = NetStyle(net="D", norm="none")
"""The default D layers: spectral norm, no normalisation, ReLU, average pooling."""
