"""Training monitor: ``metrics.jsonl``, TensorBoard, progress bar and collapse warnings.

Every ``train.log_every`` G steps one JSON object per line goes to ``RUN/metrics.jsonl`` with
``step``, ``loss_D``, ``loss_G``, ``D_real``, ``D_fake`` (mean logits), ``lr_G``, ``lr_D``,
``img_per_s`` (real images consumed by D per second, all ranks) and, for the
``train.sigma_layers`` tracked weights of each network, ``sigma0/G/<weight>`` ..
``sigma2/D/<weight>`` (BigGAN §4.1). The same scalars go to TensorBoard under ``RUN/tb/``.
A run that starts or resumes at step ``k`` first drops the records of steps after ``k`` (logged
by a process killed after its last checkpoint), so each step is logged once.

Collapse rule (BigGAN §4.1/4.2 observations; checked at every log over the previous
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

import contextlib
import json
import statistics
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from gankit.errors import GankitError
from gankit.io_utils import atomic_write
from gankit.run import RunDir

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


def _step(line: str) -> int | None:
    """The ``step`` of one ``metrics.jsonl`` line (None: not a complete record)."""
    record = RunDir.parse_record(line)
    step = record.get("step") if record is not None else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def drop_records_after(path: Path, step: int) -> None:
    """Remove from ``metrics.jsonl`` the records of steps after ``step`` and any line that is
    not a record (a partial line, bytes that are not UTF-8): what a run killed after its last
    checkpoint logged (the resumed run logs those steps again; a new run in the same directory
    starts from step 0). Rewritten atomically.

    Raises:
        GankitError: ``path`` exists and is not a regular file (a directory, a FIFO).
    """
    if not path.is_file():
        if path.exists():  # opening a FIFO would block
            raise GankitError(f"{path}: not a regular file")
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = [line for line in lines if (s := _step(line)) is not None and s <= step]
    if len(kept) < len(lines):
        text = "".join(line + "\n" for line in kept).encode()
        atomic_write(path, lambda f: f.write(text))


class TrainingDivergedError(GankitError):
    """A loss became NaN or Inf; the message names the step range and the last checkpoint."""


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


def _leave_tensorboard_errors_to_main(previous: Any) -> Any:
    """A ``threading.excepthook`` that is ``previous`` except for an ``OSError`` (e.g. a full
    disk) in TensorBoard's writer thread: the main thread raises that one itself at the
    writer's next flush (:func:`_tensorboard_errors`), so its traceback is not printed."""

    def hook(args: Any) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and args.exc_type is not None
                and issubclass(args.exc_type, OSError)):  # fmt: skip
            previous(args)

    return hook


@contextlib.contextmanager
def _tensorboard_errors(folder: Path) -> Iterator[None]:
    """TensorBoard's writes inside the block: an ``OSError`` names ``folder``."""
    try:
        yield
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(folder)) from err


class Monitor:
    """Writes log records of one run (a no-op except on the main rank).

    Args:
        run: the run directory (``None``: log nothing, e.g. for benchmarks).
        total_steps: target G step, for the progress bar.
        start_step: step the run starts (or resumes) from.
        quiet: no progress bar; the bar is only shown when stderr is a terminal.
    """

    def __init__(
        self, run: RunDir | None, total_steps: int, start_step: int = 0, quiet: bool = False
    ):
        self.run = run
        self._jsonl = self._tb = self._bar = self._excepthook = None
        if run is None:
            return
        drop_records_after(run.metrics_file, start_step)
        self._jsonl = open(run.metrics_file, "a", encoding="utf-8")  # noqa: SIM115
        self._excepthook = threading.excepthook  # put back by close()
        threading.excepthook = _leave_tensorboard_errors_to_main(self._excepthook)
        try:
            with _tensorboard_errors(run.tb):
                self._tb = SummaryWriter(str(run.tb), purge_step=start_step + 1)
        except BaseException:
            self.close()
            raise
        if not quiet and sys.stderr.isatty():
            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (must hold ``step``) to metrics.jsonl and TensorBoard (a nested dict
        such as ``{"eval": {"fid": ...}}`` becomes the TensorBoard tag ``eval/fid``)."""
        if self._jsonl is None:
            return
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        with _tensorboard_errors(self.run.tb):
            for key, value in record.items():
                values = value if isinstance(value, dict) else {None: value}  # e.g. "eval": {...}
                for sub, v in values.items():
                    if key != "step" and isinstance(v, (int, float)):
                        tag = key if sub is None else f"{key}/{sub}"
                        self._tb.add_scalar(tag, v, record["step"])
            self._tb.flush()

    def warn(self, step: int, message: str, rollback: int | None = None) -> None:
        """A warning on stderr and in metrics.jsonl (``rollback``: the number of the rollback
        it reports, written as the record's ``rollback`` key)."""
        text = f"gankit: warning at step {step}: {message}"
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)
        extra = {"rollback": rollback} if rollback is not None else {}
        self.write({"step": step, "warning": message, **extra})

    def progress(self, step: int, record: dict[str, Any] | None = None) -> None:
        if self._bar is None:
            return
        self._bar.update(step - self._bar.n)
        if record is not None:
            self._bar.set_postfix(
                D=f"{record['loss_D']:.3f}",
                G=f"{record['loss_G']:.3f}",
                img_s=f"{record['img_per_s']:.0f}",
                refresh=False,
            )

    def close(self) -> None:
        try:
            for handle in (self._jsonl, self._bar):
                if handle is not None:
                    handle.close()
            if self._tb is not None:  # last: its final flush can fail (a full disk)
                with _tensorboard_errors(self.run.tb):
                    self._tb.close()
        finally:
            self._jsonl = self._tb = self._bar = None
            if self._excepthook is not None:
                threading.excepthook, self._excepthook = self._excepthook, None
