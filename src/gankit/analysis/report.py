"""``gankit inspect RUN``: plots of losses and singular-value curves, plus a JSON summary.

Reads ``RUN/metrics.jsonl`` (:class:`gankit.run.RunDir`) and writes into ``RUN/plots/``
(or ``out_dir``): ``losses.png`` (loss_D, loss_G, D_real, D_fake over G steps),
``spectra.png`` (sigma_0, sigma_1, sigma_2 of each tracked weight of G and, beside them, of D;
log scale, BigGAN Fig. 3 style) and ``summary.json`` (steps, last losses, collapse warnings,
rollbacks, eval results).

On every plot a dashed orange vertical line marks a step with a collapse warning and a solid red
line a rollback (``warning`` records of ``metrics.jsonl``; a rollback's record carries its number
as the key ``rollback``). After a rollback the log replays steps it already has; each replay is
drawn as a new segment of the same curve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from gankit.analysis.common import write_json  # noqa: E402
from gankit.errors import GankitError  # noqa: E402
from gankit.io_utils import atomic_write  # noqa: E402
from gankit.run import RunDir  # noqa: E402

__all__ = ["inspect_run"]


Series = dict[str, tuple[list, list]]
Marks = list[tuple[int, bool]]  # (step, is_rollback)


def _draw(ax: Any, title: str, series: Series, marks: Marks, log: bool, legend: bool) -> None:
    for name, (steps, values) in series.items():
        ax.plot(steps, values, label=name, linewidth=1.2)
    labelled: set[bool] = set()
    for step, rollback in marks:
        label = None if rollback in labelled else ("rollback" if rollback else "collapse warning")
        labelled.add(rollback)
        ax.axvline(step, color="red" if rollback else "orange", alpha=0.7, linewidth=1,
                   linestyle="-" if rollback else "--", label=label)  # fmt: skip
    ax.set_xlabel("G step")
    ax.set_title(title, fontsize=9)
    if log:
        ax.set_yscale("log")
    if series and legend:
        ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def _figure(path: Path, panels: list[list[tuple[str, Series, bool]]], marks: Marks) -> Path:
    """One PNG of ``panels[row][col] = (title, series, log)``; legends in the first row. Written
    atomically (:func:`gankit.io_utils.atomic_write`): a kill leaves the old file or none."""
    rows, cols = len(panels), len(panels[0])
    fig, axes = plt.subplots(rows, cols, figsize=(8 * cols, 4.5 * rows), squeeze=False)
    try:
        for r, row in enumerate(panels):
            for c, (title, series, log) in enumerate(row):
                _draw(axes[r][c], title, series, marks, log, legend=r == 0)
        fig.tight_layout()
        dpi = 100 if rows == 1 else 70
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def _series(records: list[dict[str, Any]], keys: list[str]) -> Series:
    """``{key: (steps, values)}``; where the step goes back (a rollback's replay) a NaN point
    breaks the line so that the replay starts a new segment."""
    out: Series = {}
    for key in keys:
        steps: list = []
        values: list = []
        for r in records:
            if not isinstance(r.get(key), (int, float)):  # absent, or not a number
                continue
            if steps and r["step"] <= steps[-1]:
                steps.append(r["step"])
                values.append(float("nan"))
            steps.append(r["step"])
            values.append(r[key])
        out[key] = (steps, values)
    return out


def _is_rollback(record: dict) -> bool:
    """A warning record of a rollback: the trainer numbers them (key ``rollback``); runs logged
    before it did are recognised by the message it wrote then."""
    if "rollback" in record:
        return isinstance(record["rollback"], int)
    return record["warning"].startswith("rolled back to ")


def inspect_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the plots and ``summary.json`` of ``run_dir``; returns the written paths.

    Raises:
        GankitError: ``run_dir`` has no ``metrics.jsonl``, it is not a regular file or it
            holds no log record.
    """
    run = RunDir(run_dir)
    # records a hand edit or another tool could have left malformed are skipped
    records = [r for r in run.read_metrics() if isinstance(r.get("step"), int)]
    logs = [r for r in records if "loss_D" in r]
    if not logs:
        raise GankitError(f"{run.metrics_file}: no training log records yet")
    out = Path(out_dir) if out_dir is not None else run.plots
    out.mkdir(parents=True, exist_ok=True)
    warnings = [r for r in records if isinstance(r.get("warning"), str)]
    marks = [(r["step"], _is_rollback(r)) for r in warnings]
    losses = _series(logs, ["loss_D", "loss_G", "D_real", "D_fake"])
    paths = [_figure(out / "losses.png", [[("losses and mean D logits", losses, False)]], marks)]
    spectra = []
    for i in range(3):
        row = []
        for net in ("G", "D"):
            keys = sorted({k for r in logs for k in r if k.startswith(f"sigma{i}/{net}/")})
            series = {k.split("/", 2)[2]: v for k, v in _series(logs, keys).items()}
            row.append((f"sigma_{i} of {net}'s weights", series, True))
        spectra.append(row)
    paths.append(_figure(out / "spectra.png", spectra, marks))
    last = logs[-1]
    summary = {
        "run_dir": str(run_dir),
        "steps": last["step"],
        "last": {k: last.get(k) for k in ("loss_D", "loss_G", "D_real", "D_fake", "img_per_s")},
        "warnings": [
            {"step": r["step"], "warning": r["warning"]} for r in warnings if not _is_rollback(r)
        ],
        "rollbacks": [
            {"step": r["step"], "warning": r["warning"]} for r in warnings if _is_rollback(r)
        ],
        "eval": [
            {"step": r["step"], **r["eval"]} for r in records if isinstance(r.get("eval"), dict)
        ],
    }
    paths.append(write_json(out / "summary.json", summary))  # a NaN loss becomes null
    return paths
