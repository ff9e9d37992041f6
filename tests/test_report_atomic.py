"""gankit inspect writes its plots atomically: a failed or killed write keeps the old file."""

from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

from gankit.analysis.report import inspect_run


def _metrics(run_dir, steps=5):
    run_dir.mkdir()
    with open(run_dir / "metrics.jsonl", "w") as f:
        for s in range(1, steps + 1):
            rec = {"step": s, "loss_D": 1.0 / s, "loss_G": 2.0, "D_real": 0.1, "D_fake": -0.1}
            rec.update({f"sigma{i}/G/w": 2.0 - i + 0.1 * s for i in range(3)})
            f.write(json.dumps(rec) + "\n")


def test_failed_plot_write_keeps_the_old_plot(tmp_path, monkeypatch):
    _metrics(tmp_path / "run")
    plots = tmp_path / "run" / "plots"
    inspect_run(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in plots.iterdir()}
    assert sorted(before) == ["losses.png", "spectra.png", "summary.json"]
    assert all(before[n].startswith(b"\x89PNG") for n in ("losses.png", "spectra.png"))

    def fail_midway(fig, f, **kwargs):
        f.write(b"\x89PNG half a plot")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", fail_midway)
    with pytest.raises(OSError):
        inspect_run(tmp_path / "run")
    assert {p.name: p.read_bytes() for p in plots.iterdir()} == before  # no temp file either
