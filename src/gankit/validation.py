"""The whole check of a config, before anything is built or written: :func:`gankit.config.validate`
(field types, ranges, choices, cross-field rules), then the values whose grammar a component
owns: the DiffAugment and consistency-regularisation policies (:mod:`gankit.augment`), the
AmbientGAN measurement specs for images of the model's size (:mod:`gankit.measurements`),
the metric names (:mod:`gankit.metrics`) and, with ``eval.every > 0``, the evaluation's sample
count and batch size (:mod:`gankit.evaluation`). ``gankit.validate``, ``gankit info``, ``train``,
``resume`` and ``bench`` run it, so a value ``train`` would refuse is refused by each of them.
"""

from __future__ import annotations

from gankit import augment
from gankit.config import Config, ConfigError
from gankit.config import validate as validate_fields
from gankit.errors import GankitError
from gankit.evaluation import MIN_IMAGES
from gankit.generation import MAX_SAMPLES
from gankit.measurements import build_measurement
from gankit.metrics import get_metric

__all__ = ["validate"]


def validate(cfg: Config) -> Config:
    """Check ``cfg`` completely (module docstring); returns ``cfg``.

    Raises:
        ConfigError: a bad field, range, choice or rule (:func:`gankit.config.validate`).
        GankitError: a bad policy, measurement spec or metric name, naming its key; an EMA or
            LeCam decay of 1; an
            ``eval.n`` outside 10..1,000,000 (or ``eval.batch_size`` over 1,000,000) with
            ``eval.every > 0``.
    """
    validate_fields(cfg)
    t, m = cfg.train, cfg.model
    for key in ("ema_decay", "lecam_decay"):  # (a stored config of 1 still loads, to read it)
        if getattr(t, key) == 1:
            raise ConfigError(
                f"config key 'train.{key}' must be below 1 to train, got 1.0 (an average's "
                "decay: at 1 the average never leaves its start)"
            )
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
    if cfg.eval.every:  # else the eval hook refuses them at its first step, mid-run
        _check_eval_counts(cfg.eval.n, cfg.eval.batch_size)
    return cfg


def _check_eval_counts(n: int, batch_size: int) -> None:
    """The sample count and batch size of the training loop's evaluation, as
    :func:`gankit.evaluation.periodic_eval` needs them."""
    if not MIN_IMAGES <= n <= MAX_SAMPLES:
        raise ConfigError(
            f"config key 'eval.n' must be in {MIN_IMAGES}..{MAX_SAMPLES:,} when eval.every > 0, "
            f"got {n} (samples per evaluation)"
        )
    if batch_size > MAX_SAMPLES:
        raise ConfigError(
            f"config key 'eval.batch_size' must be in 1..{MAX_SAMPLES:,}, got {batch_size} "
            "(samples per forward pass)"
        )
