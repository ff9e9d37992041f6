"""The whole check of a config, before anything is built or written: :func:`gankit.config.validate`
(field types, ranges, choices, cross-field rules), then the values whose grammar a component
owns: the DiffAugment and consistency-regularisation policies (:mod:`gankit.augment`), the
AmbientGAN measurement specs for images of the model's size (:mod:`gankit.measurements`) and
the metric names (:mod:`gankit.metrics`). ``gankit.validate``, ``gankit info``, ``train``,
``resume`` and ``bench`` run it, so a value ``train`` would refuse is refused by each of them.
"""

from __future__ import annotations

from gankit import augment
from gankit.config import Config, ConfigError
from gankit.config import validate as validate_fields
from gankit.errors import GankitError
from gankit.measurements import build_measurement
from gankit.metrics import get_metric

__all__ = ["validate"]


def validate(cfg: Config) -> Config:
    """Check ``cfg`` completely (module docstring); returns ``cfg``.

    Raises:
        ConfigError: a bad field, range, choice or rule (:func:`gankit.config.validate`).
        GankitError: a bad policy, measurement spec or metric name, naming its key.
    """
    validate_fields(cfg)
    t, m = cfg.train, cfg.model
    augment.parse_policy(t.diffaug, "train.diffaug")
    augment.parse_policy(t.cr_augment, "train.cr_augment")
    for key in ("measurement", "d_measurement"):
        if spec := getattr(t, key):
            build_measurement(spec, (m.channels, m.resolution, m.resolution), f"train.{key}")
    for name in cfg.eval.metrics:
        try:
            get_metric(name)
        except GankitError as err:
            raise ConfigError(f"config key 'eval.metrics': {err}") from None
    return cfg
