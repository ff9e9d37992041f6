"""Where a training iteration's GPU time goes: its CUDA kernels, grouped by kind.

Runs a workload (``gankit bench``'s ``cifar``, ``i128`` or a preset; ``--set`` overrides) on
CUDA without the whole-iteration CUDA graph (the profiler then sees each kernel), with the
preset's ``train.compile``, for warm-up iterations, then profiles ``--iters`` more with
``torch.profiler``. Prints one JSON line: wall time and summed kernel time per iteration (their
ratio is how busy the GPU is), the kernel time per kind (fused Triton code, copies and layout
conversions, attention, batch norm, convolution/matmul, other), the kernels that took longest,
and the ops (with their inputs' shapes and strides) that launched the copies::

    python benchmarks/kernel_profile.py i128 --iters 3
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from gankit.bench import warm_trainer

KINDS = (  # first match wins; names as Triton, FlashAttention, cuDNN, cuBLAS, CUTLASS give them
    ("triton", ("triton",)),  # inductor's generated code
    ("layout_copy", ("direct_copy", "nchwtonhwc", "nhwctonchw", "memcpy", "memset")),  # copies
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("batch_norm", ("bn_fw", "bn_bw", "batch_norm", "welford")),
    ("conv_matmul", ("conv", "gemm", "xmma", "cutlass", "wgrad", "dgrad", "sm90_", "cudnn")),
)


def kind_of(kernel: str) -> str:
    """The kind of a kernel named ``kernel``: one of :data:`KINDS`' names, else ``"other"``."""
    name = kernel.lower()
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "other")


def kernel_table(kernels: list[tuple[str, float]], iters: int, top: int) -> dict[str, Any]:
    """Summary of ``kernels`` ``(name, microseconds)`` launched over ``iters`` iterations:
    ``kernel_ms_per_iter``, ``launches_per_iter``, ``ms_per_iter_by_kind`` and the ``top``
    kernels by total time (``name`` cut to 120 characters, ``kind``, ``ms_per_iter``,
    ``calls_per_iter``)."""
    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for name, us in kernels:
        total[name] += us
        calls[name] += 1
    by_kind: dict[str, float] = defaultdict(float)
    for name, us in total.items():
        by_kind[kind_of(name)] += us / 1e3 / iters
    longest = sorted(total, key=lambda n: -total[n])[:top]
    return {
        "kernel_ms_per_iter": sum(total.values()) / 1e3 / iters,
        "launches_per_iter": len(kernels) / iters,
        "ms_per_iter_by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "top_kernels": [
            {
                "name": n[:120],
                "kind": kind_of(n),
                "ms_per_iter": total[n] / 1e3 / iters,
                "calls_per_iter": calls[n] / iters,
            }
            for n in longest
        ],
    }


def copy_launchers(
    ops: list[tuple[str, str, list[tuple[str, float]]]], iters: int, top: int
) -> list[dict[str, Any]]:
    """The ``top`` launchers of ``layout_copy`` kernels by their time: ``ops`` holds one
    ``(op name, its inputs, [(kernel name, microseconds)])`` per CPU-side op call; each entry
    has ``op``, ``inputs``, ``ms_per_iter`` and ``calls_per_iter``."""
    total: dict[tuple[str, str], float] = defaultdict(float)
    calls: dict[tuple[str, str], int] = defaultdict(int)
    for name, inputs, kernels in ops:
        us = sum(t for kernel, t in kernels if kind_of(kernel) == "layout_copy")
        if us:
            total[name, inputs] += us
            calls[name, inputs] += 1
    return [
        {
            "op": op,
            "inputs": inputs,
            "ms_per_iter": total[op, inputs] / 1e3 / iters,
            "calls_per_iter": calls[op, inputs] / iters,
        }  # fmt: skip
        for op, inputs in sorted(total, key=lambda key: -total[key])[:top]
    ]


def _inputs(event: Any) -> str:
    """Shapes and (where this torch records them) strides of a profiled op's inputs."""
    strides = getattr(event, "input_strides", None) or getattr(
        event, "structured_input_strides", None
    )
    return f"shapes {event.input_shapes}" + (f" strides {strides}" if strides else "")


def profile_iterations(
    workload: str, overrides: list[str], warmup: int, iters: int, top: int
) -> dict[str, Any]:
    """Run ``workload`` on CUDA and return the JSON dict described in the module docstring."""
    if not torch.cuda.is_available():
        raise SystemExit("kernel_profile needs a CUDA device (it times CUDA kernels)")
    trainer = warm_trainer(workload, overrides, warmup)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities, record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(iters):
            trainer.train_iteration()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = prof.events()
    cuda = torch.autograd.DeviceType.CUDA
    kernels = [  # GPU-side user annotations are ranges over kernels, not kernels
        (e.name, e.time_range.elapsed_us())
        for e in events
        if e.device_type == cuda and not getattr(e, "is_user_annotation", False)
    ]
    ops = [
        (e.name, _inputs(e), [(k.name, k.duration) for k in e.kernels])
        for e in events
        if e.device_type != cuda and e.kernels
    ]
    table = kernel_table(kernels, iters, top)
    return {
        "workload": workload,
        "overrides": overrides,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "compile": trainer.cfg.train.compile,
        "iters": iters,
        "wall_ms_per_iter": wall * 1e3 / iters,
        "gpu_busy_fraction": table["kernel_ms_per_iter"] / (wall * 1e3 / iters),
        **table,
        "copy_launchers": copy_launchers(ops, iters, top),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workload", help="cifar | i128 | a preset name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--warmup", type=int, default=3, help="iterations before the profiled ones")
    p.add_argument("--iters", type=int, default=3, help="iterations to profile")
    p.add_argument("--top", type=int, default=25, help="longest kernels to list")
    args = p.parse_args()
    result = profile_iterations(args.workload, args.overrides, args.warmup, args.iters, args.top)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
