"""The collapse rule (BigGAN §4.1/4.2 observations; checked at every log over the previous
``window = 10`` logs, once at least 5 are available):

1. ``sigma0`` of any tracked **D** weight exceeds 3x its median over the window
   (D's spectral blow-up precedes collapse); or
2. ``loss_D < 0.05`` while ``loss_G > 3 * max(|median loss_G over the window|, 0.1)``
   (D wins outright and G's loss spikes); or
3. a sample-diversity signal (:mod:`gankit.training.sample_signals`, logged as
   ``diversity/pixel_std`` and ``diversity/pairwise``, each relative to the same number for real
   images) falls below ``DIVERSITY_FLOOR`` (0.1: the grid's samples vary less than a tenth as
   much as real images — a grid of one repeated image, e.g. all black, scores ≈ 0; healthy
   runs measured from their first logs stayed above 0.15); or
4. ``class_spread`` (models with an auxiliary classifier: the spread of the class head's
   predictions on the samples over that on real images) falls below ``SPREAD_FLOOR`` (0.3).

Rules 3 and 4 look at what G produces, so they catch a collapse in which D's weights and the
losses stay calm (e.g. every sample black); rules 1 and 2 need no samples.

A warning is written to ``metrics.jsonl`` (key ``warning``) and stderr; with
``train.collapse_rollback`` the trainer then rolls back to the last healthy checkpoint.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

__all__ = ["DIVERSITY_FLOOR", "SPREAD_FLOOR", "CollapseDetector", "sample_warnings"]

WINDOW = 10
MIN_HISTORY = 5
SIGMA_FACTOR = 3.0
D_LOSS_FLOOR = 0.05
G_LOSS_FACTOR = 3.0
DIVERSITY_FLOOR = 0.1
SPREAD_FLOOR = 0.3
DIVERSITY_KEYS = ("diversity/pixel_std", "diversity/pairwise")


def sample_warnings(record: dict[str, Any]) -> list[str]:
    """Warnings of the sample-signal floors (rules 3 and 4) for one record (no history)."""
    warnings = [
        f"{key} = {record[key]:.3g} < {DIVERSITY_FLOOR:g} (samples vary less than "
        f"{DIVERSITY_FLOOR:g}x as much as real images)"
        for key in DIVERSITY_KEYS
        if key in record and record[key] < DIVERSITY_FLOOR
    ]
    if "class_spread" in record and record["class_spread"] < SPREAD_FLOOR:
        warnings.append(
            f"class_spread = {record['class_spread']:.3g} < {SPREAD_FLOOR:g} (samples of "
            "different classes are classified as few classes)"
        )
    return warnings


class CollapseDetector:
    """Applies the module's collapse rule to successive log records."""

    def __init__(self, window: int = WINDOW):
        self.window = window
        self.history: dict[str, deque[float]] = {}

    def _series(self, key: str) -> deque[float]:
        return self.history.setdefault(key, deque(maxlen=self.window))

    def check(self, record: dict[str, Any]) -> list[str]:
        """Warnings raised by ``record`` (then appended to the history)."""
        warnings = []
        for key, value in record.items():
            if not key.startswith("sigma0/D/"):
                continue
            past = self._series(key)
            if len(past) >= MIN_HISTORY and value > SIGMA_FACTOR * statistics.median(past):
                warnings.append(
                    f"{key} = {value:.3g} exceeds {SIGMA_FACTOR:g}x its median "
                    f"{statistics.median(past):.3g} over the last {len(past)} logs"
                )
        warnings += sample_warnings(record)
        past_g = self._series("loss_G")
        if len(past_g) >= MIN_HISTORY:
            ref = G_LOSS_FACTOR * max(abs(statistics.median(past_g)), 0.1)
            if record["loss_D"] < D_LOSS_FLOOR and record["loss_G"] > ref:
                warnings.append(
                    f"loss_D = {record['loss_D']:.3g} < {D_LOSS_FLOOR:g} while loss_G = "
                    f"{record['loss_G']:.3g} > {ref:.3g}"
                )
        for key, value in record.items():
            if key == "loss_G" or key.startswith("sigma0/D/"):
                self._series(key).append(float(value))
        return warnings

    def state_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.history.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.history = {k: deque(v, maxlen=self.window) for k, v in state.items()}
