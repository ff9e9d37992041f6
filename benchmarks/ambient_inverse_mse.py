"""How much the unmeasure baseline's inverses undo each measurement, on the embedded digits.

Prints one JSON line per spec: the mean squared error (in [-1, 1] units) to the clean images
of the measurements and of their inverses, over ``--n`` digits evenly spaced through the set
(it is sorted by class), θ seeded with 0.
Usage: ``python benchmarks/ambient_inverse_mse.py [--n 1000] [SPEC ...]``
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from gankit.config import DataConfig
from gankit.data import load_dataset, to_float
from gankit.measurements import build_measurement

DEFAULT_SPECS = ["block_pixels:p=0.5", "conv_noise:sigma=1,noise=0.4", "block_patch:k=14"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args()
    clean = load_dataset(DataConfig(), 28, 1)
    every = max(len(clean) // args.n, 1)
    x = to_float(torch.from_numpy(np.array(clean.x[::every][: args.n])))
    for spec in args.specs:
        m = build_measurement(spec)
        y, theta = m.measure(x, torch.Generator().manual_seed(0))
        row = {"measurement": m.spec, "n": len(x), "mse_measured": ((y - x) ** 2).mean().item()}
        row["mse_unmeasured"] = ((m.inverse(y, theta) - x) ** 2).mean().item()
        print(json.dumps(row))


if __name__ == "__main__":
    main()
