"""Training curves of a run for the ``gankit serve`` page: ``metrics.jsonl`` records → series.

Each series is a list of ``[step, value]`` pairs sorted by step. A step logged twice (a run
rolled back and trained again, or ``gankit eval`` run twice on one checkpoint) keeps its last
value, so the curve follows the run that was kept. Values that are not finite numbers (a NaN
stop) are dropped, since JSON has no NaN.
"""

from __future__ import annotations

import math
from typing import Any

LOSS_KEYS = ("loss_D", "loss_G", "D_real", "D_fake")
SIGMA0_PREFIX = "sigma0/"

Series = list[list[float]]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sorted(points: dict[float, float]) -> Series:
    return [[step, points[step]] for step in sorted(points)]


def training_curves(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Group ``metrics.jsonl`` records into the page's curves.

    Returns:
        ``{"losses": {key: series}`` for loss_D, loss_G, D_real, D_fake;
        ``"sigma0": {"G": {layer: series}, "D": {layer: series}}`` (the top singular value of
        each tracked weight, key ``sigma0/<net>/<layer>``); ``"eval": {metric: series}`` from
        ``{"step", "eval": {...}}`` rows; ``"warnings": [{"step", "warning"}]``;
        ``"last_step"``: the largest logged step (None without records)}.
    """
    losses: dict[str, dict[float, float]] = {k: {} for k in LOSS_KEYS}
    sigma0: dict[str, dict[str, dict[float, float]]] = {"G": {}, "D": {}}
    evals: dict[str, dict[float, float]] = {}
    warnings = []
    records = [r for r in records if isinstance(r, dict)]  # a hand-edited line may be anything
    for record in records:
        step = record.get("step")
        if not _finite(step):
            continue
        for key, value in record.items():
            if key in losses and _finite(value):
                losses[key][step] = value
            elif key.startswith(SIGMA0_PREFIX) and _finite(value):
                net, _, layer = key[len(SIGMA0_PREFIX) :].partition("/")
                if net in sigma0 and layer:
                    sigma0[net].setdefault(layer, {})[step] = value
        results = record.get("eval")
        if isinstance(results, dict):
            for name, value in results.items():
                if _finite(value):
                    evals.setdefault(str(name), {})[step] = value
        if "warning" in record:
            warnings.append({"step": step, "warning": str(record["warning"])})
    steps = [r["step"] for r in records if _finite(r.get("step"))]
    return {
        "losses": {k: _sorted(v) for k, v in losses.items() if v},
        "sigma0": {
            net: {k: _sorted(v) for k, v in layers.items()} for net, layers in sigma0.items()
        },
        "eval": {k: _sorted(v) for k, v in evals.items()},
        "warnings": warnings,
        "last_step": max(steps) if steps else None,
    }
