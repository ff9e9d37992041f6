"""Training monitor: ``metrics.jsonl``, TensorBoard, the progress bar and warnings.

Every ``train.log_every`` G steps one JSON object per line goes to ``RUN/metrics.jsonl`` with
``step``, ``loss_D``, ``loss_G``, ``D_real``, ``D_fake`` (mean logits), ``lr_G``, ``lr_D``,
``img_per_s`` (real images consumed by D per second, all ranks) and, for the
``train.sigma_layers`` tracked weights of each network, ``sigma0/G/<weight>`` ..
``sigma2/D/<weight>`` (BigGAN §4.1). The same scalars go to TensorBoard under ``RUN/tb/``.
A run that starts or resumes at step ``k`` first drops the records of steps after ``k`` (logged
by a process killed after its last checkpoint), so each step is logged once.

Warnings (of the collapse rule, :mod:`gankit.training.collapse`, or of a rollback) go to
``metrics.jsonl`` (key ``warning``) and stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from gankit.errors import GankitError
from gankit.io_utils import atomic_write
from gankit.run import RunDir


def _step(line: str) -> int | None:
    """The ``step`` of one ``metrics.jsonl`` line (None: not a complete record)."""
    record = RunDir.parse_record(line)
    step = record.get("step") if record is not None else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def drop_records_after(path: Path, step: int) -> None:
    """Remove from ``metrics.jsonl`` the records of steps after ``step`` and any line that is
    not a record (a partial line, bytes that are not UTF-8): what a run killed after its last
    checkpoint logged (the resumed run logs those steps again; a new run in the same directory
    starts from step 0). Rewritten atomically, ending with a line break.

    Raises:
        GankitError: ``path`` exists and is not a regular file (a directory, a FIFO).
    """
    if not path.is_file():
        if path.exists():  # opening a FIFO would block
            raise GankitError(f"{path}: not a regular file")
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    kept = [line for line in lines if (s := _step(line)) is not None and s <= step]
    if len(kept) < len(lines) or (text and not text.endswith("\n")):  # next record: own line
        kept_text = "".join(line + "\n" for line in kept).encode()
        atomic_write(path, lambda f: f.write(kept_text))


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
