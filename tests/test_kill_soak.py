"""Short kill soak (the full one: `python benchmarks/kill_soak.py --kills 20`): SIGKILL
`gankit train` at random moments, resume each time; nothing lost, the end result and the log
exact."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from kill_soak import soak  # noqa: E402


def test_short_kill_soak(tmp_path):
    report = soak(tmp_path, kills=3, steps=20, seed=1, max_delay=1.0)
    assert report["kills"] == 3 and report["resume_failures"] == 0
    assert report["unreadable_checkpoints"] == 0 and report["step_went_back"] == 0
    assert report["final_bitwise_equal"] and report["log_equal"], report


def test_short_kill_soak_with_evaluations(tmp_path):
    """Evaluations every 2 steps: kills land in evaluations too, and the eval records and
    ``checkpoints/best`` end as the uninterrupted run's."""
    report = soak(tmp_path, kills=3, steps=8, seed=2, max_delay=1.0, eval_every=2)
    assert report["kills"] == 3 and report["resume_failures"] == 0
    assert report["unreadable_checkpoints"] == 0 and report["step_went_back"] == 0
    assert report["final_bitwise_equal"] and report["log_equal"] and report["best_equal"], report
