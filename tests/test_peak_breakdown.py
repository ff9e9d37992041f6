"""benchmarks/peak_breakdown.py: the peak of an allocator trace and what is live there."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from peak_breakdown import describe, live_at_peak  # noqa: E402


def _alloc(addr: int, size: int, frames: list | None = None) -> dict:
    return {"action": "alloc", "addr": addr, "size": size, "frames": frames or []}


def _free(addr: int, size: int) -> dict:
    return {"action": "free_requested", "addr": addr, "size": size}


def test_peak_counts_frees_of_memory_allocated_before_the_recording():
    trace = [
        _alloc(1, 100),
        _free(9, 80),  # allocated before the recording: the level falls to 20
        _alloc(2, 50),  # 70
        {"action": "free_completed", "addr": 9, "size": 80},  # not a second free
        _alloc(3, 40),  # 110: the peak
        _free(1, 100),  # 10
        _alloc(4, 90),  # 100
    ]
    growth, index, live = live_at_peak(trace)
    assert (growth, index) == (110, 4)
    assert sorted(e["addr"] for e in live) == [1, 2, 3]


def test_describe_names_the_op_the_source_and_the_backward():
    frames = [
        {"name": "c10::cuda::CUDACachingAllocator::malloc", "filename": "??", "line": 0},
        {"name": "at::native::cudnn_convolution_backward_input(char const*)", "filename": "",
         "line": 0},
        {"name": "call", "filename": "/tmp/torchinductor_root/ab/cabc.py", "line": 42},
        {"name": "forward", "filename": "/x/site-packages/torch/nn/modules/module.py",
         "line": 1},
        {"name": "block_forward", "filename": "/work/src/gankit/models/blocks.py", "line": 62},
        {"name": "torch::autograd::Engine::evaluate_function(...)", "filename": "??", "line": 0},
    ]  # fmt: skip
    d = describe(_alloc(5, 3 * 2**20, frames))
    assert d == {
        "MiB": 3.0,
        "backward": True,
        "op": "at::native::cudnn_convolution_backward_input",
        "source": ["cabc.py:42", "blocks.py:62"],
    }
    assert describe(_alloc(6, 2**20))["op"] is None and not describe(_alloc(6, 2**20))["backward"]
