"""Monitor: collapse rule, metrics.jsonl/TensorBoard records, inspect report."""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pytest
from PIL import Image

from gankit.analysis.report import _series, inspect_run
from gankit.cli import main
from gankit.errors import GankitError
from gankit.run import RunDir
from gankit.training.collapse import CollapseDetector
from gankit.training.monitor import Monitor


def _rec(step, loss_D=1.0, loss_G=0.5, sigma=1.0):
    return {"step": step, "loss_D": loss_D, "loss_G": loss_G, "sigma0/D/a.weight": sigma}


def test_sigma_blow_up_warns_only_with_history():
    det = CollapseDetector()
    assert det.check(_rec(0, sigma=100.0)) == []  # no history yet
    det = CollapseDetector()
    for s in range(5):
        assert det.check(_rec(s, sigma=1.0 + 0.1 * s)) == []
    assert det.check(_rec(5, sigma=3.5)) == []  # 3.5 <= 3 x median 1.2
    warnings = det.check(_rec(6, sigma=4.0))
    assert len(warnings) == 1 and "sigma0/D/a.weight" in warnings[0]


def test_d_loss_drop_with_g_spike_warns():
    det = CollapseDetector()
    for s in range(5):
        det.check(_rec(s, loss_G=0.5))
    assert det.check(_rec(5, loss_D=0.01, loss_G=1.4)) == []  # 1.4 <= 3 x 0.5
    assert det.check(_rec(6, loss_D=0.2, loss_G=9.0)) == []  # D has not won
    assert len(det.check(_rec(7, loss_D=0.01, loss_G=9.0))) == 1


def test_detector_state_round_trip():
    det = CollapseDetector()
    for s in range(5):
        det.check(_rec(s))
    det2 = CollapseDetector()
    det2.load_state_dict(det.state_dict())
    assert det2.check(_rec(5, sigma=10.0)) == det.check(_rec(5, sigma=10.0)) != []


def test_monitor_writes_jsonl_and_tb(tmp_path):
    mon = Monitor(RunDir(tmp_path), total_steps=2, quiet=True)
    mon.write({**_rec(1), "img_per_s": 3.0})
    mon.warn(1, "something odd")
    mon.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["loss_D"] == 1.0 and lines[1] == {"step": 1, "warning": "something odd"}
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_inspect_writes_plots_and_summary(tmp_path, capsys):
    mon = Monitor(RunDir(tmp_path), total_steps=3, quiet=True)
    for s in (1, 2, 3):
        mon.write(
            {
                **_rec(s),
                "D_real": 0.1,
                "D_fake": -0.1,
                "img_per_s": 9.0,
                "sigma0/G/b.weight": 1.0 + s,
            }
        )
    mon.warn(3, "possible collapse: test")
    mon.write({"step": 3, "eval": {"cfid": 12.5, "class_acc": 0.9}})  # as `gankit eval` writes
    mon.close()
    tags = _tensorboard_tags(tmp_path / "tb")
    assert {"loss_D", "eval/cfid", "eval/class_acc"} <= tags
    assert main(["inspect", str(tmp_path)]) == 0
    paths = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[-1] for p in paths} == {"losses.png", "spectra.png", "summary.json"}
    for p in paths[:2]:
        assert Image.open(p).size[0] > 100
    summary = json.loads((tmp_path / "plots" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["warnings"][0]["step"] == 3
    assert summary["eval"] == [{"step": 3, "cfid": 12.5, "class_acc": 0.9}]
    assert summary["rollbacks"] == []


def _red_pixels(path):
    """Pixels of the rollback line colour (pure red at alpha 0.7 over white: ~(255, 77, 77))."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 230) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)).sum())


def _orange_pixels(path):
    """Pixels of the warning line colour (orange (255, 165, 0) at alpha 0.7 over white)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 230) & (g > 160) & (g < 215) & (b < 120)).sum())


def _log_run(run_dir, events):
    """Ten log records with sigma_0..2 of one G and one D weight (one curve per panel, drawn
    in the first colour, blue), plus ``events``: {step: message or (message, rollback number)}."""
    run_dir.mkdir()
    mon = Monitor(RunDir(run_dir), total_steps=10, quiet=True)
    for s in range(1, 11):
        rec = {**_rec(s), "D_real": 0.1, "D_fake": -0.1, "img_per_s": 9.0}
        for i in range(3):
            rec[f"sigma{i}/G/b.weight"] = 2.0 - 0.5 * i + 0.1 * s
            rec[f"sigma{i}/D/a.weight"] = 1.5 - 0.4 * i + 0.05 * s
        mon.write(rec)
        if s in events:
            message, rollback = events[s] if isinstance(events[s], tuple) else (events[s], None)
            mon.warn(s, message, rollback)
    mon.close()


def test_inspect_marks_warnings_and_rollbacks(tmp_path):
    _log_run(tmp_path / "plain", {})
    _log_run(
        tmp_path / "marked",
        {4: "possible collapse: sigma0/D/a.weight = 9 exceeds 3x its median",
         7: ("rolled back to runs/a/checkpoints/step_00000004 (rollback 1)", 1)},
    )  # fmt: skip
    plain = inspect_run(tmp_path / "plain")
    marked = inspect_run(tmp_path / "marked")
    summary = json.loads(marked[-1].read_text())
    assert [w["step"] for w in summary["warnings"]] == [4]
    assert [r["step"] for r in summary["rollbacks"]] == [7]
    # a run logged before rollback records carried their number: known by the message
    _log_run(tmp_path / "old", {7: "rolled back to runs/a/checkpoints/step_00000004 (rollback 1)"})
    old = json.loads(inspect_run(tmp_path / "old")[-1].read_text())
    assert [r["step"] for r in old["rollbacks"]] == [7] and old["warnings"] == []
    spectra_plain, spectra_marked = plain[1], marked[1]
    assert spectra_plain.name == "spectra.png"
    assert _red_pixels(spectra_plain) == 0 and _orange_pixels(spectra_plain) == 0
    # one red and one orange vertical line in each of the 6 panels (sigma_0..2 of G and D)
    assert _red_pixels(spectra_marked) > 6 * 100 and _orange_pixels(spectra_marked) > 6 * 100


def test_inspect_skips_malformed_records(tmp_path):
    """Records edited by hand or by another tool: a log without D_real, a non-object line, a
    step that is not an integer, a non-numeric value; the rest is plotted and summarised."""
    _log_run(tmp_path / "r", {})
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write('[1, 2]\n7\n{"step": "x", "loss_D": 1}\n{"step": 11, "loss_D": NaN}\n')
        f.write('{"step": 12, "loss_D": "high", "warning": 3}\n')
        f.write('{"step": 13, "loss_D": NaN, "loss_G": Infinity}\n')

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    text = inspect_run(tmp_path / "r")[-1].read_text()
    summary = json.loads(text, parse_constant=refuse)  # a NaN loss is null: strict JSON
    assert summary["steps"] == 13 and summary["last"]["D_real"] is None
    assert summary["last"]["loss_D"] is None and summary["last"]["loss_G"] is None
    assert summary["warnings"] == []


UNUSABLE_LINES = [
    "[" * 100000 + "]" * 100000,  # nested too deeply for the JSON parser
    '{"step": 1' + "0" * 400 + ', "loss_D": 1.0}',  # a step too large for a float
    '{"step": 12, "loss_D": 1' + "0" * 400 + "}",
]


def test_unusable_lines_are_skipped(tmp_path):
    """Lines that parse to nothing usable are skipped like truncated ones, by ``inspect``,
    by ``RunDir.read_metrics`` (``serve``) and by ``resume`` (which drops them); an ``eval``
    value that is not an object is left out of the summary."""
    _log_run(tmp_path / "r", {})
    path = tmp_path / "r" / "metrics.jsonl"
    with open(path, "a") as f:
        f.write("\n".join([*UNUSABLE_LINES, '{"step": 10, "eval": 5}']) + "\n")
    assert [r["step"] for r in RunDir(tmp_path / "r").read_metrics()] == [*range(1, 11), 10]
    summary = json.loads(inspect_run(tmp_path / "r")[-1].read_text())
    assert summary["steps"] == 10 and summary["eval"] == []
    Monitor(RunDir(tmp_path / "r"), total_steps=10, start_step=10, quiet=True).close()
    assert len(path.read_text().splitlines()) == 11


def test_a_resumed_log_whose_last_record_lost_its_line_break_gets_one(tmp_path):
    """A last record cut off just before its line break is kept, and the resumed run's first
    record goes on a line of its own instead of being glued to it (both then unreadable)."""
    _log_run(tmp_path / "r", {})
    path = tmp_path / "r" / "metrics.jsonl"
    path.write_text(path.read_text().rstrip("\n"))
    monitor = Monitor(RunDir(tmp_path / "r"), total_steps=12, start_step=10, quiet=True)
    monitor.write({"step": 11, "loss_D": 1.0})
    monitor.close()
    assert [r["step"] for r in RunDir(tmp_path / "r").read_metrics()] == [*range(1, 12)]


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_metrics_file_that_is_not_a_regular_file(tmp_path, kind):
    """``inspect`` and the training monitor refuse it in one line instead of blocking on a
    FIFO (a reader is held open so that a regression writes instead of hanging)."""
    path = tmp_path / "metrics.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    else:
        path.mkdir()
    try:
        with pytest.raises(GankitError, match=f"^{path}: not a regular file$"):
            inspect_run(tmp_path)
        with pytest.raises(GankitError, match=f"^{path}: not a regular file$"):
            Monitor(RunDir(tmp_path), total_steps=2, quiet=True)
    finally:
        if kind == "fifo":
            os.close(reader)


def test_rollback_replay_starts_a_new_segment():
    records = [{"step": s, "loss_D": float(s)} for s in (1, 2, 3, 2, 3)]
    steps, values = _series(records, ["loss_D"])["loss_D"]
    assert steps == [1, 2, 3, 2, 2, 3]
    assert values[:3] == [1.0, 2.0, 3.0] and math.isnan(values[3]) and values[4:] == [2.0, 3.0]


def _tensorboard_tags(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_inspect_without_metrics(tmp_path):
    with pytest.raises(GankitError, match="no metrics.jsonl"):
        inspect_run(tmp_path)


@pytest.mark.parametrize("when", ["start", "write"])
def test_a_full_disk_under_tensorboard_is_one_error_naming_its_folder(tmp_path, capfd, when):
    """TensorBoard writes from a thread of its own: ENOSPC there printed that thread's
    traceback, then surfaced in the main thread without a file name. Now: no thread traceback,
    an OSError naming RUN/tb."""
    from tensorboard.summary.writer import record_writer

    real = record_writer.RecordWriter.write

    def full(self, data):
        if when == "start" or full.armed:
            raise OSError(28, "No space left on device")
        return real(self, data)

    full.armed = False
    record_writer.RecordWriter.write = full
    hook, monitor = threading.excepthook, None
    try:
        with pytest.raises(OSError) as err:
            monitor = Monitor(RunDir(tmp_path), total_steps=2)
            full.armed = True
            monitor.write({"step": 1, "loss_D": 1.0})
        assert (err.value.errno, err.value.filename) == (28, str(tmp_path / "tb"))
        if monitor is not None:
            with pytest.raises(OSError):  # closing flushes the writer once more
                monitor.close()
    finally:
        record_writer.RecordWriter.write = real
    assert threading.excepthook is hook  # put back
    assert "Exception in thread" not in capfd.readouterr().err
