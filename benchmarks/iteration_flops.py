"""Floating-point operations of one training iteration, counted on the CPU.

Runs one ``Trainer.train_iteration`` (``n_D`` D steps and the G step, EMA off) of a preset at a
small batch under ``torch.utils.flop_counter.FlopCounterMode`` and scales the count linearly to
the preset's batch (convolutions and matmuls are linear in the batch; the spectral-norm power
iterations, which are not, are a few MFLOP). Attention through ``scaled_dot_product_attention``
is not counted on the CPU (``i128``: about 4 TFLOP per iteration on top, estimated from its two
64x64 layers with q and k padded to v's width as the fused path does). Divided by a measured
GPU time per iteration it gives the arithmetic rate the step achieves, which says how far a
compute-bound step such as ``i128`` is from its ceiling. One JSON line per preset::

    python benchmarks/iteration_flops.py biggan-128 biggan-cifar [--batch 2]
"""

from __future__ import annotations

import argparse
import json

from torch.utils.flop_counter import FlopCounterMode

from gankit.bench import synthetic_dataset
from gankit.config import load_preset, validate
from gankit.training.loop import Trainer


def iteration_flops(preset: str, batch: int) -> dict:
    """``{"preset", "batch", "flops_per_iter", "by_op"}`` at the preset's own batch size."""
    cfg = load_preset(preset, ["train.device=cpu", "train.ema=false"])
    full, cfg.train.batch_size = cfg.train.batch_size, batch
    validate(cfg)
    trainer = Trainer(cfg, None, dataset=synthetic_dataset(cfg, 2 * batch * cfg.train.n_D),
                      quiet=True)  # fmt: skip
    with FlopCounterMode(display=False) as counter:
        trainer.train_iteration()
    scale = full / batch
    by_op = counter.get_flop_counts()["Global"]
    return {
        "preset": preset,
        "batch": full,
        "counted_at_batch": batch,
        "flops_per_iter": counter.get_total_flops() * scale,
        "by_op": {str(op): n * scale for op, n in sorted(by_op.items(), key=lambda kv: -kv[1])},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("presets", nargs="+")
    p.add_argument("--batch", type=int, default=2, help="batch the iteration runs at (CPU)")
    args = p.parse_args()
    for preset in args.presets:
        print(json.dumps(iteration_flops(preset, args.batch)), flush=True)


if __name__ == "__main__":
    main()
