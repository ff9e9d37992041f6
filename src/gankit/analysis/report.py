"""``gankit inspect RUN``: plots of losses and sigma_0 curves, plus a JSON summary.

Reads ``RUN/metrics.jsonl`` (:class:`gankit.run.RunDir`) and writes into ``RUN/plots/``
(or ``out_dir``): ``losses.png`` (loss_D, loss_G, D_real, D_fake over G steps),
``sigma0_G.png`` / ``sigma0_D.png`` (sigma_0 of each tracked weight, log scale, BigGAN Fig. 3
style) and ``summary.json`` (steps, last losses, collapse warnings, eval results).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from gankit.errors import GankitError  # noqa: E402
from gankit.run import RunDir  # noqa: E402

__all__ = ["inspect_run"]


def _plot(path: Path, title: str, series: dict[str, tuple[list, list]], log: bool) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, (steps, values) in series.items():
        ax.plot(steps, values, label=name, linewidth=1.2)
    ax.set_xlabel("G step")
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    if series:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _series(records: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if key in r]
        out[key] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def inspect_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the plots and ``summary.json`` of ``run_dir``; returns the written paths.

    Raises:
        GankitError: ``run_dir`` has no ``metrics.jsonl`` or it holds no log record.
    """
    run = RunDir(run_dir)
    records = run.read_metrics()
    logs = [r for r in records if "loss_D" in r]
    if not logs:
        raise GankitError(f"{run.metrics_file}: no training log records yet")
    out = Path(out_dir) if out_dir is not None else run.plots
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        _plot(
            out / "losses.png",
            "losses and mean D logits",
            _series(logs, ["loss_D", "loss_G", "D_real", "D_fake"]),
            log=False,
        )
    ]
    for net in ("G", "D"):
        keys = sorted({k for r in logs for k in r if k.startswith(f"sigma0/{net}/")})
        series = {k.split("/", 2)[2]: v for k, v in _series(logs, keys).items()}
        paths.append(
            _plot(out / f"sigma0_{net}.png", f"sigma_0 of {net}'s weights", series, log=True)
        )
    last = logs[-1]
    summary = {
        "run_dir": str(run_dir),
        "steps": last["step"],
        "last": {k: last[k] for k in ("loss_D", "loss_G", "D_real", "D_fake", "img_per_s")},
        "warnings": [
            {"step": r["step"], "warning": r["warning"]} for r in records if "warning" in r
        ],
        "eval": [{"step": r["step"], **r["eval"]} for r in records if "eval" in r],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    paths.append(out / "summary.json")
    return paths
