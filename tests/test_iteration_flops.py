"""benchmarks/iteration_flops.py: the count it scales from a small batch is the full batch's."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from iteration_flops import iteration_flops  # noqa: E402


def test_count_scales_linearly_in_the_batch(one_thread):
    one, two = iteration_flops("mnist-sagan", 1), iteration_flops("mnist-sagan", 2)
    assert one["batch"] == two["batch"] == 64 and one["flops_per_iter"] > 0
    assert abs(one["flops_per_iter"] - two["flops_per_iter"]) <= 1e-3 * two["flops_per_iter"]
    # mnist-sagan's G ends in a 3x3 conv 32 -> 1 channel at 28x28: 2 * 9 * 32 FLOPs per output
    # pixel of each of the 64 images, in the D step's fakes (n_D = 1) and the G step's forward
    assert one["by_op"]["aten.convolution"] >= 2 * (2 * 9 * 32 * 28 * 28 * 64)
