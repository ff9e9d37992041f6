"""The whole training iteration as one CUDA graph (``train.cuda_graph``).

Eager (and ``torch.compile``'d) PyTorch launches each of an iteration's ~1,500-2,000 kernels
from Python; on a GPU the small workloads (``cifar``, the default demo) are bound by those
launches, not by the GPU (CPU time per iteration ≈ wall time). :class:`IterationGraph` records
every kernel of one iteration's ``n_D`` D steps and G step, both Adam steps included, with
``torch.cuda.graph`` once, and replays them with one launch per iteration. The EMA update
follows each replay as two multi-tensor ops (it depends on the step: before
``train.ema_start`` it copies G).

What keeps a replay equal to the eager iteration:

- **Static inputs.** The iteration reads its real batches from fixed device buffers, filled
  from the prefetcher before each replay (one ``copy_`` per tensor); the number of batches per
  iteration is counted during the eager warm-up. Latents, DiffAugment and measurement draws
  come from the trainer's device generator, registered with the graph, so that each replay
  takes fresh numbers and advances the generator's Philox offset as the eager calls would.
- **Nothing host-side in the iteration.** No host sync (``gankit bench`` reports
  ``host_syncs_per_iter``), and no Python branch that depends on the step: lazy R1/R2
  (``train.r1_gamma``/``r2_gamma``) and WGAN-GP are not graphed.
- **Warm-up, then capture.** The first :data:`WARMUP` iterations (after a start, a resume or a
  rollback) run eagerly on the capture stream (library handles, Adam's lazily created state,
  cuDNN plans); then one capture. Adam is ``capturable`` only while it is captured (its step
  counters already live on the device with ``fused=True``), so checkpoints stay portable.
- **Tensors stay put.** Loading a checkpoint replaces optimizer state, so :meth:`reset` drops
  the graph (:meth:`gankit.training.loop.Trainer.load`); the next iterations warm up and capture
  again. Everything else the graph touches (weights, buffers, gradients, Adam moments, LeCam
  anchors) is updated in place.

If a capture fails (an op that syncs with the host, or is not capturable), a one-line warning
says so and the run goes on eagerly, with the batches already drawn for that iteration.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["WARMUP", "CudaGraph", "IterationGraph"]

WARMUP = 3
"""Eager iterations before a capture (PyTorch's whole-network capture recipe uses a few)."""

Losses = dict[str, torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class CudaGraph:
    """``torch.cuda.CUDAGraph`` of one callable, on ``stream``, drawing from ``generator``."""

    def __init__(self, stream: torch.cuda.Stream, generator: torch.Generator):
        self.stream, self.generator = stream, generator
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Losses = {}

    def capture(self, fn: Callable[[], Losses]) -> None:
        """Record ``fn``'s kernels (nothing runs); other threads may use CUDA meanwhile."""
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
            outputs = fn()
        self.graph, self.outputs = graph, outputs

    def replay(self) -> Losses:
        """Run the recorded kernels; returns the (overwritten) output tensors."""
        self.graph.replay()
        return self.outputs


@contextlib.contextmanager
def _capturable(optimizers: list[torch.optim.Optimizer]) -> Iterator[None]:
    """Adam's ``capturable`` flag on while capturing (its step runs without host logic)."""
    groups = [g for opt in optimizers for g in opt.param_groups]
    saved = [g["capturable"] for g in groups]
    for g in groups:
        g["capturable"] = True
    try:
        yield
    finally:
        for g, value in zip(groups, saved):
            g["capturable"] = value


class IterationGraph:
    """Runs a training iteration eagerly for :data:`WARMUP` calls, then captures it and
    replays it (module docstring).

    Args:
        batches: the real-batch iterator (``(x, y)`` on the device) the iteration draws from
            through :meth:`next_batch`.
        optimizers: the Adam optimizers stepped inside the iteration.
        generator: the trainer's device generator (latents, augmentations).
        stream: the CUDA stream for warm-up and capture (``None``: the current stream, for a
            ``backend`` that is not a CUDA graph).
        backend: records and replays the iteration (default :class:`CudaGraph` on ``stream``
            and ``generator``): anything with ``capture(fn)`` (``fn`` runs the iteration on
            the static buffers) and ``replay() -> outputs``.
        forget: drops tensors the iteration's Python keeps from one call to the next (the
            batched spectral norms' stacked vectors); called before a capture, after a failed
            one and on :meth:`reset`, so that neither the graph nor a later eager call reads a
            tensor made by the other.
    """

    def __init__(
        self,
        batches: Iterator[Batch],
        optimizers: list[torch.optim.Optimizer],
        generator: torch.Generator,
        stream: torch.cuda.Stream | None = None,
        backend: Any = None,
        forget: Callable[[], None] = lambda: None,
    ):
        self.batches, self.optimizers, self.stream = batches, optimizers, stream
        self.forget = forget
        self.make_backend = (
            (lambda: CudaGraph(stream, generator)) if backend is None else (lambda: backend)
        )
        self.backend: Any = None  # set once captured
        self.disabled = False
        self.warm = 0  # eager iterations since the last reset
        self.n_batches: int | None = None  # real batches per iteration
        self.drawn = 0  # batches drawn in the current eager iteration
        self.static: list[Batch] = []  # the captured iteration's input buffers
        self.pending: list[Batch] = []  # drawn for this iteration, not yet consumed eagerly
        self.reading_static = False  # the iteration reads the static buffers
        self.read = 0  # static buffers handed out so far

    @property
    def captured(self) -> bool:
        return self.backend is not None

    def next_batch(self) -> Batch:
        """The iteration's next real batch: a static buffer inside the graphed iteration,
        else the next batch drawn (from this iteration's staged ones first)."""
        if self.reading_static:
            batch = self.static[self.read]
            self.read += 1
            return batch
        self.drawn += 1
        return self.pending.pop(0) if self.pending else next(self.batches)

    def __call__(self, iteration: Callable[[], Losses]) -> Losses:
        """One training iteration: eager (warm-up, or after a failed capture) or a replay of
        the captured graph. Returns the iteration's losses (owned copies on replay)."""
        if self.disabled:
            return iteration()
        if not self.captured and self.warm < WARMUP:
            return self._warm_up(iteration)
        self._stage()
        if not self.captured and not self._capture(iteration):
            return iteration()  # eagerly, on the staged batches
        self.pending = []
        return {k: v.clone() for k, v in self.backend.replay().items()}

    def reset(self) -> None:
        """Forget the graph (tensors it holds were replaced): warm up and capture again."""
        self.backend, self.static, self.pending, self.warm = None, [], [], 0
        self.forget()

    def _warm_up(self, iteration: Callable[[], Losses]) -> Losses:
        self.drawn = 0
        with self._on_stream():
            out = iteration()
        if self.n_batches is not None and self.drawn != self.n_batches:
            self._give_up(f"{self.drawn} real batches in one iteration, {self.n_batches} before")
        self.n_batches, self.warm = self.drawn, self.warm + 1
        return out

    def _stage(self) -> None:
        """Draw this iteration's real batches into the static buffers (and keep them)."""
        self.pending = [next(self.batches) for _ in range(self.n_batches or 0)]
        if not self.static:
            self.static = [(torch.empty_like(x), torch.empty_like(y)) for x, y in self.pending]
        for (xs, ys), (x, y) in zip(self.static, self.pending):
            xs.copy_(x)
            ys.copy_(y)

    def _capture(self, iteration: Callable[[], Losses]) -> bool:
        backend = self.make_backend()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.forget()
        try:
            with _capturable(self.optimizers):
                backend.capture(self._on_static_inputs(iteration))
        except Exception as err:  # noqa: BLE001 - any capture failure means: run eagerly
            self.forget()  # what the failed capture left (never computed), gradients too: the
            for opt in self.optimizers:  # eager steps add theirs to whatever .grad holds
                opt.zero_grad(set_to_none=True)
            self._give_up(f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}")
            return False
        self.backend = backend
        return True

    def _on_static_inputs(self, iteration: Callable[[], Losses]) -> Callable[[], Losses]:
        """``iteration`` reading its real batches from the static buffers, all of them."""

        def run() -> Losses:
            self.reading_static, self.read = True, 0
            try:
                out = iteration()
            finally:
                self.reading_static = False
            if self.read != self.n_batches:
                raise RuntimeError(f"the iteration read {self.read} of {self.n_batches} batches")
            return out

        return run

    def _give_up(self, why: str) -> None:
        warnings.warn(
            f"CUDA graph of the training iteration disabled ({why}); running eagerly "
            "(set train.cuda_graph=false to skip it)",
            RuntimeWarning,
            stacklevel=3,
        )
        self.disabled, self.backend, self.static = True, None, []

    @contextlib.contextmanager
    def _on_stream(self) -> Iterator[None]:
        """Run on the capture stream, ordered after and before the current stream's work."""
        if self.stream is None:
            yield
            return
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            yield
        current.wait_stream(self.stream)
