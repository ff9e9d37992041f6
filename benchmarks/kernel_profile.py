"""Where a training iteration's GPU time goes: its CUDA kernels, grouped by kind.

Runs a workload (``gankit bench``'s ``cifar``, ``i128`` or a preset; ``--set`` overrides) on
CUDA without the whole-iteration CUDA graph (the profiler then sees each kernel), with the
preset's ``train.compile``, for warm-up iterations, then profiles ``--iters`` more with
``torch.profiler``. Prints one JSON line: wall time and summed kernel time per iteration (their
ratio is how busy the GPU is), the kernel time per kind (fused Triton code, attention, batch norm,
convolution/matmul, other) and the kernels that took longest::

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

from gankit.bench import WORKLOADS, synthetic_dataset
from gankit.config import load_preset, validate
from gankit.training.loop import Trainer

KINDS = (  # first match wins; names as Triton, FlashAttention, cuDNN, cuBLAS, CUTLASS give them
    ("triton", ("triton",)),  # inductor's generated code
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


def profile_iterations(
    workload: str, overrides: list[str], warmup: int, iters: int, top: int
) -> dict[str, Any]:
    """Run ``workload`` on CUDA and return the JSON dict described in the module docstring."""
    if not torch.cuda.is_available():
        raise SystemExit("kernel_profile needs a CUDA device (it times CUDA kernels)")
    cfg = load_preset(WORKLOADS.get(workload, workload), [*overrides, "train.cuda_graph=false"])
    cfg.train.device = "cuda"
    validate(cfg)
    t = cfg.train
    trainer = Trainer(cfg, None, dataset=synthetic_dataset(cfg, 2 * t.batch_size * t.n_D),
                      quiet=True)  # fmt: skip
    for _ in range(warmup):
        trainer.train_iteration()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(iters):
            trainer.train_iteration()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = [
        (e.name, e.time_range.elapsed_us())
        for e in prof.events()
        if e.device_type == torch.autograd.DeviceType.CUDA
    ]
    table = kernel_table(kernels, iters, top)
    return {
        "workload": workload,
        "overrides": overrides,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "compile": t.compile,
        "iters": iters,
        "wall_ms_per_iter": wall * 1e3 / iters,
        "gpu_busy_fraction": table["kernel_ms_per_iter"] / (wall * 1e3 / iters),
        **table,
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
