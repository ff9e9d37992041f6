"""Where a training iteration's CUDA memory peak is: the allocations live at that moment.

Runs a workload (``gankit bench``'s ``cifar``, ``i128`` or a preset; ``--set`` overrides) for
warm-up iterations without the CUDA graph (a replay allocates nothing to look at), then records
the caching allocator's history (``torch.cuda.memory._record_memory_history``) over one more
iteration. Prints one JSON line: the memory allocated when that iteration starts, its peak, and
the largest allocations live at the peak, each with the ATen op and the Python source lines
that made it and whether autograd's backward made it. ``--snapshot FILE`` also writes the raw
snapshot (the pickle that pytorch.org/memory_viz reads)::

    python benchmarks/peak_breakdown.py cifar --set train.checkpoint_activations=true
"""

from __future__ import annotations

import argparse
import json
import pickle
from typing import Any

import torch

from gankit.bench import warm_trainer

MiB = 2**20


def live_at_peak(trace: list[dict[str, Any]]) -> tuple[int, int, list[dict[str, Any]]]:
    """``(growth, index, live)`` of an allocator trace (one device's ``device_traces``):
    the largest rise of allocated bytes over the recording (frees of memory allocated before it
    count too), the index of the event that reached it, and the ``alloc`` events still live
    then. Memory counts as freed at ``free_requested``, as ``torch.cuda.memory_allocated``
    counts it."""
    level = growth = index = 0
    for i, event in enumerate(trace):
        if event["action"] == "alloc":
            level += event["size"]
        elif event["action"] == "free_requested":
            level -= event["size"]
        if level > growth:
            growth, index = level, i
    live: dict[int, dict[str, Any]] = {}
    for event in trace[: index + 1]:
        if event["action"] == "alloc":
            live[event["addr"]] = event
        elif event["action"] == "free_requested":
            live.pop(event["addr"], None)
    return growth, index, list(live.values())


def describe(event: dict[str, Any]) -> dict[str, Any]:
    """``{"MiB", "backward", "op", "source"}`` of one ``alloc`` event: its size; whether the
    autograd engine's thread made it; the innermost ATen op on its stack (``None`` for a
    compiled graph's own buffers); up to four Python frames outside torch, innermost first
    (gankit's modules and compiled graphs' generated code)."""
    frames = event.get("frames") or []
    names = [f["name"] for f in frames]
    op = next((n for n in names if n.startswith(("at::native::", "at::_ops::"))), None)
    source = [
        f"{f['filename'].rsplit('/', 1)[-1]}:{f['line']}"
        for f in frames
        if f["filename"].endswith(".py") and "/torch/" not in f["filename"]
    ]
    return {
        "MiB": event["size"] / MiB,
        "backward": any("Engine::evaluate_function" in n for n in names),
        "op": op.split("(")[0] if op else None,
        "source": source[:4],
    }


def breakdown(
    workload: str, overrides: list[str], warmup: int, top: int, snapshot: str | None = None
) -> dict[str, Any]:
    """Run ``workload`` on CUDA and return the JSON dict described in the module docstring."""
    if not torch.cuda.is_available():
        raise SystemExit("peak_breakdown needs a CUDA device (the allocator history is CUDA's)")
    trainer = warm_trainer(workload, overrides, warmup)
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=1_000_000)
    trainer.train_iteration()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    if snapshot:
        with open(snapshot, "wb") as f:
            pickle.dump(snap, f)
    growth, _, live = live_at_peak(snap["device_traces"][torch.cuda.current_device()])
    largest = sorted(live, key=lambda e: -e["size"])
    return {
        "workload": workload,
        "overrides": overrides,
        "device": torch.cuda.get_device_name(),
        "start_GiB": start / 2**30,
        "peak_GiB": peak / 2**30,
        "traced_growth_GiB": growth / 2**30,
        "live_at_peak": [describe(e) for e in largest[:top]],
        "rest_at_peak_MiB": sum(e["size"] for e in largest[top:]) / MiB,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workload", help="cifar | i128 | a preset name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--warmup", type=int, default=3, help="iterations before the recorded one")
    p.add_argument("--top", type=int, default=12, help="largest live allocations to list")
    p.add_argument("--snapshot", help="also write the raw allocator snapshot (pickle) here")
    args = p.parse_args()
    result = breakdown(args.workload, args.overrides, args.warmup, args.top, args.snapshot)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
