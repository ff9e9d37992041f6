"""AmbientGAN in the training loop (Bora, Price & Dimakis, ICLR 2018): real data, fakes, D.

``train.measurement`` names the measurement the data went through (a spec of
:mod:`gankit.measurements`; ``""`` = off) and ``train.ambient_mode`` how the measured data are
used:

- ``ambient`` (the paper): the real data are measurements ``y``; D sees them against
  ``f_θ(G(z))`` with a fresh θ per sample, drawn from the trainer's latent generator (so a
  resumed run continues exactly). For measurements that are not images of the model's size
  (extracted patches, projections) D is a
  :class:`~gankit.models.measurement_d.MeasurementDiscriminator`.
- ``ignore`` (baseline): the measurements are trained on as if they were clean images.
- ``unmeasure`` (baseline): the measurement's approximate inverse (in-painting, Wiener
  deconvolution) is applied to every measurement once, at start-up, with the θ stored by
  ``gankit measure``; the result is trained on as clean images.

The data are a ``.npz`` written by ``gankit measure`` (its spec must equal
``train.measurement``) or, for measurements that are images, any image source whose images
are already measurements (``ambient`` and ``ignore`` only: without θ there is no inverse).
G, its EMA copy, sampling and evaluation stay clean: only D's inputs are measured.

``train.d_measurement`` (instance noise) is the same idea on any data: an image-valued
measurement applied with fresh θ to everything D sees, real and fake (after DiffAugment), so
that D compares the two distributions through an invertible-in-distribution channel. The
WGAN-GP penalty is still taken at the unmeasured interpolates; R1/R2 at D's measured inputs.
``train.d_measurement_fade`` anneals it (Sønderby et al. 2017, "annealed instance noise"):
D sees ``x + a (f_θ(x) - x)`` with ``a`` falling linearly from 1 at step 0 to 0 at that step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from gankit.config import Config, ModelConfig
from gankit.data import ImageDataset, MeasuredDataset, to_float, to_uint8
from gankit.errors import GankitError
from gankit.layers.init import init_weights
from gankit.measurements import build_measurement, invertible_measurements
from gankit.models import MeasurementDiscriminator

AMBIENT_MODES = ("ambient", "ignore", "unmeasure")


def _identity(x: Tensor) -> Tensor:
    return x


def unmeasure(data: MeasuredDataset, inverse: Callable[[Tensor, Tensor], Tensor]) -> ImageDataset:
    """The unmeasure baseline's data: ``inverse(y, θ)`` of every measurement, as uint8 images
    (clipped to ``[-1, 1]``). The whole set is inverted in one call (held in memory as float)."""
    y = torch.from_numpy(data.x)
    x = inverse(to_float(y) if y.dtype == torch.uint8 else y, torch.from_numpy(data.theta))
    return ImageDataset(
        x=to_uint8(x).numpy(),
        y=data.y,
        n_classes=data.n_classes,
        class_names=data.class_names,
        source=f"{data.source}, unmeasured",
    )


class Ambient:
    """The AmbientGAN part of one run (module doc); inert when ``train.measurement`` and
    ``train.d_measurement`` are empty.

    Raises:
        GankitError: a bad spec, a patch larger than the model's images, or
            ``eval.every > 0`` (the periodic eval would compare samples with measurements).
    """

    def __init__(self, cfg: Config):
        t, m = cfg.train, cfg.model
        self.mode = t.ambient_mode
        self.image_shape = (m.channels, m.resolution, m.resolution)
        self.measurement = (
            build_measurement(t.measurement, self.image_shape, param="train.measurement")
            if t.measurement
            else None
        )
        self.d_measurement = (
            build_measurement(t.d_measurement, self.image_shape, param="train.d_measurement")
            if t.d_measurement
            else None
        )
        if self.d_measurement is not None and not self.d_measurement.image_output(self.image_shape):
            raise GankitError(
                f"train.d_measurement '{t.d_measurement}': its outputs are not images of the "
                f"model's size {self.image_shape}; D's inputs need an image-valued measurement"
            )
        if self.measurement is not None and cfg.eval.every > 0:
            raise GankitError(
                "eval.every > 0 with train.measurement: the eval reference would be the measured "
                "data; set eval.every=0 and run `gankit eval RUN --data CLEAN_IMAGES`"
            )

    @property
    def measures_fakes(self) -> bool:
        """Whether D sees measured fakes (ambient mode with a measurement)."""
        return self.measurement is not None and self.mode == "ambient"

    def _image_output(self) -> bool:
        return self.measurement.image_output(self.image_shape)

    def discriminator(self, D: nn.Module, model_cfg: ModelConfig) -> nn.Module:
        """``D``, or a new MLP D (initialised with ``model.init``) when D sees measurements
        that are not images of the model's size."""
        if not self.measures_fakes or self._image_output():
            return D
        shape = self.measurement.output_shape(self.image_shape)
        D = MeasurementDiscriminator(model_cfg, shape)
        init_weights(D, model_cfg.init)
        return D

    def real_data(self, data: ImageDataset | MeasuredDataset) -> ImageDataset | MeasuredDataset:
        """What D sees as real: the measurements (ambient, ignore) or their inverse
        (unmeasure); checks that the data and the mode fit ``train.measurement``."""
        measured = isinstance(data, MeasuredDataset)
        if self.measurement is None:
            if measured:
                raise GankitError(
                    f"{data.source}: holds measurements; set --set train.measurement="
                    f"{data.measurement} (and train.ambient_mode) to train on them"
                )
            return data
        spec = self.measurement.spec
        if measured and data.measurement != spec:
            raise GankitError(
                f"train.measurement = '{spec}' but {data.source} holds '{data.measurement}' "
                "measurements; set train.measurement to the data's spec"
            )
        if not measured and not self._image_output():
            raise GankitError(
                f"train.measurement = '{spec}': its measurements are not images, so data.path "
                "must be a .npz written by `gankit measure`"
            )
        if self.mode == "ignore" and not self._image_output():
            raise GankitError(
                f"train.ambient_mode = ignore: '{spec}' measurements have shape "
                f"{self.measurement.output_shape(self.image_shape)}, not the model's images "
                f"{self.image_shape}; use ambient mode"
            )
        if self.mode != "unmeasure":
            return data
        if not self.measurement.invertible():
            raise GankitError(
                f"train.ambient_mode = unmeasure: '{spec}' has no approximate inverse; "
                f"measurements with one: {', '.join(invertible_measurements())}"
            )
        if not measured:
            raise GankitError(
                "train.ambient_mode = unmeasure needs the θ of each measurement: data.path must "
                "be a .npz written by `gankit measure`"
            )
        return unmeasure(data, self.measurement.inverse)

    def fake_measurement(self, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """``fake -> f_θ(fake)`` with θ from ``generator`` (ambient mode), else the identity."""
        return partial(self.measurement, generator=generator) if self.measures_fakes else _identity

    def measure_d_input(
        self, generator: torch.Generator, strength: Tensor | None = None
    ) -> Callable[[Tensor], Tensor]:
        """``images -> f_θ(images)`` for everything D sees (``train.d_measurement``, θ fresh per
        image from ``generator``), else the identity. With ``strength`` (a 0-dim tensor ``a``
        the caller updates in place, ``train.d_measurement_fade``) it is
        ``images + a (f_θ(images) - images)``: θ is drawn at every strength, even ``a = 0``."""
        if self.d_measurement is None:
            return _identity
        measure = partial(self.d_measurement, generator=generator)
        if strength is None:
            return measure
        return lambda x: torch.lerp(x, measure(x), strength.to(x.dtype))

    def grid(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Snapshot tiles ``(B, C, H, W)``: in ambient mode with image-valued measurements each
        tile is the clean sample and its measurement side by side ``(B, C, H, 2W)``."""
        if not self.measures_fakes or not self._image_output():
            return images
        return torch.cat([images, self.measurement(images, generator).clamp(-1, 1)], dim=3)
