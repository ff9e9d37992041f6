"""``gankit bench``: time and memory of a full training iteration, or of one attention layer.

Two kinds of workload:

- **Training** (``cifar``, ``i128`` or any preset name): the *same* iteration ``gankit train``
  runs, :meth:`gankit.training.loop.Trainer.train_iteration` (``n_D`` D steps, one G step, the
  EMA update), on synthetic data: random uint8 images and labels held in memory, so reading
  the data is not timed. With ``data`` (``--data PATH``: a cache file, an image folder, any
  ``data.path``) the iteration runs on that data instead, loaded as in training, and
  ``loader_imgs_per_s`` adds the data path's own speed (:func:`gankit.data.loader_throughput`).
  ``cifar`` and ``i128`` are the BigGAN-PyTorch anchor workloads (same parameter counts; presets
  ``biggan-cifar`` and ``biggan-128``).
- **Attention** (``attention``): forward + backward of one :class:`~gankit.layers.attention.
  SelfAttention` layer on ``(B, C, R, R)`` features, the fused SDPA path against the explicit
  softmax reference, with the same weights.

Timing: ``warmup`` untimed calls, then ``steps`` timed calls; the device is synchronised before
each clock reading. Besides wall-clock ``s_per_iter``, ``cpu_s_per_iter`` is the process's CPU
time (all threads) per timed call: the host-side cost on CUDA, and on a CPU shared with other
jobs a figure that depends less on how the scheduler splits the cores. With ``train.compile``
on, ``compile_s`` is the wall time of the very first iteration, which compiles G's and D's
graphs (it counts as one of the warm-up calls).

CUDA graph (``train.cuda_graph``, :mod:`gankit.training.cuda_graph`): before the ``warmup``
calls, the trainer's eager warm-up iterations and the capture run until the graph is captured;
``capture_s`` is their wall time (``None`` without a graph). The timed calls are replays.

Ops (training, eager or CUDA graph): after the timed calls, one more iteration runs under
:class:`gankit.training.opcount.OpCounter`: ``ops_per_iter`` counts every ATen op it dispatches
(forward, backward, optimizer, EMA; views included), ``view_ops_per_iter`` the views and
aliases among them (no kernel), ``host_syncs_per_iter`` the ops that make the host wait for the
device (``.item()``, data-dependent shapes, device-to-host copies), and with ``ops_detail = N``
``ops_top`` lists the ``N`` most frequent ops. A dispatch mode makes ``torch.compile``'d code
fall back to eager, so with compile on (and no CUDA graph) these keys are ``None``. A graph
replay dispatches only its input copies and output copies: with ``train.cuda_graph`` in force
``ops_per_iter`` counts those, the launches the host still makes.

Activations (training, eager or compiled, not with a CUDA graph in force: a replay runs no
autograd): one more iteration runs under
:class:`gankit.training.saved_activations.SavedActivations`; ``saved_activations_MiB`` is the
most memory autograd held for backward at any moment of it (distinct storages, weights and
buffers left out), the part of the peak that activation checkpointing and
``train.activation_memory_budget`` lower, measurable on any device; not what a backward holds
while it runs (a compiled backward's recomputed activations).

Peak memory, one definition per device for both workloads: on CUDA the caching allocator's
peak during the timed calls (``torch.cuda.reset_peak_memory_stats`` after warm-up, then
``torch.cuda.max_memory_allocated``): everything allocated, i.e. weights, optimizer state and
inputs included, as the BigGAN-PyTorch anchor reports it. With a CUDA graph the peak also
covers the eager warm-up iterations and the capture: a replay allocates nothing (its tensors
live in the graph's private pool, which the capture filled), so the timed replays alone would
show only what stays allocated between iterations. On CPU, where there is no allocator
to ask, training reports the process's peak resident set size (``resource.getrusage``: includes
the ~0.5 GiB of libraries), and the attention bench the growth of the resident set size during
the timed calls, sampled every millisecond from ``/proc/self/statm`` by a background thread
(:class:`RSSPeak`), so that the two attention paths are compared without the libraries. Large
tensors are ``mmap``-ed by glibc and given back on free, so RSS tracks live tensor memory at
this scale.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gankit.config import (
    Config,
    ModelConfig,
    apply_overrides,
    list_presets,
    load_preset,
)
from gankit.data import ImageDataset, loader_throughput
from gankit.device import resolve_device, synchronize
from gankit.errors import ParameterError
from gankit.layers.attention import SelfAttention
from gankit.models import attention_type, count_params
from gankit.training.loop import Trainer, amp_dtype
from gankit.training.opcount import OpCounter
from gankit.training.saved_activations import SavedActivations
from gankit.training.speed import compile_mode, flags
from gankit.validation import validate

WORKLOADS = {"cifar": "biggan-cifar", "i128": "biggan-128"}
"""Anchor workload name -> preset (BigGAN-PyTorch's CIFAR and ImageNet-128 runs)."""
ATTENTION_SHAPE = (64, 256)
"""Default ``(resolution, channels)`` of the attention workload (BigGAN-128's 64x64 layer)."""
ATTENTION_KEYS = ("model.attn_k", "model.attn_type", "model.sn_eps", "train.amp")
"""The settings the attention workload reads (`--set`)."""

GiB = 2**30


def device_name(device: torch.device) -> str:
    """The CUDA card's name, or the CPU model from ``/proc/cpuinfo`` (with the core count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def time_calls(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Mean wall-clock seconds per call of ``fn`` over ``steps >= 1`` calls after ``warmup``
    calls (:func:`benchmark` validates ``steps``/``warmup``)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RSSPeak:
    """Context manager: peak growth of the resident set size (bytes) while it is open.

    A daemon thread samples ``/proc/self/statm`` every ``interval`` seconds; ``growth`` is the
    largest sample minus the value on entry (``None`` where ``/proc`` is unavailable).
    """

    def __init__(self, interval: float = 1e-3):
        self.interval = interval
        self.growth: int | None = None
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> RSSPeak:
        if not os.path.exists("/proc/self/statm"):
            return self
        self._base = self._peak = _rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not hasattr(self, "_thread"):
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.growth = self._peak - self._base


def measure(
    fn: Callable[[], Any], steps: int, warmup: int, device: torch.device
) -> dict[str, float | None]:
    """``{"s_per_call", "peak_mem_GiB"}`` of ``fn``: time as :func:`time_calls`; memory over the
    timed calls only (after warm-up, so one-off library initialisation is not counted): on CUDA
    the allocator's absolute peak, on CPU the RSS growth (:class:`RSSPeak`)."""
    if warmup:
        time_calls(fn, warmup, 0, device)
    if device.type == "cuda":
        seconds, peak = cuda_peak_GiB(lambda: time_calls(fn, steps, 0, device), device)
        return {"s_per_call": seconds, "peak_mem_GiB": peak}
    with RSSPeak() as rss:
        seconds = time_calls(fn, steps, 0, device)
    return {"s_per_call": seconds, "peak_mem_GiB": None if rss.growth is None else rss.growth / GiB}


def cuda_peak_GiB(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``(fn(), peak)``: the CUDA allocator's peak of allocated memory while ``fn`` runs, in
    GiB, absolute (everything allocated counts, also what was allocated before ``fn``)."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    synchronize(device)
    return out, torch.cuda.max_memory_allocated(device) / GiB


def _available_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (bytes), or ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _free_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` in bytes (CUDA: the driver's count), or ``None``."""
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else _available_bytes()


INPUT_COPIES = 8
"""fp32 tensors of the attention input's size that one timed call holds at once, counted
generously: ``x``, ``dy``, ``x.grad``, the output, and the layer's activations."""


def bench_attention(
    resolution: int,
    channels: int,
    batch_size: int,
    device: torch.device,
    steps: int,
    warmup: int,
    model_cfg: ModelConfig,
    amp: torch.dtype | None = None,
) -> dict[str, Any]:
    """Forward + backward of one :class:`SelfAttention` on ``x: (B, C, R, R)``, fused vs reference.

    The layer's variant comes from ``model_cfg`` (``attn_k``, ``attn_type``: BigGAN's pooled
    variant by default, SAGAN's with ``--set model.attn_type=sagan``), with spectral norm as in
    the models. Both paths share one set of weights; ``gamma`` is set to 1 so the attention
    output reaches the result. Each call is ``y = layer(x); y.backward(dy)`` with fixed ``dy``,
    under autocast to ``amp`` (``train.amp``: bf16 on CUDA by default, fp32 on CPU) if given.

    The reference path stores the ``(B, N, M)`` scores and their softmax and, in the backward,
    their gradients; when about ``4 B N M`` floats would not fit in the free memory it is skipped
    (``"reference": {"skipped": ...}``) instead of risking the out-of-memory killer.

    Returns:
        ``{"workload": "attention", "N", "M", "fused": {...}, "reference": {...}, ...}`` where
        each path has ``s_per_iter`` and ``peak_mem_GiB``, plus ``max_abs_diff`` of the outputs.
    """
    for param, value, least in (("resolution", resolution, 2), ("channels", channels, 1),
                                ("batch_size", batch_size, 1)):  # fmt: skip
        if value < least:
            raise ParameterError(param, f"expected an integer >= {least}, got {value}")
    variant = attention_type(model_cfg)
    if variant not in ("sagan", "biggan"):
        raise ParameterError(
            "attn_type", f"the attention workload times sagan or biggan attention, got {variant!r}"
        )
    k, pool = model_cfg.attn_k, variant == "biggan"
    gen = torch.Generator().manual_seed(0)
    fused = SelfAttention(channels, k=k, pool=pool, sn=True, sn_eps=model_cfg.sn_eps)
    reference = SelfAttention(channels, k=k, pool=pool, sn=True, sn_eps=model_cfg.sn_eps)
    with torch.no_grad():
        fused.gamma.fill_(1.0)
    reference.load_state_dict(fused.state_dict())
    reference.fused = False
    shape = (batch_size, channels, resolution, resolution)
    free = _free_bytes(device)
    need = INPUT_COPIES * math.prod(shape) * 4
    if free is not None and need > 0.8 * free:
        raise ParameterError(
            "resolution",
            f"the attention input {shape} needs ~{need / GiB:.1f} GiB, {free / GiB:.1f} GiB "
            "free; lower --resolution, --channels or --batch-size",
        )
    fused.to(device)
    reference.to(device)
    x = torch.randn(shape, generator=gen).to(device).requires_grad_(True)
    dy = torch.randn(shape, generator=gen).to(device)
    n = resolution * resolution
    m = (resolution // 2) ** 2 if pool else n
    result: dict[str, Any] = {
        "workload": "attention",
        "variant": "biggan" if pool else "sagan",
        "resolution": resolution,
        "channels": channels,
        "batch_size": batch_size,
        "N": n,
        "M": m,
        "dtype": "bfloat16 autocast" if amp == torch.bfloat16 else "float32",
        "device": device_name(device),
        "torch": torch.__version__,
        "peak_mem_kind": "cuda max_memory_allocated"
        if device.type == "cuda"
        else "RSS growth over baseline, /proc/self/statm sampled every 1 ms",
    }

    def step(layer: torch.nn.Module) -> Callable[[], None]:
        def call() -> None:
            x.grad = None
            layer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                y = layer(x)
            y.backward(dy.to(y.dtype))

        return call

    for name, layer in (("fused", fused), ("reference", reference)):
        need = 4 * batch_size * n * m * (2 if amp is not None else 4)
        free = _free_bytes(device)
        if name == "reference" and free is not None and need > 0.8 * free:
            result[name] = {
                "skipped": f"needs ~{need / GiB:.1f} GiB for the (B, N, M) scores, "
                f"{free / GiB:.1f} GiB free; use a smaller --batch-size"
            }
            continue
        stats = measure(step(layer), steps, warmup, device)
        result[name] = {"s_per_iter": stats["s_per_call"], "peak_mem_GiB": stats["peak_mem_GiB"]}
    if "s_per_iter" in result["reference"]:
        with torch.no_grad():
            diff = (fused.eval()(x) - reference.eval()(x)).abs().max()
        result["max_abs_diff"] = float(diff)
    return result


def synthetic_dataset(cfg: Config, n: int, seed: int = 0) -> ImageDataset:
    """``n`` random uint8 images ``(n, C, R, R)`` with uniform labels, held in memory."""
    m = cfg.model
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, m.channels, m.resolution, m.resolution), dtype=np.uint8)
    y = rng.integers(0, m.n_classes, n, dtype=np.int64)
    names = [str(c) for c in range(m.n_classes)]
    return ImageDataset(x, y, m.n_classes, names, source="synthetic (gankit bench)")


def count_iteration_ops(train_iteration: Callable[[], Any], detail: int = 0) -> dict[str, Any]:
    """Run ``train_iteration`` once under :class:`OpCounter`: ``{"ops_per_iter",
    "view_ops_per_iter", "host_syncs_per_iter"}`` plus ``"ops_top"`` (the ``detail`` most
    frequent ops) when ``detail > 0``."""
    with OpCounter() as counter:
        train_iteration()
    result: dict[str, Any] = {
        "ops_per_iter": counter.total,
        "view_ops_per_iter": counter.views,
        "host_syncs_per_iter": counter.host_syncs,
    }
    if detail > 0:
        result["ops_top"] = counter.top(detail)
    return result


def bench_training(
    cfg: Config, steps: int, warmup: int, ops_detail: int = 0, data: str | None = None
) -> dict[str, Any]:
    """Time :meth:`Trainer.train_iteration` (``n_D`` D steps, G step, EMA) on synthetic data
    or on ``data`` (any ``data.path``; adds ``data`` and ``loader_imgs_per_s``), then count the
    ops of one more iteration (see the module docstring).

    The device is ``cfg.train.device``. Nothing is written to disk. Returns the JSON dict of
    ``gankit bench`` (keys in README "Performance"); ``real_imgs_per_s`` counts the real images
    D sees per second (``batch_size * n_D * accumulate`` per iteration).
    """
    t = cfg.train
    per_iter = t.batch_size * t.n_D * t.accumulate
    if data is not None:
        cfg.data.path = data
    dataset = synthetic_dataset(cfg, 2 * per_iter) if data is None else None
    trainer = Trainer(cfg, None, dataset=dataset, quiet=True)
    dev = trainer.device
    mode = compile_mode(t, dev)
    compile_s = None
    if mode is not None:  # the first call compiles; it stands in for one warm-up call
        compile_s = time_calls(trainer.train_iteration, 1, 0, dev)
    capture_s, cpu_seconds, graph = None, 0.0, trainer.graph

    def to_capture() -> None:  # eager warm-up iterations, the capture and its first replay
        nonlocal capture_s
        start = time.perf_counter()
        while not graph.captured and not graph.disabled:
            trainer.train_iteration()
        synchronize(dev)
        capture_s = time.perf_counter() - start

    def timed() -> float:
        nonlocal cpu_seconds
        if graph is not None:
            to_capture()
        if warmup > (mode is not None):
            time_calls(trainer.train_iteration, warmup - (mode is not None), 0, dev)
        if graph is None and dev.type == "cuda":  # the peak of the timed calls only
            synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        cpu_start = time.process_time()
        seconds = time_calls(trainer.train_iteration, steps, 0, dev)
        cpu_seconds = (time.process_time() - cpu_start) / steps
        return seconds

    if dev.type == "cuda":
        seconds, peak = cuda_peak_GiB(timed, dev)
    else:
        seconds, peak = timed(), peak_rss_GiB()
    graphed = graph is not None and graph.captured
    if mode is None or graphed:  # a replay dispatches only the input copies and its outputs
        ops = count_iteration_ops(trainer.train_iteration, ops_detail)
    else:  # under a dispatch mode compiled graphs fall back to eager: nothing to count
        ops = dict.fromkeys(("ops_per_iter", "view_ops_per_iter", "host_syncs_per_iter"))
    saved_MiB = None  # a replay runs no autograd: nothing is saved for backward to see
    if not graphed:
        with SavedActivations([trainer.G, trainer.D]) as saved:
            trainer.train_iteration()
        saved_MiB = saved.peak_bytes / 2**20
    real_data: dict[str, Any] = {}
    if data is not None:
        real_data = {
            "data": trainer.dataset.source,
            "loader_imgs_per_s": loader_throughput(trainer.dataset, t.batch_size, dev),
        }
    return {
        "preset": cfg.preset,
        "s_per_iter": seconds,
        "cpu_s_per_iter": cpu_seconds,
        "G_steps_per_s": 1.0 / seconds,
        "real_imgs_per_s": per_iter / seconds,
        **ops,
        "saved_activations_MiB": saved_MiB,
        "compile_s": compile_s,
        "capture_s": capture_s,
        "peak_mem_GiB": peak,
        "peak_mem_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "peak RSS",
        "params_G": count_params(trainer.G),
        "params_D": count_params(trainer.D),
        "batch_size": t.batch_size,
        "n_D": t.n_D,
        "accumulate": t.accumulate,
        "resolution": cfg.model.resolution,
        "steps": steps,
        "warmup": warmup,
        "device": device_name(dev),
        "torch": torch.__version__,
        "flags": flags(t, dev, trainer.amp, graphed, trainer.G),
        "loadavg_1min": os.getloadavg()[0],
        **real_data,
    }


def benchmark(
    workload: str = "cifar",
    device: str = "auto",
    steps: int = 3,
    warmup: int = 1,
    overrides: list[str] | None = None,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    batch_size: int | None = None,
    data: str | None = None,
    ops_detail: int = 0,
) -> dict[str, Any]:
    """``gankit bench`` (see the module docstring); returns the JSON dict.

    ``workload``: ``cifar``, ``i128`` (the anchor presets), ``attention``, or any preset name.
    ``overrides`` are ``--set`` items; for ``attention`` only those of :data:`ATTENTION_KEYS`
    (others are an error). ``batch_size`` overrides ``train.batch_size`` (attention
    default: 8). ``data``: time training workloads on this data (``data.path``) instead of
    synthetic images. ``ops_detail = N > 0`` adds the ``N`` most frequent ops (``ops_top``).

    Raises:
        ParameterError: unknown ``workload``, ``steps < 1``, ``warmup < 0``,
            ``ops_detail < 0``, ``batch_size < 1``, bad attention sizes (also an input too big
            for the free memory), a ``--set`` or ``data`` the attention workload does not use.
    """
    batch = 1 if batch_size is None else batch_size  # None: the preset's (attention: 8)
    for param, value, least in (("steps", steps, 1), ("warmup", warmup, 0),
                                ("ops_detail", ops_detail, 0),
                                ("batch_size", batch, 1)):  # fmt: skip
        if value < least:
            raise ParameterError(param, f"expected an integer >= {least}, got {value}")
    if workload == "attention":
        ignored = [o for o in overrides or [] if o.split("=", 1)[0].strip() not in ATTENTION_KEYS]
        if ignored:
            raise ParameterError(
                "set",
                f"the attention workload uses only {', '.join(ATTENTION_KEYS)} (batch: "
                f"--batch-size), not {ignored[0]!r}",
            )
        cfg = validate(apply_overrides(Config(), overrides or []))
        dev = resolve_device(device)
        amp = amp_dtype(cfg.train.amp, dev)
        if data is not None:
            raise ParameterError("data", "applies to the training workloads, not attention")
        size = 8 if batch_size is None else batch_size
        res = ATTENTION_SHAPE[0] if resolution is None else resolution
        ch = ATTENTION_SHAPE[1] if channels is None else channels
        return bench_attention(res, ch, size, dev, steps, warmup, cfg.model, amp)
    for param, value in (("resolution", resolution), ("channels", channels)):
        if value is not None:  # the training workloads take the preset's own
            raise ParameterError(param, "applies to --workload attention only")
    if workload not in WORKLOADS and workload not in list_presets():
        valid = ", ".join([*WORKLOADS, "attention", *list_presets()])
        raise ParameterError("workload", f"unknown workload {workload!r}; valid: {valid}")
    cfg = load_preset(WORKLOADS.get(workload, workload), overrides or [])
    cfg.train.device = device
    if batch_size is not None:
        cfg.train.batch_size = batch_size
    validate(cfg)
    result = bench_training(cfg, steps, warmup, ops_detail, data)
    result["workload"] = workload
    return result


def warm_trainer(workload: str, overrides: list[str], warmup: int, device: str = "cuda") -> Trainer:
    """A quiet :class:`Trainer` of ``workload`` (``cifar``, ``i128`` or a preset) with the
    ``--set`` ``overrides`` and ``train.cuda_graph = false`` (a replay hides the kernels and
    allocations of its iteration from profilers), on ``device`` and synthetic data, after
    ``warmup`` iterations (the first compiles where ``train.compile`` is in force). For the
    profiling scripts in ``benchmarks/``."""
    cfg = load_preset(WORKLOADS.get(workload, workload), [*overrides, "train.cuda_graph=false"])
    cfg.train.device = device
    validate(cfg)
    t = cfg.train
    dataset = synthetic_dataset(cfg, 2 * t.batch_size * t.n_D * t.accumulate)
    trainer = Trainer(cfg, None, dataset=dataset, quiet=True)
    for _ in range(warmup):
        trainer.train_iteration()
    synchronize(trainer.device)
    return trainer


def peak_rss_GiB() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
